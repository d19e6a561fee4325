"""Curation: the steps run on the records read from every source, before they are tokenised.

`curate` runs, in order: quality filters -> exact dedup -> near-dup -> decontamination -> PII. Quality
comes first so a broken record is never the one its duplicates are judged against; PII comes last so
only kept records are scrubbed. A removed record goes to the rejects file with its step's reason and a
detail naming what it matched (the kept record it duplicates, the eval set and shared n-gram, the
filter and its threshold), and is counted against its source, so read = accepted + rejected still holds.
The returned stats block (stats.json `curation`) counts each step's removals and PII replacements.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from lmtune.config.curation import CurationConfig, CurationText
from lmtune.data.curation import dedup, pii, quality
from lmtune.data.curation.decontam import build_index
from lmtune.data.curation.text import select_text
from lmtune.data.records import Conversation, Location, Reject, RejectLog, RejectReason

log = logging.getLogger(__name__)


class Curatable(Protocol):
    """What a record must carry to be curated (prepare's pending records are dataclasses like this)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def source(self) -> int: ...
    @property
    def where(self) -> Location: ...
    @property
    def raw(self) -> Any: ...
    @property
    def messages(self) -> Conversation: ...
    @property
    def is_text(self) -> bool: ...


class SourceTally(Protocol):
    """Per-source reject counts (`lmtune.data.records.SourceCounts`)."""

    by_reason: Counter[str]


T = TypeVar("T", bound=Curatable)


def curate(
    items: list[T], cfg: CurationConfig, rejects: RejectLog, per_source: Sequence[SourceTally]
) -> tuple[list[T], dict[str, Any]]:
    """Run the enabled curation steps over `items` (in reading order; the first of duplicates is kept).

    Args:
        items: the accepted records of all sources, in order.
        cfg: `data.curation`.
        rejects: where removed records are written (with their reason and detail).
        per_source: reject counts per source, indexed by `item.source`; removed records are added.

    Returns:
        The kept records (with PII replaced when `pii.action` is `replace`) and the stats block.

    Raises:
        DataError: an evaluation set for decontamination cannot be read.
        ConfigError: a language code lingua does not know.
    """
    run = _Run(rejects, per_source)
    steps: dict[str, dict[str, Any]] = {}
    kept = items

    q = cfg.quality
    if q.enabled:
        kept = run.filter(kept, lambda item: quality.check(item.messages, item.is_text, q))
    steps["quality"] = {"enabled": q.enabled, "removed": run.removed_since_last(), "languages": q.languages}

    ex = cfg.exact_dedup
    if ex.enabled:
        found = dedup.exact_duplicates(_texts(kept, ex.text))
        kept = run.drop(kept, {d.index: ("duplicate", f"same text as {kept[d.of].where}") for d in found})
    steps["exact_dedup"] = {"enabled": ex.enabled, "removed": run.removed_since_last()}

    nd = cfg.near_dedup
    if nd.enabled:
        found = dedup.near_duplicates(
            _texts(kept, nd.text), nd.threshold, nd.shingle_size, nd.shingle, nd.num_perm, nd.seed
        )
        detail = "near duplicate of {} (Jaccard {:.2f} >= {} on {} shingles)"
        unit = f"{nd.shingle_size}-{nd.shingle[:-1]}"
        kept = run.drop(
            kept,
            {
                d.index: (
                    "near_duplicate",
                    detail.format(kept[d.of].where, d.similarity, nd.threshold, unit),
                )
                for d in found
            },
        )
    steps["near_dedup"] = {
        "enabled": nd.enabled,
        "removed": run.removed_since_last(),
        "threshold": nd.threshold,
    }

    dc = cfg.decontamination
    per_set: Counter[str] = Counter()
    index_records: dict[str, int] = {}
    if dc.eval_sets:
        index = build_index(dc.eval_sets, dc.ngram)
        index_records = index.records

        def contaminated(item: T) -> tuple[RejectReason, str] | None:
            hit = index.first_overlap(select_text(item.messages, dc.text, item.is_text))
            if hit is None:
                return None
            per_set[hit.eval_set] += 1
            return "contaminated", (
                f"shares the {dc.ngram}-gram '{hit.ngram}' with eval set '{hit.eval_set}' ({hit.eval_record})"
            )

        kept = run.filter(kept, contaminated)
    steps["decontamination"] = {
        "enabled": bool(dc.eval_sets),
        "removed": run.removed_since_last(),
        "ngram": dc.ngram,
        "eval_sets": {
            es.name: {"records": index_records.get(es.name, 0), "removed": per_set[es.name]}
            for es in dc.eval_sets
        },
    }

    p = cfg.pii
    replacements: Counter[str] = Counter()
    with_pii = 0
    if p.enabled:
        scrubbed: list[T] = []
        for item in kept:
            messages, counts = _scrub(item.messages, p.types, p.placeholder)
            if not counts:
                scrubbed.append(item)
                continue
            with_pii += 1
            if p.action == "drop":
                kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items()))
                # The rejects file gets the scrubbed record: the original stays only in its source file.
                run.reject(item, "pii", f"contains {kinds}", {"messages": messages})
            else:
                replacements.update(counts)
                scrubbed.append(dataclasses.replace(item, messages=messages))
        kept = scrubbed
    steps["pii"] = {
        "enabled": p.enabled,
        "action": p.action,
        "removed": run.removed_since_last(),
        "records_with_pii": with_pii,
        "replacements": dict(sorted(replacements.items())),
    }

    stats = {
        "in": len(items),
        "kept": len(kept),
        "removed": len(items) - len(kept),
        "removed_by_reason": dict(sorted(run.by_reason.items())),
        "steps": steps,
    }
    log.info("curation: %d in, %d kept, removed %s", len(items), len(kept), dict(run.by_reason))
    return kept, stats


class _Run:
    """Writes removed records to the rejects log and keeps the counts."""

    def __init__(self, rejects: RejectLog, per_source: Sequence[SourceTally]) -> None:
        self.rejects = rejects
        self.per_source = per_source
        self.by_reason: Counter[str] = Counter()
        self._total = 0
        self._mark = 0

    def reject(self, item: Curatable, reason: RejectReason, detail: str, raw: Any = None) -> None:
        self.rejects.add(Reject(item.where, reason, detail, item.raw if raw is None else raw))
        self.per_source[item.source].by_reason[reason] += 1
        self.by_reason[reason] += 1
        self._total += 1

    def filter(self, items: list[T], test: Callable[[T], tuple[RejectReason, str] | None]) -> list[T]:
        kept = []
        for item in items:
            verdict = test(item)
            if verdict is None:
                kept.append(item)
            else:
                self.reject(item, *verdict)
        return kept

    def drop(self, items: list[T], removed: dict[int, tuple[RejectReason, str]]) -> list[T]:
        for i in sorted(removed):
            self.reject(items[i], *removed[i])
        return [item for i, item in enumerate(items) if i not in removed]

    def removed_since_last(self) -> int:
        """Records removed since the previous call (one step's count)."""
        n, self._mark = self._total - self._mark, self._total
        return n


def _texts(items: Sequence[Curatable], which: CurationText) -> list[str]:
    return [select_text(item.messages, which, item.is_text) for item in items]


def _scrub(
    messages: Conversation, types: list[pii.PiiType], placeholder: str
) -> tuple[Conversation, Counter[str]]:
    counts: Counter[str] = Counter()
    out = []
    for turn in messages:
        text, found = pii.scrub(turn["content"], types, placeholder)
        counts.update(found)
        out.append({**turn, "content": text})
    return out, counts

"""Imbalance: mix sources by weight or temperature, balance labels, and derive per-label loss weights.

Runs on the train split only, after the split: the split is drawn over the original records, so a record
and its over-sampled copies are always on the same side (eval keeps the data as read). Two steps, each
seeded by the run's seed (the same data, config and seed always give the same train split):

1. **Sources.** Source i, with n_i train records, gets a target share p_i: `weight_i / sum(weight)`
   when sources carry weights, `n_i^(1/T) / sum_j n_j^(1/T)` with `mixture.temperature` T, else
   `n_i / sum(n)`. The target size N is `mixture.size` (a count), the train size (`total`), or
   `n_L / p_L` for the largest source L (`largest`: L is used exactly once). Source i then contributes
   c_i = N * p_i records (largest-remainder rounding, so the c_i add up to N; with `largest`, c_L = n_L
   exactly and c_i = round(n_L * p_i / p_L)).
2. **Labels.** With `label_field`, records are grouped by that field's value. `oversample` raises every
   label to at least ceil(r * max count), `undersample` lowers every label to at most floor(min count / r),
   r = `label_ratio`. Records without the field are kept as they are.

Taking c records from a pool of n: c <= n draws c distinct records; c > n takes every record c // n
times plus c mod n distinct extra ones, so copies are spread evenly (no record is repeated twice more
than another). Class weights (inverse frequency) are w_c = N / (K * n_c) over the final train split, K
labels with n_c records each: their mean over labelled records is exactly 1.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from lmtune.config.data import DataConfig, MixtureConfig

MISSING = "(missing)"
"""How a record without the label field is counted."""


class MixRecord(Protocol):
    """What resampling needs of an accepted record: its source index and its raw form."""

    @property
    def source(self) -> int: ...

    @property
    def raw(self) -> Any: ...


def record_label(raw: Any, field: str) -> str | None:
    """The value of top-level `field` in a raw record (a JSONL line or a row), as a string; None if absent.

    Strings are used as they are; other values (numbers, booleans, lists) as compact JSON.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict):
        return None
    value = raw.get(field)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def source_shares(
    counts: Sequence[int], weights: Sequence[float] | None, temperature: float | None
) -> list[float]:
    """Target share of each source: by weight, by n^(1/T), or as read; a source with no records gets 0."""
    if weights is not None:
        raw = [w if n > 0 else 0.0 for w, n in zip(weights, counts, strict=True)]
    elif temperature is not None:
        raw = [n ** (1.0 / temperature) if n > 0 else 0.0 for n in counts]
    else:
        raw = [float(n) for n in counts]
    total = sum(raw)
    return [r / total if total > 0 else 0.0 for r in raw]


def target_size(counts: Sequence[int], shares: Sequence[float], size: int | str) -> int:
    """Train size after mixing: a count, the current total (`total`), or `largest` (see module doc)."""
    if isinstance(size, int):
        return size
    if size == "total":
        return sum(counts)
    largest = max(range(len(counts)), key=lambda i: counts[i])
    return round(counts[largest] / shares[largest]) if shares[largest] > 0 else sum(counts)


def source_targets(counts: Sequence[int], shares: Sequence[float], size: int | str) -> list[int]:
    """Records each source contributes: `target_size` split by share (largest remainder); with
    `largest`, the largest source L keeps exactly n_L and source i gets round(n_L * p_i / p_L)."""
    if size == "largest" and counts:
        largest = max(range(len(counts)), key=lambda i: counts[i])
        if shares[largest] > 0:
            scale = counts[largest] / shares[largest]
            return [counts[i] if i == largest else round(scale * s) for i, s in enumerate(shares)]
    return apportion(target_size(counts, shares, size), shares)


def apportion(total: int, shares: Sequence[float]) -> list[int]:
    """Split `total` into integer parts proportional to `shares` (largest remainder; they sum to total)."""
    exact = [total * s for s in shares]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def sample_to(pool: Sequence[int], count: int, rng: random.Random) -> list[int]:
    """`count` items from `pool`: distinct ones when count <= len(pool), else every item count // len
    times plus count % len distinct extra ones. Returned sorted."""
    if not pool or count <= 0:
        return []
    copies, extra = divmod(count, len(pool))
    items = list(pool)
    return sorted(items * copies + rng.sample(items, extra))


def label_targets(counts: dict[str, int], strategy: str, ratio: float) -> dict[str, int]:
    """Per-label counts after balancing (`oversample` raises small labels, `undersample` lowers large)."""
    if not counts or strategy == "none":
        return dict(counts)
    if strategy == "oversample":
        floor = math.ceil(ratio * max(counts.values()) - 1e-9)
        return {label: max(n, floor) for label, n in counts.items()}
    ceiling = math.floor(min(counts.values()) / ratio + 1e-9)
    return {label: min(n, ceiling) for label, n in counts.items()}


def class_weights(counts: dict[str, int]) -> dict[str, float]:
    """w_c = N / (K * n_c): inverse frequency, mean 1 over the labelled records."""
    present = {label: n for label, n in counts.items() if n > 0}
    total = sum(present.values())
    return {label: total / (len(present) * n) for label, n in sorted(present.items())}


def resample(
    train: list[int], records: Sequence[MixRecord], data: DataConfig, seed: int
) -> tuple[list[int], dict[str, Any]]:
    """Mix sources and balance labels over the train indices; return the new indices and a stats block.

    Args:
        train: indices into `records` of the train split (each once).
        records: every accepted record (train and eval), with its source index and raw form.
        data: the data config (per-source `weight`, `mixture`).
        seed: the run's seed.

    Returns:
        The train indices after resampling (repeats for over-sampled records, in record order) and the
        stats.json `mixture` block: per source and per label counts before and after, class weights.
    """
    mix = data.mixture or MixtureConfig()
    rng = random.Random(f"lmtune-mixture-{seed}")
    n_sources = len(data.sources)
    weights = [s.weight for s in data.sources]
    use_weights = all(w is not None for w in weights) and n_sources > 0
    mixing = use_weights or mix.temperature is not None or mix.size != "total"

    by_source: list[list[int]] = [[] for _ in range(n_sources)]
    for i in train:
        by_source[records[i].source].append(i)
    before = [len(pool) for pool in by_source]
    shares = source_shares(before, [w or 0.0 for w in weights] if use_weights else None, mix.temperature)
    if mixing:
        targets = source_targets(before, shares, mix.size)
        mixed = sorted(i for pool, c in zip(by_source, targets, strict=True) for i in sample_to(pool, c, rng))
    else:
        mixed = list(train)

    labels_block: dict[str, Any] | None = None
    weights_block: dict[str, float] | None = None
    result = mixed
    if mix.label_field is not None:
        field = mix.label_field
        label_of = {i: record_label(r.raw, field) for i, r in enumerate(records)}
        groups: dict[str, list[int]] = {}
        for i in mixed:
            groups.setdefault(label_of[i] or MISSING, []).append(i)
        counts = {label: len(g) for label, g in groups.items() if label != MISSING}
        wanted = label_targets(counts, mix.label_strategy, mix.label_ratio)
        result = sorted(
            i
            for label, group in sorted(groups.items())
            for i in (group if label == MISSING else sample_to(group, wanted[label], rng))
        )
        train_set = set(train)
        labels_block = {
            "field": field,
            "strategy": mix.label_strategy,
            "ratio": mix.label_ratio,
            "before": _count_labels(train, label_of),
            "after_sources": _count_labels(mixed, label_of),
            "after": _count_labels(result, label_of),
            "eval": _count_labels([i for i in range(len(records)) if i not in train_set], label_of),
        }
        if mix.class_weights:
            final = Counter(label for i in result if (label := label_of[i]) is not None)
            weights_block = class_weights(dict(final))

    after = Counter(records[i].source for i in result)
    unique = len(set(result))
    block = {
        "enabled": mixing or mix.label_strategy != "none",
        "seed": seed,
        "sources": [
            {
                "path": src.path,
                "weight": src.weight,
                "target_share": round(shares[k], 6) if mixing else None,
                "before": before[k],
                "after": after.get(k, 0),
            }
            for k, src in enumerate(data.sources)
        ],
        "train_before": len(train),
        "train_after": len(result),
        "unique_after": unique,
        "repeated": len(result) - unique,
        "unused": len(train) - unique,
        "labels": labels_block,
        "class_weights": weights_block,
    }
    return result, block


def _count_labels(indices: Sequence[int], label_of: dict[int, str | None]) -> dict[str, int]:
    counts = Counter(label_of[i] or MISSING for i in indices)
    return dict(sorted(counts.items()))

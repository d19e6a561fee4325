"""Per-item scores and paired bootstrap intervals for base-vs-tuned deltas.

Every suite keeps, for each metric, one value per item (`ItemScores`) and how the values aggregate
into the metric (a mean, a token-weighted ratio, or a corpus statistic such as BLEU). Base and tuned
are scored on the same items, so their difference is resampled *by item* (a paired bootstrap):
`scipy.stats.bootstrap` draws item indices with replacement and the statistic is
aggregate(tuned[idx]) - aggregate(base[idx]); the 95% interval is the percentile interval of those
draws. The resampling is seeded, so the same scores give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

RESAMPLES = 1000
"""Bootstrap draws per interval."""
LEVEL = 0.95
"""Confidence level of the interval."""


def mean_of(values: Sequence[Any]) -> float | None:
    """Mean of the values that are not None; None when none are."""
    counted = [float(v) for v in values if v is not None]
    return sum(counted) / len(counted) if counted else None


def ratio_of(values: Sequence[Any]) -> float | None:
    """sum(numerators) / sum(denominators) of (numerator, denominator) pairs; None when the
    denominators sum to 0 (e.g. token-mean loss: (summed NLL, tokens) per item)."""
    den = sum(v[1] for v in values)
    return sum(v[0] for v in values) / den if den else None


@dataclass(frozen=True)
class ItemScores:
    """One metric's per-item values and how they aggregate into the metric."""

    values: list[Any]
    """One value per item, in the suite's item order (None: the item does not count for this metric)."""
    kind: Literal["mean", "ratio", "corpus"] = "mean"
    """`mean`: the mean of the non-None values; `ratio`: sum of numerators / sum of denominators of
    (numerator, denominator) pairs; `corpus`: `corpus` computes the metric from a list of values."""
    corpus: Callable[[Sequence[Any]], float | None] | None = field(default=None, compare=False)
    """The aggregate of a `corpus` metric (e.g. corpus BLEU from (hypothesis, reference) pairs)."""
    transform: Callable[[float], float] | None = field(default=None, compare=False)
    """Applied to the aggregate (e.g. exp for perplexity from the mean loss)."""

    def aggregate(self, values: Sequence[Any] | None = None) -> float | None:
        """The metric over `values` (default: all of them)."""
        values = self.values if values is None else values
        match self.kind:
            case "mean":
                out = mean_of(values)
            case "ratio":
                out = ratio_of(values)
            case "corpus":
                assert self.corpus is not None, "a corpus metric needs its `corpus` aggregate"
                out = self.corpus(values)
        return self.transform(out) if out is not None and self.transform is not None else out

    @property
    def counted(self) -> int:
        """Items that count for the metric."""
        return sum(v is not None for v in self.values)


@dataclass(frozen=True)
class Interval:
    """A paired bootstrap interval of tuned - base."""

    low: float
    high: float
    items: int
    """Items the metric counts on both sides."""

    @property
    def includes_zero(self) -> bool:
        return self.low <= 0 <= self.high


def paired_interval(
    base: ItemScores, tuned: ItemScores, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Interval | None:
    """The percentile bootstrap interval of aggregate(tuned) - aggregate(base), resampling items.

    Returns:
        None when the two sides do not score the same items, fewer than 2 items count, or the
        difference is undefined on the data.

    Raises:
        ValueError: base and tuned hold different numbers of items.
    """
    # deferred: numpy, scipy only when this runs (keeps `import lmtune...` light)
    import numpy as np
    from scipy.stats import bootstrap

    if len(base.values) != len(tuned.values):
        raise ValueError(
            f"paired scores need the same items: {len(base.values)} base vs {len(tuned.values)} tuned"
        )
    keep = [
        i
        for i, (b, t) in enumerate(zip(base.values, tuned.values, strict=True))
        if b is not None and t is not None
    ]
    if len(keep) < 2:
        return None
    b_vals = [base.values[i] for i in keep]
    t_vals = [tuned.values[i] for i in keep]
    whole = _difference(base, tuned, b_vals, t_vals)
    if whole is None or not math.isfinite(whole):
        return None

    tuned_of, base_of = _vectorized(tuned, t_vals), _vectorized(base, b_vals)

    def statistic(sample: Any, axis: int = -1) -> Any:
        rows = np.atleast_2d(sample)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = tuned_of(rows) - base_of(rows)
        return out if np.ndim(sample) > 1 else out[0]

    result = bootstrap(
        (np.arange(len(keep)),),
        statistic,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return Interval(low, high, len(keep))


def _difference(base: ItemScores, tuned: ItemScores, b: Sequence[Any], t: Sequence[Any]) -> float | None:
    b_value, t_value = base.aggregate(b), tuned.aggregate(t)
    return None if b_value is None or t_value is None else t_value - b_value


def _vectorized(scores: ItemScores, values: Sequence[Any]) -> Callable[[Any], Any]:
    """rows of item indices [B, n] -> the metric of each row [B] (NaN where undefined)."""
    # deferred: numpy only when this runs (keeps `import lmtune...` light)
    import numpy as np

    def finish(out: Any) -> Any:
        out = np.asarray(out, dtype=float)
        if scores.transform is not None:
            out = np.array([scores.transform(x) if np.isfinite(x) else np.nan for x in out], dtype=float)
        return out

    if scores.kind == "mean":
        arr = np.asarray(values, dtype=float)
        return lambda rows: finish(arr[rows].mean(axis=-1))
    if scores.kind == "ratio":
        pairs = np.asarray(values, dtype=float).reshape(len(values), 2)
        return lambda rows: finish(pairs[rows, 0].sum(axis=-1) / pairs[rows, 1].sum(axis=-1))
    assert scores.corpus is not None, "a corpus metric needs its `corpus` aggregate"
    corpus = scores.corpus

    def each(rows: Any) -> Any:
        found = [corpus([values[i] for i in r]) for r in rows]
        return finish([np.nan if x is None else x for x in found])

    return each

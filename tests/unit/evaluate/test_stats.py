"""Paired bootstrap intervals: they hold the observed delta, exclude 0 for a clear effect, hold 0 for
noise, are reproducible, and work for means, token-weighted ratios and corpus statistics."""

from __future__ import annotations

import math
import random

import pytest

from lmtune.evaluate.stats import ItemScores, mean_of, paired_interval, ratio_of


def coin(p: float, n: int, seed: int) -> ItemScores:
    rng = random.Random(seed)
    return ItemScores([float(rng.random() < p) for _ in range(n)])


def test_a_clear_gain_excludes_zero_and_holds_the_delta() -> None:
    base, tuned = coin(0.3, 300, 1), coin(0.7, 300, 2)
    interval = paired_interval(base, tuned)
    assert interval is not None and interval.items == 300
    delta = tuned.aggregate() - base.aggregate()  # type: ignore[operator]
    assert interval.low < delta < interval.high
    assert not interval.includes_zero and interval.low > 0


def test_one_item_of_forty_is_noise() -> None:
    """Exact match 1/40 -> 0/40 (the quickstart's case): the interval holds 0."""
    base = ItemScores([1.0] + [0.0] * 39)
    tuned = ItemScores([0.0] * 40)
    interval = paired_interval(base, tuned)
    assert interval is not None and interval.includes_zero
    assert interval.low == pytest.approx(-3 / 40, abs=0.03) and interval.high == 0.0


def test_identical_scores_give_a_zero_interval_and_the_same_draws_twice() -> None:
    scores = coin(0.5, 50, 3)
    assert paired_interval(scores, scores) == paired_interval(scores, scores)
    interval = paired_interval(scores, scores)
    assert interval is not None and (interval.low, interval.high) == (0.0, 0.0)
    other = coin(0.5, 50, 4)
    assert paired_interval(scores, other) == paired_interval(scores, other)


def test_pairing_narrows_the_interval() -> None:
    """Tuned = base + a small constant on very different items: paired resampling sees the constant."""
    rng = random.Random(5)
    base = [rng.gauss(0, 10) for _ in range(100)]
    paired = paired_interval(ItemScores(base), ItemScores([b + 0.5 for b in base]))
    assert paired is not None and paired.low == pytest.approx(0.5) and paired.high == pytest.approx(0.5)


def test_ratio_metrics_resample_whole_items() -> None:
    """Token-mean loss: each item is (summed NLL, tokens); the interval of a perplexity ratio is exp'd."""
    rng = random.Random(6)
    base_rows = [(rng.uniform(5, 20), rng.randint(3, 9)) for _ in range(60)]
    tuned_rows = [(nll * 0.7, n) for nll, n in base_rows]
    base, tuned = ItemScores(base_rows, kind="ratio"), ItemScores(tuned_rows, kind="ratio")
    assert base.aggregate() == pytest.approx(sum(r[0] for r in base_rows) / sum(r[1] for r in base_rows))
    interval = paired_interval(base, tuned)
    assert interval is not None and interval.high < 0
    ppl = paired_interval(
        ItemScores(base_rows, kind="ratio", transform=math.exp),
        ItemScores(tuned_rows, kind="ratio", transform=math.exp),
    )
    assert ppl is not None and ppl.high < 0


def test_corpus_metrics_resample_through_their_aggregate() -> None:
    values = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    corpus = ItemScores(values, kind="corpus", corpus=lambda v: sum(x[0] for x in v) / sum(x[1] for x in v))
    assert corpus.aggregate() == pytest.approx(16 / 20)
    interval = paired_interval(corpus, corpus)
    assert interval is not None and interval.items == 4


def test_items_that_do_not_count_are_left_out_on_both_sides() -> None:
    base = ItemScores([None, 1.0, 0.0, None, 1.0])
    tuned = ItemScores([None, 1.0, 1.0, None, 1.0])
    assert base.counted == 3 and mean_of(base.values) == pytest.approx(2 / 3)
    interval = paired_interval(base, tuned)
    assert interval is not None and interval.items == 3


def test_too_few_or_mismatched_items() -> None:
    assert paired_interval(ItemScores([1.0]), ItemScores([0.0])) is None
    assert ratio_of([(1.0, 0), (2.0, 0)]) is None
    with pytest.raises(ValueError, match="paired scores need the same items: 2 base vs 3 tuned"):
        paired_interval(ItemScores([1.0, 0.0]), ItemScores([1.0, 0.0, 1.0]))

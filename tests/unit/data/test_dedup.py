"""Exact and near-duplicate removal: unit behaviour, and measured recall / false removals on planted near
copies of real GSM8K and chatterbot records (built here with a fixed seed by
`planted_fixture` of benchmarks/curation_support.py)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from lmtune.config.curation import NearDedupConfig
from lmtune.data.curation import dedup
from lmtune.errors import DataError

LONG = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Natalia sold 48/2 = 24 clips in May. "
    "Natalia sold 48+24 = 72 clips altogether in April and May. #### 72"
)


@pytest.fixture(scope="module")
def cm(benchmark_module: Any) -> ModuleType:
    """benchmarks/curation_support.py: the planted fixture and its scores (benchmark support, not product)."""
    return benchmark_module("curation_support")


def test_exact_duplicates_ignore_case_spacing_and_punctuation() -> None:
    texts = ["Hello, World!", "hello   world", "HELLO WORLD.", "hello there world", ""]
    found = dedup.exact_duplicates(texts)
    assert [(d.index, d.of, d.similarity) for d in found] == [(1, 0, 1.0), (2, 0, 1.0)]


def test_near_duplicates_keep_the_first_and_confirm_with_exact_jaccard() -> None:
    reworded = LONG.replace("sold half as many", "sold only half as many")
    other = "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting."
    found = dedup.near_duplicates([LONG, other, reworded, ""], threshold=0.8)
    assert [(d.index, d.of) for d in found] == [(2, 0)]
    assert found[0].similarity == pytest.approx(
        dedup.jaccard(dedup.shingles(LONG, 5), dedup.shingles(reworded, 5))
    )
    assert 0.8 <= found[0].similarity < 1
    # the same pair under a stricter threshold is kept
    assert dedup.near_duplicates([LONG, reworded], threshold=0.99) == []
    # fewer permutations / another seed change only the candidate search; the pair is confirmed exactly
    small = dedup.near_duplicates([LONG, other, reworded], threshold=0.8, num_perm=32, seed=7)
    assert [(d.index, d.of, d.similarity) for d in small] == [(2, 0, found[0].similarity)]


def test_word_shingles_and_short_texts() -> None:
    assert dedup.shingles("A b, C d e f", 5, "words") == {"a b c d e", "b c d e f"}
    assert dedup.shingles("Hi there", 5, "words") == {"hi there"}
    assert dedup.shingles("Hi!", 5) == {"hi"}
    assert dedup.shingles("  ...  ", 5) == frozenset()
    assert dedup.jaccard(frozenset(), frozenset()) == 0.0


def test_perturbations_change_the_text_but_keep_it_close(cm: ModuleType) -> None:
    import random

    rng = random.Random(0)
    base = cm.Conversation(LONG.split("? ")[0] + "?", LONG.split("? ")[1])
    for kind in cm.PERTURBATIONS:
        copy = cm.perturb(base, kind, rng)
        assert copy != base, kind


def _real(cm: ModuleType, source: str) -> list[Any]:
    try:
        return cm.gsm8k_records() if source == "gsm8k" else cm.chatterbot_records()
    except DataError as exc:
        pytest.skip(str(exc))


@pytest.mark.real
def test_planted_near_duplicates_of_real_records_are_removed_and_distinct_ones_kept(cm: ModuleType) -> None:
    """Acceptance (issue 6.1): >= 95% of planted near copies removed, <= 1% of distinct records removed,
    with the default settings (exact dedup, then Jaccard >= 0.8 on character 5-shingles)."""
    cfg = NearDedupConfig()
    gsm8k = _real(cm, "gsm8k")
    records, origin, kinds = cm.planted_fixture(gsm8k, 300, seed=0)
    scores = cm.near_dup_scores(records, origin, kinds, cfg)
    assert scores["planted"] == 300 and scores["base"] == 1319
    assert scores["planted_recall"] >= 0.95, scores
    assert scores["distinct_removed"] <= 0.01, scores
    assert set(scores["recall_by_perturbation"]) == set(cm.PERTURBATIONS)

    mixed = gsm8k + _real(cm, "chatterbot")
    records, origin, kinds = cm.planted_fixture(mixed, 600, seed=1)
    scores = cm.near_dup_scores(records, origin, kinds, cfg)
    assert scores["planted_recall"] >= 0.95, scores
    assert scores["distinct_removed"] <= 0.01, scores


@pytest.mark.real
def test_word_shingles_miss_more_reworded_copies_than_character_shingles(cm: ModuleType) -> None:
    """Why the default unit is characters: on the same fixture, word 5-shingles at 0.8 miss more."""
    gsm8k = _real(cm, "gsm8k")
    records, origin, kinds = cm.planted_fixture(gsm8k, 200, seed=2)
    chars = cm.near_dup_scores(records, origin, kinds, NearDedupConfig())
    word = cm.near_dup_scores(records, origin, kinds, NearDedupConfig(shingle="words"))
    assert word["planted_recall"] < chars["planted_recall"]

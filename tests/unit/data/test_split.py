"""Split determinism and fingerprint stability."""

from __future__ import annotations

import pytest

from lmtune.data.fingerprint import fingerprint
from lmtune.data.split import eval_count, split_indices


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [(100, 0.1, 10), (100, 0.0, 0), (10, 0.01, 1), (100, 7, 7), (100, 1.0, 1), (5, 50, 4), (1, 0.5, 0)],
)
def test_eval_count_fraction_or_count(n: int, size: float, expected: int) -> None:
    assert eval_count(n, size) == expected


def test_same_inputs_same_split_and_seed_changes_it() -> None:
    a = split_indices(50, 0.2, seed=7)
    assert a == split_indices(50, 0.2, seed=7)
    assert a != split_indices(50, 0.2, seed=8)
    train, evals = a
    assert sorted(train + evals) == list(range(50)) and not set(train) & set(evals)
    assert len(evals) == 10 and evals == sorted(evals) and train == sorted(train)


RECORDS = [
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": str(i)}]}
    for i in range(3)
]


def test_fingerprint_stable_and_sensitive() -> None:
    settings = {"tokenizer": {"name": "tiny"}, "max_length": 64}
    fp = fingerprint(RECORDS, settings)
    assert fp == fingerprint([dict(reversed(r.items())) for r in RECORDS], dict(reversed(settings.items())))
    assert len(fp) == 64
    assert fp != fingerprint(RECORDS[:2], settings)
    assert fp != fingerprint(list(reversed(RECORDS)), settings)
    assert fp != fingerprint(RECORDS, {**settings, "max_length": 65})

"""Deterministic train/eval split: the same records, `eval_size` and seed always give the same split."""

from __future__ import annotations

import random


def eval_count(n: int, eval_size: float) -> int:
    """How many of `n` records go to eval: a fraction when `eval_size` < 1, else a count.

    A positive fraction keeps at least one eval record, and at least one record always stays in train.
    """
    if n <= 1 or eval_size <= 0:
        return 0
    wanted = max(1, round(n * eval_size)) if eval_size < 1 else int(eval_size)
    return min(wanted, n - 1)


def split_indices(n: int, eval_size: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, eval indices), each in the original order; eval is a seeded random sample."""
    chosen = set(random.Random(seed).sample(range(n), eval_count(n, eval_size)))
    train = [i for i in range(n) if i not in chosen]
    return train, sorted(chosen)

"""Packing keeps examples apart (position ids restart, no cross-example label) and loses no token."""

from __future__ import annotations

import pytest

from lmtune.data.encoding.packing import pack
from lmtune.data.encoding.template import IGNORE

LENGTHS = [5, 3, 7, 2, 6, 1]


def _examples() -> tuple[list[list[int]], list[list[int]]]:
    ids = [[100 * k + j for j in range(n)] for k, n in enumerate(LENGTHS)]
    labels = [[IGNORE, *row[1:]] if k % 2 else list(row) for k, row in enumerate(ids)]
    return ids, labels


def test_rows_fit_and_no_token_is_lost() -> None:
    ids, labels = _examples()
    rows = pack(ids, labels, max_length=8)
    assert all(len(r.input_ids) <= 8 for r in rows)
    assert sum(len(r.input_ids) for r in rows) == sum(LENGTHS)
    assert [i for r in rows for i in r.input_ids] == [i for row in ids for i in row]
    assert [m for r in rows for m in r.members] == list(range(len(LENGTHS)))
    assert len(rows) < len(LENGTHS)


def test_position_ids_restart_at_each_example() -> None:
    ids, labels = _examples()
    rows = pack(ids, labels, max_length=8)
    expected = [list(range(n)) for n in LENGTHS]
    for row in rows:
        assert len(row.position_ids) == len(row.input_ids) == len(row.labels)
        starts = [j for j, p in enumerate(row.position_ids) if p == 0]
        assert len(starts) == len(row.members)
        chunks = [
            row.position_ids[a:b] for a, b in zip(starts, [*starts[1:], len(row.position_ids)], strict=True)
        ]
        assert chunks == [expected[m] for m in row.members]


def test_first_label_of_each_example_is_ignored_others_kept() -> None:
    ids, labels = _examples()
    rows = pack(ids, labels, max_length=8)
    for row in rows:
        offset = 0
        for m in row.members:
            n = LENGTHS[m]
            assert row.labels[offset] == IGNORE
            assert row.labels[offset + 1 : offset + n] == labels[m][1:]
            offset += n


def test_example_longer_than_max_length_is_refused() -> None:
    with pytest.raises(ValueError, match="example 0 has 9 tokens, more than max_length=8"):
        pack([[1] * 9], [[1] * 9], max_length=8)

"""The SQLite request store: rows round-trip, summaries add up, threads can share it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from lmtune.monitor.store import RequestRecord, RequestStore, percentile


def _rec(i: int, status: int = 200, latency: float = 10.0, **kw: object) -> RequestRecord:
    return RequestRecord(
        ts=1000.0 + i,
        endpoint="/v1/chat/completions",
        status=status,
        latency_ms=latency,
        **kw,  # type: ignore[arg-type]
    )


def test_records_round_trip_newest_first(tmp_path: Path) -> None:
    store = RequestStore(tmp_path / "deep" / "r.sqlite")
    a = _rec(0, model="m", prompt_tokens=12, completion_tokens=8, stream=True, finish_reason="length")
    b = _rec(1, status=400, error_type="invalid_request_error", prompt="[]", completion="x")
    ids = [store.record(a), store.record(b)]
    assert ids == [1, 2]
    got = store.recent(10)
    assert [r.id for r in got] == [2, 1]
    assert got[1] == RequestRecord(**{**a.__dict__, "id": 1})
    assert got[0].stream is False and got[1].stream is True
    assert store.recent(1) == got[:1]
    assert store.recent(0) == []
    store.close()
    reopened = RequestStore(tmp_path / "deep" / "r.sqlite")
    assert reopened.count() == 2
    reopened.close()


def test_wal_mode(tmp_path: Path) -> None:
    store = RequestStore(tmp_path / "r.sqlite")
    store.record(_rec(0))
    with sqlite3.connect(tmp_path / "r.sqlite") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 1
    store.close()


def test_summary_counts_rates_percentiles_tokens(tmp_path: Path) -> None:
    store = RequestStore(tmp_path / "r.sqlite")
    for i in range(1, 11):  # latencies 10..100 ms, tokens i and 2i
        store.record(_rec(i, latency=10.0 * i, prompt_tokens=i, completion_tokens=2 * i, stream=i % 2 == 0))
    store.record(_rec(11, status=400, latency=1.0))
    store.record(_rec(12, status=429, latency=2.0))
    s = store.summary()
    assert s.requests == 12
    assert s.by_status == {200: 10, 400: 1, 429: 1}
    assert s.errors == 2
    assert s.error_rate == pytest.approx(2 / 12)
    # sorted: 1, 2, 10, 20, ..., 100 -> nearest rank
    assert s.latency_ms == {"p50": 40.0, "p90": 90.0, "p99": 100.0, "max": 100.0}
    assert s.prompt_tokens == 55 and s.completion_tokens == 110
    assert s.streamed == 5
    later = store.summary(since=1011.0)
    assert later.requests == 2 and later.error_rate == 1.0 and later.prompt_tokens == 0
    store.close()


def test_empty_summary(tmp_path: Path) -> None:
    store = RequestStore(tmp_path / "r.sqlite")
    s = store.summary()
    assert (s.requests, s.errors, s.error_rate, s.latency_ms, s.prompt_tokens) == (0, 0, 0.0, {}, 0)
    store.close()


def test_percentile_nearest_rank() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 5) == 15.0
    assert percentile(values, 30) == 20.0
    assert percentile(values, 40) == 20.0
    assert percentile(values, 50) == 35.0
    assert percentile(values, 100) == 50.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = RequestStore(tmp_path / "r.sqlite")

    def write(t: int) -> None:
        for i in range(50):
            store.record(_rec(i, completion_tokens=t))
            store.recent(1)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.count() == 400
    assert store.summary().completion_tokens == 50 * sum(range(8))
    store.close()

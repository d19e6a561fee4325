"""The request store: one SQLite row per served API request, rejected ones included.

Rows hold sizes, timings and outcomes; prompt and completion text only when the server was told to
log prompts (`ServeConfig.log_prompts`) — the server passes `None` otherwise, and the store keeps
whatever it is given. One connection guarded by a lock, in WAL mode, so request threads and readers
(a dashboard, `lmtune monitor`) do not block each other for long.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtune.runtime.records import RequestRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT,
    status INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    stream INTEGER NOT NULL,
    finish_reason TEXT,
    error_type TEXT,
    prompt TEXT,
    completion TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""

_COLUMNS = tuple(name for name in RequestRecord.model_fields if name != "id")


@dataclass(frozen=True)
class Summary:
    """Aggregate view of the stored requests."""

    requests: int
    """All requests recorded."""
    by_status: dict[int, int]
    """Request count per HTTP status."""
    errors: int
    """Requests answered with status >= 400."""
    error_rate: float
    """errors / requests (0 when there are none)."""
    latency_ms: dict[str, float]
    """Percentiles of latency over all requests: keys p50, p90, p99, max (empty when none)."""
    prompt_tokens: int
    """Sum of prompt tokens."""
    completion_tokens: int
    """Sum of completion tokens."""
    streamed: int
    """Requests that asked for streaming."""


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it.

    Args:
        sorted_values: values in ascending order (non-empty).
        q: percentile in (0, 100].
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class RequestStore:
    """SQLite log of served requests, safe to share across threads."""

    def __init__(self, db_path: str | Path) -> None:
        """Open (creating if needed) the database at `db_path` and its parent folder."""
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)

    def record(self, rec: RequestRecord) -> int:
        """Insert one request; returns its row id."""
        values = rec.model_dump()
        values["stream"] = int(rec.stream)
        row = tuple(values[c] for c in _COLUMNS)
        sql = f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with self._lock:
            cur = self._conn.execute(sql, row)
        return int(cur.lastrowid or 0)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def recent(self, n: int = 20) -> list[RequestRecord]:
        """The `n` most recent requests, newest first."""
        rows = self._query(
            f"SELECT id, {', '.join(_COLUMNS)} FROM requests ORDER BY id DESC LIMIT ?", (max(0, n),)
        )
        out = []
        for row in rows:
            values = dict(zip(("id", *_COLUMNS), row, strict=True))
            values["stream"] = bool(values["stream"])
            out.append(RequestRecord(**values))
        return out

    def count(self) -> int:
        """Number of stored requests."""
        return int(self._query("SELECT COUNT(*) FROM requests")[0][0])

    def summary(self, since: float | None = None) -> Summary:
        """Counts, error rate, latency percentiles and token totals, optionally from unix time `since`."""
        where, params = ("WHERE ts >= ?", (since,)) if since is not None else ("", ())
        by_status = {
            int(s): int(c)
            for s, c in self._query(f"SELECT status, COUNT(*) FROM requests {where} GROUP BY status", params)
        }
        latencies = [
            float(r[0]) for r in self._query(f"SELECT latency_ms FROM requests {where} ORDER BY 1", params)
        ]
        tokens = self._query(
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
            f"COALESCE(SUM(stream), 0) FROM requests {where}",
            params,
        )[0]
        total = sum(by_status.values())
        errors = sum(c for s, c in by_status.items() if s >= 400)
        lat = (
            {f"p{q}": percentile(latencies, q) for q in (50, 90, 99)} | {"max": latencies[-1]}
            if latencies
            else {}
        )
        return Summary(
            requests=total,
            by_status=by_status,
            errors=errors,
            error_rate=errors / total if total else 0.0,
            latency_ms=lat,
            prompt_tokens=int(tokens[0]),
            completion_tokens=int(tokens[1]),
            streamed=int(tokens[2]),
        )

    def close(self) -> None:
        """Close the connection (the store cannot be used afterwards)."""
        with self._lock:
            self._conn.close()

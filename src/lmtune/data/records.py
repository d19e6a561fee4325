"""What flows through stage 1: raw items read from a file, rejects with their reason, and the rejects file.

Nothing is lost: every record read either becomes an accepted example or a `Reject` written to the
rejects JSONL, so `read == accepted + rejected` always holds.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

RejectReason = Literal[
    "invalid_utf8",
    "malformed_json",
    "malformed_csv",
    "malformed_parquet",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "empty_turn",
    "unknown_role",
    "role_order",
    "no_final_assistant",
    "template_error",
    "too_long",
    "no_trainable_tokens",
    "no_final_user",
    "empty_side",
    "identical_pair",
    "wrong_label",
    "prompt_too_long",
    "uncorruptible",
    "duplicate",
    "near_duplicate",
    "contaminated",
    "pii",
    "too_short",
    "too_long_chars",
    "repetitive",
    "boilerplate",
    "wrong_language",
    "unparseable",
    "truncated",
]
"""Machine-readable reasons a record is rejected; the `detail` says the specifics for a human."""

Turn = dict[str, str]
"""One normalised turn: {"role": "system" | "user" | "assistant", "content": str}."""
Conversation = list[Turn]


@dataclass(frozen=True)
class Location:
    """Where a record came from: a file and either a 1-based line (JSONL/CSV) or a 0-based index."""

    source: str
    position: int
    kind: Literal["line", "index"]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, self.kind: self.position}

    def __str__(self) -> str:
        return f"{self.source}:{self.position}" if self.kind == "line" else f"{self.source}[{self.position}]"


@dataclass(frozen=True)
class RawItem:
    """One record as read from a source, before its format is checked."""

    where: Location
    value: Any
    raw: Any
    """What to write to the rejects file if the record is rejected (the line text, or the record)."""


@dataclass(frozen=True)
class Reject:
    """A record that did not make it, with a specific reason, a human detail and its raw content."""

    where: Location
    reason: RejectReason
    detail: str
    raw: Any

    def as_dict(self) -> dict[str, Any]:
        return {**self.where.as_dict(), "reason": self.reason, "detail": self.detail, "raw": self.raw}


class RecordRejected(Exception):
    """Raised by a format or template check; caught by the caller and turned into a `Reject`."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


@dataclass
class RejectLog:
    """Counts rejects by reason and appends each to an open JSONL file (when one is given)."""

    sink: IO[str] | None = None
    by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, reject: Reject) -> None:
        self.by_reason[reject.reason] += 1
        if self.sink is not None:
            self.sink.write(json.dumps(reject.as_dict(), ensure_ascii=False, default=str) + "\n")

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())


@dataclass
class SourceCounts:
    """What became of one source's records (for stats.json): read, and rejects by reason; accepted =
    read - rejected."""

    path: str
    format: str
    read: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.by_reason.values())

    @property
    def accepted(self) -> int:
        return self.read - self.rejected

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.by_reason.items())),
        }


def open_rejects(path: str | Path | None) -> IO[str] | None:
    """Open (truncate) the rejects JSONL for writing, creating its folder; None means count only."""
    if path is None:
        return None
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.open("w", encoding="utf-8")

"""Read + check one source: every record is accepted (a normalised conversation) or rejected with a reason.

`validate_file` backs `lmtune data validate FILE --format F --rejects R`; `read_records` is what
`prepare` uses for each configured source, `read_align_records` what `align_prepare` uses (formats
`preference`, `kto`, `prompt`). Both run the same loop: read -> normalise -> accepted or reject.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from lmtune.config.data import SourceConfig
from lmtune.data.formats.checks import check_format, normalise
from lmtune.data.formats.preference import AlignExample, is_align_format, normalise_align
from lmtune.data.formats.sources import read_source
from lmtune.data.records import Conversation, RawItem, RecordRejected, Reject, RejectLog, open_rejects
from lmtune.errors import DataError

_Ok = TypeVar("_Ok")


@dataclass(frozen=True)
class Accepted:
    """A record that passed its format checks, with where it came from."""

    item: RawItem
    messages: Conversation


@dataclass(frozen=True)
class AcceptedAlign:
    """An alignment record (preference, kto or prompt) that passed its format checks."""

    item: RawItem
    example: AlignExample


def read_records(src: SourceConfig) -> Iterator[Accepted | Reject]:
    """Yield each record of `src` as `Accepted` or `Reject`, stopping after `src.limit` accepted ones.

    Raises:
        DataError: unreadable source, unknown format, a `columns` key the format does not have, or an
            alignment format (those are read by `read_align_records`).
    """
    fmt = check_format(src.format, src.columns, where=src.path)
    if is_align_format(fmt):
        raise DataError(f"{src.path}: format '{fmt}' is for align.data.sources, not data.sources")
    return _read(src, lambda item: Accepted(item, normalise(item.value, fmt, src.columns)))


def read_align_records(src: SourceConfig) -> Iterator[AcceptedAlign | Reject]:
    """Yield each record of an alignment source as `AcceptedAlign` or `Reject` (up to `src.limit` accepted).

    Raises:
        DataError: unreadable source, a `columns` key the format does not have, or a format that is not
            preference, kto or prompt.
    """
    fmt = check_format(src.format, src.columns, where=src.path)
    if not is_align_format(fmt):
        raise DataError(
            f"{src.path}: format '{fmt}' is for data.sources; alignment reads preference, kto or prompt"
        )
    return _read(src, lambda item: AcceptedAlign(item, normalise_align(item.value, fmt, src.columns)))


def _read(src: SourceConfig, accept: Callable[[RawItem], _Ok]) -> Iterator[_Ok | Reject]:
    accepted = 0
    for item in read_source(src):
        if src.limit is not None and accepted >= src.limit:
            return
        if isinstance(item, Reject):
            yield item
            continue
        try:
            result = accept(item)
        except RecordRejected as exc:
            yield Reject(item.where, exc.reason, exc.detail, item.raw)
            continue
        accepted += 1
        yield result


@dataclass
class ValidationReport:
    """Counts for one validated file; `read == accepted + rejected`."""

    path: str
    format: str
    read: int = 0
    accepted: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    rejects_path: str | None = None

    @property
    def rejected(self) -> int:
        return sum(self.by_reason.values())


def validate_file(
    path: str, format: str, columns: dict[str, str] | None = None, rejects_path: str | None = None
) -> ValidationReport:
    """Check every record of a file (or data alias) against a format; write the rejects as JSONL.

    Args:
        path: a JSONL/JSON/CSV/Parquet file, a `save_to_disk` folder, or `gsm8k` / `chatterbot`.
        format: one of alpaca, messages, prompt_completion, text, preference, kto, prompt.
        columns: canonical field name -> the file's name for it.
        rejects_path: where to write one JSON line per rejected record (None: count only).

    Raises:
        DataError: missing/unreadable file, unknown format or bad `columns` (the CLI exits 2).
    """
    check_format(format, columns, where=path)
    src = SourceConfig(path=path, format=format, columns=columns or {})
    report = ValidationReport(path=path, format=format, rejects_path=rejects_path)
    records: Iterator[Accepted | AcceptedAlign | Reject] = (
        read_align_records(src) if is_align_format(src.format) else read_records(src)
    )
    first = next(records, None)  # surface a DataError before the rejects file is created
    sink = open_rejects(rejects_path)
    log = RejectLog(sink)
    try:
        if first is not None:
            _count(first, report, log)
        for result in records:
            _count(result, report, log)
    finally:
        if sink is not None:
            sink.close()
    report.by_reason = log.by_reason
    return report


def _count(result: Accepted | AcceptedAlign | Reject, report: ValidationReport, log: RejectLog) -> None:
    report.read += 1
    if isinstance(result, Reject):
        log.add(result)
    else:
        report.accepted += 1


def format_report(report: ValidationReport) -> str:
    """A short text table: read / accepted / rejected, then rejects by reason, then where they went."""
    rows = [("read", report.read), ("accepted", report.accepted), ("rejected", report.rejected)]
    rows += [(f"  {reason}", n) for reason, n in sorted(report.by_reason.items())]
    width = max(len(name) for name, _ in rows)
    lines = [f"{report.path} ({report.format})"]
    lines += [f"{name:<{width}}  {n:>8}" for name, n in rows]
    if report.rejects_path is not None and report.rejected:
        lines.append(f"rejects written to {report.rejects_path}")
    return "\n".join(lines)

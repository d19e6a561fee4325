"""Read a source into raw items: JSONL, JSON, CSV, Parquet, a `save_to_disk` folder, or a packaged alias.

A file that cannot be read at all raises `DataError` naming it. Within a readable file a bad record
never loses the rest: JSONL and CSV are read as bytes and decoded line by line, so one non-UTF-8 line
or one broken JSON line becomes a reject and reading goes on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lmtune.config.data import SourceConfig
from lmtune.data import assets
from lmtune.data.records import Location, RawItem, Reject
from lmtune.errors import DataError

FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")


def read_source(src: SourceConfig) -> Iterator[RawItem | Reject]:
    """Yield every record of a source, in file order, as a raw item or an early reject.

    Args:
        src: the source; `src.path` is a file, a `save_to_disk` folder or an alias (`gsm8k`,
            `chatterbot`, `gsm8k_pairs`, `gsm8k_answer_pairs`).

    Raises:
        DataError: the path does not exist, cannot be read, or has an unsupported type.
    """
    if src.path == assets.GSM8K:
        return _read_jsonl(assets.gsm8k_path())
    if src.path == assets.CHATTERBOT:
        return assets.read_chatterbot()
    if src.path in (assets.GSM8K_PAIRS, assets.GSM8K_ANSWER_PAIRS):
        from lmtune.data.pairs import gsm8k_pairs  # it reads GSM8K through this module

        return gsm8k_pairs("answer" if src.path == assets.GSM8K_ANSWER_PAIRS else "mixed")
    path = Path(src.path).expanduser()
    if path.is_dir():
        return _read_saved(path, src.split)
    if not path.exists():
        raise DataError(f"{src.path}: no such file (and not a data alias: {', '.join(assets.ALIASES)})")
    if src.split is not None:
        raise DataError(f"{src.path}: `split` only applies to a folder saved by datasets.save_to_disk")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(
        f"{src.path}: unsupported file type '{suffix or '(none)'}' "
        f"(expected {', '.join(FILE_TYPES)} or a folder saved by datasets.save_to_disk)"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _decoded_lines(path: Path, rejects: list[Reject]) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each line, streamed from the file opened as bytes; a non-UTF-8
    line is appended to `rejects` instead."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    with f:
        yield from _decode_each(path, f, rejects)


def _decode_each(path: Path, lines: Iterable[bytes], rejects: list[Reject]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        try:
            yield number, line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejects.append(
                Reject(
                    Location(str(path), number, "line"),
                    "invalid_utf8",
                    f"byte 0x{line[exc.start]:02x} at column {exc.start + 1} is not valid UTF-8",
                    line.decode("utf-8", errors="backslashreplace").rstrip("\r\n"),
                )
            )


def _read_jsonl(path: Path) -> Iterator[RawItem | Reject]:
    bad: list[Reject] = []
    for number, text in _decoded_lines(path, bad):
        yield from bad
        bad.clear()
        line = text.rstrip("\r\n")
        if not line.strip():
            continue  # a blank line is not a record
        where = Location(str(path), number, "line")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Reject(where, "malformed_json", f"{exc.msg} at column {exc.colno}", line)
            continue
        yield _object_or_reject(where, value, line)
    yield from bad


def _object_or_reject(where: Location, value: Any, raw: Any) -> RawItem | Reject:
    if not isinstance(value, dict):
        return Reject(where, "not_an_object", f"expected a JSON object, got {type(value).__name__}", raw)
    return RawItem(where, value, raw)


def _read_json(path: Path) -> Iterator[RawItem | Reject]:
    try:
        doc = json.loads(_read_bytes(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte offset {exc.start}); a .json file must be UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError(f'{path}: expected a top-level list of records or {{"data": [...]}}')
    for i, value in enumerate(doc):
        yield _object_or_reject(Location(str(path), i, "index"), value, value)


def _read_csv(path: Path) -> Iterator[RawItem | Reject]:
    bad: list[Reject] = []
    lines = _decoded_lines(path, bad)
    consumed: list[int] = []  # line numbers the csv reader pulled for the current record

    def tracked() -> Iterator[str]:
        for number, text in lines:
            consumed.append(number)
            yield text

    reader = csv.reader(tracked())
    header = next(reader, None)
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # a UTF-8 byte-order mark written by spreadsheets
    while header is not None:
        consumed.clear()
        try:
            row = next(reader, None)
        except csv.Error as exc:
            yield from bad
            bad.clear()
            where = Location(str(path), consumed[0] if consumed else 0, "line")
            yield Reject(where, "malformed_csv", str(exc), "")
            continue
        yield from bad
        bad.clear()
        if row is None:
            return
        if not row:
            continue
        where = Location(str(path), consumed[0], "line")
        if len(row) != len(header):
            detail = f"{len(row)} fields, the header has {len(header)}"
            yield Reject(where, "malformed_csv", detail, ",".join(row))
            continue
        record = dict(zip(header, row, strict=True))
        yield RawItem(where, record, record)
    yield from bad


def _read_parquet(path: Path) -> Iterator[RawItem | Reject]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read Parquet file ({exc})") from None
    yield from _rows(str(path), (row for batch in parquet.iter_batches() for row in batch.to_pylist()))


def _read_saved(path: Path, split: str | None) -> Iterator[RawItem | Reject]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a folder saved by datasets.save_to_disk ({exc})") from None
    if isinstance(loaded, DatasetDict):
        names = sorted(loaded.keys())
        if split is None and len(names) == 1:
            split = names[0]
        if split is None or split not in loaded:
            raise DataError(f"{path}: holds splits {names}; set `split` to one of them")
        data: Dataset = loaded[split]
    elif split is not None:
        raise DataError(f"{path}: holds a single Dataset, not a DatasetDict; remove `split`")
    else:
        data = loaded
    yield from _rows(str(path), iter(data))


def _rows(source: str, rows: Iterable[Any]) -> Iterator[RawItem | Reject]:
    for i, row in enumerate(rows):
        yield _object_or_reject(Location(source, i, "index"), row, row)

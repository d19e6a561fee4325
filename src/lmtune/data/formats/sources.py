"""Read a source into raw items: JSONL, JSON, CSV, Parquet, a `save_to_disk` folder, or a packaged alias.

A file that cannot be read at all raises `DataError` naming it. Within a readable file a bad record
never loses the rest: JSONL and CSV are read as bytes and decoded line by line, so one non-UTF-8 line
or one broken JSON line becomes a reject and reading goes on. A UTF-8 byte-order mark is skipped; a
record holding text that is not valid Unicode (a non-UTF-8 byte in a .json file, a lone surrogate
escape such as "\\ud83d") is rejected as `invalid_utf8`; a truncated .json list keeps the records before
the cut (the rest is one `malformed_json` reject).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lmtune.config.data import SourceConfig
from lmtune.data.alignment.corruption import gsm8k_pairs
from lmtune.data.formats import assets
from lmtune.data.records import Location, RawItem, Reject
from lmtune.errors import DataError

FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")
_BOM = b"\xef\xbb\xbf"
_LIST_START = re.compile(r'\s*(\{\s*"data"\s*:\s*)?\[')


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
        problems = _read_jsonl(assets.gsm8k_path())
        return gsm8k_pairs(problems, "answer" if src.path == assets.GSM8K_ANSWER_PAIRS else "mixed")
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
        if number == 1:
            line = line.removeprefix(_BOM)
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
        except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
            yield Reject(where, "malformed_json", _json_failure(exc), line)
            continue
        yield _object_or_reject(where, value, line, unicode_escapes="\\ud" in line.lower())
    yield from bad


def _object_or_reject(
    where: Location, value: Any, raw: Any, unicode_escapes: bool = False, bad_bytes: bool = False
) -> RawItem | Reject:
    """`unicode_escapes`: the text has \\uD8xx-style escapes; `bad_bytes`: it was decoded with
    surrogateescape. Either way a string holding a lone surrogate makes the record `invalid_utf8`."""
    if (unicode_escapes or bad_bytes) and (char := _lone_surrogate(value)) is not None:
        code = ord(char)
        detail = (
            f"byte 0x{code - 0xDC00:02x} is not valid UTF-8"
            if bad_bytes and 0xDC80 <= code <= 0xDCFF
            else f"lone surrogate \\u{code:04x} (half of a UTF-16 pair) is not valid Unicode"
        )
        return Reject(where, "invalid_utf8", detail, raw if isinstance(raw, str) else json.dumps(raw))
    if not isinstance(value, dict):
        return Reject(where, "not_an_object", f"expected a JSON object, got {type(value).__name__}", raw)
    return RawItem(where, value, raw)


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in any string of `value` (keys included), or None; iterative (deep values)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                return item[exc.start]
        elif isinstance(item, dict):  # pushed in reverse, so the first one in the file is found first
            for key, val in reversed(item.items()):
                stack.extend((val, key))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return None


def _json_failure(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to parse"
    return str(exc).split(";")[0]  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"


def _read_json(path: Path) -> Iterator[RawItem | Reject]:
    data = _read_bytes(path).removeprefix(_BOM)
    try:
        text, bad_bytes = data.decode("utf-8"), False
    except UnicodeDecodeError:  # keep the bytes as surrogates: only the records holding them are rejected
        text, bad_bytes = data.decode("utf-8", errors="surrogateescape"), True
    escapes = "\\ud" in text.lower()
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        if _LIST_START.match(text) is None:
            raise DataError(f"{path}: not valid JSON ({_json_error(exc)})") from None
        yield from _salvage_list(path, text, bad_bytes, escapes)
        return
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError(f'{path}: expected a top-level list of records or {{"data": [...]}}')
    for i, value in enumerate(doc):
        yield _object_or_reject(Location(str(path), i, "index"), value, value, escapes, bad_bytes)


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return _json_failure(exc)


def _salvage_list(path: Path, text: str, bad_bytes: bool, escapes: bool) -> Iterator[RawItem | Reject]:
    """A list that does not parse as a whole (truncated, or broken in the middle): yield its records one
    by one up to the first that does not parse; that one and the rest of the file are one reject."""
    start = _LIST_START.match(text)
    assert start is not None
    decoder = json.JSONDecoder()
    pos, i = start.end(), 0
    while True:
        while pos < len(text) and (text[pos].isspace() or text[pos] == ","):
            pos += 1
        if pos >= len(text) or text.startswith("]", pos):
            return  # a list cut right after a record (no closing bracket) loses nothing
        where = Location(str(path), i, "index")
        try:
            value, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:
            line = text.count("\n", 0, pos) + 1
            detail = f"record {i} (from line {line}) does not parse: {_json_error(exc)}; raw: the rest"
            rest = text[pos:].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            yield Reject(where, "malformed_json", detail, rest)
            return
        yield _object_or_reject(where, value, value, escapes, bad_bytes)
        pos, i = end, i + 1


def _read_csv(path: Path) -> Iterator[RawItem | Reject]:
    bad: list[Reject] = []
    lines = _decoded_lines(path, bad)
    consumed: list[int] = []  # line numbers the csv reader pulled for the current record
    texts: list[str] = []  # and their text: a rejected record's raw, as written

    def tracked() -> Iterator[str]:
        for number, text in lines:
            consumed.append(number)
            texts.append(text)
            yield text

    reader = csv.reader(tracked())
    header = next(reader, None)
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # a UTF-8 byte-order mark written by spreadsheets
    while header is not None:
        consumed.clear()
        texts.clear()
        try:
            row = next(reader, None)
        except csv.Error as exc:
            yield from bad
            bad.clear()
            where = Location(str(path), consumed[0] if consumed else 0, "line")
            yield Reject(where, "malformed_csv", str(exc), "".join(texts).rstrip("\r\n"))
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
            if len(consumed) > 1:
                detail += (
                    f"; a quoted field runs from line {consumed[0]} to line {consumed[-1]}"
                    " (is a closing quote missing?)"
                )
            yield Reject(where, "malformed_csv", detail, "".join(texts).rstrip("\r\n"))
            continue
        record = dict(zip(header, row, strict=True))
        yield RawItem(where, record, record)
    yield from bad


def _read_parquet(path: Path) -> Iterator[RawItem | Reject]:
    # deferred: pyarrow only when this runs (keeps `import lmtune...` light)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read Parquet file ({exc})") from None
    start = 0
    for group in range(parquet.num_row_groups):
        size, done = parquet.metadata.row_group(group).num_rows, 0
        try:
            for batch in parquet.iter_batches(row_groups=[group]):
                for row in batch.to_pylist():
                    yield _object_or_reject(Location(str(path), start + done, "index"), row, row)
                    done += 1
        except (OSError, pa.ArrowException) as exc:  # a corrupt page: the rows it holds are unreadable
            detail = f"row group {group} cannot be decoded from row {start + done} on ({exc})"
            for k in range(done, size):
                yield Reject(Location(str(path), start + k, "index"), "malformed_parquet", detail, None)
        start += size


def _read_saved(path: Path, split: str | None) -> Iterator[RawItem | Reject]:
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
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

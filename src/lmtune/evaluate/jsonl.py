"""Reading the JSONL files evaluation takes (task files, choice sets, code problems and samples, text
sets): each row with its line number, and errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmtune.errors import DataError


def read_rows(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of `path`.

    Raises:
        DataError: the file is missing or holds no rows, or a line is not a JSON object.
    """
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: a row must be a JSON object")
        rows.append((n, row))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows

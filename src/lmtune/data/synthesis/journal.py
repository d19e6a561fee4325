"""What `lmtune data synthesize` keeps next to its output so a run can resume.

For `--out DIR/NAME.jsonl`:

- `DIR/NAME.state.json`: the settings the requests were made with and, once a run finishes, its summary.
  Written atomically (a temporary file, then `os.replace`), before the first request is sent.
- `DIR/NAME.requests.jsonl`: one line per finished request (its index, the seeds shown, the completion
  and its provenance), appended, flushed and fsynced as each response arrives: a crash loses at most the
  requests in flight. A torn last line (the crash hit the write) is cut off when the log is read again.
- `DIR/NAME.rejects.jsonl`: generated records that were not accepted, with their reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lmtune.errors import ConfigError, DataError


@dataclass(frozen=True)
class SynthPaths:
    """The output and the files kept next to it."""

    out: Path
    requests: Path
    state: Path
    rejects: Path

    @classmethod
    def for_out(cls, out: str | Path) -> SynthPaths:
        out = Path(out)
        stem = out.with_suffix("") if out.suffix else out
        return cls(
            out,
            stem.with_name(stem.name + ".requests.jsonl"),
            stem.with_name(stem.name + ".state.json"),
            stem.with_name(stem.name + ".rejects.jsonl"),
        )


def write_json_atomic(path: Path, value: Any) -> None:
    """Write `value` as JSON to `path` so a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def start_or_resume(paths: SynthPaths, settings: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Check that the output may be (re)written with `settings`; return the finished requests by index.

    A new output gets its state file now. An existing one resumes only with the same settings.

    Raises:
        ConfigError: the output exists but was not written by `lmtune data synthesize`, a resume log has
            no state file, or the settings differ from the ones the earlier requests were made with.
        DataError: a line of the resume log other than the last is not valid JSON.
    """
    if not paths.state.is_file():
        for existing in (paths.requests, paths.out):
            if existing.exists():
                raise ConfigError(
                    f"{existing} exists but {paths.state} does not, so it was not written by an earlier "
                    "`lmtune data synthesize` with this --out; choose another --out or delete it"
                )
        paths.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(paths.state, {"settings": settings, "summary": None})
        return {}
    try:
        earlier = json.loads(paths.state.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{paths.state}: unreadable state file ({exc}); delete it to start over") from None
    changed = [
        key for key in sorted(settings.keys() | earlier.keys()) if settings.get(key) != earlier.get(key)
    ]
    if changed:
        shown = "; ".join(f"{k}: {earlier.get(k)!r} then, {settings.get(k)!r} now" for k in changed[:3])
        raise ConfigError(
            f"{paths.out}: the earlier requests were made with other settings ({shown}); "
            f"use another --out, or delete {paths.state} and {paths.requests} to start over"
        )
    return read_log(paths.requests)


def read_log(path: Path) -> dict[int, dict[str, Any]]:
    """The finished requests of a resume log by index (the first line wins for a repeated index). A
    torn last line is removed from the file, so appending goes on from a clean line end."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    done: dict[int, dict[str, Any]] = {}
    offset = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no line end")
            entry = json.loads(line)
            index = entry["index"]
        except (ValueError, KeyError, TypeError):
            if offset + len(line) < len(data):
                raise DataError(
                    f"{path}:{number}: not a request record; delete that line to redo its request"
                ) from None
            with path.open("r+b") as f:  # the write a crash interrupted: its request is redone
                f.truncate(offset)
            break
        done.setdefault(int(index), entry)
        offset += len(line)
    return done


class RequestLog:
    """Appends one JSON line per finished request and makes it durable before returning."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def append(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

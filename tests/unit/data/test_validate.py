"""validate_file on a file mixing good and bad lines: nothing lost, each reject specific and written out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmtune.data.formats.validate import format_report, validate_file
from lmtune.errors import DataError


def _msg(*pairs: tuple[str, object]) -> bytes:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in pairs]}).encode()


GOOD = _msg(("user", "how many apples?"), ("assistant", "42"))
# (line bytes, expected reason or None for accepted)
LINES: list[tuple[bytes, str | None]] = [
    (GOOD, None),
    (b'{"messages": [{"role": "user", "content": "trunc', "malformed_json"),
    ('{"messages": [{"role": "user", "content": "caf\xe9"}]}'.encode("latin-1"), "invalid_utf8"),
    (b"[1, 2]", "not_an_object"),
    (b'{"conversation": []}', "missing_field"),
    (_msg(("user", "q"), ("assistant", 7)), "wrong_type"),
    (_msg(("user", "q"), ("assistant", " ")), "empty_turn"),
    (_msg(("user", "q"), ("robot", "a")), "unknown_role"),
    (_msg(("user", "q")), "no_final_assistant"),
    (_msg(("system", "s"), ("user", "q"), ("assistant", "a"), ("user", "q2"), ("assistant", "a2")), None),
]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in LINES) + b"\n")
    return path


def test_read_equals_accepted_plus_rejected(mixed: Path, tmp_path: Path) -> None:
    rejects = tmp_path / "out" / "rejects.jsonl"
    report = validate_file(str(mixed), "messages", None, str(rejects))
    assert report.read == len(LINES) == report.accepted + report.rejected
    assert report.accepted == 2
    expected = {reason: 1 for _, reason in LINES if reason}
    assert dict(report.by_reason) == expected


def test_each_reject_names_line_reason_detail_and_raw(mixed: Path, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    validate_file(str(mixed), "messages", None, str(rejects))
    rows = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    want = [(n, reason) for n, (_, reason) in enumerate(LINES, start=1) if reason]
    assert [(r["line"], r["reason"]) for r in rows] == want
    assert all(r["source"] == str(mixed) and r["detail"] for r in rows)
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["malformed_json"]["raw"] == LINES[1][0].decode()
    assert by_reason["invalid_utf8"]["raw"].endswith('"caf\\xe9"}]}')
    column = LINES[2][0].index(b"\xe9") + 1
    assert by_reason["invalid_utf8"]["detail"] == f"byte 0xe9 at column {column} is not valid UTF-8"
    assert by_reason["unknown_role"]["raw"] == LINES[7][0].decode()


def test_column_mapping_and_report_table(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n')
    report = validate_file(
        str(path), "prompt_completion", {"prompt": "question", "completion": "answer"}, None
    )
    assert (report.read, report.accepted, report.rejected) == (2, 1, 1)
    lines = format_report(report).splitlines()
    assert lines[0] == f"{path} (prompt_completion)"
    assert [line.split() for line in lines[1:]] == [
        ["read", "2"],
        ["accepted", "1"],
        ["rejected", "1"],
        ["missing_field", "1"],
    ]
    assert len({len(line) for line in lines[1:]}) == 1  # aligned columns


def test_missing_file_and_unknown_format_raise_one_line(tmp_path: Path) -> None:
    rejects = tmp_path / "r.jsonl"
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file") as err:
        validate_file(str(tmp_path / "nope.jsonl"), "messages", None, str(rejects))
    assert "\n" not in str(err.value)
    assert not rejects.exists()
    (tmp_path / "d.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match=r"unknown format 'sharegpt' \(valid formats: alpaca, messages"):
        validate_file(str(tmp_path / "d.jsonl"), "sharegpt", None, None)


def test_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    folder_named_like_file = tmp_path / "d.jsonl"
    folder_named_like_file.mkdir()
    with pytest.raises(DataError, match=r"d\.jsonl: not a folder saved by datasets\.save_to_disk"):
        validate_file(str(folder_named_like_file), "messages")


def test_limit_counts_accepted_only(tmp_path: Path) -> None:
    from lmtune.config.data import SourceConfig
    from lmtune.data.formats.validate import Accepted, read_records

    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join([b"oops", GOOD, b"oops", GOOD, GOOD]))
    results = list(read_records(SourceConfig(path=str(path), limit=2)))
    assert [isinstance(r, Accepted) for r in results] == [False, True, False, True]

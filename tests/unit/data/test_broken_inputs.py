"""The broken-input corpus (tests/fixtures/broken/, written by its make_corpus.py): every file gives its
specific reasons, read = accepted + rejected, and neither `lmtune data validate` nor prepare() crashes.

The 50 MB single-line files are generated here, in tmp_path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lmtune.cli import main
from lmtune.config.data import DataConfig, SourceConfig
from lmtune.config.run import RunConfig
from lmtune.data.formats.validate import read_records, validate_file
from lmtune.data.prepare import prepare
from lmtune.errors import DataError
from lmtune.runtime.rundir import RunDir

CORPUS = Path(__file__).parents[2] / "fixtures" / "broken"
sys.path.insert(0, str(CORPUS))
import make_corpus  # noqa: E402

# file -> (format, read, accepted, rejects by reason)
EXPECTED: dict[str, tuple[str, int, int, dict[str, int]]] = {
    "truncated.jsonl": ("messages", 4, 3, {"malformed_json": 1}),
    "truncated.json": ("messages", 4, 3, {"malformed_json": 1}),
    "bom.jsonl": ("messages", 2, 2, {}),
    "bom.json": ("messages", 2, 2, {}),
    "bom.csv": ("alpaca", 2, 2, {}),
    "mixed_encoding.jsonl": ("messages", 4, 2, {"invalid_utf8": 2}),
    "mixed_encoding.csv": ("alpaca", 3, 2, {"invalid_utf8": 1}),
    "mixed_encoding.json": ("messages", 3, 2, {"invalid_utf8": 1}),
    "csv_quotes.csv": ("alpaca", 5, 3, {"malformed_csv": 2}),
    "null_fields.jsonl": ("alpaca", 5, 2, {"missing_field": 3}),
    "null_turns.jsonl": ("messages", 3, 0, {"missing_field": 1, "wrong_type": 2}),
    "nested_wrong_types.jsonl": ("messages", 10, 1, {"wrong_type": 7, "not_an_object": 2}),
    "roles_out_of_order.jsonl": ("messages", 7, 2, {"role_order": 4, "no_final_assistant": 1}),
    "deep_nesting.jsonl": ("messages", 3, 1, {"malformed_json": 1, "wrong_type": 1}),
    "huge_number.jsonl": ("messages", 2, 1, {"malformed_json": 1}),
    "lone_surrogate.jsonl": ("messages", 3, 1, {"invalid_utf8": 2}),
    "crlf_blank_lines.jsonl": ("messages", 2, 2, {}),
    "empty.jsonl": ("messages", 0, 0, {}),
    "wrong_schema.parquet": ("messages", 3, 0, {"missing_field": 3}),
    "wrong_types.parquet": ("alpaca", 3, 0, {"wrong_type": 2, "missing_field": 1}),
    "wrong_nested.parquet": ("messages", 2, 0, {"wrong_type": 2}),
}


def _rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_corpus_matches_its_generator() -> None:
    import pyarrow.parquet as pq

    for name, data in make_corpus.build().items():
        assert (CORPUS / name).read_bytes() == data, name
    for name, table in make_corpus.build_parquet().items():
        assert pq.read_table(CORPUS / name).equals(table), name
    listed = set(EXPECTED) | {"binary.jsonl", "not_parquet.parquet", "make_corpus.py"}
    assert {p.name for p in CORPUS.iterdir() if p.is_file()} == listed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_gives_specific_reasons_and_loses_nothing(name: str, tmp_path: Path) -> None:
    fmt, read, accepted, reasons = EXPECTED[name]
    report = validate_file(str(CORPUS / name), fmt, rejects_path=str(tmp_path / "rejects.jsonl"))
    assert (report.read, report.accepted, dict(report.by_reason)) == (read, accepted, reasons)
    assert report.read == report.accepted + report.rejected
    written = _rejects(tmp_path / "rejects.jsonl")
    assert len(written) == report.rejected
    assert all(r["detail"] and "raw" in r for r in written)


def test_random_bytes_are_all_rejected_line_by_line(tmp_path: Path) -> None:
    path = CORPUS / "binary.jsonl"
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    report = validate_file(str(path), "messages", rejects_path=str(tmp_path / "r.jsonl"))
    assert report.read == report.rejected == len(lines) and report.accepted == 0
    assert set(report.by_reason) <= {"invalid_utf8", "malformed_json"}


def _details(name: str, fmt: str) -> dict[Any, tuple[str, str]]:
    """position (line or index) -> (reason, detail) of each reject of a corpus file."""
    out = {}
    for result in read_records(SourceConfig(path=str(CORPUS / name), format=fmt)):  # type: ignore[arg-type]
        if not hasattr(result, "messages"):
            out[result.where.position] = (result.reason, result.detail)  # type: ignore[union-attr]
    return out


def test_reject_details_name_the_problem() -> None:
    assert _details("roles_out_of_order.jsonl", "messages") == {
        1: ("role_order", "turn 1 (assistant) comes before any user turn: there is no prompt to answer"),
        2: ("role_order", "turn 2 is a system turn; only the first turn may be"),
        5: ("role_order", "turn 2 (assistant) comes before any user turn: there is no prompt to answer"),
        6: ("no_final_assistant", "the conversation ends with user, not an assistant turn"),
        7: ("role_order", "turn 1 (assistant) comes before any user turn: there is no prompt to answer"),
    }
    encoding = _details("mixed_encoding.jsonl", "messages")
    assert encoding[2][0] == encoding[4][0] == "invalid_utf8"
    assert encoding[2][1].startswith("byte 0xe9 at column")  # latin-1 e-acute
    assert encoding[4][1].startswith("byte 0x93 at column")  # cp1252 left double quote
    assert _details("mixed_encoding.json", "messages") == {
        1: ("invalid_utf8", "byte 0xe9 is not valid UTF-8")
    }
    assert _details("lone_surrogate.jsonl", "messages") == {
        1: ("invalid_utf8", "lone surrogate \\ud83d (half of a UTF-16 pair) is not valid Unicode"),
        3: ("invalid_utf8", "lone surrogate \\udc00 (half of a UTF-16 pair) is not valid Unicode"),
    }
    assert _details("deep_nesting.jsonl", "messages")[1] == ("malformed_json", "nested too deeply to parse")
    huge = _details("huge_number.jsonl", "messages")[1]
    assert huge[0] == "malformed_json" and "5000 digits" in huge[1]
    (reason, detail) = _details("truncated.json", "messages")[3]
    assert reason == "malformed_json" and detail.startswith("record 3 (from line ")
    csv = _details("csv_quotes.csv", "alpaca")
    assert csv[6] == ("malformed_csv", "4 fields, the header has 3")  # line 2 holds a two-line field
    assert csv[7][1] == (
        "1 fields, the header has 3; a quoted field runs from line 7 to line 8 (is a closing quote missing?)"
    )


def test_bom_and_quoted_csv_fields_are_read_exactly() -> None:
    def accepted(name: str, fmt: str) -> list[Any]:
        src = SourceConfig(path=str(CORPUS / name), format=fmt)  # type: ignore[arg-type]
        return [r.messages for r in read_records(src) if hasattr(r, "messages")]  # type: ignore[union-attr]

    assert accepted("bom.jsonl", "messages")[0][0]["content"] == "What is the capital of France?"
    assert accepted("bom.json", "messages") == [m["messages"] for m in make_corpus.GOOD[:2]]
    assert accepted("bom.csv", "alpaca")[0][0]["content"] == "say hi"  # header 'instruction' found
    rows = accepted("csv_quotes.csv", "alpaca")
    assert rows[0][1]["content"] == "line one\nline two"
    assert (rows[1][0]["content"], rows[1][1]["content"]) == ('say "hi" politely', '"hi", she said')
    assert rows[2][0]["content"] == "list, with commas\n\na"
    assert accepted("truncated.json", "messages") == [m["messages"] for m in make_corpus.GOOD[:3]]


def test_unreadable_file_is_one_clear_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", str(CORPUS / "not_parquet.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lmtune: error: {CORPUS / 'not_parquet.parquet'}: cannot read Parquet file")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_validate_runs_on_every_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    fmt, read, _, _ = EXPECTED[name]
    assert main(["data", "validate", str(CORPUS / name), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert (
        f"read      {read:>8}".split() == next(ln for ln in out.splitlines() if ln.startswith("read")).split()
    )


def _prepare(path: Path, fmt: str, tmp_path: Path, tokenizer: Any) -> tuple[dict[str, Any] | None, RunDir]:
    data: dict[str, Any] = {
        "sources": [{"path": str(path), "format": fmt}],
        "max_length": 128,
        "eval_size": 0,
    }
    if "curation" in DataConfig.model_fields:  # PII scrubbing reads every character: ~20 s on 50 MB
        data["curation"] = {"pii": {"enabled": False}}
    cfg = RunConfig.model_validate({"output_dir": str(tmp_path), "data": data})
    rundir = RunDir.for_config(cfg)
    return prepare(cfg.data, rundir, tokenizer, seed=cfg.seed).stats, rundir


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prepare_runs_on_every_file(name: str, tmp_path: Path, tiny_tokenizer: Any) -> None:
    fmt, read, accepted, reasons = EXPECTED[name]
    if accepted == 0:
        with pytest.raises(DataError, match=rf"no record accepted \({read} read, {read} rejected; see "):
            _prepare(CORPUS / name, fmt, tmp_path, tiny_tokenizer)
        assert len(_rejects(tmp_path / "run" / "data" / "rejects.jsonl")) == read
        return
    stats, rundir = _prepare(CORPUS / name, fmt, tmp_path, tiny_tokenizer)
    assert stats is not None
    assert (stats["read"], stats["accepted"], stats["rejected_by_reason"]) == (read, accepted, reasons)
    assert stats["read"] == stats["accepted"] + stats["rejected"] == read
    assert len(_rejects(rundir.rejects)) == stats["rejected"]


def test_csv_rejects_keep_the_lines_as_written(tmp_path: Path) -> None:
    src = SourceConfig(path=str(CORPUS / "csv_quotes.csv"), format="alpaca")
    raws = {r.where.position: r.raw for r in read_records(src) if not hasattr(r, "messages")}  # type: ignore[union-attr]
    assert raws == {6: "too,many,fields,here", 7: '"unclosed quote,,x\nnext row,,y'}
    big = tmp_path / "big_field.csv"
    field = "x" * 200_000  # over the csv module's field limit (131,072)
    big.write_text(f"instruction,input,output\n{field},,y\nadd one and one,,two\n")
    report = validate_file(str(big), "alpaca", rejects_path=str(tmp_path / "r.jsonl"))
    assert (report.read, report.accepted, dict(report.by_reason)) == (2, 1, {"malformed_csv": 1})
    (reject,) = _rejects(tmp_path / "r.jsonl")
    assert reject["detail"] == "field larger than field limit (131072)" and reject["raw"] == f"{field},,y"


def test_a_corrupt_parquet_row_group_rejects_its_rows_only(tmp_path: Path, tiny_tokenizer: Any) -> None:
    path = tmp_path / "corrupt.parquet"
    make_corpus.write_corrupt_parquet(path)
    report = validate_file(str(path), "messages", rejects_path=str(tmp_path / "r.jsonl"))
    assert (report.read, report.accepted, dict(report.by_reason)) == (200, 150, {"malformed_parquet": 50})
    rejects = _rejects(tmp_path / "r.jsonl")
    assert [r["index"] for r in rejects] == list(range(50, 100))
    assert rejects[0]["detail"].startswith("row group 1 cannot be decoded from row 50 on (")
    stats, _ = _prepare(path, "messages", tmp_path / "runs", tiny_tokenizer)
    assert stats is not None and (stats["read"], stats["accepted"]) == (200, 150)


def test_a_50mb_single_line_is_rejected_without_tokenising(tmp_path: Path, tiny_tokenizer: Any) -> None:
    big = tmp_path / "big.jsonl"
    answer = "the cat sat on the mat. " * (50 * 2**20 // 24)
    big.write_text(
        json.dumps(make_corpus.chat("Say it many times.", answer))
        + "\n"
        + json.dumps(make_corpus.GOOD[0])
        + "\n"
    )
    assert big.stat().st_size > 50 * 2**20
    report = validate_file(str(big), "messages")
    assert (report.read, report.accepted) == (2, 2)  # valid records: only the length policy knows better
    stats, rundir = _prepare(big, "messages", tmp_path / "runs", tiny_tokenizer)
    assert stats is not None and (stats["read"], stats["accepted"], stats["rejected_by_reason"]) == (
        2,
        1,
        {"too_long": 1},
    )
    (reject,) = _rejects(rundir.rejects)
    assert reject["line"] == 1 and reject["detail"] == (
        f"{len((answer + 'Say it many times.').replace(' ', ''))} non-space characters, "
        "more than data.max_length=128 tokens can hold (not tokenised)"
    )


def test_a_50mb_line_of_garbage_is_one_reject_kept_whole(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"x" * (50 * 2**20))  # one line, no newline at the end
    report = validate_file(str(garbage), "messages", rejects_path=str(tmp_path / "r.jsonl"))
    assert (report.read, report.accepted, dict(report.by_reason)) == (1, 0, {"malformed_json": 1})
    (reject,) = _rejects(tmp_path / "r.jsonl")
    assert len(reject["raw"]) == 50 * 2**20  # nothing lost: the raw line is in the rejects file

"""Alignment record formats (preference, kto, prompt): accepted shapes, exact reject details, validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmtune.cli import main
from lmtune.config.data import SourceConfig
from lmtune.data.formats.preference import KtoExample, PreferenceExample, PromptExample, normalise_align
from lmtune.data.formats.validate import read_align_records, read_records, validate_file
from lmtune.data.records import RecordRejected
from lmtune.errors import DataError

USER_Q = [{"role": "user", "content": "What is 2+2?"}]


def _a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_preference_plain_strings() -> None:
    ex = normalise_align({"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}, "preference")
    assert ex == PreferenceExample(USER_Q, [_a("4")], [_a("5")])
    assert ex.as_row() == {"prompt": USER_Q, "chosen": [_a("4")], "rejected": [_a("5")]}


def test_preference_messages_and_system() -> None:
    record = {
        "prompt": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "What is 2+2?"},
        ],
        "chosen": [_a("4")],
        "rejected": [_a("It is"), {"role": "user", "content": "go on"}, _a("5")],
        "system": "Be brief.",
    }
    ex = normalise_align(record, "preference")
    assert isinstance(ex, PreferenceExample)
    assert ex.prompt[0] == {"role": "system", "content": "Be brief."}
    assert [t["role"] for t in ex.prompt] == ["system", "user", "assistant", "user"]
    assert ex.chosen == [_a("4")]
    assert [t["role"] for t in ex.rejected] == ["assistant", "user", "assistant"]


def test_system_field_does_not_replace_the_prompts_own_system_turn() -> None:
    prompt = [{"role": "system", "content": "Own."}, *USER_Q]
    ex = normalise_align({"prompt": prompt, "completion": "4", "label": True, "system": "Other."}, "kto")
    assert ex.prompt == prompt


def test_sharegpt_turns_and_text_parts() -> None:
    record = {
        "prompt": [{"from": "human", "value": "What is 2+2?"}],
        "chosen": [{"from": "gpt", "value": [{"type": "text", "text": "4"}]}],
        "rejected": "5",
    }
    assert normalise_align(record, "preference") == PreferenceExample(USER_Q, [_a("4")], [_a("5")])


def test_column_renames() -> None:
    record = {"question": "What is 2+2?", "good": "4", "bad": "5"}
    cols = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    assert normalise_align(record, "preference", cols) == PreferenceExample(USER_Q, [_a("4")], [_a("5")])
    kto = normalise_align(
        {"q": "What is 2+2?", "a": "4", "ok": 1}, "kto", {"prompt": "q", "completion": "a", "label": "ok"}
    )
    assert kto == KtoExample(USER_Q, [_a("4")], True)
    prompt = normalise_align(
        {"question": "What is 2+2?", "solution": "#### 4"},
        "prompt",
        {"prompt": "question", "answer": "solution"},
    )
    assert prompt == PromptExample(USER_Q, "#### 4")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("False", False),
        ("1", True),
        ("0", False),
    ],
)
def test_kto_labels(label: Any, expected: bool) -> None:
    ex = normalise_align({"prompt": "What is 2+2?", "completion": [_a("4")], "label": label}, "kto")
    assert ex == KtoExample(USER_Q, [_a("4")], expected)


@pytest.mark.parametrize(("answer", "expected"), [("#### 4", "#### 4"), (4, "4"), (None, None), ("  ", None)])
def test_prompt_answer(answer: Any, expected: str | None) -> None:
    record = {"prompt": USER_Q} | ({} if answer is None else {"answer": answer})
    assert normalise_align(record, "prompt") == PromptExample(USER_Q, expected)


GOOD = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
SYSTEM_REPLY = [{"role": "system", "content": "x"}, _a("4")]


@pytest.mark.parametrize(
    ("fmt", "record", "cols", "reason", "detail"),
    [
        ("preference", {"prompt": "q", "chosen": "a"}, {}, "missing_field", "field 'rejected' is missing"),
        ("preference", GOOD | {"rejected": None}, {}, "missing_field", "field 'rejected' is null"),
        (
            "preference",
            {"chosen": "a", "rejected": "b"},
            {"prompt": "question"},
            "missing_field",
            "field 'question' (prompt) is missing",
        ),
        (
            "preference",
            GOOD | {"chosen": 5},
            {},
            "wrong_type",
            "field 'chosen' must be a string or a list of messages, got int",
        ),
        ("preference", GOOD | {"chosen": "  \n"}, {}, "empty_side", "field 'chosen' is empty"),
        ("preference", GOOD | {"prompt": []}, {}, "empty_side", "field 'prompt' is empty"),
        (
            "preference",
            {"q": "", "chosen": "a", "rejected": "b"},
            {"prompt": "q"},
            "empty_side",
            "field 'q' (prompt) is empty",
        ),
        (
            "kto",
            {"prompt": "q", "completion": [_a(" ")], "label": 1},
            {},
            "empty_side",
            "field 'completion' is empty",
        ),
        (
            "preference",
            GOOD | {"chosen": [_a("a"), {"role": "user", "content": ""}, _a("b")]},
            {},
            "empty_turn",
            "chosen turn 2 (user) has empty content",
        ),
        (
            "preference",
            GOOD | {"prompt": [{"role": "bot", "content": "q"}]},
            {},
            "unknown_role",
            "prompt turn 1: unknown role 'bot' "
            "(expected system, user, assistant; ShareGPT: human, gpt, system)",
        ),
        (
            "preference",
            GOOD | {"rejected": [{"content": "q"}]},
            {},
            "missing_field",
            "rejected turn 1 has no 'role'",
        ),
        (
            "preference",
            GOOD | {"chosen": SYSTEM_REPLY},
            {},
            "unknown_role",
            "chosen turn 1: a system turn cannot be part of a reply",
        ),
        (
            "preference",
            GOOD | {"prompt": [*USER_Q, _a("4")]},
            {},
            "no_final_user",
            "prompt ends with assistant, not a user turn",
        ),
        (
            "preference",
            GOOD | {"chosen": [{"role": "user", "content": "4"}]},
            {},
            "no_final_assistant",
            "chosen ends with user, not an assistant turn",
        ),
        (
            "preference",
            GOOD | {"chosen": " 4\n", "rejected": "4"},
            {},
            "identical_pair",
            "chosen and rejected are identical",
        ),
        (
            "preference",
            GOOD | {"chosen": [_a("4")], "rejected": "4 "},
            {},
            "identical_pair",
            "chosen and rejected are identical",
        ),
        ("preference", GOOD | {"system": 3}, {}, "wrong_type", "field 'system' must be a string, got int"),
        (
            "kto",
            {"prompt": "q", "completion": "a", "label": 2},
            {},
            "wrong_label",
            "field 'label' must be true/false or 1/0, got 2",
        ),
        (
            "kto",
            {"prompt": "q", "completion": "a", "label": "yes"},
            {},
            "wrong_label",
            "field 'label' must be true/false or 1/0, got 'yes'",
        ),
        (
            "kto",
            {"prompt": "q", "completion": "a", "label": 1.0},
            {},
            "wrong_label",
            "field 'label' must be true/false or 1/0, got 1.0",
        ),
        (
            "kto",
            {"prompt": "q", "completion": "a", "ok": -1},
            {"label": "ok"},
            "wrong_label",
            "field 'ok' (label) must be true/false or 1/0, got -1",
        ),
        ("kto", {"prompt": "q", "completion": "a"}, {}, "missing_field", "field 'label' is missing"),
        (
            "prompt",
            {"prompt": "q", "answer": [4]},
            {},
            "wrong_type",
            "field 'answer' must be a string or an integer, got list",
        ),
        (
            "prompt",
            {"prompt": [*USER_Q, _a("4")]},
            {},
            "no_final_user",
            "prompt ends with assistant, not a user turn",
        ),
    ],
)
def test_reject_reasons_and_details(
    fmt: Any, record: dict[str, Any], cols: dict[str, str], reason: str, detail: str
) -> None:
    with pytest.raises(RecordRejected) as err:
        normalise_align(record, fmt, cols)
    assert (err.value.reason, err.value.detail) == (reason, detail)


def _mixed_preference_file(tmp_path: Path) -> Path:
    lines = [
        json.dumps(GOOD),  # 1 accepted
        '{"prompt": "q", "chosen": ',  # 2 malformed_json
        json.dumps(GOOD | {"rejected": "4"}),  # 3 identical_pair
        json.dumps({"prompt": [*USER_Q], "chosen": [_a("4")], "rejected": [_a("22")]}),  # 4 accepted
        json.dumps(GOOD | {"prompt": ""}),  # 5 empty_side
        "[1, 2]",  # 6 not_an_object
        json.dumps({"prompt": "q", "chosen": "a"}),  # 7 missing_field
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validate_file_counts_add_up_and_rejects_name_line_reason_detail(tmp_path: Path) -> None:
    rejects = tmp_path / "out" / "rejects.jsonl"
    report = validate_file(str(_mixed_preference_file(tmp_path)), "preference", rejects_path=str(rejects))
    assert (report.read, report.accepted, report.rejected) == (7, 2, 5)
    assert report.read == report.accepted + report.rejected
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rows] == [
        (2, "malformed_json"),
        (3, "identical_pair"),
        (5, "empty_side"),
        (6, "not_an_object"),
        (7, "missing_field"),
    ]
    assert rows[1]["detail"] == "chosen and rejected are identical"
    assert rows[2]["detail"] == "field 'prompt' is empty"
    assert all(r["source"].endswith("pairs.jsonl") for r in rows)


def test_kto_and_prompt_from_csv(tmp_path: Path) -> None:
    kto = tmp_path / "kto.csv"
    kto.write_text("question,reply,label\nq1,a1,true\nq2,a2,0\nq3,a3,maybe\nq4,,1\n")
    report = validate_file(str(kto), "kto", {"prompt": "question", "completion": "reply"})
    assert (report.read, report.accepted) == (4, 2)
    assert dict(report.by_reason) == {"wrong_label": 1, "empty_side": 1}
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,answer\nq1,#### 3\nq2,\n")
    assert validate_file(str(prompts), "prompt").accepted == 2


def test_readers_refuse_the_other_family(tmp_path: Path) -> None:
    path = str(_mixed_preference_file(tmp_path))
    with pytest.raises(DataError) as err:
        read_records(SourceConfig(path=path, format="preference"))
    assert str(err.value) == f"{path}: format 'preference' is for align.data.sources, not data.sources"
    with pytest.raises(DataError) as err:
        read_align_records(SourceConfig(path=path, format="messages"))
    assert str(err.value) == (
        f"{path}: format 'messages' is for data.sources; alignment reads preference, kto or prompt"
    )


def test_limit_counts_accepted_records(tmp_path: Path) -> None:
    src = SourceConfig(path=str(_mixed_preference_file(tmp_path)), format="preference", limit=1)
    results = list(read_align_records(src))
    assert len(results) == 1
    assert isinstance(results[0].example, PreferenceExample)  # type: ignore[union-attr]


def test_cli_validate_preference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rejects = tmp_path / "rejects.jsonl"
    path = str(_mixed_preference_file(tmp_path))
    assert main(["data", "validate", path, "--format", "preference", "--rejects", str(rejects)]) == 0
    out = capsys.readouterr().out
    assert f"{path} (preference)" in out
    counts = dict(line.rsplit(maxsplit=1) for line in out.splitlines()[1:-1])
    assert {k.strip(): int(v) for k, v in counts.items()} == {
        "read": 7,
        "accepted": 2,
        "rejected": 5,
        "empty_side": 1,
        "identical_pair": 1,
        "malformed_json": 1,
        "missing_field": 1,
        "not_an_object": 1,
    }
    assert out.splitlines()[-1] == f"rejects written to {rejects}"
    assert len(rejects.read_text().splitlines()) == 5


def test_cli_validate_kto_with_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kto.jsonl"
    path.write_text(json.dumps({"q": "hi", "completion": "hello", "label": 3}) + "\n")
    argv = ["data", "validate", str(path), "--format", "kto", "--column", "prompt=q"]
    assert main(argv) == 0
    assert "wrong_label" in capsys.readouterr().out
    assert main([*argv[:-1], "chosen=q"]) == 2
    assert "columns: 'chosen' is not a field of format kto" in capsys.readouterr().err

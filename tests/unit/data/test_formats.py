"""Each format (and column mapping, ShareGPT) normalises to system/user/assistant turns; bad records get
their specific reason."""

from __future__ import annotations

from typing import Any

import pytest

from lmtune.data.formats.checks import check_format, normalise
from lmtune.data.records import RecordRejected
from lmtune.errors import DataError


def test_alpaca_with_input_and_system() -> None:
    record = {"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be brief."}
    assert normalise(record, "alpaca") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Add\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]


def test_alpaca_without_input() -> None:
    assert normalise({"instruction": "Say hi", "input": "", "output": "hi"}, "alpaca") == [
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "hi"},
    ]


def test_prompt_completion_with_column_mapping() -> None:
    record = {"question": "2+2?", "answer": "4"}
    assert normalise(record, "prompt_completion", {"prompt": "question", "completion": "answer"}) == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]


def test_text_is_one_assistant_turn() -> None:
    assert normalise({"body": "plain words"}, "text", {"text": "body"}) == [
        {"role": "assistant", "content": "plain words"}
    ]


def test_openai_messages_with_text_parts() -> None:
    record = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
        ]
    }
    assert normalise(record, "messages") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "c"},
    ]


def test_sharegpt_roles_are_mapped() -> None:
    record = {
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ]
    }
    assert [t["role"] for t in normalise(record, "messages")] == ["system", "user", "assistant"]


def test_messages_column_mapping_renames_list_and_turn_keys() -> None:
    record = {"dialog": [{"speaker": "user", "text": "q"}, {"speaker": "assistant", "text": "a"}]}
    cols = {"messages": "dialog", "role": "speaker", "content": "text"}
    assert normalise(record, "messages", cols) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]


def _turns(*pairs: tuple[Any, Any]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


@pytest.mark.parametrize(
    ("record", "fmt", "reason", "detail"),
    [
        ({"instruction": "x"}, "alpaca", "missing_field", "field 'output' is missing"),
        ({"prompt": None, "completion": "y"}, "prompt_completion", "missing_field", "field 'prompt' is null"),
        (
            {"prompt": "x", "completion": 4},
            "prompt_completion",
            "wrong_type",
            "field 'completion' must be a string, got int",
        ),
        ({"text": ["a"]}, "text", "wrong_type", "field 'text' must be a string, got list"),
        ({"other": 1}, "messages", "missing_field", "field 'messages' is missing"),
        ({"messages": []}, "messages", "missing_field", "field 'messages' is an empty list"),
        ({"messages": "hi"}, "messages", "wrong_type", "field 'messages' must be a list of turns, got str"),
        ({"messages": ["hi"]}, "messages", "wrong_type", "turn 1 must be an object, got str"),
        ({"messages": [{"role": "user"}]}, "messages", "missing_field", "turn 1 has no 'content'"),
        (
            _turns(("user", "q"), ("assistant", None)),
            "messages",
            "wrong_type",
            "turn 2: 'content' must be a string or text parts, got null",
        ),
        (
            _turns(("user", "q"), ("assistant", "  \n")),
            "messages",
            "empty_turn",
            "turn 2 (assistant) has empty content",
        ),
        ({"instruction": "x", "output": ""}, "alpaca", "empty_turn", "turn 2 (assistant) has empty content"),
        (
            _turns(("user", "q"), ("tool", "a")),
            "messages",
            "unknown_role",
            "turn 2: unknown role 'tool' (expected system, user, assistant; ShareGPT: human, gpt, system)",
        ),
        (
            _turns(("assistant", "a"), ("user", "q")),
            "messages",
            "no_final_assistant",
            "the conversation ends with user, not an assistant turn",
        ),
    ],
)
def test_bad_records_get_specific_reason(record: dict[str, Any], fmt: Any, reason: str, detail: str) -> None:
    with pytest.raises(RecordRejected) as err:
        normalise(record, fmt)
    assert (err.value.reason, err.value.detail) == (reason, detail)


def test_missing_mapped_field_names_both() -> None:
    with pytest.raises(RecordRejected, match=r"field 'question' \(prompt\) is missing"):
        normalise({"answer": "4"}, "prompt_completion", {"prompt": "question", "completion": "answer"})


def test_unknown_format_and_bad_column_key() -> None:
    with pytest.raises(DataError) as err:
        check_format("chatml", where="d.jsonl")
    assert (
        str(err.value) == "d.jsonl: unknown format 'chatml' "
        "(valid formats: alpaca, messages, prompt_completion, text, preference, kto, prompt)"
    )
    with pytest.raises(DataError, match="columns: 'question' is not a field of format prompt_completion"):
        check_format("prompt_completion", {"question": "q"})

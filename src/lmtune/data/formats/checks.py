"""Record formats: check one raw record and normalise it to a conversation of system/user/assistant turns.

| format              | fields (canonical names; `columns` maps them to the file's names)          |
| ------------------- | -------------------------------------------------------------------------- |
| `alpaca`            | instruction, input (optional), output, system (optional)                    |
| `messages`          | messages = [{role, content}] (OpenAI); or conversations = [{from, value}]   |
|                     | (ShareGPT, roles human/gpt/system); `role`/`content` rename the turn keys  |
| `prompt_completion` | prompt, completion, system (optional)                                      |
| `text`              | text — becomes one assistant turn, encoded without a chat template         |

The alignment formats `preference`, `kto` and `prompt` (fields below) are normalised by
`lmtune.data.formats.preference.normalise_align` into prompt/completion conversations, not one conversation.
"""

from __future__ import annotations

from typing import Any, assert_never, get_args

from lmtune.config.data import RecordFormat
from lmtune.data.records import Conversation, RecordRejected
from lmtune.errors import DataError

FORMATS: tuple[str, ...] = get_args(RecordFormat)
FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input", "output", "system"),
    "messages": ("messages", "role", "content"),
    "prompt_completion": ("prompt", "completion", "system"),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected", "system"),
    "kto": ("prompt", "completion", "label", "system"),
    "prompt": ("prompt", "answer", "system"),
}
ROLES = ("system", "user", "assistant")
_ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "assistant": "assistant",
    "human": "user",
    "gpt": "assistant",
}


def check_format(fmt: str, columns: dict[str, str] | None = None, where: str = "") -> RecordFormat:
    """Return `fmt` as a known format, after checking that `columns` only renames its fields.

    Raises:
        DataError: unknown format (the message lists the valid ones) or a column key the format lacks.
    """
    prefix = f"{where}: " if where else ""
    if fmt not in FIELDS:
        raise DataError(f"{prefix}unknown format '{fmt}' (valid formats: {', '.join(FORMATS)})")
    for key in columns or {}:
        if key not in FIELDS[fmt]:
            raise DataError(
                f"{prefix}columns: '{key}' is not a field of format {fmt} (fields: {', '.join(FIELDS[fmt])})"
            )
    return fmt  # type: ignore[return-value]


def normalise(
    record: dict[str, Any], fmt: RecordFormat, columns: dict[str, str] | None = None
) -> Conversation:
    """Turn one raw record into a conversation that ends with an assistant turn.

    Args:
        record: the raw record (a JSON object, CSV row, Parquet/Arrow row).
        fmt: the source's format.
        columns: canonical field name -> the record's name for it.

    Raises:
        RecordRejected: with reason missing_field, wrong_type, empty_turn, unknown_role, role_order or
            no_final_assistant, and a detail naming the field or turn.
    """
    cols = columns or {}
    match fmt:
        case "alpaca":
            instruction = _text(record, cols, "instruction")
            extra = _text(record, cols, "input", optional=True)
            user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
            conv = [
                *_system(record, cols),
                {"role": "user", "content": user},
                {"role": "assistant", "content": _text(record, cols, "output")},
            ]
        case "prompt_completion":
            conv = [
                *_system(record, cols),
                {"role": "user", "content": _text(record, cols, "prompt")},
                {"role": "assistant", "content": _text(record, cols, "completion")},
            ]
        case "text":
            conv = [{"role": "assistant", "content": _text(record, cols, "text")}]
        case "messages":
            conv = _messages(record, cols)
        case "preference" | "kto" | "prompt":
            raise DataError(f"format '{fmt}' is for align.data.sources, not data.sources")
        case _:
            assert_never(fmt)
    conv = check_conversation(conv)
    if fmt == "messages":  # the other formats build their turns in order
        _check_order(conv)
    return conv


def check_conversation(conv: Conversation) -> Conversation:
    """Reject empty turns and a conversation whose last turn is not the assistant's; return it unchanged."""
    for i, turn in enumerate(conv, start=1):
        if not turn["content"].strip():
            raise RecordRejected("empty_turn", f"turn {i} ({turn['role']}) has empty content")
    if not conv or conv[-1]["role"] != "assistant":
        last = conv[-1]["role"] if conv else "nothing"
        raise RecordRejected(
            "no_final_assistant", f"the conversation ends with {last}, not an assistant turn"
        )
    return conv


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(record: dict[str, Any], cols: dict[str, str], field: str, optional: bool = False) -> str:
    name = cols.get(field, field)
    label = f"'{name}'" if name == field else f"'{name}' ({field})"
    value = record.get(name)
    if value is None:
        if optional:
            return ""
        state = "is null" if name in record else "is missing"
        raise RecordRejected("missing_field", f"field {label} {state}")
    if not isinstance(value, str):
        raise RecordRejected("wrong_type", f"field '{name}' must be a string, got {_type_name(value)}")
    return value


def _system(record: dict[str, Any], cols: dict[str, str]) -> Conversation:
    system = _text(record, cols, "system", optional=True)
    return [{"role": "system", "content": system}] if system.strip() else []


def _messages(record: dict[str, Any], cols: dict[str, str]) -> Conversation:
    if "messages" in cols:
        key = cols["messages"]
    else:
        key = "messages" if "messages" in record or "conversations" not in record else "conversations"
    turns = record.get(key)
    if turns is None:
        raise RecordRejected("missing_field", f"field '{key}' is missing")
    if not isinstance(turns, list):
        raise RecordRejected("wrong_type", f"field '{key}' must be a list of turns, got {_type_name(turns)}")
    if not turns:
        raise RecordRejected("missing_field", f"field '{key}' is an empty list")
    return [_turn(turn, i, cols) for i, turn in enumerate(turns, start=1)]


def _check_order(conv: Conversation) -> None:
    """A system turn only first, and a user turn before the first assistant turn. Two user (or two
    assistant) turns in a row are accepted: real chats have them, and the chat template decides (one that
    insists on alternation rejects the record as template_error when it is prepared)."""
    seen_user = False
    for i, turn in enumerate(conv, start=1):
        if turn["role"] == "system" and i > 1:
            raise RecordRejected("role_order", f"turn {i} is a system turn; only the first turn may be")
        if turn["role"] == "assistant" and not seen_user:
            detail = f"turn {i} (assistant) comes before any user turn: there is no prompt to answer"
            raise RecordRejected("role_order", detail)
        seen_user = seen_user or turn["role"] == "user"


def _turn(turn: Any, i: int, cols: dict[str, str]) -> dict[str, str]:
    if not isinstance(turn, dict):
        raise RecordRejected("wrong_type", f"turn {i} must be an object, got {_type_name(turn)}")
    role_key = cols.get("role", "role" if "role" in turn or "from" not in turn else "from")
    content_key = cols.get("content", "content" if "content" in turn or "value" not in turn else "value")
    for key in (role_key, content_key):
        if key not in turn:
            raise RecordRejected("missing_field", f"turn {i} has no '{key}'")
    role = turn[role_key]
    if not isinstance(role, str):
        raise RecordRejected("wrong_type", f"turn {i}: '{role_key}' must be a string, got {_type_name(role)}")
    if role not in _ROLE_ALIASES:
        raise RecordRejected(
            "unknown_role",
            f"turn {i}: unknown role '{role}' (expected {', '.join(ROLES)}; ShareGPT: human, gpt, system)",
        )
    return {"role": _ROLE_ALIASES[role], "content": _content(turn[content_key], i, content_key)}


def _content(value: Any, i: int, key: str) -> str:
    """A string, or OpenAI content parts [{"type": "text", "text": ...}] joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value
    ):
        return "".join(p["text"] for p in value)
    raise RecordRejected(
        "wrong_type", f"turn {i}: '{key}' must be a string or text parts, got {_type_name(value)}"
    )

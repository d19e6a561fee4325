"""Alignment record formats: check one raw record and normalise it to TRL's conversational layout.

| format       | fields (canonical names; `columns` maps them to the file's names)            |
| ------------ | ---------------------------------------------------------------------------- |
| `preference` | prompt, chosen, rejected, system (optional)                                  |
| `kto`        | prompt, completion, label (true/false; 1/0 and "true"/"false"/"1"/"0" too), |
|              | system (optional)                                                            |
| `prompt`     | prompt, answer (optional reference answer, e.g. GSM8K's `#### N`), system     |

A prompt is a string (one user turn) or a list of messages (OpenAI role/content or ShareGPT from/value)
that ends with a user turn; `system` is put in front when the prompt has no system turn of its own.
A reply (chosen, rejected, completion) is a string (one assistant turn) or messages ending with an
assistant turn. Specific reject reasons: `empty_side` (a whole side is blank), `identical_pair`,
`wrong_label`, `no_final_user`, plus `missing_field`, `wrong_type`, `unknown_role`, `empty_turn` and
`no_final_assistant` as in the SFT formats. (`prompt_too_long` needs the tokenizer: see align_prepare.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never, get_args

from typing_extensions import TypeIs

from lmtune.config.data import AlignFormat, RecordFormat
from lmtune.data.formats.checks import _turn, _type_name
from lmtune.data.records import Conversation, RecordRejected

ALIGN_FORMATS: tuple[str, ...] = get_args(AlignFormat)
_LABEL_STRINGS = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class PreferenceExample:
    """A prompt with a preferred and a dispreferred reply."""

    prompt: Conversation
    chosen: Conversation
    rejected: Conversation

    def as_row(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


@dataclass(frozen=True)
class KtoExample:
    """A prompt with one reply labelled desirable (True) or undesirable (False)."""

    prompt: Conversation
    completion: Conversation
    label: bool

    def as_row(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completion": self.completion, "label": self.label}


@dataclass(frozen=True)
class PromptExample:
    """A prompt for online RL, with the reference answer a verifiable reward checks (when known)."""

    prompt: Conversation
    answer: str | None

    def as_row(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "answer": self.answer}


AlignExample = PreferenceExample | KtoExample | PromptExample


def is_align_format(fmt: RecordFormat) -> TypeIs[AlignFormat]:
    """True for `preference`, `kto` and `prompt`: formats read by alignment, not by SFT."""
    return fmt in ALIGN_FORMATS


def normalise_align(
    record: dict[str, Any], fmt: AlignFormat, columns: dict[str, str] | None = None
) -> AlignExample:
    """Turn one raw alignment record into its normalised example.

    Args:
        record: the raw record (a JSON object, CSV row, Parquet/Arrow row).
        fmt: `preference`, `kto` or `prompt`.
        columns: canonical field name -> the record's name for it.

    Raises:
        RecordRejected: with reason missing_field, wrong_type, empty_side, empty_turn, unknown_role,
            no_final_user, no_final_assistant, identical_pair or wrong_label, and a detail naming the
            field (and turn).
    """
    cols = columns or {}
    match fmt:
        case "preference":
            prompt = _prompt(record, cols)
            chosen = _reply(record, cols, "chosen")
            rejected = _reply(record, cols, "rejected")
            if _stripped(chosen) == _stripped(rejected):
                raise RecordRejected("identical_pair", "chosen and rejected are identical")
            return PreferenceExample(prompt, chosen, rejected)
        case "kto":
            prompt = _prompt(record, cols)
            return KtoExample(prompt, _reply(record, cols, "completion"), _label(record, cols))
        case "prompt":
            return PromptExample(_prompt(record, cols), _answer(record, cols))
        case _:
            assert_never(fmt)


def with_system(prompt: Conversation, system: str | None) -> Conversation:
    """`prompt` with a system turn in front, unless it has one or `system` is blank."""
    if not system or not system.strip() or (prompt and prompt[0]["role"] == "system"):
        return prompt
    return [{"role": "system", "content": system}, *prompt]


def _label_of(cols: dict[str, str], field: str) -> str:
    name = cols.get(field, field)
    return f"'{name}'" if name == field else f"'{name}' ({field})"


def _present(record: dict[str, Any], cols: dict[str, str], field: str) -> Any:
    name = cols.get(field, field)
    value = record.get(name)
    if value is None:
        state = "is null" if name in record else "is missing"
        raise RecordRejected("missing_field", f"field {_label_of(cols, field)} {state}")
    return value


def _side(record: dict[str, Any], cols: dict[str, str], field: str, role: str) -> Conversation:
    """A prompt or reply: a string becomes one `role` turn; a list is read as messages."""
    value = _present(record, cols, field)
    empty = RecordRejected("empty_side", f"field {_label_of(cols, field)} is empty")
    if isinstance(value, str):
        if not value.strip():
            raise empty
        return [{"role": role, "content": value}]
    if not isinstance(value, list):
        raise RecordRejected(
            "wrong_type",
            f"field '{cols.get(field, field)}' must be a string or a list of messages, "
            f"got {_type_name(value)}",
        )
    try:
        turns = [_turn(turn, i, {}) for i, turn in enumerate(value, start=1)]
    except RecordRejected as exc:
        raise RecordRejected(exc.reason, f"{field} {exc.detail}") from None
    if all(not turn["content"].strip() for turn in turns):
        raise empty
    for i, turn in enumerate(turns, start=1):
        if not turn["content"].strip():
            raise RecordRejected("empty_turn", f"{field} turn {i} ({turn['role']}) has empty content")
    return turns


def _prompt(record: dict[str, Any], cols: dict[str, str]) -> Conversation:
    turns = _side(record, cols, "prompt", "user")
    if turns[-1]["role"] != "user":
        raise RecordRejected("no_final_user", f"prompt ends with {turns[-1]['role']}, not a user turn")
    system = record.get(cols.get("system", "system"))
    if system is not None and not isinstance(system, str):
        raise RecordRejected(
            "wrong_type", f"field '{cols.get('system', 'system')}' must be a string, got {_type_name(system)}"
        )
    return with_system(turns, system)


def _reply(record: dict[str, Any], cols: dict[str, str], field: str) -> Conversation:
    turns = _side(record, cols, field, "assistant")
    for i, turn in enumerate(turns, start=1):
        if turn["role"] == "system":
            raise RecordRejected("unknown_role", f"{field} turn {i}: a system turn cannot be part of a reply")
    if turns[-1]["role"] != "assistant":
        raise RecordRejected(
            "no_final_assistant", f"{field} ends with {turns[-1]['role']}, not an assistant turn"
        )
    return turns


def _label(record: dict[str, Any], cols: dict[str, str]) -> bool:
    value = _present(record, cols, "label")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABEL_STRINGS:
        return _LABEL_STRINGS[value.strip().lower()]
    raise RecordRejected(
        "wrong_label", f"field {_label_of(cols, 'label')} must be true/false or 1/0, got {value!r}"
    )


def _answer(record: dict[str, Any], cols: dict[str, str]) -> str | None:
    value = record.get(cols.get("answer", "answer"))
    if value is None or isinstance(value, str):
        return value if value is not None and value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RecordRejected(
        "wrong_type",
        f"field '{cols.get('answer', 'answer')}' must be a string or an integer, got {_type_name(value)}",
    )


def _stripped(conv: Conversation) -> list[tuple[str, str]]:
    return [(turn["role"], turn["content"].strip()) for turn in conv]

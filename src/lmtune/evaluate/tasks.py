"""Task files of the evaluation suites: JSONL rows read into (prompt messages, reference) items, with
errors that name the file, the line and the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmtune.data.formats.assets import GSM8K, gsm8k_path
from lmtune.errors import DataError
from lmtune.evaluate.jsonl import read_rows

Message = dict[str, str]

PROMPT_FIELDS = ("prompt", "question", "input")
REFERENCE_FIELDS = ("answer", "reference", "output", "target")


@dataclass(frozen=True)
class TaskItem:
    """One prompt (as chat messages) and its reference answer."""

    messages: list[Message]
    reference: str


def read_task_file(path: str | Path) -> list[TaskItem]:
    """Every row of a JSONL task file: `messages` ending in the reference assistant turn, or a prompt
    field (`prompt` | `question` | `input`) and a reference field (`answer` | `reference` | `output` |
    `target`). `gsm8k` names the packaged GSM8K test set (1,319 problems).

    Raises:
        DataError: the file is missing or empty, or a row is not JSON or lacks a prompt or reference
            (the message names the file, the line and the field).
    """
    file = gsm8k_path() if str(path) == GSM8K else Path(path)
    return [_item(row, f"{file}:{n}") for n, row in read_rows(file, "task")]


def _item(row: dict[str, object], where: str) -> TaskItem:
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise DataError(f"{where}: field 'messages' must be a list of {{role, content}} strings")
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise DataError(f"{where}: field 'messages' must end with the reference assistant turn")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages]
        return TaskItem(turns[:-1], turns[-1]["content"])
    prompt = next((row[k] for k in PROMPT_FIELDS if k in row), None)
    reference = next((row[k] for k in REFERENCE_FIELDS if k in row), None)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(
            f"{where}: no prompt: field {' | '.join(PROMPT_FIELDS)} (a non-empty string) or 'messages'"
        )
    if not isinstance(reference, str | int | float) or isinstance(reference, bool):
        raise DataError(f"{where}: no reference: field {' | '.join(REFERENCE_FIELDS)} (a string or a number)")
    return TaskItem([{"role": "user", "content": prompt}], str(reference))

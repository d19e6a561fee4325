"""A teacher's generated item as a record: parsed into a conversation (or a reason to reject it), with its
provenance, in the layout the synthesis writes."""

from __future__ import annotations

from typing import Any

from lmtune.data.records import Conversation, RejectReason
from lmtune.data.synthesis.prompt import parse_completion


def parse_generated(entry: dict[str, Any]) -> Conversation | tuple[RejectReason, str]:
    """The generated conversation, or why there is none (`unparseable` or `truncated`)."""
    text = entry["completion"]
    if text is None:
        return "unparseable", entry["problem"] or "no completion text"
    cut = entry.get("finish_reason") == "length"
    try:
        instruction, answer = parse_completion(text)
    except ValueError as exc:
        hint = f" (the completion stopped at max_tokens {entry['sampling']['max_tokens']})" if cut else ""
        return "unparseable", f"{exc}{hint}: {text[:200]!r}"
    if cut:
        return "truncated", f"the completion stopped at max_tokens {entry['sampling']['max_tokens']}"
    return as_conversation(instruction, answer)


def as_conversation(instruction: str, answer: str) -> Conversation:
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": answer}]


def provenance(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("endpoint", "model", "response_model", "seed_ids", "sampling", "timestamp", "lmtune_version")
    return {"request_index": entry["index"], **{k: entry.get(k) for k in keys}}


def record_dict(messages: Conversation, provenance: dict[str, Any], layout: str) -> dict[str, Any]:
    if layout == "prompt_completion":
        return {
            "prompt": messages[0]["content"],
            "completion": messages[1]["content"],
            "provenance": provenance,
        }
    return {"messages": messages, "provenance": provenance}

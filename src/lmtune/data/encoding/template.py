"""Chat template rendering and assistant-only loss masking, without `{% generation %}` markers.

How the mask is found (works for any template that renders turns in order, e.g. ChatML, SmolLM2 with
its injected default system prompt, Llama 3, Gemma):

1. Render the whole conversation to text with the tokenizer's chat template and tokenise that text
   once (so the ids are exactly what the template gives: no drift from tokenising pieces).
2. For assistant turn i, render `messages[:i]` with `add_generation_prompt=True`: when that is a prefix
   of the full text, the assistant content starts right after it. (If the template renders earlier
   turns differently once later turns exist, fall back to searching the content from the end of the
   previous assistant turn.)
3. Map the character span of the content to tokens with the fast tokenizer's offset mapping; those
   tokens carry labels. Then the end-of-turn marker: the first special token right after the content
   (only whitespace may sit between) is labelled too — `<|im_end|>` for ChatML, the token the model
   must learn to stop on. Role headers, system/user turns and the newline after `<|im_end|>` stay -100.
4. If the template puts no special token after the final assistant turn, eos is appended and labelled
   (with any whitespace the template put between the content and the end of the text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmtune.data.records import Conversation, RecordRejected

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100
"""Label of a token that carries no loss."""


@dataclass(frozen=True)
class Encoded:
    """Token ids and labels (same length; `IGNORE` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]


def render(
    tokenizer: PreTrainedTokenizerBase, messages: Conversation, add_generation_prompt: bool = False
) -> str:
    """The conversation as text, through the tokenizer's chat template.

    Raises:
        RecordRejected: `template_error` when the template refuses the conversation (it raised).
    """
    try:
        text: Any = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # a chat template is arbitrary Jinja: any error it raises is about this record
        raise RecordRejected("template_error", f"chat template failed: {exc}") from None
    return str(text)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Special tokens that can end a turn: eos plus every special added token except bos and unk."""
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special}
    ids -= {tokenizer.bos_token_id, tokenizer.unk_token_id} - {tokenizer.eos_token_id}
    return ids


def encode_conversation(tokenizer: PreTrainedTokenizerBase, messages: Conversation) -> Encoded:
    """Tokenise a conversation with its chat template; only assistant content + end-of-turn are labelled.

    Raises:
        RecordRejected: `template_error` when the template fails or an assistant turn cannot be located.
    """
    full = render(tokenizer, messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    labels = [IGNORE] * len(ids)
    stops = stop_token_ids(tokenizer)
    cursor = 0
    closed = True
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        start, end = _content_span(tokenizer, messages, i, full, cursor)
        cursor = end
        after = label_span(ids, offsets, labels, start, end)
        closed = label_end_of_turn(ids, offsets, labels, full, after, stops)
    if not closed and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return Encoded(ids, labels)


def _content_span(
    tokenizer: PreTrainedTokenizerBase, messages: Conversation, i: int, full: str, cursor: int
) -> tuple[int, int]:
    """Character span [start, end) of assistant turn i's content inside the rendered `full` text."""
    prefix = render(tokenizer, messages[:i], add_generation_prompt=True) if i > 0 else None
    return content_span(messages[i]["content"], i, prefix, full, cursor)


def content_span(content: str, i: int, prefix: str | None, full: str, cursor: int) -> tuple[int, int]:
    """Character span [start, end) of assistant turn i's `content` inside the rendered `full` text, at
    or after `cursor`: right after `prefix` (the conversation before the turn rendered with the generation
    prompt; None for the first turn) when the template renders it there, else its first occurrence.

    Raises:
        RecordRejected: `template_error` when the content is not in the rendered text.
    """
    if prefix is not None and len(prefix) >= cursor and full.startswith(prefix):
        for candidate in (content, content.strip()):
            if full.startswith(candidate, len(prefix)):
                return len(prefix), len(prefix) + len(candidate)
    for candidate in (content, content.strip()):
        start = full.find(candidate, cursor)
        if start >= 0:
            return start, start + len(candidate)
    raise RecordRejected(
        "template_error", f"turn {i + 1}: assistant content not found in the rendered template"
    )


def label_span(
    ids: list[int], offsets: list[tuple[int, int]], labels: list[int], start: int, end: int
) -> int:
    """Label every token overlapping the character span [start, end); return the index of the first
    token starting at or after `end` (len(ids) when none does)."""
    for t, (s, e) in enumerate(offsets):
        if s < end and e > start:
            labels[t] = ids[t]
        if s >= end:
            return t
    return len(ids)


def label_end_of_turn(
    ids: list[int],
    offsets: list[tuple[int, int]],
    labels: list[int],
    full: str,
    after: int,
    stops: set[int],
) -> bool:
    """Label the first stop token after the content (and whitespace before it); False if there is none.

    When only whitespace follows the content to the end of the text, that whitespace is labelled (the
    caller appends a labelled eos after it).
    """
    t = after
    while t < len(ids) and ids[t] not in stops and not full[offsets[t][0] : offsets[t][1]].strip():
        t += 1
    closed = t < len(ids) and ids[t] in stops
    if closed or t == len(ids):
        for k in range(after, min(t + 1, len(ids))):
            labels[k] = ids[k]
    return closed


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> Encoded:
    """Plain text: tokenised with the tokenizer's own special tokens, eos appended, every token labelled."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return Encoded(ids, list(ids))

"""One record -> one training example: template + mask, then the truncation policy and a trainable check."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from lmtune.data.encoding.template import IGNORE, Encoded, encode_conversation, encode_text
from lmtune.data.records import Conversation, RecordRejected

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    messages: Conversation,
    is_text: bool,
    max_length: int,
    truncation: Literal["drop", "truncate"],
) -> Encoded:
    """Encode a normalised record and apply the length policy.

    Args:
        tokenizer: a fast tokenizer (with a chat template unless `is_text`).
        messages: the normalised conversation; for a `text` record, one assistant turn holding the text.
        is_text: encode as plain text (every token labelled) instead of through the chat template.
        max_length: the longest example allowed, in tokens.
        truncation: `drop` rejects a longer example; `truncate` keeps its first `max_length` tokens.

    Raises:
        RecordRejected: `too_long` (policy drop), `no_trainable_tokens` (no label the shifted loss would
            use, e.g. truncation cut every assistant token), or `template_error`.
    """
    chars = sum(_visible_chars(turn["content"]) for turn in messages)
    if truncation == "drop" and chars > max_length * _longest_token(tokenizer):
        # no token covers more characters than its vocabulary entry has: surely too long, and
        # tokenising a multi-megabyte record first would take minutes. Whitespace is not counted
        # (some tokenizers collapse runs of it).
        detail = f"{chars} non-space characters, more than data.max_length={max_length} tokens can hold"
        raise RecordRejected("too_long", detail + " (not tokenised)")
    enc = (
        encode_text(tokenizer, messages[-1]["content"])
        if is_text
        else encode_conversation(tokenizer, messages)
    )
    if len(enc.input_ids) > max_length:
        if truncation == "drop":
            raise RecordRejected(
                "too_long", f"{len(enc.input_ids)} tokens, more than data.max_length={max_length}"
            )
        enc = Encoded(enc.input_ids[:max_length], enc.labels[:max_length])
    # The causal loss predicts token t from tokens < t, so the first label is never used.
    if all(label == IGNORE for label in enc.labels[1:]):
        raise RecordRejected("no_trainable_tokens", "no token carries a label (nothing to learn from)")
    return enc


def _visible_chars(text: str) -> int:
    return len(text) - sum(text.count(space) for space in " \t\n\r")


@lru_cache(maxsize=8)
def _longest_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Characters in the tokenizer's longest vocabulary entry (byte-level BPE: bytes per token)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1)

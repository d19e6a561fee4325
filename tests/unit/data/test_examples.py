"""The truncation policy: `drop` rejects too-long examples, `truncate` cuts them; nothing left to learn
is a reject."""

from __future__ import annotations

from typing import Any

import pytest

from lmtune.data.encoding.examples import encode_example
from lmtune.data.encoding.template import IGNORE, encode_conversation
from lmtune.data.records import Conversation, RecordRejected

CONV: Conversation = [
    {"role": "user", "content": "how many clips did she sell in april and may?"},
    {"role": "assistant", "content": "she sold 48 clips in april and 24 in may, so 72 in total."},
]


def test_short_example_passes_unchanged(tiny_tokenizer: Any) -> None:
    full = encode_conversation(tiny_tokenizer, CONV)
    enc = encode_example(tiny_tokenizer, CONV, False, len(full.input_ids), "drop")
    assert enc == full


def test_drop_rejects_too_long(tiny_tokenizer: Any) -> None:
    n = len(encode_conversation(tiny_tokenizer, CONV).input_ids)
    with pytest.raises(RecordRejected) as err:
        encode_example(tiny_tokenizer, CONV, False, n - 1, "drop")
    assert err.value.reason == "too_long"
    assert err.value.detail == f"{n} tokens, more than data.max_length={n - 1}"


def test_truncate_cuts_to_max_length_keeping_the_prefix(tiny_tokenizer: Any) -> None:
    full = encode_conversation(tiny_tokenizer, CONV)
    n = len(full.input_ids) - 5
    enc = encode_example(tiny_tokenizer, CONV, False, n, "truncate")
    assert len(enc.input_ids) == len(enc.labels) == n
    assert enc.input_ids == full.input_ids[:n] and enc.labels == full.labels[:n]
    assert any(label != IGNORE for label in enc.labels)


def test_truncating_away_every_assistant_token_is_no_trainable_tokens(tiny_tokenizer: Any) -> None:
    with pytest.raises(RecordRejected) as err:
        encode_example(tiny_tokenizer, CONV, False, 8, "truncate")
    assert err.value.reason == "no_trainable_tokens"


def test_text_record_is_encoded_without_template(tiny_tokenizer: Any) -> None:
    enc = encode_example(tiny_tokenizer, [{"role": "assistant", "content": "two dogs."}], True, 64, "drop")
    assert tiny_tokenizer.decode(enc.input_ids) == "two dogs.<|im_end|>"
    assert enc.labels == enc.input_ids

"""Assistant-only masking without `{% generation %}` markers: exactly the assistant contents, each followed
by its end-of-turn token, carry labels — proven by decoding the labelled tokens."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lmtune.data.encoding.template import IGNORE, Encoded, encode_conversation, encode_text, render
from lmtune.data.records import Conversation, RecordRejected

SINGLE: Conversation = [
    {"role": "user", "content": "how many apples does she have?"},
    {"role": "assistant", "content": "She has 42 apples."},
]
MULTI: Conversation = [
    {"role": "system", "content": "You are a helpful model."},
    {"role": "user", "content": "what is the capital of france?"},
    {"role": "assistant", "content": "The capital is paris."},
    {"role": "user", "content": "and two plus two?"},
    {"role": "assistant", "content": " four, of course.\n"},
]
NO_SYSTEM_MULTI: Conversation = MULTI[1:]


def _labelled_runs(tok: Any, enc: Encoded) -> list[str]:
    """Decode each maximal run of consecutive labelled tokens."""
    runs: list[list[int]] = []
    previous = IGNORE
    for token, label in zip(enc.input_ids, enc.labels, strict=True):
        if label != IGNORE:
            assert label == token
            if previous == IGNORE:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return [tok.decode(run) for run in runs]


def _check_mask(tok: Any, messages: Conversation) -> None:
    enc = encode_conversation(tok, messages)
    expected = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    assert _labelled_runs(tok, enc) == expected
    # no drift: the ids are exactly the tokenised rendered text, and what the template itself tokenises to
    whole = tok(render(tok, messages), add_special_tokens=False)["input_ids"]
    assert enc.input_ids == whole
    assert enc.input_ids == list(tok.apply_chat_template(messages, tokenize=True)["input_ids"])
    # the token after each labelled <|im_end|> (the newline) is not labelled
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    ends = [i for i, label in enumerate(enc.labels) if label == im_end]
    assert all(enc.labels[i + 1] == IGNORE for i in ends if i + 1 < len(enc.labels))


@pytest.mark.parametrize(
    "messages", [SINGLE, MULTI, NO_SYSTEM_MULTI], ids=["single", "multi", "multi-no-system"]
)
def test_tiny_chatml_masks_exactly_assistant_turns(tiny_tokenizer: Any, messages: Conversation) -> None:
    _check_mask(tiny_tokenizer, messages)


@pytest.mark.real
@pytest.mark.parametrize(
    "messages", [SINGLE, MULTI, NO_SYSTEM_MULTI], ids=["single", "multi", "multi-no-system"]
)
def test_smollm2_template_masks_exactly_assistant_turns(
    smollm2_tokenizer: Any, messages: Conversation
) -> None:
    _check_mask(smollm2_tokenizer, messages)
    if messages[0]["role"] != "system":  # SmolLM2 injects its default system prompt: never labelled
        text = render(smollm2_tokenizer, messages)
        assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_template_that_raises_is_a_template_error(tiny_tokenizer: Any) -> None:
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    )
    with pytest.raises(RecordRejected) as err:
        encode_conversation(tok, MULTI)
    assert err.value.reason == "template_error"
    assert "System role not supported" in err.value.detail


def test_template_without_end_marker_gets_eos_appended(tiny_tokenizer: Any) -> None:
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    enc = encode_conversation(tok, SINGLE)
    assert enc.input_ids[-1] == tok.eos_token_id == enc.labels[-1]
    assert _labelled_runs(tok, enc) == ["She has 42 apples.\n<|im_end|>"]


def test_text_labels_every_token_and_appends_eos(tiny_tokenizer: Any) -> None:
    enc = encode_text(tiny_tokenizer, "the cats sold two books.")
    assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id
    assert enc.labels == enc.input_ids
    assert tiny_tokenizer.decode(enc.input_ids) == "the cats sold two books.<|im_end|>"

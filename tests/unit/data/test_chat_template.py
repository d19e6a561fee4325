"""`data.chat_template` on a base tokenizer without a template: the error that says how to set it, the
known families and Jinja files (rendering, the assistant-only loss mask, the tokens they add), and the
config errors for a name that is not a template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from lmtune.config.data import CHAT_TEMPLATE_FAMILIES
from lmtune.config.loader import load
from lmtune.config.run import RunConfig
from lmtune.data.encoding.template import IGNORE, encode_conversation
from lmtune.data.prepare import prepare
from lmtune.errors import ConfigError, DataError
from lmtune.runtime import chat_templates
from lmtune.runtime.generation import render_prompt
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.stops import END_OF_TURN_TOKENS, end_of_turn_id
from lmtune.runtime.tiny import build_tokenizer

CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "how many apples?"},
    {"role": "assistant", "content": "she has three apples."},
    {"role": "user", "content": "and cats?"},
    {"role": "assistant", "content": "two cats."},
]
CUSTOM = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>' if m['role'] != 'user' else '<|user|>' }}"
    "{{ m['content'] + '<|end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base model's tokenizer: no chat template, no turn markers, eos `<|endoftext|>`."""
    out = tmp_path_factory.mktemp("base_tokenizer")
    build_tokenizer(base=True).save_pretrained(out)
    return out


def _base(base_dir: Path) -> Any:
    tok = AutoTokenizer.from_pretrained(base_dir)
    assert tok.chat_template is None and len(tok) == 512
    return tok


def _labelled_spans(tok: Any, labels: list[int]) -> list[str]:
    """The text of each maximal run of labelled tokens."""
    spans: list[list[int]] = []
    for i, label in enumerate(labels):
        if label == IGNORE:
            continue
        if i == 0 or labels[i - 1] == IGNORE:
            spans.append([])
        spans[-1].append(label)
    return [tok.decode(span) for span in spans]


def test_a_tokenizer_without_template_says_how_to_set_one(tmp_path: Path, base_dir: Path) -> None:
    tok = _base(base_dir)
    source = tmp_path / "chats.jsonl"
    source.write_text(json.dumps({"messages": CONVERSATION}) + "\n", encoding="utf-8")
    cfg = RunConfig.model_validate({"data": {"sources": [{"path": str(source)}]}})
    with pytest.raises(DataError) as info:
        prepare(cfg.data, RunDir(tmp_path / "r"), tok, seed=cfg.seed)
    assert str(info.value) == (
        f"tokenizer {tok.name_or_path}: has no chat template; set data.chat_template (chatml, llama3, "
        "gemma, mistral or a Jinja file), use format `text`, or use a chat model"
    )


def test_the_known_families_are_the_config_names_and_end_turns_where_generation_stops() -> None:
    assert tuple(chat_templates.TEMPLATES) == CHAT_TEMPLATE_FAMILIES
    for template in chat_templates.TEMPLATES.values():
        assert template.end_of_turn is None or template.end_of_turn in END_OF_TURN_TOKENS
        assert template.end_of_turn is None or template.end_of_turn in template.tokens


@pytest.mark.parametrize("family", CHAT_TEMPLATE_FAMILIES)
def test_each_family_masks_only_the_replies_and_their_end_of_turn(base_dir: Path, family: str) -> None:
    tok = _base(base_dir)
    template = chat_templates.TEMPLATES[family]
    added = chat_templates.apply(tok, family)
    assert added == list(template.tokens), "a base tokenizer has none of the family's tokens"
    assert len(tok) == 512 + len(added)
    assert set(template.tokens) <= set(tok.all_special_tokens)

    encoded = encode_conversation(tok, CONVERSATION)
    end = template.end_of_turn or tok.eos_token
    # Exactly the two replies, each with the token that ends its turn (mistral: eos); nothing else.
    assert _labelled_spans(tok, encoded.labels) == [f"she has three apples.{end}", f"two cats.{end}"]
    assert end_of_turn_id(tok) == tok.convert_tokens_to_ids(end), "generation stops where the mask ends"
    text = tok.decode(encoded.input_ids)
    assert "be brief" in text and "how many apples?" in text
    prompt = render_prompt(tok, CONVERSATION[:2])
    assert text.startswith(prompt), "the generation prompt is the start of the trained conversation"


def test_apply_adds_only_missing_tokens_and_the_saved_tokenizer_keeps_them(
    tmp_path: Path, base_dir: Path, tiny_tokenizer: Any
) -> None:
    tok = _base(base_dir)
    assert chat_templates.apply(tok, "chatml") == ["<|im_start|>", "<|im_end|>"]
    assert chat_templates.apply(tok, "chatml") == [], "a second apply adds nothing"
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [512, 513]
    assert chat_templates.token_ids(tok, "chatml") == [512, 513]
    assert chat_templates.token_ids(tok, None) == []
    assert tok.eos_token == "<|endoftext|>", "a tokenizer with an eos keeps it"
    tok.save_pretrained(tmp_path / "saved")
    again = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert again.chat_template == chat_templates.CHATML and len(again) == 514
    assert {"<|im_start|>", "<|im_end|>"} <= set(again.all_special_tokens)

    chat = AutoTokenizer.from_pretrained(tiny_tokenizer.name_or_path)  # has the ChatML tokens already
    assert chat_templates.apply(chat, "chatml") == [] and len(chat) == len(tiny_tokenizer)


def test_a_jinja_file_gives_its_template_its_tokens_and_its_end_of_turn(
    tmp_path: Path, base_dir: Path
) -> None:
    path = tmp_path / "custom.jinja"
    path.write_text(CUSTOM, encoding="utf-8")
    template = chat_templates.resolve(str(path))
    assert template.jinja == CUSTOM
    assert template.tokens == ("<|user|>", "<|end|>", "<|assistant|>")
    assert template.end_of_turn == "<|end|>"

    tok = _base(base_dir)
    assert chat_templates.apply(tok, str(path)) == ["<|user|>", "<|end|>", "<|assistant|>"]
    encoded = encode_conversation(tok, CONVERSATION)
    assert _labelled_spans(tok, encoded.labels) == ["she has three apples.<|end|>", "two cats.<|end|>"]
    assert end_of_turn_id(tok) == tok.convert_tokens_to_ids("<|end|>")


def test_a_missing_jinja_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        chat_templates.resolve(str(tmp_path / "gone.jinja"))
    assert str(info.value) == (
        f"data.chat_template '{tmp_path / 'gone.jinja'}': no such file; give a known template "
        "(chatml, llama3, gemma, mistral) or the path of a Jinja file"
    )


def test_an_unknown_template_name_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load(RunConfig, None, ["data.chat_template=chatlm"])
    assert str(info.value) == (
        "config field 'data.chat_template': 'chatlm' is not a known chat template; did you mean 'chatml'? "
        "known: chatml, llama3, gemma, mistral, or the path of a Jinja file (.jinja/.j2)"
    )
    with pytest.raises(ConfigError, match="'zephyr' is not a known chat template; known: chatml, llama3"):
        load(RunConfig, None, ["data.chat_template=zephyr"])
    for value in ("chatml", "templates/mine.jinja", "mine.j2", "./mine.txt"):
        assert load(RunConfig, None, [f"data.chat_template={value}"]).data.chat_template == value
    assert RunConfig().data.chat_template is None

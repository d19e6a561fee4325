"""Chat templates a config can give a tokenizer (`data.chat_template`), for base models without one.

A template is Jinja text plus the special tokens it writes and the token that ends an assistant turn
(the token the model learns to emit: the data stage labels the first special token after each assistant
reply, see `lmtune.data.encoding.template`; generation and the export stop on it, see
`lmtune.runtime.generation.end_of_turn_id`). Known families:

- `chatml`:  `<|im_start|>role\\n...<|im_end|>\\n`; ends a turn with `<|im_end|>` (Qwen, SmolLM2, ...).
- `llama3`:  `<|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>` after bos; ends with `<|eot_id|>`.
- `gemma`:   `<start_of_turn>user|model\\n...<end_of_turn>\\n` after bos (a system message is folded into
  the first user turn); ends with `<end_of_turn>`.
- `mistral`: `[INST] ... [/INST]answer</s>` after bos (plain-text markers, as Mistral v0.1/v0.2 write
  them; a system message is folded into the first user turn); ends with the tokenizer's eos: it adds
  no tokens.

A Jinja file names no tokens of its own: the `<|name|>` literals it writes and the known families'
markers it writes are its special tokens; its end of turn is the first of
`lmtune.runtime.generation.END_OF_TURN_TOKENS` it writes, else eos.

`apply` sets the template on a tokenizer and adds the missing tokens as special tokens;
`fit_embeddings` grows a model's embeddings (and untied output head) to the tokenizer's size. Every
template renders turns in order, which is all the assistant-only loss mask needs (it renders the
conversation prefix with the generation prompt; no `{% generation %}` markers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.config.data import CHAT_TEMPLATE_FAMILIES
from lmtune.errors import ConfigError
from lmtune.runtime.stops import END_OF_TURN_TOKENS, stop_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template and the special tokens it needs."""

    name: str
    """The family name, or the Jinja file's path."""
    jinja: str
    tokens: tuple[str, ...]
    """Special tokens the template writes literally (added to the tokenizer when missing)."""
    end_of_turn: str | None
    """The token that ends an assistant turn, which the model must learn to emit (None: the eos)."""


_BOS = "{% if bos_token %}{{ bos_token }}{% endif %}"
# A system message first is folded into the first user turn (templates without a system role).
_FOLD_SYSTEM = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] + '\\n\\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    _BOS + "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
GEMMA = (
    _BOS + _FOLD_SYSTEM + "{% for message in turns %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('a system message must come first') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (system if loop.first and role == 'user' else '')"
    " + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
MISTRAL = (
    _BOS + _FOLD_SYSTEM + "{% for message in turns %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('a system message must come first') }}{% endif %}"
    "{% endfor %}"
)

TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate("chatml", CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama3": ChatTemplate(
        "llama3", LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"
    ),
    "gemma": ChatTemplate("gemma", GEMMA, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "mistral": ChatTemplate("mistral", MISTRAL, (), None),
}
"""The known families, by name (the names of `lmtune.config.data.CHAT_TEMPLATE_FAMILIES`)."""

_KNOWN_TOKENS = tuple(dict.fromkeys(t for template in TEMPLATES.values() for t in template.tokens))
_PIPE_TOKEN = re.compile(r"<\|[^|\s<>'\"]+\|>")


def resolve(spec: str) -> ChatTemplate:
    """The template `data.chat_template` names: a known family, else a Jinja file (read now).

    Raises:
        ConfigError: not a known family, and no such file (or it cannot be read).
    """
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    path = Path(spec).expanduser()
    try:
        jinja = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read it ({exc})"
        raise ConfigError(
            f"data.chat_template '{spec}': {reason}; give a known template "
            f"({', '.join(CHAT_TEMPLATE_FAMILIES)}) or the path of a Jinja file"
        ) from None
    if not jinja.strip():
        raise ConfigError(f"data.chat_template '{spec}': the file is empty")
    return ChatTemplate(str(path), jinja, file_tokens(jinja), _end_of_turn(jinja))


def file_tokens(jinja: str) -> tuple[str, ...]:
    """The special tokens a Jinja file writes: `<|name|>` literals and the known families' markers."""
    found = {m.group(0) for m in _PIPE_TOKEN.finditer(jinja)} | {t for t in _KNOWN_TOKENS if t in jinja}
    return tuple(sorted(found, key=jinja.index))


def _end_of_turn(jinja: str) -> str | None:
    return next((t for t in END_OF_TURN_TOKENS if t in jinja), None)


def apply(tokenizer: PreTrainedTokenizerBase, spec: str) -> list[str]:
    """Give `tokenizer` the template `spec` names (replacing its own) and the special tokens it writes:
    missing ones are added to the vocabulary, ones already there are marked special (so the loss mask
    finds the end of each turn and decoding skips them). Returns the tokens added to the vocabulary.

    A tokenizer without an eos gets the end-of-turn token as eos.

    Raises:
        ConfigError: see `resolve`.
    """
    template = resolve(spec)
    tokenizer.chat_template = template.jinja
    vocab = tokenizer.get_vocab()
    added = [t for t in template.tokens if t not in vocab]
    if template.tokens:
        tokenizer.add_special_tokens(
            {"extra_special_tokens": list(template.tokens)}, replace_extra_special_tokens=False
        )
    if tokenizer.eos_token is None and template.end_of_turn is not None:
        tokenizer.eos_token = template.end_of_turn
    return added


def token_ids(tokenizer: PreTrainedTokenizerBase, spec: str | None) -> list[int]:
    """Ids of the special tokens the template `spec` writes (after `apply`); empty when `spec` is None.
    These are the embedding rows an adapter method trains along (a base model's rows for chat markers
    are new or were never trained)."""
    if spec is None:
        return []
    vocab = tokenizer.get_vocab()
    return sorted({vocab[t] for t in resolve(spec).tokens if t in vocab})


def embedding_rows(model: PreTrainedModel) -> int:
    """How many token rows `model`'s input embeddings have."""
    embeddings: Any = model.get_input_embeddings()
    return int(embeddings.weight.shape[0])


def fit_embeddings(model: PreTrainedModel, size: int) -> bool:
    """Grow `model`'s input embeddings (and its output head) to `size` rows when it has fewer; new rows
    start at the old rows' mean (plus noise, transformers' `mean_resizing`). Returns whether it grew."""
    if size <= embedding_rows(model):
        return False
    model.resize_token_embeddings(size)
    return True


def stop_at_end_of_turn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make `model`'s generation config stop where the tokenizer's chat template ends a turn (then at
    eos, and at what it stopped on before), as the trained model will; the training preflight checks
    that every labelled span ends on one of these."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import GenerationConfig

    config = getattr(model, "generation_config", None) or GenerationConfig()
    before = config.eos_token_id
    before = list(before) if isinstance(before, list | tuple) else [] if before is None else [before]
    stops = list(dict.fromkeys([*stop_token_ids(tokenizer), *before]))
    config.eos_token_id = stops[0] if len(stops) == 1 else stops
    model.generation_config = config


def saved_vocab_size(folder: str | Path) -> int | None:
    """The size of the tokenizer saved in `folder` (training saves it beside the weights), or None."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import AutoTokenizer

    if not (Path(folder) / "tokenizer_config.json").is_file():
        return None
    return len(AutoTokenizer.from_pretrained(str(folder)))

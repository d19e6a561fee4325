"""The serving contract: what an export must carry unchanged from training besides its weights, so a
plain `generate` or a server answers as the trained model did. The chat template (by hash), the EOS,
pad and stop tokens, and the generation config's decoding fields. The export check compares the
contract of the trained model with the exported folder's and fails on any difference, naming it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from lmtune.runtime.stops import stop_token_ids

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerBase

GENERATION_FIELDS = (
    "eos_token_id",
    "bos_token_id",
    "pad_token_id",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "max_new_tokens",
    "max_length",
)
"""The generation config's fields that change what a plain `generate` returns."""


def serving_contract(tokenizer: PreTrainedTokenizerBase, generation: GenerationConfig) -> dict[str, Any]:
    """The contract of a tokenizer and generation config (JSON-ready)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    config = generation.to_dict()
    return {
        "chat_template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "stop_tokens": [str(t) for t in tokenizer.convert_ids_to_tokens(stop_token_ids(tokenizer))],
        "generation_config": {name: config.get(name) for name in GENERATION_FIELDS},
    }


def contract_differences(trained: dict[str, Any], exported: dict[str, Any]) -> list[str]:
    """`field: trained X, exported Y` for every field that differs (generation config fields by name)."""
    out = []
    for key in trained:
        if key == "generation_config":
            for name, value in trained[key].items():
                other = exported[key].get(name)
                if value != other:
                    out.append(f"generation_config.{name}: trained {value!r}, exported {other!r}")
        elif trained[key] != exported.get(key):
            out.append(f"{key}: trained {trained[key]!r}, exported {exported.get(key)!r}")
    return out

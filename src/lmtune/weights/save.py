"""Write a model (or an unmerged adapter) as a standard folder: safetensors weights, tokenizer files with
the chat template, and a generation config that stops at the end-of-turn token."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune import methods
from lmtune.errors import LmtuneError
from lmtune.runtime.stops import stop_token_ids

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerBase

    from lmtune.config.methods import AnyMethod

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
"""Weight files that would need an unpickler to load; an export must contain none."""


def chat_generation_config(
    base: GenerationConfig | None, tokenizer: PreTrainedTokenizerBase
) -> GenerationConfig:
    """The base model's generation config with eos set to the end-of-turn token (plus the tokenizer's
    eos when different) and pad set, so a plain `generate` stops where a chat reply ends."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import GenerationConfig

    config = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
    stops = stop_token_ids(tokenizer)
    config.eos_token_id = stops[0] if len(stops) == 1 else stops
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id
    return config


def save_folder(
    model: Any, tokenizer: PreTrainedTokenizerBase, out: Path, method: AnyMethod | None = None
) -> dict[str, str]:
    """Save `model` with `tokenizer` into `out`, replacing what was there only once the new folder is
    complete. With `method`, `model` is the unmerged trained model, saved in its method's own layout
    (e.g. only the adapter); without, a plain transformers model.

    Returns:
        {weight file name: sha256} of the safetensors files written.

    Raises:
        LmtuneError: the saved folder holds no safetensors weights, or a pickle-based weight file.
    """
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    generation = chat_generation_config(getattr(model, "generation_config", None), tokenizer)
    # transformers 5 always writes safetensors; PEFT still takes the flag (and defaults to it).
    if method is not None:
        methods.save_weights(model, method, tmp)
        generation.save_pretrained(tmp)
    else:
        model.generation_config = generation
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    hashes = _check_weights(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return hashes


def _check_weights(folder: Path) -> dict[str, str]:
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise LmtuneError(
            f"{folder}: export wrote pickle-based weights {pickled}; only safetensors is allowed"
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise LmtuneError(f"{folder}: export wrote no safetensors weights")
    return {p.name: _sha256(p) for p in weights}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

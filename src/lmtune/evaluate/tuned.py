"""Load a run's trained weights: base + PEFT adapter folder, or a full model folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lmtune.config.model import ModelConfig
from lmtune.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Tuned:
    """The trained model in memory."""

    model: PreTrainedModel
    """A PeftModel (adapter active) for adapter folders, else the full model."""
    tokenizer: PreTrainedTokenizerBase
    is_adapter: bool
    weights: Path


def is_adapter_folder(path: Path) -> bool:
    """Whether `path` holds a PEFT adapter (rather than a full model)."""
    return (path / "adapter_config.json").is_file()


def device() -> str:
    """Where evaluation runs: CUDA when present."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_weights_tokenizer(weights: Path, base: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the weights (training saves it with its chat template), else the base's."""
    from transformers import AutoTokenizer

    from lmtune.models.load import load_tokenizer

    if not (weights / "tokenizer_config.json").is_file():
        return load_tokenizer(base)
    tok = AutoTokenizer.from_pretrained(weights, trust_remote_code=base.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_full(path: Path, base: ModelConfig) -> PreTrainedModel:
    """A full model folder, in the run's dtype, on the evaluation device, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, base.dtype), trust_remote_code=base.trust_remote_code
        )
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot load model folder ({exc})") from None
    return model.to(device()).eval()  # type: ignore[arg-type]


def load_base(base: ModelConfig) -> PreTrainedModel:
    """The base model of the run, on the evaluation device, in eval mode."""
    from lmtune.models.load import load_model

    return load_model(base).to(device()).eval()  # type: ignore[arg-type]


def load_tuned(weights: Path, base: ModelConfig) -> Tuned:
    """Load trained weights: an adapter folder is applied to the base model with PEFT (adapter active);
    any other folder is loaded as a full model.

    Raises:
        ModelLoadError: `weights` is not a folder with an adapter or a model.
    """
    if is_adapter_folder(weights):
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(load_base(base), weights, is_trainable=False)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{weights}: cannot load adapter ({exc})") from None
        # A PeftModel forwards every attribute (generate, config, ...) to the model it wraps.
        wrapped = cast("PreTrainedModel", model.eval())
        return Tuned(wrapped, load_weights_tokenizer(weights, base), True, weights)
    if (weights / "config.json").is_file():
        return Tuned(load_full(weights, base), load_weights_tokenizer(weights, base), False, weights)
    raise ModelLoadError(
        f"{weights}: no trained weights (no adapter_config.json or config.json); run `lmtune train` first"
    )

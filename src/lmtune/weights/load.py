"""Load a run's trained weights through its method, and the base model beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lmtune import methods
from lmtune.config.model import ModelConfig
from lmtune.errors import ModelLoadError
from lmtune.runtime.chat_templates import fit_embeddings
from lmtune.runtime.device import inference_device
from lmtune.runtime.load import (
    causal_lm,
    folder_tokenizer,
    load_model,
    load_tokenizer,
    resolve_model_path,
    torch_dtype,
)

if TYPE_CHECKING:
    from lmtune.config.run import WeightsSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Tuned:
    """The trained model in memory."""

    model: PreTrainedModel
    """The model as its method loads it (e.g. a PeftModel with the adapter active)."""
    tokenizer: PreTrainedTokenizerBase
    is_adapter: bool
    weights: Path


def load_weights_tokenizer(weights: Path, base: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the weights (training saves it with its chat template), else the base's."""
    if not (weights / "tokenizer_config.json").is_file():
        return load_tokenizer(base)
    return folder_tokenizer(weights, trust_remote_code=base.trust_remote_code)


def load_full(path: Path, base: ModelConfig) -> PreTrainedModel:
    """A full model folder, in the run's dtype, on the evaluation device, in eval mode."""
    try:
        model = causal_lm(path, torch_dtype(base.dtype), trust_remote_code=base.trust_remote_code)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot load model folder ({exc})") from None
    return model.to(inference_device()).eval()  # type: ignore[arg-type]


def load_base(base: ModelConfig, vocab_size: int | None = None) -> PreTrainedModel:
    """The base model of the run, on the evaluation device, in eval mode; with `vocab_size` (the run's
    tokenizer), its embeddings grown to that many rows when they have fewer (tokens a chat template
    added: the base never learnt them)."""

    model = load_model(base)
    if vocab_size is not None:
        fit_embeddings(model, vocab_size)
    return model.to(inference_device()).eval()  # type: ignore[arg-type]


def load_tuned(weights: Path, spec: WeightsSpec) -> Tuned:
    """Load a run's trained weights through its method (`lmtune.methods.load_for_inference`): an
    adapter goes on top of the base model, whole weights load on their own.

    Raises:
        ModelLoadError: `weights` holds no trained weights.
    """

    if not weights.is_dir() or not any(weights.iterdir()):
        raise ModelLoadError(
            f"{weights}: no trained weights (missing or empty folder); run `lmtune train` first"
        )
    base_dir = resolve_model_path(spec.model.path)
    try:
        model = methods.load_for_inference(base_dir, weights, spec.method, spec.model.dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: cannot load the trained weights ({exc})") from None
    model = model.to(inference_device()).eval()
    # A PeftModel forwards every attribute (generate, config, ...) to the model it wraps.
    return Tuned(
        cast("PreTrainedModel", model),
        load_weights_tokenizer(weights, spec.model),
        methods.is_adapter(spec.method),
        weights,
    )

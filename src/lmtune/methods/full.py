"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.config.methods.full import FullConfig
from lmtune.runtime.load import causal_lm, torch_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel, TrainerCallback


def prepare(model: PreTrainedModel, cfg: FullConfig) -> PreTrainedModel:
    """Make every parameter trainable."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def trains(name: str, cfg: FullConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: every parameter does."""
    return True


def save(model: PreTrainedModel, cfg: FullConfig, out_dir: Path) -> None:
    """Write the whole model as a standard safetensors folder (config + generation config included)."""
    model.save_pretrained(out_dir)


def load(
    base_dir: str | Path, weights_dir: str | Path, cfg: FullConfig, dtype: str = "float32"
) -> PreTrainedModel:
    """Load the saved full model; the base folder is not needed (the weights folder is a whole model)."""

    return causal_lm(weights_dir, torch_dtype(dtype))


def base_view(model: PreTrainedModel, cfg: FullConfig) -> None:
    """Every weight changed: the base must be loaded on its own."""
    return None


def merge(model: PreTrainedModel, cfg: FullConfig) -> PreTrainedModel:
    """Nothing to fold in: the trained model already is the merged model."""
    return model


def param_groups(model: PreTrainedModel, cfg: FullConfig, learning_rate: float) -> None:
    """The trainer's default: every trainable parameter at one learning rate."""
    return None


def callbacks(model: PreTrainedModel, cfg: FullConfig) -> list[TrainerCallback]:
    """Nothing to do during training."""
    return []

"""How weights become trainable. Each method: a tagged config + `prepare(model, cfg)`, joined here.

Adding a method = a new module, an entry in `MethodConfig`, a case in `prepare`; the contract suite in
tests/contracts then covers it automatically through `ALL_METHODS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, assert_never

from pydantic import Field

from lmtune.methods import full, lora
from lmtune.methods.full import FullConfig
from lmtune.methods.lora import LoraConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

MethodConfig = Annotated[FullConfig | LoraConfig, Field(discriminator="type")]

ALL_METHODS: tuple[FullConfig | LoraConfig, ...] = (FullConfig(), LoraConfig(rank=4, alpha=8))
"""One default instance of every method, for the contract suite."""


def prepare(model: torch.nn.Module, cfg: FullConfig | LoraConfig) -> torch.nn.Module:
    """Make `model` trainable according to `cfg`."""
    match cfg:
        case FullConfig():
            return full.prepare(model, cfg)  # type: ignore[arg-type]
        case LoraConfig():
            return lora.prepare(model, cfg)  # type: ignore[arg-type]
        case _:
            assert_never(cfg)


def is_adapter(cfg: FullConfig | LoraConfig) -> bool:
    """Whether the method saves an adapter (base stays untouched) rather than full weights."""
    match cfg:
        case FullConfig():
            return False
        case LoraConfig():
            return True
        case _:
            assert_never(cfg)


def mergeable(cfg: FullConfig | LoraConfig) -> bool:
    """Whether `merge` can fold the trained weights into a plain model with the same outputs."""
    match cfg:
        case FullConfig():
            return True
        case LoraConfig():
            return True
        case _:
            assert_never(cfg)


def trains(name: str, cfg: FullConfig | LoraConfig) -> bool:
    """Whether the parameter called `name` (as in `model.named_parameters()` after `prepare`) should train."""
    match cfg:
        case FullConfig():
            return full.trains(name, cfg)
        case LoraConfig():
            return lora.trains(name, cfg)
        case _:
            assert_never(cfg)


def save_weights(model: torch.nn.Module, cfg: FullConfig | LoraConfig, out_dir: str | Path) -> None:
    """Write the trained weights in the method's standard layout (safetensors): an adapter or a model."""
    out = Path(out_dir)
    match cfg:
        case FullConfig():
            full.save(model, cfg, out)  # type: ignore[arg-type]
        case LoraConfig():
            lora.save(model, cfg, out)  # type: ignore[arg-type]
        case _:
            assert_never(cfg)


def load_for_inference(
    base_dir: str | Path, weights_dir: str | Path, cfg: FullConfig | LoraConfig, dtype: str = "float32"
) -> torch.nn.Module:
    """Load what `save_weights` wrote (on top of the base model in `base_dir` where the method needs it),
    in eval mode."""
    model: torch.nn.Module
    match cfg:
        case FullConfig():
            model = full.load(base_dir, weights_dir, cfg, dtype)
        case LoraConfig():
            model = lora.load(base_dir, weights_dir, cfg, dtype)
        case _:
            assert_never(cfg)
    return model.eval()


def merge(model: torch.nn.Module, cfg: FullConfig | LoraConfig) -> PreTrainedModel:
    """A plain transformers model computing the same function as the trained `model` (see `mergeable`)."""
    match cfg:
        case FullConfig():
            return full.merge(model, cfg)  # type: ignore[arg-type]
        case LoraConfig():
            return lora.merge(model, cfg)  # type: ignore[arg-type]
        case _:
            assert_never(cfg)

"""How weights become trainable. Each method is a module with a tagged config and the functions of
`MethodModule`; this package joins the configs in one discriminated union and dispatches through one
exhaustive `match` (`module_for`).

Adding a method = a new module, an entry in `AnyMethod` and `ALL_METHODS`, a case in `module_for`; the
contract suite in tests/contracts then covers it automatically.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, assert_never

from pydantic import Field

from lmtune.methods import (
    freeze,
    full,
    hft,
    ia3,
    loha,
    lokr,
    lora,
    lora_experts,
    memory_experts,
    prefix_tuning,
    prompt_tuning,
    upcycle,
    vera,
)
from lmtune.methods.freeze import FreezeConfig
from lmtune.methods.full import FullConfig
from lmtune.methods.hft import HftConfig
from lmtune.methods.ia3 import Ia3Config
from lmtune.methods.loha import LohaConfig
from lmtune.methods.lokr import LokrConfig
from lmtune.methods.lora import LoraConfig
from lmtune.methods.lora_experts import LoraExpertsConfig
from lmtune.methods.memory_experts import MemoryExpertsConfig
from lmtune.methods.prefix_tuning import PrefixTuningConfig
from lmtune.methods.prompt_tuning import PromptTuningConfig
from lmtune.methods.upcycle import UpcycleConfig
from lmtune.methods.vera import VeraConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, TrainerCallback

AnyMethod = (
    FullConfig
    | LoraConfig
    | MemoryExpertsConfig
    | FreezeConfig
    | Ia3Config
    | PromptTuningConfig
    | PrefixTuningConfig
    | VeraConfig
    | LohaConfig
    | LokrConfig
    | LoraExpertsConfig
    | UpcycleConfig
    | HftConfig
)
MethodConfig = Annotated[AnyMethod, Field(discriminator="type")]

ALL_METHODS: tuple[AnyMethod, ...] = (
    FullConfig(),
    HftConfig(round_steps=2),
    LoraConfig(rank=4, alpha=8),
    LoraConfig(rank=4, alpha=8, use_dora=True),
    LoraConfig(rank=4, alpha=8, init="pissa", use_rslora=True),
    LoraConfig(rank=4, alpha=8, init="olora"),
    LoraConfig(rank=4, alpha=8, init="gaussian", loraplus_lr_ratio=4),
    FreezeConfig(trainable=["model.layers.1", "lm_head"]),
    Ia3Config(
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        feedforward_modules=["down_proj"],
    ),
    PromptTuningConfig(num_virtual_tokens=32),
    PrefixTuningConfig(num_virtual_tokens=8),
    VeraConfig(rank=16, target_modules="all-linear"),
    LohaConfig(rank=4, alpha=8),
    LokrConfig(rank=4, alpha=8),
    MemoryExpertsConfig(layers=[0, 1], num_keys=16, topk=4, key_dim=16),
    LoraExpertsConfig(num_experts=3, rank=4, alpha=8),
    UpcycleConfig(num_experts=3, top_k=2),
)
"""One small instance of every method, for the contract suite."""


class MethodModule(Protocol):
    """What every method module provides (each function takes that module's own config and the model
    type its `prepare` returns, hence `Any` here)."""

    def prepare(self, model: Any, cfg: Any) -> torch.nn.Module:
        """Make the intended parameters trainable (wrapping the model if the method needs to)."""
        ...

    def trains(self, name: str, cfg: Any) -> bool:
        """Whether parameter `name` (as in `named_parameters()` after `prepare`) is meant to train."""
        ...

    def is_adapter(self, cfg: Any) -> bool:
        """Whether the run saves an adapter on top of the base (`adapter/`) rather than a whole model."""
        ...

    def mergeable(self, cfg: Any) -> bool:
        """Whether `merge` can fold the trained weights into a plain model with the same outputs."""
        ...

    def save(self, model: Any, cfg: Any, out_dir: Path) -> None:
        """Write the trained weights (safetensors) in the method's standard layout."""
        ...

    def load(self, base_dir: str | Path, weights_dir: str | Path, cfg: Any, dtype: str) -> torch.nn.Module:
        """Load what `save` wrote, on top of the base model where the method needs it."""
        ...

    def merge(self, model: Any, cfg: Any) -> PreTrainedModel:
        """A plain transformers model computing the same function as the trained `model`."""
        ...

    def base_view(self, model: Any, cfg: Any) -> AbstractContextManager[Any] | None:
        """A context in which the trained `model` computes the base model's function (adapters
        disabled), or None when the base must be loaded on its own."""
        ...

    def param_groups(self, model: Any, cfg: Any, learning_rate: float) -> list[dict[str, Any]] | None:
        """Optimizer parameter groups when the method needs its own (e.g. per-group learning rates),
        or None for the trainer's default (every trainable parameter at `learning_rate`)."""
        ...

    def callbacks(self, model: Any, cfg: Any) -> list[TrainerCallback]:
        """transformers TrainerCallbacks the method needs during training (e.g. to re-pick what
        trains each round); empty for most methods."""
        ...


def module_for(cfg: AnyMethod) -> MethodModule:
    """The module implementing `cfg`'s method (the one exhaustive dispatch)."""
    match cfg:
        case FullConfig():
            return full
        case HftConfig():
            return hft
        case LoraConfig():
            return lora
        case FreezeConfig():
            return freeze
        case Ia3Config():
            return ia3
        case PromptTuningConfig():
            return prompt_tuning
        case PrefixTuningConfig():
            return prefix_tuning
        case VeraConfig():
            return vera
        case LohaConfig():
            return loha
        case LokrConfig():
            return lokr
        case MemoryExpertsConfig():
            return memory_experts
        case LoraExpertsConfig():
            return lora_experts
        case UpcycleConfig():
            return upcycle
        case _:
            assert_never(cfg)


def prepare(model: PreTrainedModel, cfg: AnyMethod) -> torch.nn.Module:
    """Make `model` trainable according to `cfg`."""
    return module_for(cfg).prepare(model, cfg)


def trains(name: str, cfg: AnyMethod) -> bool:
    """Whether the parameter called `name` (as in `model.named_parameters()` after `prepare`) should train."""
    return module_for(cfg).trains(name, cfg)


def is_adapter(cfg: AnyMethod) -> bool:
    """Whether the method saves an adapter (base stays untouched) rather than full weights."""
    return module_for(cfg).is_adapter(cfg)


def mergeable(cfg: AnyMethod) -> bool:
    """Whether `merge` can fold the trained weights into a plain model with the same outputs."""
    return module_for(cfg).mergeable(cfg)


def save_weights(model: torch.nn.Module, cfg: AnyMethod, out_dir: str | Path) -> None:
    """Write the trained weights in the method's standard layout (safetensors): an adapter or a model."""
    module_for(cfg).save(model, cfg, Path(out_dir))


def load_for_inference(
    base_dir: str | Path, weights_dir: str | Path, cfg: AnyMethod, dtype: str = "float32"
) -> torch.nn.Module:
    """Load what `save_weights` wrote (on top of the base model in `base_dir` where the method needs it),
    in eval mode."""
    return module_for(cfg).load(base_dir, weights_dir, cfg, dtype).eval()


def merge(model: torch.nn.Module, cfg: AnyMethod) -> PreTrainedModel:
    """A plain transformers model computing the same function as the trained `model` (see `mergeable`)."""
    return module_for(cfg).merge(model, cfg)


def base_view(model: torch.nn.Module, cfg: AnyMethod) -> AbstractContextManager[Any] | None:
    """A context in which `model` computes the base model's function, or None (load the base apart)."""
    return module_for(cfg).base_view(model, cfg)


def param_groups(model: torch.nn.Module, cfg: AnyMethod, learning_rate: float) -> list[dict[str, Any]] | None:
    """The method's own optimizer parameter groups, or None for the trainer's default."""
    return module_for(cfg).param_groups(model, cfg, learning_rate)


def callbacks(model: torch.nn.Module, cfg: AnyMethod) -> list[TrainerCallback]:
    """TrainerCallbacks the method needs during training."""
    return module_for(cfg).callbacks(model, cfg)

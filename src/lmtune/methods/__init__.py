"""How weights become trainable. Each method is a module with a tagged config and the functions of
`MethodModule`; this package joins the configs in one discriminated union and dispatches through one
exhaustive `match` (`module_for`).

Adding a method = a new module, an entry in `AnyMethod` and `ALL_METHODS`, a case in `module_for`; the
contract suite in tests/contracts then covers it automatically.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from lmtune.config.methods import (
    AnyMethod,
    FreezeConfig,
    FullConfig,
    HftConfig,
    Ia3Config,
    LohaConfig,
    LokrConfig,
    LoraConfig,
    LoraExpertsConfig,
    MemoryExpertsConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
    UpcycleConfig,
    VeraConfig,
)
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

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, TrainerCallback


class MethodModule(Protocol):
    """What every method module provides (each function takes that module's own config and the model
    type its `prepare` returns, hence `Any` here)."""

    def prepare(self, model: Any, cfg: Any) -> torch.nn.Module:
        """Make the intended parameters trainable (wrapping the model if the method needs to)."""
        ...

    def trains(self, name: str, cfg: Any) -> bool:
        """Whether parameter `name` (as in `named_parameters()` after `prepare`) is meant to train."""
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


def prepare(model: PreTrainedModel, cfg: AnyMethod, train_tokens: Sequence[int] = ()) -> torch.nn.Module:
    """Make `model` trainable according to `cfg`.

    `train_tokens`: token ids whose embedding rows should train as well (a chat template's tokens, new
    in the vocabulary or never trained in a base model). LoRA trains them (PEFT trainable tokens, saved
    with the adapter); full fine-tuning trains every row anyway; the other methods leave them as they
    are (see `holds_new_tokens` for tokens added to the vocabulary).
    """
    if train_tokens and isinstance(cfg, LoraConfig):
        return lora.prepare(model, cfg, train_tokens)
    return module_for(cfg).prepare(model, cfg)


def holds_new_tokens(cfg: AnyMethod) -> bool:
    """Whether the method's saved weights keep embedding rows added to the vocabulary: LoRA trains and
    saves them (trainable tokens); a method that saves a whole model saves them with it. Other adapters
    keep only their own weights, so the new rows would be neither trained nor reproduced on loading."""
    return not cfg.is_adapter or isinstance(cfg, LoraConfig)


def trains(name: str, cfg: AnyMethod) -> bool:
    """Whether the parameter called `name` (as in `model.named_parameters()` after `prepare`) should train."""
    return module_for(cfg).trains(name, cfg)


def is_adapter(cfg: AnyMethod) -> bool:
    """Whether the method saves an adapter (base stays untouched) rather than full weights."""
    return cfg.is_adapter


def mergeable(cfg: AnyMethod) -> bool:
    """Whether `merge` can fold the trained weights into a plain model with the same outputs."""
    return cfg.mergeable


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

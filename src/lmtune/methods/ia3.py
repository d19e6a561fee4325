"""(IA)^3 (Liu et al., 2022) through PEFT: learned vectors that rescale chosen activations elementwise,
the base model frozen. The smallest adapter here (one vector per adapted layer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from lmtune.config.base import StrictModel
from lmtune.methods import peft_adapter
from lmtune.methods.peft_adapter import (
    base_view,
    callbacks,
    is_adapter,
    load,
    merge,
    mergeable,
    param_groups,
    save,
)

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = [
    "Ia3Config",
    "base_view",
    "callbacks",
    "is_adapter",
    "load",
    "merge",
    "mergeable",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


class Ia3Config(StrictModel):
    """Rescale the keys, values and feed-forward activations by learned vectors l: y = l * (W x) (or
    W (l * x) in feed-forward layers). With the default layers 57.6 K numbers train on SmolLM2-135M
    (0.04% of its weights, vs 4.9 M for LoRA at rank 16), so optimizer memory and checkpoint size are
    tiny; it needs a higher learning rate than LoRA (the paper: 3e-3; a few 1e-2 on small data) and
    learns less. Merges into the weights."""

    type: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = None
    """Linear layers whose output (or, for `feedforward_modules`, input) is rescaled; none: PEFT's
    choice for the architecture (Llama-style: k_proj, v_proj, down_proj, as in the paper)."""
    feedforward_modules: list[str] | None = None
    """Which of `target_modules` are feed-forward layers, rescaled on their input; needs
    `target_modules` (none with `target_modules` set: no feed-forward layer)."""

    @model_validator(mode="after")
    def _feedforward_within_targets(self) -> Self:
        ff = self.feedforward_modules
        if ff is not None and (self.target_modules is None or not set(ff) <= set(self.target_modules)):
            raise PydanticCustomError(
                "ia3_modules",
                "feedforward_modules must be a subset of target_modules (set both), got {ff}",
                {"ff": ff},
            )
        return self


def prepare(model: PreTrainedModel, cfg: Ia3Config) -> PeftModel:
    """Wrap `model` with (IA)^3 vectors (initialised to 1: the model starts unchanged)."""
    from peft import IA3Config

    feedforward = cfg.feedforward_modules
    if feedforward is None and cfg.target_modules is not None:
        feedforward = []
    peft_cfg = IA3Config(
        target_modules=cfg.target_modules, feedforward_modules=feedforward, task_type="CAUSAL_LM"
    )
    return peft_adapter.wrap(model, peft_cfg)


def trains(name: str, cfg: Ia3Config) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the (IA)^3 vectors."""
    return peft_adapter.trains_any(name, (".ia3_l.",))

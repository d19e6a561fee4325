"""Config of IA3 (implementation: lmtune.methods.ia3)."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from lmtune.config.methods.base import MethodBase


class Ia3Config(MethodBase):
    """Rescale the keys, values and feed-forward activations by learned vectors l: y = l * (W x) (or
    W (l * x) in feed-forward layers). With the default layers 57.6 K numbers train on SmolLM2-135M
    (0.04% of its weights, vs 4.9 M for LoRA at rank 16), so optimizer memory and checkpoint size are
    tiny; it needs a higher learning rate than LoRA (the paper: 3e-3; a few 1e-2 on small data) and
    learns less. Merges into the weights."""

    type: Literal["ia3"] = "ia3"
    is_adapter: ClassVar[bool] = True
    quantizable: ClassVar[bool] = True
    gathers_from_shards: ClassVar[bool] = True
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

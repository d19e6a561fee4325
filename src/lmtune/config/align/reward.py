"""Config of reward-model training (implementation: lmtune.align.reward)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from lmtune.config.align.base import AlignBase
from lmtune.config.methods.full import FullConfig
from lmtune.config.methods.lora import LoraConfig


class RewardConfig(AlignBase):
    """A reward model from preference pairs: scores a (prompt, answer) so chosen > rejected. For PPO, for
    ranking or filtering samples; costs one forward pass per answer. Method: `lora` (the score head
    trains fully) or `full`."""

    type: Literal["reward"] = "reward"
    center_rewards_coefficient: float | None = Field(default=None, ge=0)
    """Weight of a penalty on the mean squared reward, keeping rewards centred on zero (none: off)."""

    @model_validator(mode="after")
    def _method_fits(self) -> Self:
        if not isinstance(self.method, LoraConfig | FullConfig):
            raise ValueError(
                f"align.method: a reward model trains with `lora` or `full`, not `{self.method.type}`"
            )
        return self

"""Fields the sampling objectives share (GRPO, RLOO); implementation: lmtune.align.online."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from lmtune.config.align.base import AlignBase
from lmtune.config.align.rewards import RewardSpec


class OnlineRlBase(AlignBase):
    """Fields of the sampling objectives (GRPO, RLOO). `trainer.batch_size` counts completions:
    prompts per step x `num_generations`."""

    rewards: list[RewardSpec] = Field(min_length=1)
    """Verifiable rewards, summed with their weights (see docs/alignment.md)."""
    num_generations: int = Field(default=4, ge=2)
    """Completions sampled per prompt (the group whose rewards are compared)."""
    max_completion_length: int = Field(default=128, ge=1)
    """Longest sampled completion, in tokens."""
    temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling threshold."""
    epsilon: float = Field(default=0.2, gt=0)
    """Clipping range of the policy ratio."""

    @model_validator(mode="after")
    def _groups_fill_batches(self) -> Self:
        if self.trainer.batch_size % self.num_generations:
            raise ValueError(
                f"align.trainer.batch_size ({self.trainer.batch_size}) counts completions and must be a "
                f"multiple of align.num_generations ({self.num_generations})"
            )
        return self

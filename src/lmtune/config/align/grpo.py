"""Config of the GRPO objective (implementation: lmtune.align.grpo)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.align.online import OnlineRlBase


class GrpoConfig(OnlineRlBase):
    """GRPO: online RL from verifiable rewards (answer checks, format, length) with no value model; the
    group's mean reward is the baseline. Costs `num_generations` sampled completions per prompt per step
    (generation dominates on CPU)."""

    type: Literal["grpo"] = "grpo"
    beta: float = Field(default=0.0, ge=0)
    """KL coefficient to the reference (the policy with its adapter disabled); 0 skips the reference."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide advantages by the group's reward std (`group`), the batch's (`batch`), or not (`none`)."""
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"
    """How token losses are averaged (see docs/alignment.md); `dapo`: over all completion tokens."""

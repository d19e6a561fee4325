"""Config of the RLOO objective (implementation: lmtune.align.rloo)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.align.online import OnlineRlBase


class RlooConfig(OnlineRlBase):
    """RLOO: online RL from verifiable rewards with a leave-one-out baseline and a KL penalty folded
    into the reward. Same costs as GRPO."""

    type: Literal["rloo"] = "rloo"
    beta: float = Field(default=0.05, ge=0)
    """KL coefficient to the reference (the policy with its adapter disabled); 0 skips the reference."""

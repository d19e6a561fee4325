"""REINFORCE Leave-One-Out on TRL's `RLOOTrainer`: each completion's baseline is the mean reward of the
other completions of its prompt (`lmtune.align.policy_losses.rloo_advantages`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.align.online import OnlineRlBase, run_online

if TYPE_CHECKING:
    from lmtune.align.rewards import RewardFunction
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig


class RlooConfig(OnlineRlBase):
    """RLOO: online RL from verifiable rewards with a leave-one-out baseline and a KL penalty folded
    into the reward. Same costs as GRPO."""

    type: Literal["rloo"] = "rloo"
    beta: float = Field(default=0.05, ge=0)
    """KL coefficient to the reference (the policy with its adapter disabled); 0 skips the reference."""


def run(
    cfg: RunConfig, objective: RlooConfig, resume: bool = False, extra_rewards: Sequence[RewardFunction] = ()
) -> AlignResult:
    """Train the policy with RLOO on `objective.data` prompts."""
    from trl import RLOOConfig as TrlRlooConfig
    from trl import RLOOTrainer

    return run_online(
        cfg, objective, (TrlRlooConfig, RLOOTrainer), {"beta": objective.beta}, resume, extra_rewards
    )

"""Group Relative Policy Optimisation on TRL's `GRPOTrainer`: for each prompt, sample a group of
completions, score them with verifiable rewards, and push up those above the group's mean reward
(advantage math: `lmtune.align.policy_losses.group_advantages` / `grpo_token_loss`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.align.online import OnlineRlBase, run_online

if TYPE_CHECKING:
    from lmtune.align.rewards import RewardFunction
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig


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


def run(
    cfg: RunConfig, objective: GrpoConfig, resume: bool = False, extra_rewards: Sequence[RewardFunction] = ()
) -> AlignResult:
    """Train the policy with GRPO on `objective.data` prompts; `extra_rewards` adds Python reward
    callables to the configured ones."""
    from trl import GRPOConfig as TrlGrpoConfig
    from trl import GRPOTrainer

    args = {
        "beta": objective.beta,
        "scale_rewards": objective.scale_rewards,
        "loss_type": objective.loss_type,
    }
    return run_online(cfg, objective, (TrlGrpoConfig, GRPOTrainer), args, resume, extra_rewards)

"""Group Relative Policy Optimisation on TRL's `GRPOTrainer`: for each prompt, sample a group of
completions, score them with verifiable rewards, and push up those above the group's mean reward.
The advantages and the loss are TRL's own (`GRPOTrainer`, `scale_rewards` group | batch | none,
`loss_type` dapo | grpo | bnpo | dr_grpo), checked against the closed forms in
`tests/unit/align/test_losses_vs_trl.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lmtune.align.online import run_online
from lmtune.config.align.grpo import GrpoConfig

if TYPE_CHECKING:
    from lmtune.align.rewards import RewardFunction
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(
    cfg: RunConfig, objective: GrpoConfig, resume: bool = False, extra_rewards: Sequence[RewardFunction] = ()
) -> AlignResult:
    """Train the policy with GRPO on `objective.data` prompts; `extra_rewards` adds Python reward
    callables to the configured ones."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl import GRPOConfig as TrlGrpoConfig
    from trl import GRPOTrainer

    args = {
        "beta": objective.beta,
        "scale_rewards": objective.scale_rewards,
        "loss_type": objective.loss_type,
    }
    return run_online(cfg, objective, (TrlGrpoConfig, GRPOTrainer), args, resume, extra_rewards)

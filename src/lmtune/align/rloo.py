"""REINFORCE Leave-One-Out on TRL's `RLOOTrainer`: each completion's baseline is the mean reward of the
other completions of its prompt. The advantages (KL folded into the reward) and the clipped loss are
TRL's own (`RLOOTrainer`), checked against the closed forms in `tests/unit/align/test_losses_vs_trl.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lmtune.align.online import run_online
from lmtune.config.align.rloo import RlooConfig

if TYPE_CHECKING:
    from lmtune.align.rewards import RewardFunction
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(
    cfg: RunConfig, objective: RlooConfig, resume: bool = False, extra_rewards: Sequence[RewardFunction] = ()
) -> AlignResult:
    """Train the policy with RLOO on `objective.data` prompts."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl import RLOOConfig as TrlRlooConfig
    from trl import RLOOTrainer

    return run_online(
        cfg, objective, (TrlRlooConfig, RLOOTrainer), {"beta": objective.beta}, resume, extra_rewards
    )

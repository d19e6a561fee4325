"""Direct Preference Optimisation and its loss variants, on TRL's `DPOTrainer`.

The loss math is `lmtune.align.preference_losses.dpo_loss` (tested equal to TRL's within 1e-6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.align.trl_run import run_trl
from lmtune.config.align.dpo import DpoConfig

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(cfg: RunConfig, objective: DpoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with DPO on `objective.data` (preference pairs); see `lmtune.align.trl_run`."""
    from trl import DPOConfig as TrlDpoConfig
    from trl import DPOTrainer

    args = {
        "beta": objective.beta,
        "loss_type": [objective.loss_type],
        "label_smoothing": objective.label_smoothing,
    }
    return run_trl(cfg, objective, (TrlDpoConfig, DPOTrainer), args, resume)

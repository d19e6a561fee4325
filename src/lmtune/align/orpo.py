"""Odds Ratio Preference Optimisation on TRL's experimental `ORPOTrainer`: SFT on the chosen answer plus
an odds-ratio penalty on the rejected one, in one stage and without a reference model. The loss is
TRL's own (`trl.experimental.orpo.ORPOTrainer.odds_ratio_loss` plus its chosen-sequence NLL), checked
against the closed form in `tests/unit/align/test_losses_vs_trl.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.align.trl_run import run_trl
from lmtune.config.align.orpo import OrpoConfig

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(cfg: RunConfig, objective: OrpoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with ORPO on `objective.data` (preference pairs)."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return run_trl(
        cfg, objective, (ORPOConfig, ORPOTrainer), {"beta": objective.beta}, resume, reference=False
    )

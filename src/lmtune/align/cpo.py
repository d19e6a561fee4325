"""Contrastive Preference Optimisation and SimPO on TRL's experimental `CPOTrainer`: reference-free
preference losses on the policy's own (SimPO: length-averaged) log-probabilities, with a behaviour-
cloning term on the chosen answer. The loss is TRL's own (`trl.experimental.cpo.CPOTrainer.cpo_loss`,
`loss_type` sigmoid | hinge | ipo | simpo, plus cpo_alpha x NLL), checked against the closed forms in
`tests/unit/align/test_losses_vs_trl.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.align.trl_run import run_trl
from lmtune.config.align.cpo import CpoConfig

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(cfg: RunConfig, objective: CpoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with CPO or SimPO on `objective.data` (preference pairs)."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = {
        "loss_type": objective.loss_type,
        "beta": objective.beta,
        "simpo_gamma": objective.simpo_gamma,
        "cpo_alpha": objective.cpo_alpha,
        "label_smoothing": objective.label_smoothing,
    }
    return run_trl(cfg, objective, (CPOConfig, CPOTrainer), args, resume, reference=False)

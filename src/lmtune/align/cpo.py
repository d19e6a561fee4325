"""Contrastive Preference Optimisation and SimPO on TRL's experimental `CPOTrainer`: reference-free
preference losses on the policy's own (SimPO: length-averaged) log-probabilities, with a behaviour-
cloning term on the chosen answer (`lmtune.align.preference_losses.cpo_loss`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.align.settings import AlignBase
from lmtune.align.trl_run import run_trl

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig


class CpoConfig(AlignBase):
    """CPO (`loss_type: sigmoid`) or SimPO (`loss_type: simpo`): preference alignment without a reference
    model, so half DPO's forward passes. SimPO scores answers by their mean token log-probability with a
    target margin `simpo_gamma`."""

    type: Literal["cpo"] = "cpo"
    loss_type: Literal["sigmoid", "hinge", "ipo", "simpo"] = "sigmoid"
    """`sigmoid` (CPO), `hinge`, `ipo`, or `simpo` (length-normalised rewards with a margin)."""
    beta: float = Field(default=0.1, gt=0)
    """Scale of the reward difference (SimPO's beta)."""
    simpo_gamma: float = Field(default=0.5, ge=0)
    """SimPO's target reward margin (used with `loss_type: simpo`)."""
    cpo_alpha: float = Field(default=1.0, ge=0)
    """Weight of the NLL (behaviour cloning) term on the chosen answer; 0 gives pure SimPO."""
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)
    """Probability that a preference label is flipped (sigmoid loss)."""


def run(cfg: RunConfig, objective: CpoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with CPO or SimPO on `objective.data` (preference pairs)."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = {
        "loss_type": objective.loss_type,
        "beta": objective.beta,
        "simpo_gamma": objective.simpo_gamma,
        "cpo_alpha": objective.cpo_alpha,
        "label_smoothing": objective.label_smoothing,
    }
    return run_trl(cfg, objective, (CPOConfig, CPOTrainer), args, resume, reference=False)

"""Direct Preference Optimisation and its loss variants, on TRL's `DPOTrainer`.

The loss math is `lmtune.align.preference_losses.dpo_loss` (tested equal to TRL's within 1e-6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.align.settings import AlignBase
from lmtune.align.trl_run import run_trl

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig


class DpoConfig(AlignBase):
    """DPO on preference pairs: raise the policy's log-ratio (to the reference) of the chosen answer over
    the rejected one. For turning pairs into behaviour without a reward model; costs two forward passes
    per pair (policy and reference), the reference with the adapter disabled under an adapter method."""

    type: Literal["dpo"] = "dpo"
    beta: float = Field(default=0.1, gt=0)
    """Strength of the pull towards the reference (IPO: its regularisation parameter)."""
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    """`sigmoid` (DPO), `ipo` (squared loss to 1/(2 beta)), `hinge` (SLiC), `robust` (label-noise robust)."""
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)
    """Probability that a preference label is flipped (sigmoid and robust losses)."""


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

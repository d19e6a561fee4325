"""Config of the DPO objective (implementation: lmtune.align.dpo)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from lmtune.config.align.base import AlignBase


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
    """Probability that a preference label is flipped, for the `robust` loss (TRL's other DPO losses do
    not read it, so it is refused with them)."""

    @model_validator(mode="after")
    def _smoothing_needs_robust(self) -> Self:
        if self.label_smoothing > 0 and self.loss_type != "robust":
            raise ValueError(
                f"label_smoothing ({self.label_smoothing}) only applies to loss_type: robust (TRL's "
                f"'{self.loss_type}' loss ignores it); use loss_type: robust or label_smoothing: 0"
            )
        return self

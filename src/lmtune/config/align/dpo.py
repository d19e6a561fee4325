"""Config of the DPO objective (implementation: lmtune.align.dpo)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
    """Probability that a preference label is flipped (sigmoid and robust losses)."""

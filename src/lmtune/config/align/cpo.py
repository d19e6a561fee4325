"""Config of the CPO objective (implementation: lmtune.align.cpo)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.align.base import AlignBase


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

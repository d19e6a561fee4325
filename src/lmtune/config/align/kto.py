"""Config of the KTO objective (implementation: lmtune.align.kto)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.align.base import AlignBase


class KtoConfig(AlignBase):
    """KTO on `kto`-format data (prompt, completion, label): for thumbs-up/down feedback that never came
    in pairs. Costs like DPO (policy + reference passes, plus a KL estimate on mismatched pairs)."""

    type: Literal["kto"] = "kto"
    beta: float = Field(default=0.1, gt=0)
    """Strength of the pull towards the reference."""
    desirable_weight: float = Field(default=1.0, gt=0)
    """Weight of the desirable (label true) examples' losses."""
    undesirable_weight: float = Field(default=1.0, gt=0)
    """Weight of the undesirable (label false) examples' losses; raise it when bad examples are rarer."""

"""Config of LoKr (implementation: lmtune.methods.lokr)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class LokrConfig(MethodBase):
    """Low-rank Kronecker product: a full-rank-capable update from very few parameters (rank 8 on
    SmolLM2: 0.2 M, vs 4.9 M for LoRA at rank 16). Merges. Not supported on a quantized base."""

    type: Literal["lokr"] = "lokr"
    is_adapter: ClassVar[bool] = True
    gathers_from_shards: ClassVar[bool] = True
    rank: int = Field(default=8, ge=1)
    """Rank r of the low-rank Kronecker factor."""
    alpha: float = Field(default=8, gt=0)
    """Scaling numerator: the update is multiplied by alpha / rank."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or `all-linear` for every linear layer except the output head."""

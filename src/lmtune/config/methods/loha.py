"""Config of LoHa (implementation: lmtune.methods.loha)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class LohaConfig(MethodBase):
    """Low-rank Hadamard product: with two rank-r factors the update can reach rank r^2, for twice LoRA's
    parameters at the same r (rank 8 on SmolLM2: 4.9 M, as many as LoRA at rank 16). Merges. Not
    supported on a quantized base."""

    type: Literal["loha"] = "loha"
    is_adapter: ClassVar[bool] = True
    gathers_from_shards: ClassVar[bool] = True
    rank: int = Field(default=8, ge=1)
    """Rank r of each of the two factors."""
    alpha: float = Field(default=8, gt=0)
    """Scaling numerator: the update is multiplied by alpha / rank."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or `all-linear` for every linear layer except the output head."""

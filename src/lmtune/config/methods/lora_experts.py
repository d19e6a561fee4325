"""Config of LoRA experts (implementation: lmtune.methods.lora_experts)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class LoraExpertsConfig(MethodBase):
    """Mixture of LoRA experts: `num_experts` LoRA updates per target linear, mixed per token by a
    learned softmax gate; the base stays frozen. Costs `num_experts` times the adapter parameters of
    LoRA at the same rank (plus a small gate), every expert runs on every token, and it cannot be merged
    into the base weights."""

    type: Literal["lora_experts"] = "lora_experts"
    is_adapter: ClassVar[bool] = True
    mergeable: ClassVar[bool] = False
    gathers_from_shards: ClassVar[bool] = True
    num_experts: int = Field(default=4, ge=2)
    """LoRA experts K per target linear."""
    rank: int = Field(default=8, ge=1)
    """Rank r of each expert."""
    alpha: float = Field(default=16, gt=0)
    """Scaling numerator: each expert's update is multiplied by alpha / rank."""
    target_modules: list[str] | str = "all-linear"
    """Linear layers to adapt (last component of the module name, e.g. `q_proj`), or `all-linear` for
    every linear layer except the output head."""

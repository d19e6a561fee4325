"""Config of LoRA and its variants (implementation: lmtune.methods.lora)."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from lmtune.config.methods.base import MethodBase

LoraInit = Literal["default", "gaussian", "pissa", "olora"]

REWRITES_BASE: tuple[LoraInit, ...] = ("pissa", "olora")
"""Initialisations that replace each adapted base weight by a residual (see `lora_residual`)."""


class LoraConfig(MethodBase):
    """Low-rank adapters on chosen linear layers; the base model stays frozen."""

    type: Literal["lora"] = "lora"
    is_adapter: ClassVar[bool] = True
    quantizable: ClassVar[bool] = True
    gathers_from_shards: ClassVar[bool] = True
    rank: int = Field(default=16, ge=1)
    """Rank r of each update."""
    alpha: float = Field(default=32, gt=0)
    """Scaling numerator: the update is multiplied by alpha / rank."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the adapter input."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or `all-linear` for every linear layer except the output head."""
    target_parameters: list[str] | None = None
    """Parameter names to adapt directly, for weights that are not linear layers: the fused 3-D expert
    weights of mixture-of-experts models, e.g. `[mlp.experts.gate_up_proj, mlp.experts.down_proj]`
    (Mixtral, Qwen-MoE in transformers 5), one rank-r update per expert. Needs `dropout: 0`."""
    use_rslora: bool = False
    """rsLoRA (Kalajdzievski, 2023): scale the update by alpha / sqrt(rank) instead of alpha / rank, so
    that higher ranks keep learning at the same speed. Free."""
    init: LoraInit = "default"
    """How A and B start. `default`: A Kaiming-uniform, B = 0 (the update starts at zero); `gaussian`:
    A ~ N(0, 1/rank), B = 0; `pissa` (Meng et al., 2024): A, B from the top-rank singular vectors of
    each weight; `olora` (Buyukakyuz, 2024): A, B from its QR decomposition. pissa and olora replace each
    adapted weight W by the residual W - (alpha/rank) B A (often faster convergence; one SVD/QR per
    layer at start) and save the trained adapter as a plain LoRA of rank 2 x rank on the unchanged base."""
    use_dora: bool = False
    """DoRA (Liu et al., 2024): W' = m (W + s B A) / ||W + s B A|| (column norms), with the magnitude
    vector m trained too; closer to full fine-tuning at low rank, at a slower step than LoRA (the norm of
    every adapted weight is recomputed each step). Merges into the weights like LoRA."""
    loraplus_lr_ratio: float | None = Field(default=None, gt=0)
    """LoRA+ (Hayou et al., 2024): the B matrices learn at `trainer.learning_rate` x this ratio (the paper
    uses 2-16; 16 for its main results), everything else at `trainer.learning_rate`; none: one rate."""

    @model_validator(mode="after")
    def _dora_needs_plain_init(self) -> Self:
        if self.use_dora and self.init in REWRITES_BASE:
            raise PydanticCustomError(
                "lora_combination",
                "use_dora cannot be combined with init '{init}': a DoRA update is not linear in A and B, "
                "so the adapter trained on the residual base cannot be converted for the original base; "
                "use init: default or gaussian with DoRA",
                {"init": self.init},
            )
        return self

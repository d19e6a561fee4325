"""Config of VeRA (implementation: lmtune.methods.vera)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class VeraConfig(MethodBase):
    """Vector-based random-matrix adaptation: trains only rank + out_features numbers per layer (SmolLM2
    defaults: 38.4 K, vs 4.9 M for LoRA at rank 16), at the price of a large shared rank and a higher
    learning rate. The shared random A, B are saved with the adapter. Merges."""

    type: Literal["vera"] = "vera"
    is_adapter: ClassVar[bool] = True
    quantizable: ClassVar[bool] = True
    gathers_from_shards: ClassVar[bool] = True
    rank: int = Field(default=256, ge=1)
    """Rank of the shared random matrices (larger than a LoRA rank: they are not trained)."""
    target_modules: list[str] | str | None = None
    """Linear layers to adapt, or `all-linear`; none: PEFT's choice for the architecture (Llama-style:
    q_proj, v_proj)."""
    d_initial: float = Field(default=0.1, gt=0)
    """Initial value of every entry of the vectors d (b starts at 0, so the update starts at 0)."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the adapter input."""

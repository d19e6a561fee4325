"""Config of MoE upcycling (implementation: lmtune.methods.upcycle)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmtune.config.methods.base import MethodBase

UPCYCLABLE = ("llama", "mistral")
"""`model_type`s whose attention, norms and MLP carry over unchanged into Mixtral / Qwen2-MoE."""


class UpcycleConfig(MethodBase):
    """Dense-to-MoE upcycling: copy each chosen MLP into `num_experts` experts and add a top-k router,
    then train. The model equals the dense one at initialisation; it then holds about `num_experts`
    times the MLP weights (memory and checkpoint size grow accordingly) while each token still runs
    through `top_k` experts."""

    type: Literal["upcycle"] = "upcycle"
    num_experts: int = Field(default=4, ge=2)
    """Experts per upcycled layer (copies of its dense MLP)."""
    top_k: int = Field(default=2, ge=1)
    """Experts each token is routed to; their router probabilities are renormalised to sum to 1."""
    layers: list[int] | None = None
    """Decoder layers (0-based) to upcycle; none means every layer (a Mixtral model). A subset gives a
    Qwen2-MoE model whose other layers stay dense."""
    router_init_std: float = Field(default=0.02, ge=0)
    """Std of the normal initialisation of the router weights (breaks the symmetry between experts)."""
    expert_noise: float = Field(default=0.0, ge=0)
    """Gaussian noise added to each expert copy, relative to the std of the dense weight. 0 keeps the
    upcycled model exactly equal to the dense one at initialisation."""
    train: Literal["all", "moe"] = "all"
    """What trains: `all` (every weight) or `moe` (only the upcycled MoE blocks: experts and routers;
    attention, embeddings, norms and dense layers stay frozen)."""

    @model_validator(mode="after")
    def _check(self) -> UpcycleConfig:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must be at most num_experts ({self.num_experts})")
        if self.layers is not None:
            if not self.layers:
                raise ValueError("layers must name at least one layer (or be left out for every layer)")
            if min(self.layers) < 0 or len(set(self.layers)) != len(self.layers):
                raise ValueError(f"layers must be distinct non-negative indices, got {self.layers}")
        return self

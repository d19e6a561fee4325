"""Config of memory experts (implementation: lmtune.methods.memory_experts)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from lmtune.config.methods.base import MethodBase


class MemoryExpertsConfig(MethodBase):
    """Memory experts: a large bank of small experts (one value vector each) per chosen block, read by
    top-k product-key routing and added to the block's output; the base stays frozen. For injecting
    many facts with little effect on everything else. Costs num_keys² x hidden parameters per block
    (plus the query and keys); cannot be merged, so the export carries the base and the memory."""

    type: Literal["memory_experts"] = "memory_experts"
    mergeable: ClassVar[bool] = False
    layers: list[int] = Field(default_factory=lambda: [-4], min_length=1)
    """Decoder blocks that get a memory layer, 0-based; negative indices count from the last block."""
    num_keys: int = Field(default=128, ge=2)
    """Sub-keys per half of the product key: each memory layer holds num_keys² experts."""
    topk: int = Field(default=32, ge=1)
    """Experts each token reads (at most num_keys); their values are mixed by the softmax of their scores."""
    key_dim: int = Field(default=128, ge=2)
    """Width of the routing query (even: each half of the product key gets key_dim / 2)."""
    value_dim: int = Field(default=64, ge=1)
    """Width of each expert's value vector (one projection shared by the experts maps it to the hidden
    size)."""
    value_lr_ratio: float = Field(default=300.0, gt=0)
    """The values train at `trainer.learning_rate` x this ratio; the query, keys and shared projection at
    the learning rate itself. A value is updated only on the tokens that read it, so it must learn from a
    few large steps; the routing is shared by every token, and fast routing raised the loss on ordinary
    text (see docs/methods.md)."""

    gate: bool = False
    """Multiply each memory layer's output by a learned per-token gate, sigmoid(w . (h / r - c) + b) (one
    weight per hidden unit and a bias, trained at the learning rate), so the memory can stay silent on
    text it does not store. It learns to shut only where training shows it ordinary text: mix general
    data into the training set (see docs/methods.md)."""
    query_noise: float = Field(default=0.0, ge=0)
    """In training only, add Gaussian noise of this standard deviation to every routing query (whose
    entries start at unit variance), so a fact is also written into the experts next to the ones its
    training phrasings reach, where a new phrasing's query may land. 0 (the default): no noise. Measured
    at 0.5 it hurt: held-out recall 19.5 % against 89.5 % without (docs/methods.md)."""

    @model_validator(mode="after")
    def _check(self) -> MemoryExpertsConfig:
        if self.topk > self.num_keys:
            raise ValueError(f"topk ({self.topk}) must be at most num_keys ({self.num_keys})")
        if self.key_dim % 2:
            raise ValueError(f"key_dim must be even (two halves of the product key), got {self.key_dim}")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must not repeat a block, got {self.layers}")
        return self

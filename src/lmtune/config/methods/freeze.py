"""Config of full fine-tuning of chosen parameters only (implementation: lmtune.methods.freeze)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class FreezeConfig(MethodBase):
    """Train only the listed modules; the rest of the model stays frozen. Memory for gradients and AdamW
    state scales with what is trained (e.g. the last 2 of SmolLM2's 30 layers: 7.1 M weights, 5.3% of
    them), and the result is a whole model, mergeable and servable like full fine-tuning."""

    type: Literal["freeze"] = "freeze"
    trainable: list[str] = Field(min_length=1)
    """Module names (as in `model.named_modules()`) whose parameters train, e.g.
    `["model.layers.28", "model.layers.29", "lm_head"]`; `*` matches any run of characters, e.g.
    `model.layers.*.mlp` trains every MLP. Every entry must match at least one parameter. On a model with
    tied embeddings `lm_head` and `model.embed_tokens` are one tensor: training either trains both."""

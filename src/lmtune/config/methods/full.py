"""Config of full fine-tuning (implementation: lmtune.methods.full)."""

from __future__ import annotations

from typing import ClassVar, Literal

from lmtune.config.methods.base import MethodBase


class FullConfig(MethodBase):
    """Train every weight of the model. Highest quality ceiling, highest memory (weights + grads +
    two AdamW moments)."""

    type: Literal["full"] = "full"
    gathers_from_shards: ClassVar[bool] = True

"""Config of prefix tuning (implementation: lmtune.methods.prefix_tuning)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class PrefixTuningConfig(MethodBase):
    """Learn `num_virtual_tokens` key and value vectors for every layer (2 x layers x tokens x kv-width
    numbers: 0.23 M for SmolLM2 at 20 tokens), seen by every position as if they preceded the prompt.
    More expressive than prompt tuning at a similar size; every request pays for the longer attention.
    Not mergeable: exported as an adapter (PEFT)."""

    type: Literal["prefix_tuning"] = "prefix_tuning"
    is_adapter: ClassVar[bool] = True
    mergeable: ClassVar[bool] = False
    quantizable: ClassVar[bool] = True
    virtual_tokens: ClassVar[bool] = True
    gathers_from_shards: ClassVar[bool] = True
    num_virtual_tokens: int = Field(default=20, ge=1)
    """Prefix length in every layer."""
    projection: bool = False
    """Reparameterise the prefixes through a two-layer MLP while training (as in the paper, for stabler
    optimisation); the saved adapter holds the projected prefixes, so inference costs the same."""

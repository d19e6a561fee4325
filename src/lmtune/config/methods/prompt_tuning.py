"""Config of prompt tuning (implementation: lmtune.methods.prompt_tuning)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class PromptTuningConfig(MethodBase):
    """Learn `num_virtual_tokens` input embeddings prepended to every prompt (num_virtual_tokens x hidden
    numbers: ~12 K for SmolLM2 at 20 tokens). Cheapest to store; every request pays for the extra
    tokens, and it works best on large models. Not mergeable: exported as an adapter (PEFT)."""

    type: Literal["prompt_tuning"] = "prompt_tuning"
    is_adapter: ClassVar[bool] = True
    mergeable: ClassVar[bool] = False
    quantizable: ClassVar[bool] = True
    virtual_tokens: ClassVar[bool] = True
    gathers_from_shards: ClassVar[bool] = True
    num_virtual_tokens: int = Field(default=20, ge=1)
    """Virtual tokens prepended to every input."""
    init_text: str | None = None
    """Start the virtual tokens from the embeddings of this text's tokens (repeated to fill
    `num_virtual_tokens`), e.g. a task instruction; none: embeddings of randomly sampled vocabulary
    tokens."""

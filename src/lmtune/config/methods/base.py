"""What every method config is: a tagged, frozen config that also states the method's capabilities, so
that the run config can check combinations without importing any implementation."""

from __future__ import annotations

from typing import ClassVar

from lmtune.config.base import StrictModel


class MethodBase(StrictModel):
    """Base of every method config. The class variables are facts about the method, not settings."""

    type: str
    """The method (each method's config narrows it to its own tag)."""

    is_adapter: ClassVar[bool] = False
    """The run saves an adapter on top of the untouched base (`adapter/`) rather than a whole model."""
    mergeable: ClassVar[bool] = True
    """`merge` folds the trained weights into a plain transformers model with the same outputs."""
    quantizable: ClassVar[bool] = False
    """The method trains on a bitsandbytes-quantized base (PEFT wraps its 4-bit/8-bit layers)."""
    virtual_tokens: ClassVar[bool] = False
    """The method prepends learned virtual tokens to every row (so it cannot train on packed rows)."""
    gathers_from_shards: ClassVar[bool] = False
    """Its trained weights can be gathered from FSDP / ZeRO-3 shards and saved (an adapter, or whole
    weights in the standard layout); methods that save a format of their own cannot."""

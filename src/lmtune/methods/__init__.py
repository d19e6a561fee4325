"""How weights become trainable. Each method: a tagged config + `prepare(model, cfg)`, joined here.

Adding a method = a new module, an entry in `MethodConfig`, a case in `prepare`; the contract suite in
tests/contracts then covers it automatically through `ALL_METHODS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, assert_never

from pydantic import Field

from lmtune.methods import full, lora
from lmtune.methods.full import FullConfig
from lmtune.methods.lora import LoraConfig

if TYPE_CHECKING:
    import torch

MethodConfig = Annotated[FullConfig | LoraConfig, Field(discriminator="type")]

ALL_METHODS: tuple[FullConfig | LoraConfig, ...] = (FullConfig(), LoraConfig(rank=4, alpha=8))
"""One default instance of every method, for the contract suite."""


def prepare(model: torch.nn.Module, cfg: FullConfig | LoraConfig) -> torch.nn.Module:
    """Make `model` trainable according to `cfg`."""
    match cfg:
        case FullConfig():
            return full.prepare(model, cfg)  # type: ignore[arg-type]
        case LoraConfig():
            return lora.prepare(model, cfg)  # type: ignore[arg-type]
        case _:
            assert_never(cfg)


def is_adapter(cfg: FullConfig | LoraConfig) -> bool:
    """Whether the method saves an adapter (base stays untouched) rather than full weights."""
    match cfg:
        case FullConfig():
            return False
        case LoraConfig():
            return True
        case _:
            assert_never(cfg)

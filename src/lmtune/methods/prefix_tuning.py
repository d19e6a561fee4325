"""Prefix tuning (Li & Liang, 2021) through PEFT: trained key/value vectors prepended in every attention
layer (a learned past), the model itself untouched."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.config.base import StrictModel
from lmtune.errors import ConfigError
from lmtune.methods import peft_adapter
from lmtune.methods.peft_adapter import base_view, callbacks, is_adapter, load, param_groups, save

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = [
    "PrefixTuningConfig",
    "base_view",
    "callbacks",
    "is_adapter",
    "load",
    "merge",
    "mergeable",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


class PrefixTuningConfig(StrictModel):
    """Learn `num_virtual_tokens` key and value vectors for every layer (2 x layers x tokens x kv-width
    numbers: 0.23 M for SmolLM2 at 20 tokens), seen by every position as if they preceded the prompt.
    More expressive than prompt tuning at a similar size; every request pays for the longer attention.
    Not mergeable: exported as an adapter (PEFT)."""

    type: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(default=20, ge=1)
    """Prefix length in every layer."""
    projection: bool = False
    """Reparameterise the prefixes through a two-layer MLP while training (as in the paper, for stabler
    optimisation); the saved adapter holds the projected prefixes, so inference costs the same."""


def prepare(model: PreTrainedModel, cfg: PrefixTuningConfig) -> PeftModel:
    """Wrap `model` with trainable per-layer prefixes."""
    from peft import PrefixTuningConfig as PeftPrefixTuningConfig

    peft_cfg = PeftPrefixTuningConfig(
        num_virtual_tokens=cfg.num_virtual_tokens,
        prefix_projection=cfg.projection,
        encoder_hidden_size=model.config.hidden_size,
        task_type="CAUSAL_LM",
    )
    return peft_adapter.wrap(model, peft_cfg)


def trains(name: str, cfg: PrefixTuningConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the prefix encoder."""
    return name.startswith("prompt_encoder.")


def mergeable(cfg: PrefixTuningConfig) -> bool:
    """No: the prefixes are extra attention keys and values, not a change of weights."""
    return False


def merge(model: PeftModel, cfg: PrefixTuningConfig) -> PreTrainedModel:
    """Not possible (see `mergeable`).

    Raises:
        ConfigError: always.
    """
    raise ConfigError(
        "method prefix_tuning cannot be merged: its prefixes are extra attention keys and values, not "
        "weights (the adapter is exported instead)"
    )

"""Prefix tuning (Li & Liang, 2021) through PEFT: trained key/value vectors prepended in every attention
layer (a learned past), the model itself untouched."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.config.methods.prefix_tuning import PrefixTuningConfig
from lmtune.errors import ConfigError
from lmtune.methods import peft_adapter
from lmtune.methods.peft_adapter import base_view, callbacks, load, param_groups, save

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = [
    "PrefixTuningConfig",
    "base_view",
    "callbacks",
    "load",
    "merge",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


def prepare(model: PreTrainedModel, cfg: PrefixTuningConfig) -> PeftModel:
    """Wrap `model` with trainable per-layer prefixes."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
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


def merge(model: PeftModel, cfg: PrefixTuningConfig) -> PreTrainedModel:
    """Not possible (see `mergeable`).

    Raises:
        ConfigError: always.
    """
    raise ConfigError(
        "method prefix_tuning cannot be merged: its prefixes are extra attention keys and values, not "
        "weights (the adapter is exported instead)"
    )

"""Prompt tuning (Lester et al., 2021) through PEFT: trained "virtual token" embeddings prepended to
every input; the model itself is untouched."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.config.methods.prompt_tuning import PromptTuningConfig
from lmtune.errors import ConfigError
from lmtune.methods import peft_adapter
from lmtune.methods.peft_adapter import base_view, callbacks, load, param_groups, save

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = [
    "PromptTuningConfig",
    "base_view",
    "callbacks",
    "load",
    "merge",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


def prepare(model: PreTrainedModel, cfg: PromptTuningConfig) -> PeftModel:
    """Wrap `model` with trainable virtual-token embeddings."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import PromptTuningConfig as PeftPromptTuningConfig
    from peft import PromptTuningInit

    text = {
        "prompt_tuning_init": PromptTuningInit.TEXT,
        "prompt_tuning_init_text": cfg.init_text,
        "tokenizer_name_or_path": model.name_or_path,
    }
    peft_cfg = PeftPromptTuningConfig(
        num_virtual_tokens=cfg.num_virtual_tokens,
        task_type="CAUSAL_LM",
        **(text if cfg.init_text is not None else {"prompt_tuning_init": PromptTuningInit.SAMPLE_VOCAB}),
    )
    return peft_adapter.wrap(model, peft_cfg)


def trains(name: str, cfg: PromptTuningConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the virtual-token embeddings."""
    return name.startswith("prompt_encoder.")


def merge(model: PeftModel, cfg: PromptTuningConfig) -> PreTrainedModel:
    """Not possible (see `mergeable`).

    Raises:
        ConfigError: always.
    """
    raise ConfigError(
        "method prompt_tuning cannot be merged: its virtual tokens are extra inputs, not weights "
        "(the adapter is exported instead)"
    )

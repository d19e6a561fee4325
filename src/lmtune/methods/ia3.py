"""(IA)^3 (Liu et al., 2022) through PEFT: learned vectors that rescale chosen activations elementwise,
the base model frozen. The smallest adapter here (one vector per adapted layer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.config.methods.ia3 import Ia3Config
from lmtune.methods import peft_adapter
from lmtune.methods.peft_adapter import (
    base_view,
    callbacks,
    load,
    merge,
    param_groups,
    save,
)

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = [
    "Ia3Config",
    "base_view",
    "callbacks",
    "load",
    "merge",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


def prepare(model: PreTrainedModel, cfg: Ia3Config) -> PeftModel:
    """Wrap `model` with (IA)^3 vectors (initialised to 1: the model starts unchanged)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import IA3Config

    feedforward = cfg.feedforward_modules
    if feedforward is None and cfg.target_modules is not None:
        feedforward = []
    peft_cfg = IA3Config(
        target_modules=cfg.target_modules, feedforward_modules=feedforward, task_type="CAUSAL_LM"
    )
    return peft_adapter.wrap(model, peft_cfg)


def trains(name: str, cfg: Ia3Config) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the (IA)^3 vectors."""
    return peft_adapter.trains_any(name, (".ia3_l.",))

"""VeRA (Kopiczko et al., 2024) through PEFT: one pair of frozen random matrices A, B shared by every
adapted layer, and per layer two trained scaling vectors: dW = diag(b) B diag(d) A."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.config.methods.vera import VeraConfig
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
    "VeraConfig",
    "base_view",
    "callbacks",
    "load",
    "merge",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


def prepare(model: PreTrainedModel, cfg: VeraConfig) -> PeftModel:
    """Wrap `model` with VeRA (random A, B drawn from a fixed seed and saved with the adapter)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import VeraConfig as PeftVeraConfig

    peft_cfg = PeftVeraConfig(
        r=cfg.rank,
        target_modules=cfg.target_modules,
        d_initial=cfg.d_initial,
        vera_dropout=cfg.dropout,
        save_projection=True,
        task_type="CAUSAL_LM",
    )
    return peft_adapter.wrap(model, peft_cfg)


def trains(name: str, cfg: VeraConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the vectors b and d."""
    return peft_adapter.trains_any(name, (".vera_lambda_b.", ".vera_lambda_d."))

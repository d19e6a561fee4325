"""LoHa (Hyeon-Woo et al., 2022, from LyCORIS) through PEFT: the update is the elementwise (Hadamard)
product of two low-rank matrices, dW = (alpha/r) (B1 A1) * (B2 A2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.config.methods.loha import LohaConfig
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
    "LohaConfig",
    "base_view",
    "callbacks",
    "load",
    "merge",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


def prepare(model: PreTrainedModel, cfg: LohaConfig) -> PeftModel:
    """Wrap `model` with LoHa adapters (one factor of each product starts at 0: the update starts at 0)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import LoHaConfig

    peft_cfg = LoHaConfig(
        r=cfg.rank,
        alpha=cfg.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float scales fine
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return peft_adapter.wrap(model, peft_cfg)


def trains(name: str, cfg: LohaConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the four Hadamard factors."""
    return peft_adapter.trains_any(name, (".hada_w1_a.", ".hada_w1_b.", ".hada_w2_a.", ".hada_w2_b."))

"""LoKr (Yeh et al., 2024, from LyCORIS) through PEFT: the update is a Kronecker product of a small
matrix and a low-rank one, dW = (alpha/r) C kron (B A)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.config.methods.lokr import LokrConfig
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
    "LokrConfig",
    "base_view",
    "callbacks",
    "load",
    "merge",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


def prepare(model: PreTrainedModel, cfg: LokrConfig) -> PeftModel:
    """Wrap `model` with LoKr adapters (the update starts at 0)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import LoKrConfig

    peft_cfg = LoKrConfig(
        r=cfg.rank,
        alpha=cfg.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float scales fine
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return peft_adapter.wrap(model, peft_cfg)


def trains(name: str, cfg: LokrConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the Kronecker factors."""
    return peft_adapter.trains_any(name, (".lokr_w1", ".lokr_w2"))

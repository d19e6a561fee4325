"""VeRA (Kopiczko et al., 2024) through PEFT: one pair of frozen random matrices A, B shared by every
adapted layer, and per layer two trained scaling vectors: dW = diag(b) B diag(d) A."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.config.base import StrictModel
from lmtune.methods import peft_adapter
from lmtune.methods.peft_adapter import (
    base_view,
    callbacks,
    is_adapter,
    load,
    merge,
    mergeable,
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
    "is_adapter",
    "load",
    "merge",
    "mergeable",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


class VeraConfig(StrictModel):
    """Vector-based random-matrix adaptation: trains only rank + out_features numbers per layer (SmolLM2
    defaults: 38.4 K, vs 4.9 M for LoRA at rank 16), at the price of a large shared rank and a higher
    learning rate. The shared random A, B are saved with the adapter. Merges."""

    type: Literal["vera"] = "vera"
    rank: int = Field(default=256, ge=1)
    """Rank of the shared random matrices (larger than a LoRA rank: they are not trained)."""
    target_modules: list[str] | str | None = None
    """Linear layers to adapt, or `all-linear`; none: PEFT's choice for the architecture (Llama-style:
    q_proj, v_proj)."""
    d_initial: float = Field(default=0.1, gt=0)
    """Initial value of every entry of the vectors d (b starts at 0, so the update starts at 0)."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the adapter input."""


def prepare(model: PreTrainedModel, cfg: VeraConfig) -> PeftModel:
    """Wrap `model` with VeRA (random A, B drawn from a fixed seed and saved with the adapter)."""
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

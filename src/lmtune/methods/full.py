"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from lmtune.config.base import StrictModel

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class FullConfig(StrictModel):
    """Train every weight of the model. Highest quality ceiling, highest memory (weights + grads +
    two AdamW moments)."""

    type: Literal["full"] = "full"


def prepare(model: PreTrainedModel, cfg: FullConfig) -> PreTrainedModel:
    """Make every parameter trainable."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model

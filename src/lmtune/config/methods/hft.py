"""Config of Half Fine-Tuning (implementation: lmtune.methods.hft)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.methods.base import MethodBase


class HftConfig(MethodBase):
    """Half Fine-Tuning (Hui et al., 2024): each round, a random half of every transformer block's
    parameter groups trains and the other half stays frozen, to forget less of what the model knew than
    full fine-tuning does (measured in docs/methods.md). Costs: full fine-tuning's weights and checkpoint
    size; gradients and AdamW moments for half the weights; backward skips the frozen half's weight
    gradients."""

    type: Literal["hft"] = "hft"
    round_steps: int = Field(default=100, ge=1)
    """Optimizer steps per round: every `round_steps` steps a new random half is selected (the paper
    re-selects per training stage; about one epoch's steps is the closest setting)."""

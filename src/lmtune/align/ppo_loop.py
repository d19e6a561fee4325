"""What a PPO step works with (`Loop`), apart from the loop itself (`lmtune.align.ppo`) so that its checkpoint
module can name it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.align.rollout import Sampling, Scorer
from lmtune.align.value_head import ValueHead
from lmtune.config.align.ppo import PpoConfig
from lmtune.config.methods import AnyMethod

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


@dataclass
class Loop:
    """What a PPO step works with."""

    objective: PpoConfig
    method: AnyMethod
    model: torch.nn.Module
    head: ValueHead
    frozen_reference: torch.nn.Module | None
    """A frozen copy of the start model, or None when the policy's base view is the reference."""
    tok: PreTrainedTokenizerBase
    scorer: Scorer
    sampling: Sampling
    optimizer: torch.optim.Optimizer
    scheduler: Any
    params: list[torch.nn.Parameter]
    max_grad_norm: float
    checkpoints: Path

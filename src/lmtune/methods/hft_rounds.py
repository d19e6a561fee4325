"""The TrainerCallback that moves Half Fine-Tuning from round to round (kept apart from `hft.py`, which the
config schema imports, because it needs transformers at import time)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lmtune.methods.hft import HftConfig, apply_round, round_of

log = logging.getLogger(__name__)


class HftRoundCallback(TrainerCallback):
    """Apply round r = floor(global_step / round_steps)'s selection, seeded by the run seed (`args.seed`):
    when training starts (round 0, or the round of the step a resumed run starts from) and after every
    optimizer step that ends a round."""

    def __init__(self, model: torch.nn.Module, cfg: HftConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.round: int | None = None
        """The round applied last (None before training starts)."""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._apply(args, state, kwargs.get("optimizer"))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step % self.cfg.round_steps == 0:
            self._apply(args, state, kwargs.get("optimizer"))

    def _apply(self, args: TrainingArguments, state: TrainerState, optimizer: Any) -> None:
        self.round = round_of(state.global_step, self.cfg.round_steps)
        trainable = apply_round(self.model, self.cfg, args.seed, self.round, optimizer)
        log.info(
            "HFT round %d (from step %d, seed %d): %d of %d parameter tensors train",
            self.round,
            state.global_step,
            args.seed,
            len(trainable),
            sum(1 for _ in self.model.parameters()),
        )

"""Configs of the verifiable rewards for online RL (GRPO, RLOO, PPO), joined in one discriminated union;
each is scored by `lmtune.align.rewards.score`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from lmtune.config.base import StrictModel


class NumericMatchReward(StrictModel):
    """1 when the completion's final number equals the reference answer's (GSM8K `#### N`, or the last
    number), else 0. Prompts without a reference answer score 0."""

    type: Literal["numeric_match"] = "numeric_match"
    weight: float = 1.0
    """Multiplier of this reward in the sum."""


class FormatReward(StrictModel):
    """1 when the completion ends its answer in the `#### N` format, else 0."""

    type: Literal["format"] = "format"
    weight: float = 1.0
    """Multiplier of this reward in the sum."""


class LengthPenalty(StrictModel):
    """-(characters beyond `target_chars`) / `target_chars`, capped at -1: 0 for completions up to the
    target, growing more negative as they run on."""

    type: Literal["length_penalty"] = "length_penalty"
    weight: float = 1.0
    """Multiplier of this reward in the sum."""
    target_chars: int = Field(default=400, ge=1)
    """Length (in characters) beyond which a completion is penalised."""


AnyReward = NumericMatchReward | FormatReward | LengthPenalty

RewardSpec = Annotated[AnyReward, Field(discriminator="type")]

"""Verifiable rewards for online RL (GRPO, RLOO, PPO): typed configs, each scoring completions.

A reward is a config with a `type` tag and a `score(completions, answers)` method returning one float
per completion; `RewardSpec` joins them in a discriminated union. A user-defined reward is a plug-in of
the same shape: a `StrictModel` with its own `type` tag and `score`, added to `AnyReward` — or, from
Python, any `RewardFunction` callable handed to the objective's `run(..., extra_rewards=[...])`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Protocol

from pydantic import Field

from lmtune.config.base import StrictModel
from lmtune.evaluate.metrics import has_answer_format, predicted_answer, reference_answer


class RewardFunction(Protocol):
    """What a reward computes: one float per completion (answers: the reference of each, or None)."""

    def __call__(self, completions: Sequence[str], answers: Sequence[str | None]) -> list[float]: ...


class NumericMatchReward(StrictModel):
    """1 when the completion's final number equals the reference answer's (GSM8K `#### N`, or the last
    number), else 0. Prompts without a reference answer score 0."""

    type: Literal["numeric_match"] = "numeric_match"
    weight: float = 1.0
    """Multiplier of this reward in the sum."""

    def score(self, completions: Sequence[str], answers: Sequence[str | None]) -> list[float]:
        return [
            float(
                a is not None
                and predicted_answer(c) is not None
                and predicted_answer(c) == reference_answer(a)
            )
            for c, a in zip(completions, answers, strict=True)
        ]


class FormatReward(StrictModel):
    """1 when the completion ends its answer in the `#### N` format, else 0."""

    type: Literal["format"] = "format"
    weight: float = 1.0
    """Multiplier of this reward in the sum."""

    def score(self, completions: Sequence[str], answers: Sequence[str | None]) -> list[float]:
        return [float(has_answer_format(c)) for c in completions]


class LengthPenalty(StrictModel):
    """-(characters beyond `target_chars`) / `target_chars`, capped at -1: 0 for completions up to the
    target, growing more negative as they run on."""

    type: Literal["length_penalty"] = "length_penalty"
    weight: float = 1.0
    """Multiplier of this reward in the sum."""
    target_chars: int = Field(default=400, ge=1)
    """Length (in characters) beyond which a completion is penalised."""

    def score(self, completions: Sequence[str], answers: Sequence[str | None]) -> list[float]:
        return [-min(1.0, max(0, len(c) - self.target_chars) / self.target_chars) for c in completions]


AnyReward = NumericMatchReward | FormatReward | LengthPenalty
RewardSpec = Annotated[AnyReward, Field(discriminator="type")]


def total_reward(
    rewards: Sequence[AnyReward],
    completions: Sequence[str],
    answers: Sequence[str | None],
    extra: Sequence[RewardFunction] = (),
) -> list[float]:
    """sum_k weight_k * reward_k(completion) for each completion (`extra` callables with weight 1)."""
    totals = [0.0] * len(completions)
    for spec in rewards:
        for i, value in enumerate(spec.score(completions, answers)):
            totals[i] += spec.weight * value
    for fn in extra:
        for i, value in enumerate(fn(completions, answers)):
            totals[i] += float(value)
    return totals

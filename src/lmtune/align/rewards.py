"""Verifiable rewards for online RL (GRPO, RLOO, PPO): each reward config (`lmtune.config.align.rewards`)
scores completions through one exhaustive `match` (`score`), one float per completion.

A new reward is a config with its own `type` tag added to `AnyReward` and a case in `score` — or, from
Python, any `RewardFunction` callable handed to the objective's `run(..., extra_rewards=[...])`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, assert_never

from lmtune.config.align.rewards import AnyReward, FormatReward, LengthPenalty, NumericMatchReward
from lmtune.runtime.answers import has_answer_format, predicted_answer, reference_answer


class RewardFunction(Protocol):
    """What a reward computes: one float per completion (answers: the reference of each, or None)."""

    def __call__(self, completions: Sequence[str], answers: Sequence[str | None]) -> list[float]: ...


def score(spec: AnyReward, completions: Sequence[str], answers: Sequence[str | None]) -> list[float]:
    """One unweighted value per completion (answers: the reference of each, or None)."""
    match spec:
        case NumericMatchReward():
            return [
                float(
                    a is not None
                    and predicted_answer(c) is not None
                    and predicted_answer(c) == reference_answer(a)
                )
                for c, a in zip(completions, answers, strict=True)
            ]
        case FormatReward():
            return [float(has_answer_format(c)) for c in completions]
        case LengthPenalty():
            return [-min(1.0, max(0, len(c) - spec.target_chars) / spec.target_chars) for c in completions]
        case _:
            assert_never(spec)


def total_reward(
    rewards: Sequence[AnyReward],
    completions: Sequence[str],
    answers: Sequence[str | None],
    extra: Sequence[RewardFunction] = (),
) -> list[float]:
    """sum_k weight_k * reward_k(completion) for each completion (`extra` callables with weight 1)."""
    totals = [0.0] * len(completions)
    for spec in rewards:
        for i, value in enumerate(score(spec, completions, answers)):
            totals[i] += spec.weight * value
    for fn in extra:
        for i, value in enumerate(fn(completions, answers)):
            totals[i] += float(value)
    return totals

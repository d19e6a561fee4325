"""What GRPO and RLOO share: sampled groups of completions per prompt scored by verifiable rewards, on
TRL's online trainers (the held-out mean reward before and after: `AlignBase.eval_before`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lmtune.align.rewards import RewardFunction, total_reward
from lmtune.align.trl_run import run_trl
from lmtune.config.align.online import OnlineRlBase

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def trl_reward(specs: Sequence[Any], extra: Sequence[RewardFunction]) -> Any:
    """The rewards as one TRL reward function: (prompts, completions, **columns) -> floats, reading the
    reference answer from the dataset's `answer` column when there is one."""

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        answers = columns.get("answer") or [None] * len(texts)
        return total_reward(specs, texts, answers, extra)

    reward.__name__ = "+".join(spec.type for spec in specs) or "reward"
    return reward


def generation_arguments(objective: OnlineRlBase) -> dict[str, Any]:
    """TRL config fields for sampling (recorded in the run's config, so a resumed run samples alike)."""
    return {
        "num_generations": objective.num_generations,
        "max_completion_length": objective.max_completion_length,
        "temperature": objective.temperature,
        "top_p": objective.top_p,
        "epsilon": objective.epsilon,
    }


def run_online(
    cfg: RunConfig,
    objective: OnlineRlBase,
    trainer_classes: tuple[type, type],
    objective_args: dict[str, Any],
    resume: bool,
    extra_rewards: Sequence[RewardFunction],
    trainer_kwargs: dict[str, Any] | None = None,
) -> AlignResult:
    """Train with a TRL online trainer (`trainer_classes` = (its config class, its trainer class)) on
    `objective.data` prompts, scored by `objective.rewards` plus the `extra_rewards` callables;
    `trainer_kwargs` are more keyword arguments of the trainer (e.g. GRPO's `rollout_func`)."""
    return run_trl(
        cfg,
        objective,
        trainer_classes,
        {**generation_arguments(objective), **objective_args},
        resume,
        kind="prompt",
        reference=False,  # TRL's online trainers use the adapter-disabled policy when beta > 0
        trainer_kwargs={
            "reward_funcs": [trl_reward(objective.rewards, extra_rewards)],
            **(trainer_kwargs or {}),
        },
    )

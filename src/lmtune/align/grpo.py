"""Group Relative Policy Optimisation on TRL's `GRPOTrainer`: for each prompt, sample a group of
completions, score them with verifiable rewards, and push up those above the group's mean reward.
The advantages and the loss are TRL's own (`GRPOTrainer`, `scale_rewards` group | batch | none,
`loss_type` dapo | grpo | bnpo | dr_grpo), checked against the closed forms in
`tests/unit/align/test_losses_vs_trl.py`. The groups are sampled by the runtime's generation engine
(`lmtune.runtime.generation.Generator`, the one PPO, evaluation and serving use), handed to TRL through
its `rollout_func` hook."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lmtune.align.online import run_online
from lmtune.config.align.grpo import GrpoConfig
from lmtune.runtime.generation import Generator, SamplingParams

if TYPE_CHECKING:
    from lmtune.align.rewards import RewardFunction
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(
    cfg: RunConfig, objective: GrpoConfig, resume: bool = False, extra_rewards: Sequence[RewardFunction] = ()
) -> AlignResult:
    """Train the policy with GRPO on `objective.data` prompts; `extra_rewards` adds Python reward
    callables to the configured ones."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl import GRPOConfig as TrlGrpoConfig
    from trl import GRPOTrainer

    args = {
        "beta": objective.beta,
        "scale_rewards": objective.scale_rewards,
        "loss_type": objective.loss_type,
    }
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # `rollout_func` is marked experimental
    return run_online(
        cfg, objective, (TrlGrpoConfig, GRPOTrainer), args, resume, extra_rewards, {"rollout_func": rollout}
    )


def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
    """TRL's `rollout_func`: one completion per prompt (TRL's sampler already repeats each prompt
    `num_generations` times) from the policy, through the runtime's engine with the trainer's
    sampling settings, ending at the trainer's eos ids (the token included, as TRL's own path does).
    Prompts are tokenised by TRL (`_tokenize_prompts`: its chat template and kwargs)."""
    # deferred: trl, torch only when this runs (keeps `import lmtune...` light)
    import torch
    from trl.models.utils import unwrap_model_for_generation

    prompt_ids, _images, _fields = trainer._tokenize_prompts(prompts)
    params = SamplingParams(
        max_new_tokens=trainer.max_completion_length,
        temperature=trainer.temperature,
        top_p=trainer.top_p,
        top_k=trainer.top_k or 0,
    )
    with (
        unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model,
        torch.no_grad(),
    ):
        done = Generator(model, trainer.processing_class, trainer.eos_token_ids).generate(prompt_ids, params)
    return {"prompt_ids": prompt_ids, "completion_ids": [d.token_ids for d in done], "logprobs": None}

"""PPO's rollout: which prompts a step takes, sampling completions from the policy with a seed fixed by
(run seed, step), scoring them (reward model and/or verifiable rewards), and the per-token rewards.

Every random choice of a step is a function of (seed, step) alone, so a run resumed at step k samples
exactly what the uninterrupted run sampled at step k. Imports torch at module level: import this
module only inside a stage's `run()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lmtune.align.reward import load_scorer
from lmtune.align.rewards import RewardFunction, total_reward
from lmtune.config.align.rewards import AnyReward
from lmtune.data.encoding.template import render, stop_token_ids
from lmtune.data.records import Conversation
from lmtune.runtime.generation import Generator, SamplingParams
from lmtune.runtime.load import folder_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_SEED_STRIDE = 1_000_003
EVAL_STEP = -1
"""The "step" whose seed samples the held-out evaluation (the same before and after training)."""


@dataclass(frozen=True)
class Sampling:
    """How completions are sampled (recorded in every checkpoint)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Batch:
    """Prompts and their sampled completions as `[prompt | completion]` rows.

    `input_ids` [B, P + T]: left-padded prompts, then completions padded after their end;
    `attention_mask` [B, P + T]: 1 on real tokens (through the completion's stop token);
    `mask` [B, T]: the completion tokens that count.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor
    prompt_length: int
    completions: list[str]


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step`'s sampling and mini-batch order: seed * 1000003 + step (mod 2^63)."""
    return (seed * _SEED_STRIDE + step) % (1 << 63)


def prompt_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Rows of a dataset of `n` prompts taken at `step` (1-based): the `batch_size` positions after
    (step - 1) * batch_size in an endless stream of seeded permutations of range(n), one per epoch
    (epoch e uses the permutation of a torch.Generator seeded with seed + e)."""
    start = (step - 1) * batch_size
    rows: list[int] = []
    epoch = -1
    order: list[int] = []
    for position in range(start, start + batch_size):
        if position // n != epoch:
            epoch = position // n
            g = torch.Generator().manual_seed(seed + epoch)
            order = torch.randperm(n, generator=g).tolist()
        rows.append(order[position % n])
    return rows


def encode_prompts(
    tok: PreTrainedTokenizerBase, prompts: Sequence[Conversation]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render each prompt with the generation prompt and left-pad: (ids [B, P], attention mask [B, P])."""
    texts = [render(tok, list(p), add_generation_prompt=True) for p in prompts]
    rows: list[list[int]] = tok(texts, add_special_tokens=False)["input_ids"]
    width = max(len(r) for r in rows)
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention[i, width - len(row) :] = 1
    return ids, attention


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[Conversation],
    sampling: Sampling,
    step: int,
) -> Batch:
    """Sample one completion per prompt from `model` through the runtime's engine, seeded with
    `step_seed(seed, step)`: the same step always samples the same completions from the same weights,
    and the caller's random state is untouched. A completion ends at any special token that can end a
    turn (`stop_token_ids`). The rows come back on the model's device.
    """
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = (t.to(device) for t in encode_prompts(tok, prompts))
    stops = sorted(stop_token_ids(tok))
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    params = SamplingParams(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=0,
        seed=step_seed(sampling.seed, step),
    )
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids, prompt_mask, strict=True)]
    done = Generator(model, tok, stops).generate(rows, params)
    width = max(1, *(d.completion_tokens for d in done))  # every row stopped at once: one (stop) column
    completion = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    for i, d in enumerate(done):
        completion[i, : d.completion_tokens] = torch.tensor(d.token_ids, dtype=torch.long)
        mask[i, : d.completion_tokens] = 1
    return Batch(
        input_ids=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, mask], dim=1),
        mask=mask,
        prompt_length=prompt_ids.size(1),
        completions=tok.batch_decode(completion, skip_special_tokens=True),
    )


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards of PPO with a KL penalty (Ziegler et al. 2019; TRL's PPO):

        r_t = -kl_coef * KL_t + [t = last counted token] * score

    Args:
        scores: [B] sequence rewards.
        kl: [B, T] per-token KL estimates (logp - ref_logp of the sampled tokens).
        mask: [B, T] completion mask (a prefix of ones per row).
        kl_coef: the KL penalty's weight.

    Returns:
        [B, T] rewards, 0 outside the mask.
    """
    mask = mask.to(kl.dtype)
    rewards = -kl_coef * kl * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rows = torch.arange(rewards.size(0), device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


class Scorer:
    """The sequence reward: a reward model's score of prompt + completion (rendered through the reward
    model's chat template) plus the weighted verifiable rewards against each prompt's reference answer."""

    def __init__(
        self,
        reward_model: str | Path | None,
        rewards: Sequence[AnyReward],
        extra: Sequence[RewardFunction] = (),
        dtype: str = "float32",
        device: torch.device | str = "cpu",
    ) -> None:
        self.rewards = list(rewards)
        self.extra = list(extra)
        self.model: PreTrainedModel | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        if reward_model is not None:
            self.model = load_scorer(reward_model, dtype)
            self.model.to(device)  # type: ignore[arg-type]  # transformers types `.to` narrowly
            self.tokenizer = folder_tokenizer(reward_model)

    def __call__(
        self, prompts: Sequence[Conversation], completions: Sequence[str], answers: Sequence[str | None]
    ) -> torch.Tensor:
        """[B] rewards (float32, on the CPU)."""
        totals = torch.tensor(
            total_reward(self.rewards, completions, answers, self.extra), dtype=torch.float32
        )
        if self.model is not None:
            totals += self._model_scores(prompts, completions)
        return totals

    @torch.no_grad()
    def _model_scores(self, prompts: Sequence[Conversation], completions: Sequence[str]) -> torch.Tensor:
        assert self.model is not None and self.tokenizer is not None
        texts = [
            render(self.tokenizer, [*p, {"role": "assistant", "content": c}])
            for p, c in zip(prompts, completions, strict=True)
        ]
        batch = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return self.model(**batch.to(self.model.device)).logits[:, 0].float().cpu()

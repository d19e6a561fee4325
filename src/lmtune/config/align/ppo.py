"""Config of PPO (implementation: lmtune.align.ppo)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from lmtune.config.align.base import AlignBase
from lmtune.config.align.rewards import RewardSpec


class PpoConfig(AlignBase):
    """PPO on prompts: sample completions, score them, and raise the score while a KL penalty keeps the
    policy near the reference (the start model). A learned value head baselines each token (GAE). For a
    reward model's preferences or verifiable rewards; costs a generation plus three forward passes per
    rollout (policy, reference, and the updates), the reference with the adapter disabled under an
    adapter method."""

    type: Literal["ppo"] = "ppo"
    reward_model: str | None = None
    """Folder of a reward model (a `type: reward` run's `<run>/align/model`); its score of prompt +
    completion is the sequence reward."""
    rewards: list[RewardSpec] = Field(default_factory=list)
    """Verifiable rewards (numeric_match, format, length_penalty), summed with their weights; used alone
    when there is no reward model, or added to its score."""
    kl_coef: float = Field(default=0.05, ge=0)
    """Weight of the per-token KL penalty to the reference in the reward."""
    gamma: float = Field(default=1.0, gt=0, le=1)
    """Discount of future rewards."""
    lam: float = Field(default=0.95, ge=0, le=1)
    """GAE's lambda: 1 = Monte-Carlo returns, 0 = one-step temporal differences."""
    clip_eps: float = Field(default=0.2, gt=0)
    """Clip range of the policy's importance ratio."""
    value_clip: float = Field(default=0.2, gt=0)
    """Clip range of the value update around the rollout's values."""
    vf_coef: float = Field(default=0.1, ge=0)
    """Weight of the value loss in the total loss."""
    ppo_epochs: int = Field(default=2, ge=1)
    """Passes of mini-batch updates over each rollout."""
    rollout_batch_size: int = Field(default=8, ge=1)
    """Prompts sampled per step (one completion each)."""
    mini_batch_size: int = Field(default=4, ge=1)
    """Completions per optimizer update (at most `rollout_batch_size`)."""
    max_new_tokens: int = Field(default=64, ge=1)
    """Longest completion sampled, in tokens."""
    temperature: float = Field(default=0.7, gt=0)
    """Sampling temperature (the log-probs are those of the tempered distribution)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling: sample from the smallest set of tokens whose probability reaches top_p."""
    whiten_advantages: bool = True
    """Standardise the advantages over each rollout's completion tokens."""

    @model_validator(mode="after")
    def _ppo_fits(self) -> Self:
        if self.reward_model is None and not self.rewards:
            raise ValueError(
                "no reward: set align.reward_model (a reward model folder) or align.rewards (verifiable "
                "rewards such as numeric_match), or both"
            )
        if self.mini_batch_size > self.rollout_batch_size:
            raise ValueError(
                f"align.mini_batch_size ({self.mini_batch_size}) is larger than align.rollout_batch_size "
                f"({self.rollout_batch_size})"
            )
        return self

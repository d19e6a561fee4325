"""Settings every alignment objective shares: its data, the method that makes weights trainable, the
optimisation loop, and where it starts from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lmtune.config.base import StrictModel
from lmtune.config.data import SourceConfig
from lmtune.config.methods import MethodConfig
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.training import TrainerConfig


class AlignDataConfig(StrictModel):
    """Alignment data: preference pairs, KTO-labelled completions or prompts (see docs/alignment.md)."""

    sources: list[SourceConfig] = Field(default_factory=list)
    """The sources, concatenated in order; their `format` is `preference` (DPO, ORPO, CPO/SimPO, reward
    model), `kto` (KTO) or `prompt` (GRPO, RLOO, PPO)."""
    system_prompt: str | None = None
    """A system message prepended to every prompt that has none."""
    max_prompt_length: int = Field(default=512, ge=8)
    """Longest prompt in tokens; a longer one is rejected with reason `prompt_too_long`."""
    max_length: int = Field(default=1024, ge=16)
    """Longest prompt + answer in tokens: a longer pair (either side) or KTO record is rejected as
    `too_long` (cutting an answer's end could remove what a pair differs in); for prompt data, the
    sampled completions are limited by the objective's `max_completion_length` instead."""
    eval_size: float = Field(default=0.1, ge=0)
    """Held-out part: a fraction of the records when below 1, else a count."""

    @field_validator("sources")
    @classmethod
    def _no_weights(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        """A source `weight` mixes SFT data (`data.mixture`); alignment reads its sources as they are."""
        if any(src.weight is not None for src in sources):
            raise ValueError("`weight` applies to data.sources only; alignment sources are read as they are")
        return sources


def _align_trainer() -> TrainerConfig:
    return TrainerConfig(learning_rate=5e-5, max_steps=50, warmup_steps=0, lr_scheduler="linear")


class AlignBase(StrictModel):
    """Fields of every alignment objective."""

    type: str
    """The objective (each objective's config narrows it to its own tag)."""

    data: AlignDataConfig = Field(default_factory=AlignDataConfig)
    """The objective's data."""
    method: MethodConfig = Field(default_factory=LoraConfig)
    """How the policy's weights become trainable (any method of docs/methods.md). With an adapter
    method the reference model is the policy with its adapter disabled: no second copy in memory."""
    trainer: TrainerConfig = Field(default_factory=_align_trainer)
    """The optimisation loop of this objective (its own steps and learning rate, separate from SFT's)."""
    eval_before: bool = True
    """Also evaluate on the held-out split before training (metrics with a `_before` suffix, e.g.
    `eval_reward_before`), so the run shows what alignment changed; costs one extra evaluation."""
    start_from: Literal["auto", "base", "sft"] = "auto"
    """The model alignment starts from: `sft` = the run's SFT weights merged into the base (an error when
    the run has none), `base` = `model.path`, `auto` = `sft` when the run has SFT weights, else `base`."""

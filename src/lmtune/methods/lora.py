"""LoRA (Hu et al., 2021) through PEFT: frozen base, trainable low-rank updates W + (alpha/r) B A."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.config.base import StrictModel

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, TrainerCallback


class LoraConfig(StrictModel):
    """Low-rank adapters on chosen linear layers; the base model stays frozen."""

    type: Literal["lora"] = "lora"
    rank: int = Field(default=16, ge=1)
    """Rank r of each update."""
    alpha: float = Field(default=32, gt=0)
    """Scaling numerator: the update is multiplied by alpha / rank."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the adapter input."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or `all-linear` for every linear layer except the output head."""


def prepare(model: PreTrainedModel, cfg: LoraConfig) -> PeftModel:
    """Wrap `model` with LoRA adapters; only adapter weights train."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float scales fine
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def trains(name: str, cfg: LoraConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the LoRA A and B matrices."""
    return ".lora_A." in name or ".lora_B." in name


def save(model: PeftModel, cfg: LoraConfig, out_dir: Path) -> None:
    """Write the adapter only (adapter_config.json + adapter_model.safetensors), PEFT's standard layout."""
    model.save_pretrained(str(out_dir))


def load(base_dir: str | Path, weights_dir: str | Path, cfg: LoraConfig, dtype: str = "float32") -> PeftModel:
    """Load the base model from `base_dir` and attach the adapter saved in `weights_dir` (frozen)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=getattr(torch, dtype))
    return PeftModel.from_pretrained(base, str(weights_dir), autocast_adapter_dtype=False)


def is_adapter(cfg: LoraConfig) -> bool:
    """LoRA saves only the adapter; the base stays untouched."""
    return True


def mergeable(cfg: LoraConfig) -> bool:
    """W + (alpha/r) B A folds into W exactly."""
    return True


def base_view(model: PeftModel, cfg: LoraConfig) -> AbstractContextManager[None]:
    """The same model with its adapters disabled computes the base function (no second copy)."""
    return model.disable_adapter()


def merge(model: PeftModel, cfg: LoraConfig) -> PreTrainedModel:
    """Fold W + (alpha/r) B A into each adapted weight and drop the PEFT wrappers."""
    return model.merge_and_unload()


def param_groups(model: PeftModel, cfg: LoraConfig, learning_rate: float) -> None:
    """The trainer's default: every trainable parameter at one learning rate."""
    return None


def callbacks(model: PeftModel, cfg: LoraConfig) -> list[TrainerCallback]:
    """Nothing to do during training."""
    return []

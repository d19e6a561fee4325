"""LoRA (Hu et al., 2021) through PEFT: frozen base, trainable low-rank updates W + (alpha/r) B A, with
its variants as options: rsLoRA scaling, PiSSA / OLoRA / Gaussian initialisation, DoRA, LoRA+ learning
rates, and a quantized base (QLoRA, `model.quantization`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lmtune.config.methods.lora import REWRITES_BASE, LoraConfig, LoraInit
from lmtune.methods import lora_residual, peft_adapter

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel
    from transformers import PreTrainedModel, TrainerCallback

_PEFT_INIT: dict[LoraInit, Literal[True, "gaussian", "pissa", "olora"]] = {
    "default": True,
    "gaussian": "gaussian",
    "pissa": "pissa",
    "olora": "olora",
}


def prepare(model: PreTrainedModel, cfg: LoraConfig, train_tokens: Sequence[int] = ()) -> PeftModel:
    """Wrap `model` with LoRA adapters; only adapter weights train, plus the embedding (and untied
    output-head) rows of `train_tokens` as PEFT trainable tokens (see `peft_adapter.token_targets`)."""
    config = peft_config(cfg)
    if train_tokens:
        config.trainable_token_indices = peft_adapter.token_targets(model, train_tokens)
    wrapped = peft_adapter.wrap(model, config)
    if cfg.init in REWRITES_BASE:
        lora_residual.remember_initial(wrapped)
    return wrapped


def peft_config(cfg: LoraConfig, task_type: str = "CAUSAL_LM") -> PeftLoraConfig:
    """PEFT's LoraConfig for `cfg` (`task_type="SEQ_CLS"` for a reward model: PEFT then trains its score
    head fully)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float scales fine
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        target_parameters=cfg.target_parameters,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        init_lora_weights=_PEFT_INIT[cfg.init],
        task_type=task_type,
    )


def trains(name: str, cfg: LoraConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the LoRA A and B matrices (and
    DoRA's magnitude vectors), and the token rows `prepare` was asked to train."""
    markers = (
        ".lora_A.",
        ".lora_B.",
        peft_adapter.TRAINABLE_TOKENS,
        *((".lora_magnitude_vector.",) if cfg.use_dora else ()),
    )
    return peft_adapter.trains_any(name, markers)


def save(model: PeftModel, cfg: LoraConfig, out_dir: Path) -> None:
    """Write the adapter only (adapter_config.json + adapter_model.safetensors), PEFT's standard layout;
    a PiSSA/OLoRA adapter trained on a rewritten base is saved as a plain LoRA for the original base."""
    peft_adapter.save(model, cfg, out_dir)
    initial = lora_residual.initial_adapter(model)
    if initial is not None:
        lora_residual.save_converted(out_dir, initial)


def load(base_dir: str | Path, weights_dir: str | Path, cfg: LoraConfig, dtype: str = "float32") -> PeftModel:
    """Load the base model from `base_dir` (quantized when the adapter was trained on a quantized base)
    and attach the adapter saved in `weights_dir` (frozen)."""
    return peft_adapter.load(base_dir, weights_dir, cfg, dtype)


def base_view(model: PeftModel, cfg: LoraConfig) -> AbstractContextManager[None] | None:
    """The same model with its adapters disabled computes the base function (no second copy) — except
    right after a PiSSA/OLoRA `prepare`, whose base holds residual weights: then load the base apart."""
    if lora_residual.initial_adapter(model) is not None:
        return None
    return peft_adapter.base_view(model, cfg)


def merge(model: PeftModel, cfg: LoraConfig) -> PreTrainedModel:
    """Fold W + (alpha/r) B A (DoRA: the normalised, rescaled weight) into each adapted weight and drop
    the PEFT wrappers; a 4-bit base is dequantised exactly first (`peft_adapter.merge`)."""
    return peft_adapter.merge(model, cfg)


def param_groups(model: PeftModel, cfg: LoraConfig, learning_rate: float) -> list[dict[str, Any]] | None:
    """With `loraplus_lr_ratio`, two AdamW groups (`loraplus_groups`); else the trainer's default."""
    if cfg.loraplus_lr_ratio is None:
        return None
    return loraplus_groups(model.named_parameters(), learning_rate, cfg.loraplus_lr_ratio)


def loraplus_groups(
    named: Iterable[tuple[str, torch.nn.Parameter]], learning_rate: float, ratio: float
) -> list[dict[str, Any]]:
    """LoRA+ parameter groups: eta_B = ratio x eta for every trainable B matrix, eta for the rest
    (A matrices, DoRA magnitudes). Hayou et al. show that with eta_A = eta_B the update of B is
    sub-optimally slow at large width; a larger eta_B fixes it at no cost."""
    rest: list[torch.nn.Parameter] = []
    b: list[torch.nn.Parameter] = []
    for name, param in named:
        if param.requires_grad:
            (b if ".lora_B." in name else rest).append(param)
    return [
        {"name": "lora", "params": rest, "lr": learning_rate},
        {"name": "lora_B", "params": b, "lr": learning_rate * ratio},
    ]


def callbacks(model: PeftModel, cfg: LoraConfig) -> list[TrainerCallback]:
    """Nothing to do during training."""
    return []

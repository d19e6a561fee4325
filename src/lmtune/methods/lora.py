"""LoRA (Hu et al., 2021) through PEFT: frozen base, trainable low-rank updates W + (alpha/r) B A, with
its variants as options: rsLoRA scaling, PiSSA / OLoRA / Gaussian initialisation, DoRA, LoRA+ learning
rates, and a quantized base (QLoRA, `model.quantization`)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from lmtune.config.base import StrictModel
from lmtune.methods import lora_residual, peft_adapter

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel
    from transformers import PreTrainedModel, TrainerCallback

LoraInit = Literal["default", "gaussian", "pissa", "olora"]
REWRITES_BASE: tuple[LoraInit, ...] = ("pissa", "olora")
"""Initialisations that replace each adapted base weight by a residual (see `lora_residual`)."""
_PEFT_INIT: dict[LoraInit, Literal[True, "gaussian", "pissa", "olora"]] = {
    "default": True,
    "gaussian": "gaussian",
    "pissa": "pissa",
    "olora": "olora",
}


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
    target_parameters: list[str] | None = None
    """Parameter names to adapt directly, for weights that are not linear layers: the fused 3-D expert
    weights of mixture-of-experts models, e.g. `[mlp.experts.gate_up_proj, mlp.experts.down_proj]`
    (Mixtral, Qwen-MoE in transformers 5), one rank-r update per expert. Needs `dropout: 0`."""
    use_rslora: bool = False
    """rsLoRA (Kalajdzievski, 2023): scale the update by alpha / sqrt(rank) instead of alpha / rank, so
    that higher ranks keep learning at the same speed. Free."""
    init: LoraInit = "default"
    """How A and B start. `default`: A Kaiming-uniform, B = 0 (the update starts at zero); `gaussian`:
    A ~ N(0, 1/rank), B = 0; `pissa` (Meng et al., 2024): A, B from the top-rank singular vectors of
    each weight; `olora` (Buyukakyuz, 2024): A, B from its QR decomposition. pissa and olora replace each
    adapted weight W by the residual W - (alpha/rank) B A (often faster convergence; one SVD/QR per
    layer at start) and save the trained adapter as a plain LoRA of rank 2 x rank on the unchanged base."""
    use_dora: bool = False
    """DoRA (Liu et al., 2024): W' = m (W + s B A) / ||W + s B A|| (column norms), with the magnitude
    vector m trained too; closer to full fine-tuning at low rank, at a slower step than LoRA (the norm of
    every adapted weight is recomputed each step). Merges into the weights like LoRA."""
    loraplus_lr_ratio: float | None = Field(default=None, gt=0)
    """LoRA+ (Hayou et al., 2024): the B matrices learn at `trainer.learning_rate` x this ratio (the paper
    uses 2-16; 16 for its main results), everything else at `trainer.learning_rate`; none: one rate."""

    @model_validator(mode="after")
    def _dora_needs_plain_init(self) -> Self:
        if self.use_dora and self.init in REWRITES_BASE:
            raise PydanticCustomError(
                "lora_combination",
                "use_dora cannot be combined with init '{init}': a DoRA update is not linear in A and B, "
                "so the adapter trained on the residual base cannot be converted for the original base; "
                "use init: default or gaussian with DoRA",
                {"init": self.init},
            )
        return self


def prepare(model: PreTrainedModel, cfg: LoraConfig) -> PeftModel:
    """Wrap `model` with LoRA adapters; only adapter weights train."""
    wrapped = peft_adapter.wrap(model, peft_config(cfg))
    if cfg.init in REWRITES_BASE:
        lora_residual.remember_initial(wrapped)
    return wrapped


def peft_config(cfg: LoraConfig, task_type: str = "CAUSAL_LM") -> PeftLoraConfig:
    """PEFT's LoraConfig for `cfg` (`task_type="SEQ_CLS"` for a reward model: PEFT then trains its score
    head fully)."""
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
    DoRA's magnitude vectors)."""
    markers = (".lora_A.", ".lora_B.", *((".lora_magnitude_vector.",) if cfg.use_dora else ()))
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


def is_adapter(cfg: LoraConfig) -> bool:
    """LoRA saves only the adapter; the base stays untouched."""
    return True


def mergeable(cfg: LoraConfig) -> bool:
    """W + (alpha/r) B A folds into W exactly."""
    return True


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

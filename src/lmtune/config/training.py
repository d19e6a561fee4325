"""Stages 3-4 settings: the optimisation loop."""

from typing import Literal

from pydantic import Field

from lmtune.config.base import StrictModel


class TrainerConfig(StrictModel):
    """The training loop (passed to transformers' Trainer)."""

    max_steps: int = Field(default=100, ge=-1)
    """Optimizer steps to run; -1 means run `epochs` epochs."""
    epochs: float = Field(default=1.0, gt=0)
    """Epochs, used when `max_steps` is -1."""
    batch_size: int = Field(default=4, ge=1)
    """Examples per device per micro-batch."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step."""
    learning_rate: float = Field(default=2e-4, gt=0)
    """Peak learning rate."""
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup_steps: int = Field(default=0, ge=0)
    """Linear warm-up steps."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient clipping norm."""
    logging_steps: int = Field(default=5, ge=1)
    """Log training loss to metrics.jsonl every this many steps."""
    save_steps: int = Field(default=50, ge=1)
    """Write a resumable checkpoint every this many steps."""
    save_total_limit: int | None = Field(default=2, ge=1)
    """Keep at most this many checkpoints (oldest removed first)."""
    eval_steps: int | None = Field(default=None, ge=1)
    """Compute eval loss every this many steps; none means only at the end."""
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    """Recompute activations in the backward pass to save memory (about a third more compute). `auto`:
    on only when the preflight's memory estimate says the run does not fit without it (alignment runs:
    off)."""
    liger: bool | Literal["auto"] = "auto"
    """Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) through
    transformers' `use_liger_kernel`; CUDA only, from the `gpu` extra (`pip install 'lmtune[gpu]'`).
    `auto`: on when training on CUDA and the package is installed."""
    compile: bool = False
    """Compile the model with `torch.compile` (transformers' `torch_compile`): slower start, faster steps."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: `auto` picks CUDA when present."""
    memory_limit_gb: float | None = Field(default=None, gt=0)
    """Memory the preflight may plan for; none means what the device reports as available."""
    router_aux_loss_coef: float | None = Field(default=None, ge=0)
    """Mixture-of-experts models only: weight of the router load-balancing loss added to the training
    loss (its unweighted value is logged as `router_aux_loss`); none keeps the model's own value
    (`router_aux_loss_coef` in its config.json); 0 logs it without training on it."""

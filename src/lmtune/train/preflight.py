"""Checks before training that refuse a run which cannot work or would waste compute.

1. Something is trained on: at least one label (after the causal shift) is not -100.
2. Every labelled span ends with a token the model stops on (one of its generation eos ids); otherwise
   the model learns answers that never end and "the model will never stop generating".
3. The estimated peak memory fits in what is available (see `estimate_memory`). With
   `trainer.gradient_checkpointing: auto` (the default) checkpointing is turned on only when the run
   would not fit without it.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmtune import methods
from lmtune.errors import ConfigError, PreflightError
from lmtune.runtime.device import pick_device
from lmtune.train import distributed

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from lmtune.config.run import RunConfig
    from lmtune.config.training import TrainerConfig

IGNORE = -100
GIB = 1 << 30
LOGIT_COPIES = 3
"""float32 vocabulary-sized tensors alive at the peak of a step: the log-softmax output the
cross-entropy keeps for its backward pass, the gradient arriving at it and the gradient of the logits."""
FUSED_LOGIT_BYTES = 10
"""Bytes per element of the logits chunk Liger's fused linear cross-entropy holds: the bf16 logits, and
their float32 copy and gradient."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak training memory in bytes, by part."""

    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations


@dataclass(frozen=True)
class PreflightReport:
    """What the checks saw."""

    rows: int
    trained_tokens: int
    total_tokens: int
    longest_row: int
    eos_ids: tuple[int, ...]
    memory: MemoryEstimate
    gradient_checkpointing: bool
    """Whether training recomputes activations: the setting, or with `auto` whether the run needs it."""
    available_bytes: int
    available_source: str


def check(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    cfg: RunConfig,
    shards: tuple[int, int] = (1, 1),
    local_processes: int = 1,
) -> PreflightReport:
    """Run every check on the prepared (method-wrapped) model and training split.

    `shards`: into how many pieces a sharding engine splits (weights, gradients + optimizer state) per
    process (`distributed.shards`); `local_processes`: training processes on this machine, which share
    its RAM when training on CPU.

    Raises:
        PreflightError: nothing to train on, a labelled span not ending in an eos id, or not enough memory.
    """
    if len(train_dataset) == 0:
        raise PreflightError("the training split is empty: no example to train on")
    labels_rows: list[list[int]] = train_dataset["labels"]
    eos_ids = eos_token_ids(model, tokenizer)
    trained, total, longest = 0, 0, 0
    for index, labels in enumerate(labels_rows):
        total += len(labels)
        longest = max(longest, len(labels))
        trained += sum(1 for label in labels[1:] if label != IGNORE)
        bad = first_bad_span_end(labels, eos_ids, exempt_row_end=_truncated(labels, cfg))
        if bad is not None:
            token = tokenizer.convert_ids_to_tokens(bad)
            names = ", ".join(f"{tokenizer.convert_ids_to_tokens(i)!r} (id {i})" for i in eos_ids)
            raise PreflightError(
                f"training example {index}: a labelled span ends with token {token!r} (id {bad}), not an "
                f"end-of-turn token the model stops on ({names}); the model will never stop generating. "
                "Check the chat template and that each assistant turn ends with the eos token"
            )
    if trained == 0:
        raise PreflightError(
            f"no token would be trained on: every label in the {len(labels_rows)} training examples is -100 "
            "(check the data format and the assistant-only loss mask)"
        )
    batch_tokens = cfg.trainer.batch_size * min(longest, cfg.data.max_length)
    available, source = available_memory(model, cfg)
    if local_processes > 1 and pick_device(cfg.trainer.device) == "cpu":
        available //= local_processes
        source += f", shared by {local_processes} processes"
    fused = liger_on(cfg)  # Liger's kernels
    setting = cfg.trainer.gradient_checkpointing
    checkpointing = setting is True
    memory = estimate_memory(model, batch_tokens, checkpointing, fused_loss=fused, shards=shards)
    if setting == "auto" and memory.total > available:
        # Recomputing activations costs about a third more compute: only when the run would not fit.
        checkpointing = True
        memory = estimate_memory(model, batch_tokens, checkpointing, fused_loss=fused, shards=shards)
    if memory.total > available:
        hint = "" if checkpointing else "turn on trainer.gradient_checkpointing, "
        recomputed = ", with gradient checkpointing" if checkpointing else ""
        raise PreflightError(
            f"estimated peak training memory {memory.total / GIB:.2f} GiB (weights {memory.weights / GIB:.2f}"
            f" + gradients {memory.gradients / GIB:.2f} + optimizer {memory.optimizer / GIB:.2f} + "
            f"activations {memory.activations / GIB:.2f}{recomputed}"
            f") exceeds the {available / GIB:.2f} GiB available ({source}); lower trainer.batch_size or "
            f"data.max_length, {hint}or use a LoRA method"
        )
    return PreflightReport(
        rows=len(labels_rows),
        trained_tokens=trained,
        total_tokens=total,
        longest_row=longest,
        eos_ids=eos_ids,
        memory=memory,
        gradient_checkpointing=checkpointing,
        available_bytes=available,
        available_source=source,
    )


def eos_token_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The ids generation stops on: generation_config.eos_token_id, else the config's or tokenizer's.

    Raises:
        PreflightError: neither the model nor the tokenizer names an eos token.
    """
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None)
        if value is not None:
            return tuple(value) if isinstance(value, list | tuple) else (int(value),)
    if tokenizer.eos_token_id is not None:
        return (int(tokenizer.eos_token_id),)
    raise PreflightError("the model declares no eos token (generation_config.eos_token_id): it cannot stop")


def first_bad_span_end(
    labels: list[int], eos_ids: tuple[int, ...], exempt_row_end: bool = False
) -> int | None:
    """The label that ends the first labelled span whose last token is not an eos id (None when all do).

    A span is a maximal run of labels != -100. With `exempt_row_end`, a span ending at the row's last
    position is allowed (the example was truncated there on purpose).
    """
    n = len(labels)
    for i, label in enumerate(labels):
        if label == IGNORE:
            continue
        ends_span = i + 1 == n or labels[i + 1] == IGNORE
        if ends_span and label not in eos_ids and not (exempt_row_end and i + 1 == n):
            return label
    return None


def _truncated(labels: list[int], cfg: RunConfig) -> bool:
    """A row that `data.truncation: truncate` may have cut: it is exactly `data.max_length` long."""
    return cfg.data.truncation == "truncate" and len(labels) >= cfg.data.max_length


def estimate_memory(
    model: torch.nn.Module,
    batch_tokens: int,
    gradient_checkpointing: bool,
    fused_loss: bool = False,
    shards: tuple[int, int] = (1, 1),
) -> MemoryEstimate:
    """Peak memory of one training step in one process, in bytes.

    weights     = sum over all parameters of numel x bytes
    gradients   = sum over trainable parameters of numel x bytes
    optimizer   = 2 x gradients                  (AdamW: first and second moment, in the parameter dtype)
    activations = T x L x a x b + T x V x 4 x 3
                  with T = batch_size x longest row, L layers, b activation bytes, V vocab and a the
                  activation elements one decoder layer keeps per token (`layer_activation_elements`);
                  the second term is the float32 vocabulary-sized tensors of the loss (`LOGIT_COPIES`).
                  With gradient checkpointing only each layer's input is kept, plus one layer
                  recomputed: T x b x (L x H + a).

    With `fused_loss` (Liger's kernels: fused linear cross-entropy, RMSNorm, SwiGLU, RoPE) the layers keep
    fewer activations (`layer_activation_elements(fused=True)`) and the vocabulary term is replaced by
    what the fused loss holds: the gradient of its input (T x H x b) and one chunk of float32 logits with
    their gradient, chunk x V x 10 bytes, chunk = T / ceil(V / H) rounded up to a power of two (Liger's
    choice). `shards` = (s_w, s_o) divides the weights by s_w and the gradients and optimizer state by
    s_o (FSDP / ZeRO spread them over the processes).

    Checked against measured peaks on CPU (benchmarks/memory_estimate.py) and on an H100
    (benchmarks/train_throughput.py); docs/performance.md has the ratios.
    """
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) // shards[0]
    trainable = [p for p in model.parameters() if p.requires_grad]
    gradients = sum(p.numel() * p.element_size() for p in trainable) // shards[1]
    config: Any = getattr(model, "config", None)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    act_bytes = next(model.parameters()).element_size()
    per_layer = layer_activation_elements(config, fused=fused_loss)
    if gradient_checkpointing:
        kept = batch_tokens * act_bytes * (layers * hidden + per_layer)
    else:
        kept = batch_tokens * act_bytes * layers * per_layer
    if fused_loss:
        chunk = fused_loss_chunk(batch_tokens, vocab, hidden)
        logits = batch_tokens * hidden * act_bytes + chunk * vocab * FUSED_LOGIT_BYTES
    else:
        logits = batch_tokens * vocab * 4 * LOGIT_COPIES
    return MemoryEstimate(weights, gradients, 2 * gradients, kept + logits)


def fused_loss_chunk(tokens: int, vocab: int, hidden: int) -> int:
    """Rows of logits Liger's fused linear cross-entropy computes at once: tokens / ceil(vocab / hidden),
    rounded up to a power of two, so that a chunk's logits are about as large as its input."""
    rows = math.ceil(tokens / max(1, math.ceil(vocab / max(hidden, 1))))
    return 1 << max(0, rows - 1).bit_length()


def layer_activation_elements(config: Any, fused: bool = False) -> int:
    """Elements one decoder layer keeps per token for the backward pass: a = 7 H + 3 kv + 4 I, or with
    Liger's fused kernels (`fused`) a = 6 H + 2 kv + 3 I.

    H hidden size, kv = key/value heads x head size, I the MLP's intermediate size (per token: top-k x
    expert size in a mixture of experts). Counted on a Llama-style layer: the two RMSNorms' inputs and
    outputs (4 H), the query (H) and key/value (2 kv) projections, the rotated query and key the
    attention keeps (H + kv), the attention output (H), and the gated MLP's gate, up, activation and
    product (4 I). The attention kernel keeps no T x T scores (SDPA / flash). Liger's RMSNorm keeps only
    its input, its RoPE keeps neither unrotated query nor key, and its SwiGLU keeps gate and up and
    recomputes the activation: 2 H (inputs) + 2 H (normed outputs, the next projections' input) + H
    (rotated query) + 2 kv (rotated key, value) + H (attention output) + 3 I (gate, up, product).
    """
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    heads = int(getattr(config, "num_attention_heads", 0) or 0) or 1
    kv_heads = int(getattr(config, "num_key_value_heads", 0) or 0) or heads
    head_dim = int(getattr(config, "head_dim", 0) or 0) or hidden // heads
    experts_per_token = int(getattr(config, "num_experts_per_tok", 0) or 0)
    expert_size = int(getattr(config, "moe_intermediate_size", 0) or 0)
    if experts_per_token and expert_size:
        intermediate = experts_per_token * expert_size
    else:
        intermediate = int(getattr(config, "intermediate_size", 0) or 0) * max(experts_per_token, 1)
    intermediate = intermediate or 4 * hidden
    if fused:
        return 6 * hidden + 2 * kv_heads * head_dim + 3 * intermediate
    return 7 * hidden + 3 * kv_heads * head_dim + 4 * intermediate


def available_memory(model: torch.nn.Module, cfg: RunConfig) -> tuple[int, str]:
    """Bytes training may use and where that number came from.

    `trainer.memory_limit_gb` when set; else free CUDA memory (on CUDA) or available RAM (on CPU), plus
    the bytes the model's weights already occupy there (the estimate counts them).
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    if cfg.trainer.memory_limit_gb is not None:
        return int(cfg.trainer.memory_limit_gb * GIB), "trainer.memory_limit_gb"
    device = pick_device(cfg.trainer.device)
    resident = sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type == device)
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free) + resident, "free CUDA memory"
    # deferred: psutil only when this runs (keeps `import lmtune...` light)
    import psutil

    return int(psutil.virtual_memory().available) + resident, "available RAM"


def liger_on(cfg: RunConfig) -> bool:
    """`use_liger` for the run `cfg`: its trainer settings, device and engine."""
    return use_liger(cfg.trainer, pick_device(cfg.trainer.device) == "cuda", sharded_adapter(cfg))


def sharded_adapter(cfg: RunConfig) -> bool:
    """Whether this process trains an adapter over weights FSDP / ZeRO-3 holds sharded."""

    return distributed.weights_sharded() and methods.is_adapter(cfg.method)


def use_liger(t: TrainerConfig, on_cuda: bool, sharded_adapter: bool = False) -> bool:
    """Whether to patch the model with Liger's kernels: `trainer.liger`, with `auto` meaning CUDA + the
    package installed, and not for an adapter over FSDP / ZeRO-3 sharded weights (`sharded_adapter`):
    Liger's fused loss reads the output head's weight directly, which is still a shard there.

    Raises:
        ConfigError: `liger: true` on CPU, without the package, or for a sharded adapter run.
    """
    installed = importlib.util.find_spec("liger_kernel") is not None
    if t.liger is True:
        if not on_cuda:
            raise ConfigError("trainer.liger: true needs CUDA (Liger's kernels are Triton GPU kernels)")
        if not installed:
            raise ConfigError("trainer.liger: true needs the liger-kernel package: pip install 'lmtune[gpu]'")
        if sharded_adapter:
            raise ConfigError(
                "trainer.liger: true cannot train an adapter over FSDP / ZeRO-3 sharded weights (Liger's "
                "fused loss reads the sharded output head): use liger: auto or false"
            )
    return on_cuda and installed and t.liger is not False and not sharded_adapter

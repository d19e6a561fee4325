"""Sparse upcycling (Komatsuzaki et al., 2023): a dense Llama-family model becomes a mixture of experts.

Each chosen decoder layer's MLP is copied into `num_experts` experts and gets a freshly initialised
top-k router. The result is a standard transformers MoE model, so it saves, loads, generates and
exports like any other checkpoint:

- every layer upcycled -> Mixtral (`MixtralForCausalLM`);
- some layers upcycled -> Qwen2-MoE (`Qwen2MoeForCausalLM`): the other layers keep their dense MLP
  (`mlp_only_layers`), and each MoE layer also has Qwen2-MoE's always-on shared expert.

At initialisation the MoE model computes the dense model's function f, whatever the router says:

- Mixtral: every expert is f and the top-k weights are renormalised to sum to 1, so
  y = sum_{e in topk} (p_e / sum_{e' in topk} p_e') f(x) = f(x);
- Qwen2-MoE: the routed experts hold f with its down projection halved, the shared expert holds f and its
  gate weight is 0, so y = sum_{e in topk} w_e f(x)/2 + sigmoid(0) f(x) = f(x).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.config.methods.upcycle import UPCYCLABLE, UpcycleConfig
from lmtune.errors import ConfigError
from lmtune.runtime.load import causal_lm, torch_dtype

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, TrainerCallback


_MLP_PARAM = re.compile(r"(?:^|\.)layers\.(\d+)\.mlp\.")


def upcycled_layers(cfg: UpcycleConfig, num_layers: int) -> list[int]:
    """The sorted layer indices `cfg` upcycles in a model of `num_layers` decoder layers.

    Raises:
        ConfigError: a layer index is out of range.
    """
    layers = sorted(cfg.layers) if cfg.layers is not None else list(range(num_layers))
    if layers[-1] >= num_layers:
        raise ConfigError(f"method.layers: {layers[-1]} is out of range: the model has {num_layers} layers")
    return layers


def moe_config(dense: PretrainedConfig, cfg: UpcycleConfig) -> PretrainedConfig:
    """The Mixtral (every layer) or Qwen2-MoE (some layers) config of the upcycled `dense` model.

    Raises:
        ConfigError: the dense architecture cannot be upcycled exactly (not Llama/Mistral, attention or
            MLP biases, sliding-window attention, a head size Qwen2-MoE cannot express).
    """
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import MixtralConfig, Qwen2MoeConfig

    _check_upcyclable(dense)
    layers = upcycled_layers(cfg, dense.num_hidden_layers)
    head_dim = getattr(dense, "head_dim", None) or dense.hidden_size // dense.num_attention_heads
    shared = {
        "vocab_size": dense.vocab_size,
        "hidden_size": dense.hidden_size,
        "intermediate_size": dense.intermediate_size,
        "num_hidden_layers": dense.num_hidden_layers,
        "num_attention_heads": dense.num_attention_heads,
        "num_key_value_heads": dense.num_key_value_heads,
        "hidden_act": dense.hidden_act,
        "max_position_embeddings": dense.max_position_embeddings,
        "initializer_range": dense.initializer_range,
        "rms_norm_eps": dense.rms_norm_eps,
        "rope_parameters": dense.rope_parameters,
        "attention_dropout": dense.attention_dropout,
        "tie_word_embeddings": dense.tie_word_embeddings,
        "bos_token_id": dense.bos_token_id,
        "eos_token_id": dense.eos_token_id,
        "pad_token_id": dense.pad_token_id,
        "num_experts_per_tok": cfg.top_k,
    }
    if len(layers) == dense.num_hidden_layers:
        return MixtralConfig(
            **shared, head_dim=head_dim, num_local_experts=cfg.num_experts, sliding_window=None
        )
    if head_dim * dense.num_attention_heads != dense.hidden_size:
        raise ConfigError(
            f"method.layers: upcycling a subset of layers gives a Qwen2-MoE model, which needs head_dim * "
            f"num_attention_heads == hidden_size ({head_dim} * {dense.num_attention_heads} != "
            f"{dense.hidden_size}); upcycle every layer (leave out `layers`) for a Mixtral model"
        )
    return Qwen2MoeConfig(
        **shared,
        num_experts=cfg.num_experts,
        moe_intermediate_size=dense.intermediate_size,
        shared_expert_intermediate_size=dense.intermediate_size,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[i for i in range(dense.num_hidden_layers) if i not in layers],
        qkv_bias=False,
        use_sliding_window=False,
    )


def prepare(model: PreTrainedModel, cfg: UpcycleConfig) -> PreTrainedModel:
    """Build the upcycled MoE model from the dense `model` (which it replaces); `cfg.train` picks what
    trains. The router init and expert noise draw from torch's global RNG (seeded by the run)."""
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    config = moe_config(model.config, cfg)
    dtype = next(model.parameters()).dtype
    with no_init_weights():  # every weight is written below
        moe = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = _upcycled_state(model.state_dict(), cfg, upcycled_layers(cfg, config.num_hidden_layers), config)
    missing, unexpected = moe.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise AssertionError(f"upcycled state does not fit {type(moe).__name__}: {missing} {unexpected}")
    moe.tie_weights()
    moe.generation_config = model.generation_config
    for name, p in moe.named_parameters():
        p.requires_grad_(trains(name, cfg))
    return moe.to(torch.device(next(model.parameters()).device))


def _check_upcyclable(dense: PretrainedConfig) -> None:
    problems = []
    if dense.model_type not in UPCYCLABLE:
        problems.append(f"architecture {dense.model_type!r} (supported: {', '.join(UPCYCLABLE)})")
    if getattr(dense, "attention_bias", False) or getattr(dense, "mlp_bias", False):
        problems.append("attention or MLP biases")
    if getattr(dense, "sliding_window", None) is not None:
        problems.append(f"sliding-window attention ({dense.sliding_window})")
    if problems:
        raise ConfigError(f"method: type upcycle cannot convert this model exactly: {'; '.join(problems)}")


def _upcycled_state(
    dense: dict[str, torch.Tensor], cfg: UpcycleConfig, layers: list[int], config: PretrainedConfig
) -> dict[str, torch.Tensor]:
    """The MoE state dict: dense weights kept under their names, each upcycled MLP turned into experts.

    Fused expert layout of transformers 5: gate_up_proj (E, 2I, H) = [gate; up] per expert, down_proj
    (E, H, I); router weight (E, H).
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    has_shared = config.model_type == "qwen2_moe"
    state = {k: v for k, v in dense.items() if not _in_layers(k, layers)}
    for i in layers:
        pre = f"model.layers.{i}.mlp."
        gate, up, down = (dense[f"{pre}{p}_proj.weight"] for p in ("gate", "up", "down"))
        gate_up = torch.cat([gate, up], dim=0)
        # Qwen2-MoE: the shared expert adds sigmoid(0) * f(x) = f(x)/2, the routed ones the other half.
        routed_down = down * 0.5 if has_shared else down
        state[f"{pre}experts.gate_up_proj"] = _copies(gate_up, cfg.num_experts, cfg.expert_noise)
        state[f"{pre}experts.down_proj"] = _copies(routed_down, cfg.num_experts, cfg.expert_noise)
        state[f"{pre}gate.weight"] = (
            torch.randn(cfg.num_experts, gate.shape[1], dtype=gate.dtype) * cfg.router_init_std
        )
        if has_shared:
            for p in ("gate", "up", "down"):
                state[f"{pre}shared_expert.{p}_proj.weight"] = dense[f"{pre}{p}_proj.weight"].clone()
            state[f"{pre}shared_expert_gate.weight"] = torch.zeros(1, gate.shape[1], dtype=gate.dtype)
    return state


def _copies(weight: torch.Tensor, n: int, noise: float) -> torch.Tensor:
    """`n` stacked copies of `weight`, each plus N(0, (noise * std(weight))^2) noise when noise > 0."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    stacked = weight.detach().unsqueeze(0).repeat(n, 1, 1)
    if noise > 0:
        stacked += torch.randn_like(stacked) * (noise * weight.float().std().item())
    return stacked


def _in_layers(name: str, layers: list[int]) -> bool:
    match = _MLP_PARAM.search(name)
    return match is not None and int(match.group(1)) in layers


def trains(name: str, cfg: UpcycleConfig) -> bool:
    """Whether parameter `name` trains: every one (`train: all`), or those of upcycled MoE blocks."""
    if cfg.train == "all":
        return True
    match = _MLP_PARAM.search(name)
    return match is not None and (cfg.layers is None or int(match.group(1)) in cfg.layers)


def save(model: PreTrainedModel, cfg: UpcycleConfig, out_dir: Path) -> None:
    """Write the whole MoE model as a standard safetensors folder (Mixtral / Qwen2-MoE layout)."""
    model.save_pretrained(out_dir)


def load(
    base_dir: str | Path, weights_dir: str | Path, cfg: UpcycleConfig, dtype: str = "float32"
) -> PreTrainedModel:
    """Load the saved MoE model; the dense base is not needed (the folder is a whole model)."""

    return causal_lm(weights_dir, torch_dtype(dtype))


def base_view(model: PreTrainedModel, cfg: UpcycleConfig) -> None:
    """A different architecture: the dense base must be loaded on its own."""
    return None


def merge(model: PreTrainedModel, cfg: UpcycleConfig) -> PreTrainedModel:
    """Nothing to fold in: the trained MoE model is the export."""
    return model


def param_groups(model: PreTrainedModel, cfg: UpcycleConfig, learning_rate: float) -> None:
    """The trainer's default: every trainable parameter at one learning rate."""
    return None


def callbacks(model: PreTrainedModel, cfg: UpcycleConfig) -> list[TrainerCallback]:
    """Nothing method-specific: the router load-balancing loss is added and logged for every MoE model
    by the trainer (`lmtune.train.moe`)."""
    return []

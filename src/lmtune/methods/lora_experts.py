"""Mixture of LoRA experts: on each target linear, K low-rank experts mixed per token by a learned gate.

y = W x + (alpha/r) sum_k g_k(x) B_k A_k x,   g(x) = softmax(G x)   (`lora_experts_layer.lora_mixture`)

The base model stays frozen; the experts (A_k, B_k) and the gates G train. In the spirit of MoLE / MixLoRA
/ LoRAMoE: one adapter budget split into experts that specialise, with a router per layer. Because the
mixture weights depend on each token, the update cannot fold into W (`mergeable` is False): the run
exports the adapter, and inference keeps the wrapped layers.

Saved layout (`adapter/`): `lora_experts.safetensors` (the trained tensors, named as in the wrapped
model) + `lora_experts_config.json` (this method's config); `load` rebuilds the wrappers on the base.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.config.methods.lora_experts import LoraExpertsConfig
from lmtune.errors import ConfigError, ModelLoadError
from lmtune.methods.lora_experts_layer import LoraExpertsLinear
from lmtune.runtime.load import causal_lm, torch_dtype

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, TrainerCallback

WEIGHTS_NAME = "lora_experts.safetensors"
CONFIG_NAME = "lora_experts_config.json"
_TRAINED_SUFFIXES = (".lora_A", ".lora_B", ".lora_gate.weight")


def _targets(model: PreTrainedModel, cfg: LoraExpertsConfig) -> list[str]:
    """Names of the linear layers `cfg` adapts (never the output head)."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    wanted = (
        None
        if cfg.target_modules == "all-linear"
        else set([cfg.target_modules] if isinstance(cfg.target_modules, str) else cfg.target_modules)
    )
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and module is not head
        and (wanted is None or name.rsplit(".", 1)[-1] in wanted)
    ]


def _wrap(model: PreTrainedModel, cfg: LoraExpertsConfig) -> PreTrainedModel:
    names = _targets(model, cfg)
    if not names:
        raise ConfigError(
            f"method.target_modules: {cfg.target_modules!r} matches no linear layer of the model"
        )
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(
            parent, child, LoraExpertsLinear(getattr(parent, child), cfg.num_experts, cfg.rank, cfg.alpha)
        )
    for name, p in model.named_parameters():
        p.requires_grad_(trains(name, cfg))
    return model


def prepare(model: PreTrainedModel, cfg: LoraExpertsConfig) -> PreTrainedModel:
    """Wrap each target linear of `model` (in place) with K LoRA experts and a gate; only those train."""
    return _wrap(model, cfg)


def trains(name: str, cfg: LoraExpertsConfig) -> bool:
    """Whether parameter `name` trains: exactly the experts' A and B and the gates."""
    return name.endswith(_TRAINED_SUFFIXES)


def save(model: PreTrainedModel, cfg: LoraExpertsConfig, out_dir: Path) -> None:
    """Write the experts and gates (safetensors) and this method's config."""
    # deferred: safetensors only when this runs (keeps `import lmtune...` light)
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if trains(n, cfg)}
    save_file(tensors, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    (out_dir / CONFIG_NAME).write_text(json.dumps(cfg.model_dump(), indent=2) + "\n", encoding="utf-8")


def load(
    base_dir: str | Path, weights_dir: str | Path, cfg: LoraExpertsConfig, dtype: str = "float32"
) -> PreTrainedModel:
    """Load the base from `base_dir`, rebuild the experts per `cfg` and fill them from `weights_dir`.

    Raises:
        ModelLoadError: the saved tensors do not match the wrappers `cfg` builds on this base.
    """
    # deferred: safetensors only when this runs (keeps `import lmtune...` light)
    from safetensors.torch import load_file

    base = causal_lm(base_dir, torch_dtype(dtype))
    model = _wrap(base, cfg)
    saved = load_file(str(Path(weights_dir) / WEIGHTS_NAME))
    expected = {n for n, _ in model.named_parameters() if trains(n, cfg)}
    if set(saved) != expected:
        raise ModelLoadError(
            f"{weights_dir}: saved experts do not match method config {cfg.model_dump()} on {base_dir} "
            f"({len(set(saved) - expected)} unexpected, {len(expected - set(saved))} missing tensors)"
        )
    model.load_state_dict(saved, strict=False)
    model.requires_grad_(False)
    return model


@contextmanager
def _experts_off(model: torch.nn.Module) -> Iterator[None]:
    wrappers = [m for m in model.modules() if isinstance(m, LoraExpertsLinear)]
    for w in wrappers:
        w.enabled = False
    try:
        yield
    finally:
        for w in wrappers:
            w.enabled = True


def base_view(model: PreTrainedModel, cfg: LoraExpertsConfig) -> AbstractContextManager[None]:
    """The same model with every expert switched off computes the base function."""
    return _experts_off(model)


def merge(model: PreTrainedModel, cfg: LoraExpertsConfig) -> PreTrainedModel:
    """Not possible (see `mergeable`).

    Raises:
        ConfigError: always.
    """
    raise ConfigError(
        "method lora_experts cannot be merged: its per-token gate makes the update depend on the input "
        "(the export stage writes the adapter instead)"
    )


def param_groups(model: PreTrainedModel, cfg: LoraExpertsConfig, learning_rate: float) -> None:
    """The trainer's default: every trainable parameter at one learning rate."""
    return None


def callbacks(model: PreTrainedModel, cfg: LoraExpertsConfig) -> list[TrainerCallback]:
    """Nothing to do during training."""
    return []

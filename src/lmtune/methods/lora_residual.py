"""PiSSA and OLoRA adapters saved as plain LoRA on the unchanged base.

Both initialise A0, B0 from the base weight itself (PiSSA: its top-r singular vectors; OLoRA: a QR
decomposition) and, so that the model starts unchanged, rewrite the base weight to the residual
W_res = W - s B0 A0. The trained adapter is then only meaningful on W_res. Saving converts it into a
plain LoRA of rank 2r for the original W (the layout PEFT documents for these methods), so evaluation,
export and any PEFT user load it on the untouched base.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

INITIAL_ADAPTER = "lmtune_initial_adapter"
"""Attribute of a freshly prepared PiSSA/OLoRA model holding its initial adapter state {key: tensor}."""
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def remember_initial(model: PeftModel) -> None:
    """Keep a copy of the adapter as initialised (A0, B0), which `save_converted` needs."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import get_peft_model_state_dict

    initial = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    model.__dict__[INITIAL_ADAPTER] = initial


def initial_adapter(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The initial adapter kept by `remember_initial`, or None (the base was not rewritten in memory)."""
    initial: dict[str, torch.Tensor] | None = model.__dict__.get(INITIAL_ADAPTER)
    return initial


def delta_adapter(
    trained: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The plain LoRA adapter of the change a PiSSA/OLoRA adapter made, for the original base.

    W = W_res + s B0 A0 before training and W_res + s B A after, so on the original W the update is
        dW = s (B A - B0 A0) = s [B, -B0] [A; A0]
    a rank-2r LoRA with A' = [A; A0] (rows stacked) and B' = [B, -B0] (columns side by side).
    Keys other than lora_A / lora_B are copied unchanged.
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    out = {}
    for key, value in trained.items():
        if ".lora_A." in key:
            out[key] = torch.cat([value, initial[key]], dim=0)
        elif ".lora_B." in key:
            out[key] = torch.cat([value, -initial[key]], dim=1)
        else:
            out[key] = value
    return out


def doubled_rank_alpha(alpha: float, use_rslora: bool) -> float:
    """alpha' keeping the scale s of rank r at rank 2r.

    LoRA: s = alpha / r = alpha' / 2r, so alpha' = 2 alpha.
    rsLoRA: s = alpha / sqrt(r) = alpha' / sqrt(2r), so alpha' = sqrt(2) alpha.
    """
    return alpha * (math.sqrt(2) if use_rslora else 2)


def save_converted(out_dir: Path, initial: dict[str, torch.Tensor]) -> None:
    """Rewrite the PiSSA/OLoRA adapter PEFT saved in `out_dir` as the plain LoRA `delta_adapter` gives
    (rank 2r, alpha per `doubled_rank_alpha`, default initialisation)."""
    # deferred: safetensors only when this runs (keeps `import lmtune...` light)
    from safetensors.torch import load_file, save_file

    weights = out_dir / ADAPTER_WEIGHTS
    save_file(delta_adapter(load_file(weights), initial), weights, metadata={"format": "pt"})
    config_path = out_dir / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["r"] = 2 * config["r"]
    config["lora_alpha"] = doubled_rank_alpha(config["lora_alpha"], bool(config.get("use_rslora")))
    config["init_lora_weights"] = True
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

"""Which method settings work with which run settings. Each function returns why a combination cannot
work (one line, for the config error the loader shows) or None; `lmtune.config.run.RunConfig` checks them
when the config is loaded, before any model is."""

from __future__ import annotations

from typing import get_args

from lmtune.config.methods import AnyMethod
from lmtune.config.methods.lora import REWRITES_BASE, LoraConfig
from lmtune.config.model import MERGE_REFUSAL, Quantization


def quantizable_methods() -> list[str]:
    """The `type` of every method that trains on a quantized base (`MethodBase.quantizable`): the weight
    adapters first, then the virtual-token methods."""
    quantizable = [cls for cls in get_args(AnyMethod) if cls.quantizable]
    return [cls.model_fields["type"].default for cls in sorted(quantizable, key=lambda c: c.virtual_tokens)]


def quantized_base_refusal(method: AnyMethod, quantization: Quantization) -> str | None:
    """Why `method` cannot train on a base loaded with `quantization` (None: it can)."""
    if quantization == "none":
        return None
    where = f"model.quantization: {quantization}"
    adapters = ", ".join(quantizable_methods())
    if not method.quantizable:
        if not method.is_adapter:
            return (
                f"method '{method.type}' trains the base model's own weights, which cannot be trained while "
                f"quantized ({where}); use an adapter method ({adapters}) on the quantized base, or "
                "model.quantization: none"
            )
        return f"method '{method.type}' does not support a quantized base ({where}); use one of {adapters}"
    if isinstance(method, LoraConfig):
        if method.init in REWRITES_BASE:
            return (
                f"method.init '{method.init}' rewrites the base weights, which a quantized base cannot hold "
                f"exactly ({where}), so the saved adapter would not reproduce the trained model; use "
                "init: default or gaussian"
            )
        if method.use_dora and quantization == "int8":
            return f"method.use_dora is not supported on an int8 base ({where}); use nf4 or fp4"
    return None


def merge_refusal(method: AnyMethod, quantization: Quantization) -> str | None:
    """Why the trained weights cannot be folded into a plain float model on export (None: they can)."""
    if not method.mergeable:
        return f"method '{method.type}' cannot be merged into the base weights"
    return MERGE_REFUSAL[quantization]


def packing_refusal(method: AnyMethod, packing: bool) -> str | None:
    """Why `method` cannot train on packed rows (None: it can)."""
    if packing and method.virtual_tokens:
        return (
            f"method '{method.type}' cannot train on packed rows (data.packing: true): its virtual tokens "
            "are prepended once per row, not to each example packed into it; set data.packing: false"
        )
    return None

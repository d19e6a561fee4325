"""Quantized base models through bitsandbytes (QLoRA): the loading config for `model.quantization`,
which quantization a loaded model carries, and exact dequantisation back to plain float layers.

What each setting stores and computes (per linear layer y = x W^T):

- `nf4` / `fp4`: W is stored as 4-bit codes with one absmax scale per block of 64 weights (the scales
  themselves quantised again: "double quantisation"); the forward dequantises W to the compute dtype
  and multiplies, so y = x deq(W)^T exactly. A float model holding deq(W) computes the same function.
- `int8` (LLM.int8): W is stored as int8 with one scale per row, and at run time the activations x are
  quantised to int8 as well (outlier features kept in 16 bits). No float model computes that function,
  so an int8 base cannot be merged into a float export (see `MERGE_REFUSAL`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmtune.config.model import MERGE_REFUSAL, Quantization
from lmtune.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import BitsAndBytesConfig, PreTrainedModel


def bnb_config(quantization: Quantization, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """transformers' BitsAndBytesConfig for `quantization` (None for `none`).

    4-bit settings follow the QLoRA recipe: double quantisation on, compute in the model's `dtype`.
    """
    if quantization == "none":
        return None
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
    )


def quantization_of(model: torch.nn.Module) -> Quantization:
    """The `model.quantization` setting a loaded (possibly PEFT-wrapped) model was loaded with."""
    base: Any = model.get_base_model() if hasattr(model, "get_base_model") else model  # type: ignore[operator]
    quantizer = getattr(base, "hf_quantizer", None)
    config = getattr(quantizer, "quantization_config", None)
    if config is None or getattr(config, "quant_method", None) != "bitsandbytes":
        return "none"
    if config.load_in_8bit:
        return "int8"
    quant_type: Quantization = config.bnb_4bit_quant_type
    return quant_type


def exact_cpu_kernels(model: torch.nn.Module) -> None:
    """Make 4-bit layers on CPU compute y = x deq(W)^T in the compute dtype, in eval mode too.

    On CPUs with AVX512-BF16, bitsandbytes otherwise repacks a 4-bit layer's weights in place on its first
    eval-mode forward and switches to a bfloat16 kernel: evaluation would then differ from training by
    bf16 rounding, and the repacked weights no longer dequantise correctly (merging would go wrong).
    """
    # deferred: bitsandbytes only when this runs (keeps `import lmtune...` light)
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def dequantize(model: PreTrainedModel) -> PreTrainedModel:
    """Replace every 4-bit linear layer of `model` by a float `nn.Linear` holding deq(W) (in the model's
    dtype) and drop the quantization config: the result computes the same function, with no bitsandbytes.

    Raises:
        ConfigError: the model is int8 (see `MERGE_REFUSAL`).
    """
    quantization = quantization_of(model)
    refusal = MERGE_REFUSAL[quantization]
    if refusal is not None:
        raise ConfigError(f"cannot dequantise the base: {refusal}")
    if quantization == "none":
        return model
    dequantized: Any = model.dequantize(dtype=model.dtype)
    dequantized.is_loaded_in_4bit = False  # transformers leaves the flag set; PEFT reads it to refuse merges
    return dequantized

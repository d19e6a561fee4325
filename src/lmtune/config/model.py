"""Stage 2 settings: which model to load and how."""

from typing import Literal

from lmtune.config.base import StrictModel

Quantization = Literal["none", "nf4", "fp4", "int8"]
"""How the base model's linear layers are stored while training on top of them (bitsandbytes)."""


class ModelConfig(StrictModel):
    """The base model."""

    path: str = "smollm2-135m-instruct"
    """A local folder, a hub id (only used when online), or a packaged alias: `smollm2-135m-instruct`
    (real SmolLM2-135M-Instruct, offline) or `tiny` (a tiny random Llama for smoke runs)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype when loading. `auto`: bfloat16 where a CUDA device that supports it is used (weights,
    activations and adapters in bf16, with no float32 up-cast per adapter layer), float32 on CPU. Set
    `float32` on CUDA to keep float32 weights (and float32 master weights in full fine-tuning)."""
    trust_remote_code: bool = False
    """Allow code shipped with a hub model to run. Off unless you trust its source."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when `path` is a hub id."""
    quantization: Quantization = "none"
    """Load the base's linear layers quantized with bitsandbytes (QLoRA): `nf4` (4-bit NormalFloat, the
    QLoRA paper's choice), `fp4` (4-bit float) or `int8` (LLM.int8); `none` keeps them in `dtype`. Only
    adapter methods can train on a quantized base (lora, ia3, vera, prompt_tuning, prefix_tuning); the
    base itself stays frozen."""


MERGE_REFUSAL: dict[Quantization, str | None] = {
    "none": None,
    "nf4": None,
    "fp4": None,
    "int8": "model.quantization int8 (LLM.int8) also quantises the activations at run time, so no merged "
    "float model computes what the trained model does",
}
"""Why a base with this quantization cannot be folded into a float export (None: it can, exactly)."""

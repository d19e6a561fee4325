"""What every PEFT adapter method shares (LoRA and its variants, IA3, VeRA, LoHa, LoKr, prompt and prefix
tuning): wrapping a (possibly quantized) base, saving and loading the adapter in PEFT's standard layout,
the base function with adapters disabled, and merging (through an exact dequantisation when the base is
4-bit). Each method module adds its own `prepare` and `trains`; its config (in `lmtune.config.methods`) states
its capabilities.

An adapter trained on a quantized base records that quantization beside itself (`QUANTIZATION_FILE`), so
loading it for evaluation or export rebuilds the same quantized base and reproduces the trained model.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from lmtune.config.model import ModelConfig, Quantization
from lmtune.errors import ModelLoadError
from lmtune.runtime.chat_templates import fit_embeddings, saved_vocab_size
from lmtune.runtime.load import load_model
from lmtune.runtime.quantize import dequantize, quantization_of

if TYPE_CHECKING:
    from peft import PeftConfig, PeftModel
    from transformers import PreTrainedModel, TrainerCallback

QUANTIZATION_FILE = "base_quantization.json"
"""Written beside an adapter trained on a quantized base: {"quantization": "nf4" | "fp4" | "int8"}."""
TRAINABLE_TOKENS = ".trainable_tokens_delta."
"""Marks the parameters of PEFT trainable tokens (embedding rows trained along an adapter)."""
PEFT_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)
"""transformers deprecation warnings (FutureWarning) raised by PEFT's own code, not lmtune's: PEFT 0.21
asks every model it wraps or loads for `is_gradient_checkpointing`, which transformers 5 renamed
`is_activation_checkpointing`. A user cannot act on them, so `peft_call` keeps them off the console."""


@contextmanager
def peft_call() -> Iterator[None]:
    """Around a call into PEFT that wraps or loads a model: silences `PEFT_DEPRECATIONS` there only, so
    that lmtune's own use of a deprecated API still warns (tests/unit/train/test_train_warnings.py)."""
    with warnings.catch_warnings():
        for message in PEFT_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        yield


def wrap(model: PreTrainedModel, peft_config: PeftConfig) -> PeftModel:
    """Wrap `model` with a new adapter; only the adapter trains.

    On a bfloat16 model (`model.dtype: auto` on CUDA) the adapter is made in bfloat16 as well: PEFT's
    default keeps adapters in float32 and up-casts every adapter layer's input to it, a cost on every
    step (docs/performance.md, benchmarks/RESULTS.md). A quantized bf16 base keeps its bf16 norms and
    embeddings. On float32 and float16 models a quantized base is first prepared the QLoRA way (every
    base weight frozen, 16-bit non-quantized weights such as norms up-cast to float32) and the adapter
    is float32, as PEFT does."""
    # deferred: peft, torch only when this runs (keeps `import lmtune...` light)
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    bf16 = model.dtype == torch.bfloat16
    if quantization_of(model) != "none" and not bf16:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    with peft_call():
        wrapped = get_peft_model(model, peft_config, autocast_adapter_dtype=not bf16)
    if bf16:
        # PEFT matches an adapter to its base layer's dtype, except over a quantized (uint8) weight.
        for param in wrapped.parameters():
            if param.requires_grad and param.dtype != torch.bfloat16:
                param.data = param.data.to(torch.bfloat16)
    return wrapped


def token_targets(model: PreTrainedModel, token_ids: Sequence[int]) -> dict[str, list[int]]:
    """PEFT `trainable_token_indices` training the rows of `token_ids` (e.g. the chat template's tokens,
    new in the vocabulary or never trained in a base model): in the input embeddings, and in the output
    head too when it is not tied to them (a tied head follows the embeddings). Their values are saved
    with the adapter and written into the base on merge."""
    names = {id(module): name for name, module in model.named_modules()}
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    ids = sorted(set(token_ids))
    targets = {names[id(embeddings)]: ids}
    if head is not None and head.weight is not embeddings.weight:
        targets[names[id(head)]] = ids
    return targets


def trains_any(name: str, markers: Iterable[str]) -> bool:
    """Whether parameter `name` contains one of the adapter's parameter markers (e.g. `.lora_A.`)."""
    return any(marker in name for marker in markers)


def save(model: PeftModel, cfg: object, out_dir: Path) -> None:
    """Write the adapter only (adapter_config.json + adapter_model.safetensors, PEFT's standard layout),
    plus `QUANTIZATION_FILE` when the base it was trained on is quantized."""

    # With trainable tokens the adapter holds every row that differs from the base (the new rows
    # included), so PEFT need not save whole embedding matrices when the vocabulary grew.
    tokens = getattr(model.active_peft_config, "trainable_token_indices", None) is not None
    model.save_pretrained(str(out_dir), save_embedding_layers=False if tokens else "auto")
    quantization = quantization_of(model)
    if quantization != "none":
        (Path(out_dir) / QUANTIZATION_FILE).write_text(json.dumps({"quantization": quantization}) + "\n")


def saved_quantization(weights_dir: str | Path) -> Quantization:
    """The quantization of the base an adapter folder was trained on (`none` without `QUANTIZATION_FILE`).

    Raises:
        ModelLoadError: the file is not what `save` writes.
    """
    path = Path(weights_dir) / QUANTIZATION_FILE
    if not path.is_file():
        return "none"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["quantization"]
    except (ValueError, KeyError, TypeError):
        value = None
    if value not in get_args(Quantization):
        raise ModelLoadError(
            f'{path}: expected {{"quantization": one of {", ".join(get_args(Quantization))}}}'
        )
    quantization: Quantization = value
    return quantization


def load(base_dir: str | Path, weights_dir: str | Path, cfg: object, dtype: str = "float32") -> PeftModel:
    """Load the base model from `base_dir` (quantized as the adapter records), its embeddings grown to
    the saved tokenizer's size (tokens a chat template added), and attach the adapter saved in
    `weights_dir` (frozen)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import PeftModel

    quantization = saved_quantization(weights_dir)
    base = load_model(ModelConfig(path=str(base_dir), dtype=dtype, quantization=quantization))
    fit_saved_vocab(base, [weights_dir])
    with peft_call():
        return PeftModel.from_pretrained(base, str(weights_dir), autocast_adapter_dtype=False)


def fit_saved_vocab(base: PreTrainedModel, weights_dirs: Iterable[str | Path]) -> None:
    """Grow `base`'s embeddings to the largest tokenizer saved beside the adapters in `weights_dirs`
    (training grew them so for tokens a chat template added; the adapter's trainable tokens hold
    the trained rows, so the new rows' starting values do not matter)."""
    sizes = [n for n in (saved_vocab_size(d) for d in weights_dirs) if n is not None]
    if sizes:
        fit_embeddings(base, max(sizes))


def base_view(model: PeftModel, cfg: object) -> AbstractContextManager[None]:
    """The same model with its adapters disabled computes the base function (no second copy)."""
    return model.disable_adapter()


def merge(model: PeftModel, cfg: object) -> PreTrainedModel:
    """Fold the adapter into the base weights and drop the PEFT wrappers.

    On a 4-bit base, PEFT's own merge would re-quantise W + dW (a lossy round trip). Instead the adapter is
    taken off, the base dequantised exactly (`lmtune.runtime.quantize.dequantize`: float layers holding
    deq(W)), the same adapter put back on the float base and merged: the result computes deq(W) + dW, the
    function the trained model computes, as a plain float model.

    Raises:
        ConfigError: the base is int8, which no float model reproduces.
    """

    if quantization_of(model) == "none":
        return model.merge_and_unload()
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    adapter = model.active_adapter
    peft_config = model.peft_config[adapter]
    weights = get_peft_model_state_dict(model, adapter_name=adapter)
    base = dequantize(_without_adapter_layers(model))
    with peft_call():
        float_model = get_peft_model(base, peft_config)
    set_peft_model_state_dict(float_model, weights)
    merged: Any = float_model.merge_and_unload()
    return merged


def _without_adapter_layers(model: PeftModel) -> PreTrainedModel:
    """The wrapped base model with every adapter layer replaced by the layer it wraps (PEFT's `unload`,
    which for (IA)^3 refuses any 4-bit model, even when nothing is merged)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft.tuners.tuners_utils import BaseTunerLayer

    base: Any = model.get_base_model()
    for name, module in list(base.named_modules()):
        if isinstance(module, BaseTunerLayer):
            base.set_submodule(name, module.get_base_layer())
    if hasattr(base, "peft_config"):
        del base.peft_config  # the adapters are gone; a stale config would make PEFT expect them
    return base


def param_groups(model: PeftModel, cfg: object, learning_rate: float) -> None:
    """The trainer's default: every trainable parameter at one learning rate."""
    return None


def callbacks(model: PeftModel, cfg: object) -> list[TrainerCallback]:
    """Nothing to do during training."""
    return []

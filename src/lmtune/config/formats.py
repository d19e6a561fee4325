"""Export formats: each a tagged config joined in one discriminated union.

- Folder formats (`FolderFormat`): what every export writes first, the merged standard folder or the
  adapter alone; `export.merge` chooses between them (`chosen_format`), and the export stage saves and
  reloads each through one exhaustive `match` (`lmtune.export.formats`).
- Derived formats (`DerivedFormat`): written from the checked merged folder, each with its own check
  (`lmtune.export.derived`): GGUF files for llama.cpp and the engines built on it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from lmtune.config.base import StrictModel
from lmtune.config.combinations import merge_refusal
from lmtune.config.methods import AnyMethod
from lmtune.config.model import Quantization


class FormatBase(StrictModel):
    """Base of every export format config."""

    type: str
    folder: ClassVar[str]
    """The folder under `<run>/export/` the format writes."""
    standalone: ClassVar[bool]
    """Whether the export loads with transformers alone (no PEFT, no base model beside it)."""


class MergedFormat(FormatBase):
    """The trained weights folded into the base: a standard transformers folder (safetensors, tokenizer
    with its chat template, generation config)."""

    type: Literal["merged"] = "merged"
    folder: ClassVar[str] = "merged"
    standalone: ClassVar[bool] = True


class AdapterFormat(FormatBase):
    """The adapter alone, in its method's standard layout (PEFT's for the PEFT methods), loaded on top
    of the base model."""

    type: Literal["adapter"] = "adapter"
    folder: ClassVar[str] = "adapter"
    standalone: ClassVar[bool] = False


GgufQuant = Literal["f32", "bf16", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k", "q4_0"]
"""A GGUF tensor type: the float types come from llama.cpp's converter, the quantized ones from
llama.cpp's quantizer run on the f16 file (as `llama-quantize` is)."""
GGUF_FLOAT_TYPES = ("f32", "bf16", "f16")
DEFAULT_GGUF_QUANTS: tuple[GgufQuant, ...] = ("f16", "q8_0")


class GgufFormat(FormatBase):
    """GGUF files for llama.cpp (and Ollama, LM Studio...): one per quant type,
    `export/gguf/<run>-<quant>.gguf`, converted by llama.cpp's own converter and checked in llama.cpp's
    runtime against the merged folder."""

    type: Literal["gguf"] = "gguf"
    folder: ClassVar[str] = "gguf"
    standalone: ClassVar[bool] = True
    quants: list[GgufQuant] = Field(default_factory=lambda: list(DEFAULT_GGUF_QUANTS), min_length=1)
    """The files to write. f16 is always written too when a quantized type is asked for (the quantizer's
    input and the reference of the KL divergence)."""
    pre_tokenizer: str | None = None
    """llama.cpp's name for the tokenizer's pre-tokenizer (`gpt-2`, `llama-bpe`, `qwen2`, `smollm`...), used
    only when the converter does not recognise the tokenizer (a tokenizer trained for the run). The check
    then proves the choice: llama.cpp must tokenize the check prompts exactly as transformers does."""
    text_samples: int = Field(default=16, ge=1)
    """Held-out conversations (prompt and reference answer) scored for perplexity and KL divergence."""
    tokenizer_must_match: bool = True
    """Fail the export when llama.cpp tokenizes a check prompt differently from transformers; false
    records the differences (gguf_check.json, and a warning) and keeps the files. llama.cpp's `smollm`
    pre-tokenizer, for one, splits two spaces before a digit differently from SmolLM2's tokenizer."""


class BnbFormat(FormatBase):
    """The merged model quantized by bitsandbytes and saved as a transformers folder
    (`export/bnb-<quantization>/`, `quantization_config` in its config.json): loads with
    `AutoModelForCausalLM.from_pretrained` alone, 4-bit (nf4, fp4) or 8-bit (int8, LLM.int8)."""

    type: Literal["bnb"] = "bnb"
    folder: ClassVar[str] = "bnb"
    standalone: ClassVar[bool] = True
    quantization: Literal["nf4", "fp4", "int8"] = "nf4"
    text_samples: int = Field(default=16, ge=1)
    """Held-out conversations (prompt and reference answer) scored for perplexity and KL divergence."""

    @property
    def scheme(self) -> str:
        return self.quantization


class TorchaoFormat(FormatBase):
    """The merged model with int8 weight-only quantization by torchao (one int8 weight and a scale per
    output channel; activations stay float), saved as a transformers folder (`export/torchao-int8/`,
    safetensors) that loads with `AutoModelForCausalLM.from_pretrained` and torchao installed."""

    type: Literal["torchao"] = "torchao"
    folder: ClassVar[str] = "torchao"
    standalone: ClassVar[bool] = True
    quantization: Literal["int8"] = "int8"
    text_samples: int = Field(default=16, ge=1)
    """Held-out conversations (prompt and reference answer) scored for perplexity and KL divergence."""

    @property
    def scheme(self) -> str:
        return f"{self.quantization}_weight_only"


FolderFormat = MergedFormat | AdapterFormat
QuantizedFormat = BnbFormat | TorchaoFormat
DerivedFormat = GgufFormat | QuantizedFormat
AnyFormat = FolderFormat | DerivedFormat
FormatConfig = Annotated[AnyFormat, Field(discriminator="type")]
DerivedFormatConfig = Annotated[DerivedFormat, Field(discriminator="type")]


def chosen_format(merge: bool | None, method: AnyMethod, quantization: Quantization) -> FolderFormat:
    """The format `export.merge` asks for: merged whenever the run can merge and `merge` is not false
    (an explicit true that cannot be honoured is refused when the config loads)."""
    if merge is not False and merge_refusal(method, quantization) is None:
        return MergedFormat()
    return AdapterFormat()

"""Text is one modality. The data and training path takes a *processor* where a text-only pipeline would
take a tokenizer: a tokenizer is the text case of a processor, and a multimodal processor (transformers'
`ProcessorMixin`: an image processor or a feature extractor beside a tokenizer) is the case images and
audio will join through, without a second path. Everything text-specific asks the processor for its
tokenizer (`text_tokenizer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from lmtune.errors import ModelLoadError
from lmtune.runtime.load import load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, ProcessorMixin

    from lmtune.config.model import ModelConfig

Processor: TypeAlias = "PreTrainedTokenizerBase | ProcessorMixin"
"""What turns a record's content into model inputs: a tokenizer (text) or a multimodal processor."""


def text_tokenizer(processor: Processor) -> PreTrainedTokenizerBase:
    """The tokenizer of a processor (a tokenizer is its own).

    Raises:
        ModelLoadError: a processor without a tokenizer (nothing can render the conversations).
    """
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import PreTrainedTokenizerBase

    if isinstance(processor, PreTrainedTokenizerBase):
        return processor
    tokenizer = getattr(processor, "tokenizer", None)
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        name = type(processor).__name__
        raise ModelLoadError(f"{name}: a processor without a tokenizer cannot render text")
    return tokenizer


def load_processor(cfg: ModelConfig, chat_template: str | None = None) -> Processor:
    """The processor of the model `cfg` for the data and training path. Text models (every model lmtune
    trains today) get their tokenizer (`load_tokenizer`: the pad rule and `data.chat_template` applied)."""
    return load_tokenizer(cfg, chat_template)

"""The served model: chat messages -> prompt tokens -> one generation, optionally streamed as text.

`Engine` is what the server and the chat loop ask of a serving back-end; `TransformersEngine` is the
first back-end (`lmtune.serve.backends` opens the one the config names). It holds one model. Greedy
requests go through continuous batching (`lmtune.serve.batching`: concurrent requests share each
forward pass) unless the back-end turns it off; sampled requests generate through the runtime's engine
(`lmtune.runtime.generation.Generator`) under the engine's lock, one at a time. Streaming and
non-streaming share the same path, so with the same request (and seed) the streamed pieces concatenate
to the non-streamed text. Callers run `generate` off the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lmtune.config.backends import TransformersBackend
from lmtune.errors import LmtuneError, ModelLoadError
from lmtune.runtime.device import inference_device
from lmtune.runtime.generation import Completion, Generator, SamplingParams
from lmtune.runtime.load import causal_lm, folder_tokenizer
from lmtune.serve.batching import Batcher, batched_generate

__all__ = ["Completion", "Engine", "PromptError", "SamplingParams", "TransformersEngine"]

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class PromptError(LmtuneError):
    """The messages cannot be turned into a prompt for this model (template error, too long)."""


class Engine(Protocol):
    """What a serving back-end provides."""

    context_length: int | None
    """The model's context window in tokens (None: unknown)."""

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Prompt token ids: the chat template over `messages`, plus the assistant generation prompt.

        Raises:
            PromptError: the template rejects the messages, or the prompt fills the context window.
        """
        ...

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        """Generate one completion (blocking); `on_text` receives each newly final piece of text, and
        `cancel`, when set, stops generation at the next token (`finish_reason="cancelled"`)."""
        ...

    def close(self) -> None:
        """Let the generations in flight finish, then release the back-end's threads."""
        ...


class TransformersEngine:
    """A model folder loaded for chat generation with transformers (CUDA when available, else CPU)."""

    def __init__(self, model_dir: str | Path, backend: TransformersBackend | None = None) -> None:
        """Load tokenizer and model from a standard folder (safetensors, tokenizer, chat template);
        with `backend.batching`, greedy requests share forward passes (`lmtune.serve.batching`).

        Raises:
            ModelLoadError: the folder is missing, incomplete, or its tokenizer has no chat template.
        """
        # deferred: torch only when this runs (keeps `import lmtune...` light)
        import torch

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"{folder}: not a model folder (no config.json)")
        self.device = torch.device(inference_device())
        try:
            self.tokenizer: PreTrainedTokenizerBase = folder_tokenizer(folder)
            # CPU kernels are fastest and exact in fp32; on GPU keep the dtype the folder was saved in.
            dtype: Any = "auto" if self.device.type == "cuda" else torch.float32
            self.model: PreTrainedModel = causal_lm(folder, dtype)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder}: cannot load model ({exc})") from None
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(f"{folder}: tokenizer has no chat template; cannot serve chat completions")
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else None
        # What the folder's generation config stops on (an lmtune export: the end-of-turn token and eos).
        self.generator = Generator(self.model, self.tokenizer, eos_ids)
        self.context_length: int | None = self.generator.context_length
        self.lock = threading.Lock()
        """Held for the whole of one unbatched generation."""
        backend = backend if backend is not None else TransformersBackend(batching=False)
        self.batcher = (
            Batcher(self.model, self.generator.stop_ids, self.generator.pad_id, backend)
            if backend.batching
            else None
        )

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Prompt token ids: the chat template over `messages`, plus the assistant generation prompt.

        Raises:
            PromptError: the template rejects the messages, or the prompt fills the context window.
        """
        # deferred: jinja2 only when this runs (keeps `import lmtune...` light)
        from jinja2 import TemplateError

        try:
            text = self.tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:
            raise PromptError(f"the model's chat template rejected the messages: {exc}") from None
        ids: list[int] = self.tokenizer(str(text), add_special_tokens=False)["input_ids"]
        if self.context_length is not None and len(ids) >= self.context_length:
            raise PromptError(
                f"the prompt is {len(ids)} tokens; this model's context length is {self.context_length}"
            )
        return ids

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        """Generate one completion; blocks (run it in a worker thread from async code).

        Args:
            prompt_ids: ids from `encode_chat`.
            params: sampling settings.
            on_text: called with each newly final piece of text while generating; the pieces
                concatenate to `Completion.text`.
            cancel: when set, generation stops at the next token (`finish_reason="cancelled"`).
        """
        if self.batcher is not None and self.generator.sampling_kwargs(params) == {"do_sample": False}:
            budget = params.max_new_tokens
            if self.context_length is not None:
                budget = max(1, min(budget, self.context_length - len(prompt_ids)))
            return batched_generate(
                self.batcher, self.tokenizer, prompt_ids, budget, params.stop, on_text, cancel
            )
        show = (lambda _index, text: on_text(text)) if on_text is not None else None
        with self.lock, self.batcher.paused() if self.batcher is not None else nullcontext():
            (done,) = self.generator.generate([prompt_ids], params, on_text=show, cancel=cancel)
        return done

    def close(self) -> None:
        """Stop the batching manager (after the requests in flight)."""
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None

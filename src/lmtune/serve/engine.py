"""The served model: chat messages -> prompt tokens -> one generation, optionally streamed as text.

`Engine` is what the server and the chat loop ask of a serving back-end; `TransformersEngine` is the
first back-end (`lmtune.serve.backends` opens the one the config names). It holds one model;
`generate` takes its lock, so generations run one at a time (callers run it off the event loop).
Streaming and non-streaming share the same `model.generate` call, so with the same request (and seed)
the streamed pieces concatenate to the non-streamed text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lmtune.errors import LmtuneError, ModelLoadError
from lmtune.runtime.device import inference_device
from lmtune.runtime.load import causal_lm, folder_tokenizer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class PromptError(LmtuneError):
    """The messages cannot be turned into a prompt for this model (template error, too long)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to generate one completion."""

    max_new_tokens: int
    """Most tokens to generate (capped further by the model's context length)."""
    temperature: float | None = None
    """0 means greedy; None means the model's generation_config value, else 1.0."""
    top_p: float | None = None
    """Nucleus sampling mass; None means the model's generation_config value, else 1.0."""
    stop: tuple[str, ...] = ()
    """Strings that end the completion; the text is cut before the first one."""
    seed: int | None = None
    """Seed for the sampler (set on torch's global generator under the engine lock)."""


@dataclass(frozen=True)
class Completion:
    """The result of one generation."""

    text: str
    finish_reason: str
    """`stop` (eos or a stop string), `length` (token budget spent) or `cancelled`."""
    prompt_tokens: int
    completion_tokens: int
    """Tokens generated, the eos token included."""


def _stop_cut(text: str, stop: Sequence[str]) -> int | None:
    """Index of the earliest stop string in `text`, or None."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stop: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that could still grow into a stop string."""
    longest = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class _TextTracker:
    """Decodes the growing completion and hands out only text that is final.

    Text is held back while it ends in an incomplete UTF-8 sequence or in a prefix of a stop string,
    so what has been handed out is always a prefix of the final, stop-trimmed completion.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str], eos_ids: frozenset[int]
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.eos_ids = eos_ids
        self.emitted = ""
        self.stopped = False

    def decode(self, ids: Sequence[int]) -> str:
        """The completion text of generated `ids`: a final eos token is not part of it."""
        ids = list(ids[:-1] if ids and ids[-1] in self.eos_ids else ids)
        return str(self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def update(self, ids: Sequence[int]) -> str:
        """Take the full list of generated ids so far; return the newly final text (may be empty)."""
        text = self.decode(ids)
        cut = _stop_cut(text, self.stop)
        if cut is not None:
            self.stopped = True
            text = text[:cut]
        else:
            text = text[: len(text) - _held_back(text, self.stop)]
        text = text.rstrip("\ufffd")
        if len(text) <= len(self.emitted) or not text.startswith(self.emitted):
            return ""
        delta = text[len(self.emitted) :]
        self.emitted = text
        return delta


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


class TransformersEngine:
    """A model folder loaded for chat generation with transformers (CUDA when available, else CPU)."""

    def __init__(self, model_dir: str | Path) -> None:
        """Load tokenizer and model from a standard folder (safetensors, tokenizer, chat template).

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
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        eos_list = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids: frozenset[int] = frozenset(eos_list)
        pad = gen.pad_token_id if gen.pad_token_id is not None else self.tokenizer.pad_token_id
        self.pad_id: int | None = pad if pad is not None else min(self.eos_ids, default=None)
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self.lock = threading.Lock()
        """Held for the whole of one generation: one model, one generation at a time."""

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

    def _sampling_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        gen = self.model.generation_config
        temperature = params.temperature if params.temperature is not None else gen.temperature or 1.0
        if temperature == 0:
            return {"do_sample": False}
        top_p = params.top_p if params.top_p is not None else gen.top_p or 1.0
        # transformers falls back to top_k=50 when the model sets none; the OpenAI API has no top-k.
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": gen.top_k or 0}

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
        # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        n_prompt = len(prompt_ids)
        budget = params.max_new_tokens
        if self.context_length is not None:
            budget = max(1, min(budget, self.context_length - n_prompt))
        tracker = _TextTracker(self.tokenizer, params.stop, self.eos_ids)
        watch_text = on_text is not None or bool(params.stop)

        class _Watch(StoppingCriteria):
            """Runs after every generated token: emits final text, ends on a stop string or cancel."""

            def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
                if watch_text:
                    delta = tracker.update(input_ids[0, n_prompt:].tolist())
                    if delta and on_text is not None:
                        on_text(delta)
                done = tracker.stopped or (cancel is not None and cancel.is_set())
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

        inputs = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        with self.lock, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(  # type: ignore[operator]
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=budget,
                pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([_Watch()]),
                **self._sampling_kwargs(params),
            )
        generated = out[0, n_prompt:].tolist()
        text = tracker.decode(generated)
        cut = _stop_cut(text, params.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        elif generated and generated[-1] in self.eos_ids:
            reason = "stop"
        elif cancel is not None and cancel.is_set():
            reason = "cancelled"
        else:
            reason = "length"
        if on_text is not None and len(text) > len(tracker.emitted) and text.startswith(tracker.emitted):
            on_text(text[len(tracker.emitted) :])
        return Completion(
            text=text, finish_reason=reason, prompt_tokens=n_prompt, completion_tokens=len(generated)
        )

"""The one generation engine: token-id prompts -> completions, batched and left-padded, greedy or
sampled, ending on stop tokens and stop strings, with streaming and cancellation.

Evaluation, the export check, serving (`lmtune serve`, `lmtune chat`, and through its HTTP API data
synthesis) and PPO's rollouts all generate through `Generator.generate`. A seeded call draws from a
forked copy of torch's random state seeded with `params.seed`, so the same call (same prompts, same
batch size, same weights) samples the same completions, and the caller's random state is untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from lmtune.errors import LmtuneError
from lmtune.runtime.stops import TextTracker, stop_token_ids

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Message = dict[str, str]

OnText = Callable[[int, str], None]
"""Receives (prompt index, newly final text) while generating."""


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    """The chat template applied to `messages`, ending with the assistant turn's opening."""
    if not tokenizer.chat_template:
        raise LmtuneError("the tokenizer has no chat template: cannot build generation prompts")
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return str(text)


@dataclass(frozen=True)
class SamplingParams:
    """How to generate completions."""

    max_new_tokens: int
    """Most tokens to generate (capped further by the model's context length)."""
    temperature: float | None = None
    """0 means greedy; None means the model's generation_config value, else 1.0."""
    top_p: float | None = None
    """Nucleus sampling mass; None means the model's generation_config value, else 1.0."""
    top_k: int | None = None
    """Top-k filter (0: off); None means the model's generation_config value, else off."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion; its text is cut before the first one."""
    seed: int | None = None
    """Seed of the sampler (a forked copy of torch's random state); None draws from the current state."""


GREEDY = SamplingParams(max_new_tokens=1, temperature=0)
"""Greedy decoding (replace `max_new_tokens`)."""


@dataclass(frozen=True)
class Completion:
    """One generated completion."""

    text: str
    """The completion decoded without special tokens, cut before the first stop string."""
    token_ids: list[int]
    """The new tokens, up to and including the stop token when one was produced."""
    finish_reason: str
    """`stop` (a stop token or string), `length` (token budget spent) or `cancelled`."""
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        """Tokens generated, the stop token included."""
        return len(self.token_ids)


class Generator:
    """Generates from one model and its tokenizer (a PeftModel works: its active adapter applies)."""

    def __init__(
        self,
        model: PreTrainedModel | Any,
        tokenizer: PreTrainedTokenizerBase,
        stop_ids: Sequence[int] | None = None,
    ) -> None:
        """
        Args:
            model: A causal LM with `generate`.
            tokenizer: Decodes completions (and encodes chat prompts in `encode`).
            stop_ids: Token ids that end a completion; default: the chat tokenizer's end-of-turn token
                and eos (`lmtune.runtime.stops.stop_token_ids`).
        """
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer)
        if not self.stop_ids:
            raise LmtuneError("generation needs at least one stop token id")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.stop_ids[0]
        self.context_length: int | None = getattr(model.config, "max_position_embeddings", None)

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """Prompt token ids: the chat template over `messages` with the assistant generation prompt."""
        return list(
            self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]
        )

    def sampling_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        """`generate` keyword arguments for `params`, unset values taken from the model's config."""
        gen = self.model.generation_config
        temperature = params.temperature if params.temperature is not None else gen.temperature or 1.0
        if temperature == 0:
            return {"do_sample": False}
        top_p = params.top_p if params.top_p is not None else gen.top_p or 1.0
        # transformers falls back to top_k=50 when the model sets none; the OpenAI API has no top-k.
        top_k = params.top_k if params.top_k is not None else gen.top_k or 0
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k}

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        *,
        batch_size: int | None = None,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
        desc: str | None = None,
        by_length: bool = False,
    ) -> list[Completion]:
        """Generate one completion per prompt, `batch_size` prompts per `generate` call (all at once
        when None). Blocks: run it in a worker thread from async code.

        Args:
            prompts: Token ids of each prompt (see `encode`).
            params: Sampling settings, the same for every prompt.
            batch_size: Prompts per batch.
            on_text: Called with (prompt index, newly final text) while generating; a prompt's pieces
                concatenate to its `Completion.text`.
            cancel: When set, generation stops at the next token (`finish_reason="cancelled"`).
            desc: Progress-bar label; None hides the bar.
            by_length: Batch the prompts in order of length (less padding), the results still in the
                prompts' order. Sampled rows draw in batch order, so leave it off where draws must
                match another sampler's.
        """
        # deferred: torch, tqdm only when this runs (keeps `import lmtune...` light)
        import torch
        from tqdm.auto import tqdm

        if not prompts:
            return []
        size = batch_size or len(prompts)
        device = next(self.model.parameters()).device
        results: list[Completion] = []
        with torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else [], enabled=params.seed is not None
        ):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            order = (
                sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
                if by_length
                else range(len(prompts))
            )
            order = list(order)
            for start in tqdm(range(0, len(prompts), size), desc=desc, unit="batch", disable=desc is None):
                chosen = order[start : start + size]
                show = None if on_text is None else _reindexed(on_text, chosen)
                results += self._batch([prompts[i] for i in chosen], params, device, show, cancel)
        back = [Completion("", [], "", 0)] * len(prompts)
        for i, done in zip(order, results, strict=True):
            back[i] = done
        return back

    def _batch(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        device: torch.device,
        on_text: OnText | None,
        cancel: threading.Event | None,
    ) -> list[Completion]:
        """One `generate` call over left-padded `prompts` (`on_text` gets indices into `prompts`)."""
        # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, row in enumerate(prompts):
            if row:
                ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
                attention[i, width - len(row) :] = 1
        budget = params.max_new_tokens
        if self.context_length is not None:
            budget = max(1, min(budget, self.context_length - width))
        stops = frozenset(self.stop_ids)
        trackers = [TextTracker(self.tokenizer, params.stop, stops) for _ in prompts]
        ended = [0] * len(prompts)
        """Per row: how many tokens it had when a stop string or cancel ended it (0: not ended so)."""
        finished = [False] * len(prompts)
        """Per row: it produced a stop token (later tokens are padding)."""
        watch = on_text is not None or bool(params.stop) or cancel is not None

        class _Watch(StoppingCriteria):
            """Runs after every generated token: hands out final text, ends rows on a stop string,
            and every row on cancel."""

            def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
                new = input_ids[:, width:]
                cancelled = cancel is not None and cancel.is_set()
                done = []
                for i, tracker in enumerate(trackers):
                    if not ended[i] and not finished[i]:
                        row = new[i].tolist()
                        finished[i] = row[-1] in stops
                        if on_text is not None or tracker.stop:
                            delta = tracker.update(row)
                            if delta and on_text is not None:
                                on_text(i, delta)
                        if tracker.stopped or cancelled:
                            ended[i] = len(row)
                    done.append(bool(ended[i]))
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

        with torch.inference_mode():
            out = self.model.generate(  # type: ignore[operator]
                input_ids=ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=budget,
                eos_token_id=list(self.stop_ids),
                pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([_Watch()]) if watch else None,
                **self.sampling_kwargs(params),
            )
        cancelled = cancel is not None and cancel.is_set()
        results = []
        for i, row in enumerate(out[:, width:].tolist()):
            cut = next((k + 1 for k, t in enumerate(row) if t in stops), len(row))
            if ended[i]:
                cut = min(cut, ended[i])
            show = None if on_text is None else partial(on_text, i)
            results.append(finish(trackers[i], row[:cut], stops, cancelled, show, len(prompts[i])))
        return results


def finish(
    tracker: TextTracker,
    tokens: list[int],
    stops: frozenset[int],
    cancelled: bool,
    on_text: Callable[[str], None] | None,
    prompt_tokens: int,
) -> Completion:
    """The completion of one row whose generation ended with `tokens`: its text cut before any stop
    string, why it ended (`stop`, `cancelled`, `length`), and the text not yet handed to `on_text`."""
    text, hit = tracker.final_text(tokens)
    if hit or (tokens and tokens[-1] in stops):
        reason = "stop"
    elif cancelled:
        reason = "cancelled"
    else:
        reason = "length"
    if on_text is not None:
        rest = tracker.rest(text)
        if rest:
            on_text(rest)
    return Completion(text, tokens, reason, prompt_tokens)


def _reindexed(on_text: OnText, chosen: list[int]) -> OnText:
    """`on_text` called with the prompts' own indices for a batch of `chosen` prompts."""
    return lambda row, text: on_text(chosen[row], text)


def greedy_generate(
    model: PreTrainedModel | Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    stop_ids: Sequence[int],
    desc: str | None = None,
) -> list[Completion]:
    """Greedy completions of rendered prompt strings (see `render_prompt`), `batch_size` at a time in
    order of length: what evaluation and the export check compare."""
    ids = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0)
    generator = Generator(model, tokenizer, stop_ids)
    return generator.generate(ids, params, batch_size=batch_size, desc=desc, by_length=True)

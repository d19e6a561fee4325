"""Multiple choice by log-likelihood: each choice is scored as the assistant's reply to the question,
after any few-shot examples given as earlier chat turns.

A question's prompt runs through the model once; its key/value cache is repeated for the choices, which
then run together as one batch (one forward pass over the prompt, one over all the choices), so a
question costs its prompt once, not once per choice. `full_rows=True` scores each choice as its own
row instead (prompt + choice): the same numbers (tested), for models whose forward does not take a
cache (prompt-learning adapters).

Per choice: logL = sum of log p(token | prompt, earlier tokens) over the choice's tokens. The predicted
choice is argmax logL (`accuracy`) or argmax logL / byte length of the choice (`accuracy_norm`, the
length normalisation of lm-evaluation-harness's `acc_norm`). The confidence is the softmax of the logL
over the choices; `ece` is the expected calibration error of that confidence over 10 equal-width bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmtune.data.formats.preference import with_system
from lmtune.evaluate.choice_sets import ChoiceItem
from lmtune.runtime.generation import render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ECE_BINS = 10


@dataclass(frozen=True)
class ChoiceScore:
    """The log-likelihood of each choice of one question."""

    logliks: list[float]
    byte_lengths: list[int]
    answer: int

    @property
    def predicted(self) -> int:
        return max(range(len(self.logliks)), key=lambda i: self.logliks[i])

    @property
    def predicted_norm(self) -> int:
        return max(range(len(self.logliks)), key=lambda i: self.logliks[i] / max(1, self.byte_lengths[i]))

    @property
    def probabilities(self) -> list[float]:
        """Softmax of the log-likelihoods over the choices."""
        top = max(self.logliks)
        weights = [math.exp(x - top) for x in self.logliks]
        total = sum(weights)
        return [w / total for w in weights]

    @property
    def confidence(self) -> float:
        """The probability of the predicted choice."""
        return max(self.probabilities)


def needs_full_rows(model: Any) -> bool:
    """Prompt-learning adapters (prompt, prefix tuning) prepend virtual tokens: their forward takes no
    shared prompt cache, so each choice is scored as its own row."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def few_shot_turns(shots: Sequence[ChoiceItem]) -> list[dict[str, str]]:
    """Each example as a user question and the assistant's correct answer."""
    turns: list[dict[str, str]] = []
    for item in shots:
        turns += [
            {"role": "user", "content": item.question},
            {"role": "assistant", "content": item.choices[item.answer]},
        ]
    return turns


def score_choices(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[ChoiceItem],
    shots: Sequence[ChoiceItem] = (),
    *,
    system_prompt: str | None = None,
    full_rows: bool = False,
    desc: str | None = None,
) -> list[ChoiceScore]:
    """The log-likelihood of every choice of every item (see the module doc)."""
    # deferred: torch, tqdm only when this runs (keeps `import lmtune...` light)
    import torch
    from tqdm.auto import tqdm

    context = with_system(few_shot_turns(shots), system_prompt)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for item in tqdm(items, desc=desc, unit="question", disable=desc is None):
        prompt_text = render_prompt(tokenizer, [*context, {"role": "user", "content": item.question}])
        prompt = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        choices = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) or [pad] for c in item.choices]
        with torch.inference_mode():
            if full_rows:
                logliks = _full_rows(model, prompt, choices, pad, device)
            else:
                logliks = _shared_prompt(model, prompt, choices, pad, device)
        out.append(ChoiceScore(logliks, [len(c.encode("utf-8")) for c in item.choices], item.answer))
    return out


def _shared_prompt(
    model: Any, prompt: list[int], choices: list[list[int]], pad: int, device: Any
) -> list[float]:
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    first = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
    cache = first.past_key_values
    cache.batch_repeat_interleave(len(choices))
    width = max(len(c) for c in choices)
    ids = torch.tensor([c + [pad] * (width - len(c)) for c in choices], device=device)
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in choices], device=device)
    full_mask = torch.cat(
        [torch.ones((len(choices), len(prompt)), dtype=mask.dtype, device=device), mask], dim=1
    )
    rest = model(input_ids=ids, attention_mask=full_mask, past_key_values=cache, use_cache=True)
    # the logits before choice token j: the prompt's last position for j = 0, the choice's own j - 1 after
    logits = torch.cat([first.logits[:, -1:].expand(len(choices), 1, -1), rest.logits[:, :-1]], dim=1)
    return _summed(logits, ids, mask)


def _full_rows(model: Any, prompt: list[int], choices: list[list[int]], pad: int, device: Any) -> list[float]:
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    width = max(len(c) for c in choices)
    rows = [prompt + c + [pad] * (width - len(c)) for c in choices]
    attention = [[1] * (len(prompt) + len(c)) + [0] * (width - len(c)) for c in choices]
    logits = model(
        input_ids=torch.tensor(rows, device=device), attention_mask=torch.tensor(attention, device=device)
    ).logits
    logits = logits[
        :, logits.shape[1] - width - 1 : -1
    ]  # before each choice token (virtual tokens come first)
    ids = torch.tensor([c + [pad] * (width - len(c)) for c in choices], device=device)
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in choices], device=device)
    return _summed(logits, ids, mask)


def _summed(logits: Any, ids: Any, mask: Any) -> list[float]:
    """sum_j mask_j * log softmax(logits_j)[ids_j] per row."""
    logp = logits.float().log_softmax(dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return [float(x) for x in (logp * mask).sum(dim=1)]


def expected_calibration_error(pairs: Sequence[tuple[float, float]], bins: int = ECE_BINS) -> float | None:
    """ECE of (confidence, correct) pairs: sum over equal-width confidence bins of
    |accuracy(bin) - mean confidence(bin)| x share of items in the bin (Guo et al. 2017)."""
    if not pairs:
        return None
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(c, y) for c, y in pairs if (low < c <= high) or (b == 0 and c == 0)]
        if inside:
            accuracy = sum(y for _, y in inside) / len(inside)
            confidence = sum(c for c, _ in inside) / len(inside)
            total += abs(accuracy - confidence) * len(inside) / len(pairs)
    return total

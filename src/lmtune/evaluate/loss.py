"""Held-out loss: token-mean cross-entropy over the labelled (scored) tokens, and its perplexity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmtune.errors import DataError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

IGNORE_INDEX = -100


@dataclass(frozen=True)
class LossResult:
    """Loss over a whole split."""

    loss: float
    """Token-mean cross-entropy: sum over scored tokens of -log p(token | prefix), divided by their count."""
    perplexity: float
    """exp(loss)."""
    tokens: int
    """Scored (labelled) tokens the mean is taken over."""
    per_row: list[tuple[float, int]] = field(default_factory=list)
    """(summed NLL, scored tokens) of each row, in order: what a paired bootstrap resamples."""


def _pad_batch(rows: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad one batch: input ids with `pad_id`, labels with -100, attention mask with 0."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    width = max(len(r["input_ids"]) for r in rows)

    def padded(key: str, fill: int) -> torch.Tensor:
        return torch.tensor([list(r[key]) + [fill] * (width - len(r[key])) for r in rows])

    return {
        "input_ids": padded("input_ids", pad_id),
        "labels": padded("labels", IGNORE_INDEX),
        "attention_mask": padded("attention_mask", 0),
    }


def row_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, int]]:
    """(sum of -log softmax(logits[t])[labels[t+1]] over the positions whose next label is not -100,
    number of those positions) of each row of a batch.

    Labels are aligned with the inputs (as in transformers): the logits at position t predict the
    token at t+1, so logits drop their last position and labels their first.
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch.nn.functional as F

    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = labels[:, 1:]
    per_token = F.cross_entropy(
        shifted_logits.transpose(1, 2), shifted_labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    sums = per_token.sum(dim=1).tolist()
    counts = (shifted_labels != IGNORE_INDEX).sum(dim=1).tolist()
    return [(float(s), int(c)) for s, c in zip(sums, counts, strict=True)]


def eval_loss(
    model: PreTrainedModel,
    rows: Sequence[dict[str, Any]],
    *,
    batch_size: int,
    pad_id: int,
    token_budget: int | None = None,
) -> LossResult:
    """Token-mean loss and perplexity of `model` on tokenised rows (`input_ids`, `labels`, `attention_mask`).

    The mean is over every scored token of the split, so long answers weigh more than short ones
    (the same quantity a training loss on the split estimates, without per-batch averaging bias). Rows
    are batched in order of length (less padding); `per_row` keeps the rows' own order. With
    `token_budget`, a batch takes as many rows as fit in that many (padded) tokens, at least
    `batch_size` (short rows then go many to a forward pass).
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    if not rows:
        raise DataError("the eval split is empty: cannot compute eval loss")
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    per_row: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    for chosen in _batches(order, [len(rows[i]["input_ids"]) for i in order], batch_size, token_budget):
        batch = {k: v.to(device) for k, v in _pad_batch([rows[i] for i in chosen], pad_id).items()}
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # Prompt tuning prepends virtual tokens to the input: their logits come first; score the real ones.
        logits = logits[:, logits.shape[1] - batch["labels"].shape[1] :]
        for i, scored in zip(chosen, row_token_nll(logits, batch["labels"]), strict=True):
            per_row[i] = scored
    count = sum(n for _, n in per_row)
    if count == 0:
        raise DataError("the eval split has no labelled tokens (every label is -100): nothing to score")
    loss = sum(nll for nll, _ in per_row) / count
    return LossResult(loss=loss, perplexity=perplexity(loss), tokens=count, per_row=per_row)


def _batches(order: list[int], lengths: list[int], size: int, budget: int | None) -> list[list[int]]:
    """`order` cut into batches: `size` rows each, or (with `budget`) as many rows as fit in `budget`
    padded tokens (the rows come in increasing length, so the last row sets the width), at least `size`."""
    out: list[list[int]] = []
    current: list[int] = []
    for index, length in zip(order, lengths, strict=True):
        fits = budget is not None and (len(current) + 1) * length <= budget
        if current and len(current) >= size and not fits:
            out.append(current)
            current = []
        current.append(index)
    if current:
        out.append(current)
    return out


def perplexity(loss: float) -> float:
    """exp(loss), inf past what a float holds."""
    return math.exp(loss) if loss < 700 else math.inf

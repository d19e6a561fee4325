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


def summed_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of -log softmax(logits[t])[labels[t+1]] over positions whose next label is not -100.

    Labels are aligned with the inputs (as in transformers): the logits at position t predict the
    token at t+1, so logits drop their last position and labels their first.

    Returns:
        (summed negative log-likelihood, number of scored tokens).
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch.nn.functional as F

    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = labels[:, 1:]
    total = F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]),
        shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return total, int((shifted_labels != IGNORE_INDEX).sum())


def row_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, int]]:
    """(summed NLL, scored tokens) of each row of a batch (see `summed_token_nll`)."""
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
    model: PreTrainedModel, rows: Sequence[dict[str, Any]], *, batch_size: int, pad_id: int
) -> LossResult:
    """Token-mean loss and perplexity of `model` on tokenised rows (`input_ids`, `labels`, `attention_mask`).

    The mean is over every scored token of the split, so long answers weigh more than short ones
    (the same quantity a training loss on the split estimates, without per-batch averaging bias).
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    if not rows:
        raise DataError("the eval split is empty: cannot compute eval loss")
    device = next(model.parameters()).device
    total, count = 0.0, 0
    per_row: list[tuple[float, int]] = []
    for start in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in _pad_batch(rows[start : start + batch_size], pad_id).items()}
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # Prompt tuning prepends virtual tokens to the input: their logits come first; score the real ones.
        logits = logits[:, logits.shape[1] - batch["labels"].shape[1] :]
        nll, n = summed_token_nll(logits, batch["labels"])
        total += float(nll)
        count += n
        per_row += row_token_nll(logits, batch["labels"])
    if count == 0:
        raise DataError("the eval split has no labelled tokens (every label is -100): nothing to score")
    loss = total / count
    return LossResult(loss=loss, perplexity=perplexity(loss), tokens=count, per_row=per_row)


def perplexity(loss: float) -> float:
    """exp(loss), inf past what a float holds."""
    return math.exp(loss) if loss < 700 else math.inf

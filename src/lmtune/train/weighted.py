"""Class-weighted loss for classification-style targets (`data.mixture.class_weights`): each example's
token losses are weighted by its label's class weight, so rare labels count as much as common ones.

The data stage writes a `weight` column on the train split; `WeightedLossTrainer` is transformers'
Trainer with only `compute_loss` replaced, and only for batches that carry `weight` (evaluation batches
have none and get the model's own loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import Trainer

from lmtune.train.collator import IGNORE

if TYPE_CHECKING:
    import torch


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L = sum_i w_i sum_t nll_it / sum_i w_i n_i over the labelled (next-token) positions t of example i
    (n_i of them): the token-mean loss with each example's tokens weighted by w_i. All weights equal to 1
    give the usual token-mean cross-entropy.

    Args:
        logits: [B, T, V] next-token logits.
        labels: [B, T] token ids, -100 where no loss (shifted by one inside, as causal LMs do).
        weights: [B] per-example weights.
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(shift_labels.shape)
    mask = (shift_labels != IGNORE).to(nll.dtype)
    w = weights.to(nll.dtype).unsqueeze(1)
    return (nll * mask * w).sum() / (mask * w).sum().clamp(min=1e-12)


class WeightedLossTrainer(Trainer):
    """transformers' Trainer whose training loss is `weighted_token_loss` when the batch has `weight`.

    With gradient accumulation, each micro-batch is normalised by its own weighted token count, and the
    Trainer divides each by the accumulation steps (the loss is not scaled by `num_items_in_batch`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_is_scaled_for_ga = False

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        if "weight" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        weights = inputs.pop("weight")
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = weighted_token_loss(outputs.logits, labels, weights)
        return (loss, outputs) if return_outputs else loss

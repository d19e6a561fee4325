"""Per-token and per-sequence log-probabilities of labelled tokens under a causal LM's logits.

Pure torch, no model: the alignment losses take these as inputs. Half-precision logits are
upcast to float32 before the softmax (the log-sum-exp over a large vocabulary loses too much
in bf16); float32 and float64 logits keep their dtype.
"""

from __future__ import annotations

import torch


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


def token_logps(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100, shift: bool = True
) -> torch.Tensor:
    """Log-probability of each labelled token, aligned with `labels`, 0 where ignored.

    With `shift=True` (a causal LM's logits over the whole input), position t holds

        log p(labels[t] | tokens < t) = logits[t-1, labels[t]] - logsumexp_v logits[t-1, v]

    and position 0 (no logits predict it) is 0. With `shift=False`, `logits[:, t]` already
    predicts `labels[:, t]` (e.g. logits cut to the completion) and no shift is applied.

    Args:
        logits: [B, T, V] unnormalised next-token scores.
        labels: [B, T] token ids; `ignore_index` marks tokens that are not scored.
        ignore_index: label value of unscored tokens.
        shift: whether `logits[:, t]` predicts `labels[:, t + 1]` (True) or `labels[:, t]` (False).

    Returns:
        [B, T] log-probabilities in the logits' dtype (float32 for half-precision logits).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    logits = _upcast(logits)
    if shift:
        logits, targets = logits[:, :-1], labels[:, 1:]
    else:
        targets = labels
    mask = targets != ignore_index
    safe = targets.masked_fill(~mask, 0)
    picked = torch.gather(logits, -1, safe.unsqueeze(-1)).squeeze(-1)
    per_token = (picked - torch.logsumexp(logits, dim=-1)).masked_fill(~mask, 0.0)
    if shift:
        per_token = torch.cat([per_token.new_zeros(per_token.size(0), 1), per_token], dim=1)
    return per_token


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100, average: bool = False
) -> torch.Tensor:
    """Summed (or averaged) next-token log-probability of each sequence's labelled tokens.

        log pi(y | x) = sum_{t : labels[t] != ignore} log p(labels[t] | tokens < t)

    and with `average=True` that sum divided by the number of labelled tokens (ORPO, SimPO and
    IPO use the average). A sequence with no labelled token gets 0.

    Args:
        logits: [B, T, V] a causal LM's logits over the whole input.
        labels: [B, T] input ids with prompt and padding set to `ignore_index`.
        ignore_index: label value of unscored tokens.
        average: divide by the count of labelled tokens instead of summing.

    Returns:
        [B] per-sequence log-probabilities.
    """
    per_token = token_logps(logits, labels, ignore_index=ignore_index, shift=True)
    total = per_token.sum(dim=-1)
    if not average:
        return total
    counts = (labels[:, 1:] != ignore_index).sum(dim=-1).clamp(min=1)
    return total / counts

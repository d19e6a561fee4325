"""Online RL math: GRPO/RLOO advantages, the GRPO token loss, and PPO (GAE, clipped policy and value losses).

Pure torch on per-token tensors [B, T] with a completion mask (1 = generated token that counts).
GRPO and RLOO follow TRL 1.16 (`trainer/grpo_trainer.py`, `trainer/rloo_trainer.py`); PPO follows
the compact PPO TRL shipped until 1.12 (its `ppo_trainer.py`), since TRL 1.13 removed it.

Notation: logp = log pi(a_t|s_t) under the policy being trained, old = under the policy that
sampled, ref = under the reference model, rho = exp(logp - old) the importance ratio.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

AdvantageScale = Literal["group", "batch", "none"]
GrpoLossType = Literal["dapo", "grpo", "bnpo", "dr_grpo"]
KlKind = Literal["k1", "k2", "k3"]

# TRL's std guard in GRPO/RLOO advantage normalisation
ADVANTAGE_EPS = 1e-4


class GrpoTerms(NamedTuple):
    """GRPO loss (scalar), per-token loss and KL [B, T], and the fraction of tokens clipped (scalar)."""

    loss: torch.Tensor
    per_token_loss: torch.Tensor
    per_token_kl: torch.Tensor
    clip_ratio: torch.Tensor


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the positions where mask is 1: sum(x m) / sum(m) (0 where the mask is empty)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased (Bessel-corrected) standard deviation ignoring NaNs, as TRL's `nanstd`."""
    keep = dim if dim is not None else tuple(range(x.dim()))
    mean = torch.nanmean(x, dim=keep, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=keep, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=keep, keepdim=True) * count / (count - 1)
    var = torch.where(count > 1, var, torch.full_like(var, float("nan")))
    return var.sqrt().squeeze() if dim is None else var.sqrt().squeeze(dim)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: AdvantageScale = "group", eps: float = ADVANTAGE_EPS
) -> torch.Tensor:
    """GRPO advantages: each completion's reward against its prompt group's mean (TRL's GRPOTrainer).

        A_i = (r_i - mean_{j in g(i)} r_j) / (s + eps)

    with s the unbiased standard deviation of the group (`scale="group"`, DeepSeekMath), of the
    whole batch (`"batch"`, Dr. GRPO's recommendation in TRL's docs), or no division at all
    (`"none"`). Rewards are laid out group by group: [p0 g0, p0 g1, ..., p1 g0, ...]. A NaN
    reward (unscorable completion) is left out of its group's statistics and gets advantage 0.

    Args:
        rewards: [N * group_size] scalar rewards.
        group_size: completions per prompt (TRL's `num_generations`).
        scale: which standard deviation divides.
        eps: guard added to the standard deviation (TRL: 1e-4).

    Returns:
        [N * group_size] advantages.
    """
    grouped = rewards.view(-1, group_size)
    advantages = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)).reshape(-1)
    if scale == "group":
        std = _nanstd(grouped, dim=1) if group_size > 1 else rewards.new_zeros(grouped.size(0))
        advantages = advantages / (std.repeat_interleave(group_size) + eps)
    elif scale == "batch":
        std = _nanstd(rewards) if rewards.numel() > 1 else rewards.new_zeros(())
        advantages = advantages / (std + eps)
    elif scale != "none":
        raise ValueError(f"unknown advantage scale {scale!r}; expected group, batch or none")
    return torch.nan_to_num(advantages, nan=0.0)


def rloo_advantages(
    rewards: torch.Tensor, group_size: int, normalize: bool = False, eps: float = ADVANTAGE_EPS
) -> torch.Tensor:
    """REINFORCE leave-one-out advantages (Ahmadian et al. 2024; TRL's RLOOTrainer).

        A_i = r_i - 1/(k-1) sum_{j in g(i), j != i} r_j

    i.e. the baseline is the mean of the other k - 1 completions of the same prompt, never the
    completion itself. With `normalize=True` the advantages are then standardised over the batch,
    (A - mean A) / (std A + eps), as TRL's `normalize_advantages`. NaN rewards are left out of
    their siblings' baselines and get advantage 0; a group of one gets 0.

    Args:
        rewards: [N * group_size] scalar rewards (already KL-penalised, if the caller does that).
        group_size: completions per prompt k.
        normalize: standardise over the batch afterwards.
        eps: guard added to the standard deviation.

    Returns:
        [N * group_size] advantages.
    """
    if group_size == 1:
        return torch.zeros_like(rewards)
    grouped = rewards.view(-1, group_size)
    scorable = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
    baselines = (torch.nansum(grouped, dim=1, keepdim=True) - grouped) / (scorable - 1)
    advantages = rewards - baselines.reshape(-1)
    if normalize:
        advantages = (advantages - torch.nanmean(advantages)) / (_nanstd(advantages) + eps)
    return torch.nan_to_num(advantages, nan=0.0)


def kl_penalty(logps: torch.Tensor, ref_logps: torch.Tensor, kind: KlKind = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman, "Approximating KL divergence").

    With u = ref_logps - logps = log(ref/pi):

        k1 = -u                  unbiased, can be negative (RLOO's reward penalty)
        k2 = u^2 / 2             biased, low variance
        k3 = exp(u) - u - 1      unbiased, always >= 0 (GRPO's loss term)

    Args:
        logps: [B, T] policy log-probs of the sampled tokens.
        ref_logps: [B, T] reference log-probs of the same tokens.
        kind: which estimator.

    Returns:
        [B, T] per-token KL estimates.
    """
    u = ref_logps - logps
    if kind == "k1":
        return -u
    if kind == "k2":
        return 0.5 * u**2
    if kind == "k3":
        return torch.exp(u) - u - 1
    raise ValueError(f"unknown KL estimator {kind!r}; expected k1, k2 or k3")


def grpo_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    loss_type: GrpoLossType = "dapo",
    max_completion_length: int | None = None,
    num_items: float | torch.Tensor | None = None,
    kl_bias_correction: bool = True,
) -> GrpoTerms:
    """GRPO's clipped surrogate plus a k3 KL term, aggregated by `loss_type` (TRL GRPOTrainer._compute_loss).

    Per token, with rho_t = exp(logp_t - old_t) and the sequence's advantage A:

        l_t = -min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A) + beta rho_t k3_t

    The KL term is weighted by rho_t (`kl_bias_correction`, TRL's `use_bias_correction_kl`, on by
    default in 1.16: it makes the KL gradient the unbiased reverse-KL gradient, DeepSeek-V3.2);
    without it the term is beta k3_t. On-policy rho_t = 1 in value but not in gradient.

    The per-token losses are then aggregated over the mask m:

        grpo:     mean_i [ sum_t l_it m_it / sum_t m_it ]          (per-sequence mean, then batch mean)
        bnpo:     sum_it l_it m_it / sum_it m_it                   (token mean over the batch)
        dr_grpo:  sum_it l_it m_it / (B * max_completion_length)
        dapo:     sum_it l_it m_it / num_items                     (TRL 1.16's default; num_items =
                  tokens in the whole generation batch, defaults to this batch's sum_it m_it)

    The loss is not divided by gradient-accumulation steps (TRL does that inside its trainer).
    `clip_ratio` counts tokens where the clip is active against the advantage's sign:
    (rho < 1 - eps_low and A < 0) or (rho > 1 + eps_high and A > 0).

    Args:
        logps: [B, T] policy log-probs (with gradient).
        old_logps: [B, T] log-probs of the sampling policy (equal to `logps.detach()` on-policy).
        ref_logps: [B, T] reference log-probs; needed when beta != 0.
        advantages: [B] per-sequence or [B, T] per-token advantages.
        mask: [B, T] completion mask.
        epsilon_low: lower clip range.
        epsilon_high: upper clip range (DAPO's clip-higher).
        beta: weight of the k3 KL term.
        loss_type: aggregation, see above.
        max_completion_length: the generation budget, for dr_grpo.
        num_items: token count normalising dapo.
        kl_bias_correction: weight the KL term by rho_t.

    Returns:
        GrpoTerms(loss scalar, per_token_loss [B, T], per_token_kl [B, T] (the KL term as it enters
        the loss, before beta; zeros when beta == 0), clip_ratio scalar).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss = -torch.min(ratio * advantages, clipped * advantages)
    per_token_kl = torch.zeros_like(per_token_loss)
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("grpo_token_loss needs ref_logps when beta != 0")
        per_token_kl = kl_penalty(logps, ref_logps, "k3")
        if kl_bias_correction:
            per_token_kl = per_token_kl * ratio
        per_token_loss = per_token_loss + beta * per_token_kl
    loss = _aggregate(per_token_loss, mask, loss_type, max_completion_length, num_items)
    is_clipped = ((ratio < 1 - epsilon_low) & (advantages < 0)) | (
        (ratio > 1 + epsilon_high) & (advantages > 0)
    )
    clip_ratio = masked_mean(is_clipped.to(logps.dtype), mask)
    return GrpoTerms(loss, per_token_loss, per_token_kl, clip_ratio.detach())


def _aggregate(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: GrpoLossType,
    max_completion_length: int | None,
    num_items: float | torch.Tensor | None,
) -> torch.Tensor:
    masked = per_token_loss * mask
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type 'dr_grpo' needs max_completion_length")
        return masked.sum() / (per_token_loss.size(0) * max_completion_length)
    if loss_type == "dapo":
        denominator = (
            mask.sum()
            if num_items is None
            else torch.as_tensor(num_items, dtype=mask.dtype, device=mask.device)
        )
        return masked.sum() / denominator.clamp(min=1.0)
    raise ValueError(f"unknown GRPO loss_type {loss_type!r}; expected dapo, grpo, bnpo or dr_grpo")


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Standardise x over the masked positions: (x - mu) / sqrt(var + eps).

    mu and var are the masked mean and the Bessel-corrected masked variance
    (var = sum m (x - mu)^2 / (sum m - 1)), as TRL's PPO `masked_whiten`. With
    `shift_mean=False` the mean is added back (rewards keep their level, only the scale changes).

    Args:
        x: [B, T] values.
        mask: [B, T] 1 where x counts.
        shift_mean: subtract the mean (True) or keep it.
        eps: variance guard.

    Returns:
        [B, T] whitened values (positions outside the mask are transformed too; mask them after).
    """
    mean = masked_mean(x, mask)
    count = mask.to(x.dtype).sum()
    var = masked_mean((x - mean) ** 2, mask) * count / (count - 1).clamp(min=1.0)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    return whitened if shift_mean else whitened + mean


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over the masked tokens of each sequence.

    Backwards from the last token, with V and r zero outside the mask (so the value after the
    last counted token is 0):

        delta_t = r_t + gamma V_{t+1} - V_t
        A_t     = delta_t + gamma lam A_{t+1}
        R_t     = A_t + V_t                      (the value target)

    With gamma = lam = 1, A_t = sum_{s >= t} r_s - V_t (reward-to-go minus value). A and R are 0
    outside the mask. The mask should be a prefix of ones per row (a generated completion).

    Args:
        rewards: [B, T] per-token rewards (typically -beta KL per token plus the score on the last token).
        values: [B, T] value-head estimates V(s_t).
        mask: [B, T] completion mask.
        gamma: discount.
        lam: GAE's lambda.

    Returns:
        (advantages [B, T], returns [B, T]), detached.
    """
    mask = mask.to(values.dtype)
    rewards = rewards.detach() * mask
    values = values.detach() * mask
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.size(1))):
        next_value = values[:, t + 1] if t + 1 < values.size(1) else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def ppo_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, Eq. 7), as a loss averaged over masked tokens.

        L = mean_m max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps)),   rho_t = exp(logp_t - old_t)

    The clipped branch carries no gradient, so a ratio already beyond 1 + eps with A > 0 (or below
    1 - eps with A < 0) stops being pushed further. `clipfrac` is the fraction of masked tokens
    where the clipped branch is the larger one.

    Args:
        logps: [B, T] policy log-probs (with gradient).
        old_logps: [B, T] log-probs at sampling time.
        advantages: [B, T] advantages (e.g. whitened GAE).
        mask: [B, T] completion mask.
        clip_eps: clip range eps.

    Returns:
        (loss scalar, clipfrac scalar detached).
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logps.dtype), mask)
    return loss, clipfrac.detach()


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_value: float,
) -> torch.Tensor:
    """PPO's clipped value loss, averaged over masked tokens.

        V_clip = old + clip(V - old, -c, c)
        L      = 1/2 mean_m max((V - R)^2, (V_clip - R)^2)

    Args:
        values: [B, T] current value-head outputs (with gradient).
        old_values: [B, T] values at sampling time.
        returns: [B, T] value targets (from `gae`).
        mask: [B, T] completion mask.
        clip_value: clip range c of the value update.

    Returns:
        Scalar loss.
    """
    clipped = old_values + torch.clamp(values - old_values, -clip_value, clip_value)
    losses = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(losses, mask)

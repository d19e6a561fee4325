"""PPO's loss math: GAE, whitening, the clipped policy and value losses (lmtune's own PPO, `align/ppo.py`).

Pure torch on per-token tensors [B, T] with a completion mask (1 = generated token that counts). It
follows the compact PPO TRL shipped until 1.12 (its `ppo_trainer.py`), since TRL 1.13 removed it.
Only PPO runs these functions: the other objectives (reward model, DPO, KTO, ORPO, CPO/SimPO, GRPO,
RLOO) train with TRL's trainers and TRL's own losses (docs/alignment.md, "The loss math").

Notation: logp = log pi(a_t|s_t) under the policy being trained, old = under the policy that
sampled, rho = exp(logp - old) the importance ratio.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the positions where mask is 1: sum(x m) / sum(m) (0 where the mask is empty)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


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

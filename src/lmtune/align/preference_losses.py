"""Offline preference losses: reward model, DPO family, KTO, ORPO, CPO/SimPO.

Each function takes per-sequence log-probabilities (see `lmtune.align.logprobs`) or reward
scores, is vectorised over the batch and returns per-example losses, so the caller picks the
reduction (TRL's trainers take the batch mean). Each one reproduces what TRL 1.16's trainer
computes inline for the same objective; the TRL source location is named in each docstring and
`tests/unit/align/test_losses_vs_trl.py` checks the values on real batches.

Notation: pi = policy, ref = reference model, log-ratio h(y) = log pi(y|x) - log ref(y|x),
y_w = chosen, y_l = rejected, sigma = logistic function.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

DpoLossType = Literal["sigmoid", "ipo", "hinge", "robust"]
CpoLossType = Literal["sigmoid", "hinge", "ipo", "simpo"]


class DpoTerms(NamedTuple):
    """Per-example DPO losses and implicit rewards r = beta * h(y) (detached), each [B]."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


class OrpoTerms(NamedTuple):
    """Per-example ORPO losses, rewards beta * avg log pi(y|x), log-odds and log sigma(log-odds), each [B]."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    log_odds: torch.Tensor
    log_odds_ratio: torch.Tensor


class CpoTerms(NamedTuple):
    """Per-example CPO/SimPO losses and rewards beta * log pi(y|x) (detached), each [B]."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: DpoLossType = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> DpoTerms:
    """DPO and its variants on summed completion log-probabilities (TRL `DPOTrainer._compute_loss`).

    With d = h(y_w) - h(y_l):

        sigmoid:  -log sigma(beta d)                                   (DPO, Rafailov et al. Eq. 7)
        hinge:    max(0, 1 - beta d)                                   (SLiC)
        ipo:      (h(y_w)/|y_w| - h(y_l)/|y_l| - 1/(2 beta))^2         (IPO Eq. 17, per-token average)
        robust:   (-(1-eps) log sigma(beta d) + eps log sigma(-beta d)) / (1 - 2 eps)   (rDPO)

    IPO divides each log-ratio by its completion length |y| (token count, at least 1) as TRL
    does; pass `chosen_lengths`/`rejected_lengths` to get that, or leave them None for the
    paper's unnormalised form (lengths 1). `label_smoothing` (eps) is used by `robust` only:
    TRL 1.16 ignores it for the other types, so a non-zero value with them is refused here.

    Args:
        policy_chosen: [B] log pi(y_w|x), summed over completion tokens.
        policy_rejected: [B] log pi(y_l|x).
        ref_chosen: [B] log ref(y_w|x).
        ref_rejected: [B] log ref(y_l|x).
        beta: inverse temperature (for IPO: the regulariser tau).
        loss_type: which variant.
        label_smoothing: assumed label-flip probability eps for `robust`, in [0, 0.5).
        chosen_lengths: [B] completion token counts of y_w (IPO only).
        rejected_lengths: [B] completion token counts of y_l (IPO only).

    Returns:
        DpoTerms(losses [B], chosen_rewards [B], rejected_rewards [B]).

    Raises:
        ValueError: unknown loss type, or label smoothing out of range / not used by the type.
    """
    if loss_type == "robust":
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"robust DPO needs 0 <= label_smoothing < 0.5, got {label_smoothing}")
    elif label_smoothing != 0.0:
        raise ValueError(f"label_smoothing is used by loss_type 'robust' only, not {loss_type!r}")
    chosen_logratios = policy_chosen - ref_chosen
    rejected_logratios = policy_rejected - ref_rejected
    logits = beta * (chosen_logratios - rejected_logratios)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(logits)
    elif loss_type == "hinge":
        losses = torch.relu(1 - logits)
    elif loss_type == "ipo":
        chosen_avg = chosen_logratios / _lengths(chosen_lengths, chosen_logratios)
        rejected_avg = rejected_logratios / _lengths(rejected_lengths, rejected_logratios)
        losses = (chosen_avg - rejected_avg - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        eps = label_smoothing
        losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected sigmoid, ipo, hinge or robust")
    return DpoTerms(losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach())


def _lengths(lengths: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if lengths is None:
        return torch.ones_like(like)
    return lengths.to(like.dtype).clamp(min=1.0)


def preference_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs whose chosen reward is strictly higher: mean_i [r_w,i > r_l,i].

    Used for DPO's implicit rewards (TRL's `rewards/accuracies`) and a reward model's pairwise
    accuracy (TRL's `accuracy`); ties count as wrong, as in TRL.

    Args:
        chosen_rewards: [B] rewards of the chosen completions.
        rejected_rewards: [B] rewards of the rejected completions.

    Returns:
        Scalar float tensor in [0, 1].
    """
    return (chosen_rewards > rejected_rewards).float().mean()


def pairwise_reward_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> torch.Tensor:
    """Bradley-Terry reward-model loss (TRL `RewardTrainer.compute_loss`).

        loss_i = -log sigma(r_w,i - r_l,i - m_i) + c (r_w,i + r_l,i)^2

    The margin m (Llama 2) defaults to 0; the centring term with coefficient c (Eisenstein et al.
    2023, TRL's `center_rewards_coefficient`) keeps rewards near zero and is off by default.
    The batch mean of these losses is TRL's loss.

    Args:
        chosen: [B] scalar rewards of the chosen completions.
        rejected: [B] scalar rewards of the rejected completions.
        margin: [B] optional required reward gap per pair.
        center_rewards_coefficient: c, or None for no centring term.

    Returns:
        [B] per-pair losses.
    """
    gap = chosen - rejected
    if margin is not None:
        gap = gap - margin
    losses = -F.logsigmoid(gap)
    if center_rewards_coefficient is not None:
        losses = losses + center_rewards_coefficient * (chosen + rejected) ** 2
    return losses


def kto_kl_estimate(kl_policy_logps: torch.Tensor, kl_ref_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0: batch KL estimate on mismatched (prompt, completion) pairs.

        z0 = max(0, mean_j [log pi(y'_j|x_j) - log ref(y'_j|x_j)])

    where y'_j is another example's completion (TRL pairs x_j with y_{j-1}). Detached: no gradient
    flows through the reference point (TRL `KTOTrainer._compute_loss`).

    Args:
        kl_policy_logps: [B] policy log-probs of the mismatched completions.
        kl_ref_logps: [B] reference log-probs of the same.

    Returns:
        Scalar tensor z0 >= 0.
    """
    return (kl_policy_logps - kl_ref_logps).mean().detach().clamp(min=0)


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl: torch.Tensor | float,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """KTO loss on unpaired desirable / undesirable completions (Ethayarajh et al. Eq. 7; TRL `KTOTrainer`).

        desirable (label True):    lambda_D (1 - sigma(beta (h(y) - z0)))
        undesirable (label False): lambda_U (1 - sigma(beta (z0 - h(y))))

    with h(y) the policy/reference log-ratio and z0 the KL reference point (`kto_kl_estimate`).
    Losses stay in input order; their mean equals TRL's (which concatenates desirable then
    undesirable before the mean). The implicit reward is beta * h(y), as in DPO.

    Args:
        policy_logps: [B] log pi(y|x), summed over completion tokens.
        ref_logps: [B] log ref(y|x).
        labels: [B] bool, True for desirable.
        kl: z0, a scalar (tensor or float).
        beta: inverse temperature.
        desirable_weight: lambda_D.
        undesirable_weight: lambda_U.

    Returns:
        [B] per-example losses.
    """
    logratios = policy_logps - ref_logps
    desirable = labels.to(torch.bool)
    chosen_losses = desirable_weight * (1 - torch.sigmoid(beta * (logratios - kl)))
    rejected_losses = undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratios)))
    return torch.where(desirable, chosen_losses, rejected_losses)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, switching form at -log 2 to avoid cancellation (Maechler 2012)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_loss(
    chosen_avg_logps: torch.Tensor,
    rejected_avg_logps: torch.Tensor,
    chosen_nll: torch.Tensor | float,
    beta: float,
) -> OrpoTerms:
    """ORPO: supervised NLL on the chosen side plus an odds-ratio penalty (Hong et al. Eqs. 4-7).

    With p = exp(average token log-prob) and odds(y) = p / (1 - p):

        log_odds = log odds(y_w) - log odds(y_l)
                 = (lp_w - lp_l) - (log(1 - e^{lp_w}) - log(1 - e^{lp_l}))
        loss     = NLL(y_w) - beta log sigma(log_odds)

    TRL's `ORPOTrainer` uses the batch-mean token NLL of the chosen sequences (prompt included)
    as NLL; pass that scalar and the batch mean of `losses` is TRL's loss. Rewards are
    beta * lp (detached).

    Args:
        chosen_avg_logps: [B] average token log-prob lp_w of the chosen completions (< 0).
        rejected_avg_logps: [B] average token log-prob lp_l of the rejected completions (< 0).
        chosen_nll: NLL of the chosen sequences, scalar or [B].
        beta: weight lambda of the odds-ratio term.

    Returns:
        OrpoTerms(losses, chosen_rewards, rejected_rewards, log_odds, log_odds_ratio), each [B].
    """
    log_odds = (chosen_avg_logps - rejected_avg_logps) - (
        _log1mexp(chosen_avg_logps) - _log1mexp(rejected_avg_logps)
    )
    log_odds_ratio = F.logsigmoid(log_odds)
    losses = chosen_nll - beta * log_odds_ratio
    return OrpoTerms(
        losses,
        beta * chosen_avg_logps.detach(),
        beta * rejected_avg_logps.detach(),
        log_odds.detach(),
        log_odds_ratio.detach(),
    )


def cpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    beta: float,
    loss_type: CpoLossType = "sigmoid",
    simpo_gamma: float = 0.5,
    label_smoothing: float = 0.0,
    chosen_nll: torch.Tensor | None = None,
    cpo_alpha: float = 1.0,
) -> CpoTerms:
    """Reference-free CPO and SimPO (TRL `experimental.cpo.CPOTrainer.cpo_loss`).

    With d = log pi(y_w|x) - log pi(y_l|x) and label smoothing eps:

        sigmoid:  -(1-eps) log sigma(beta d) - eps log sigma(-beta d)          (CPO Eq. 3)
        simpo:    the same on d - gamma/beta, i.e. sigma(beta d - gamma)       (SimPO Eq. 6)
        hinge:    max(0, 1 - beta d)
        ipo:      (d - 1/(2 beta))^2

    SimPO and IPO are meant for length-averaged log-probs (TRL averages for `simpo`/`ipo`, sums
    otherwise): the caller passes the matching `sequence_logps(..., average=...)`. CPO's
    behaviour-cloning term cpo_alpha * NLL(y_w) is added per example when `chosen_nll` is given
    (TRL adds cpo_alpha times the token-mean NLL of the chosen completions over the batch, prompt
    excluded; pass that scalar to match; SimPO uses cpo_alpha = 0). Rewards are beta * log pi(y|x)
    (detached).

    Args:
        chosen_logps: [B] log pi(y_w|x) (summed or averaged, see above).
        rejected_logps: [B] log pi(y_l|x).
        beta: inverse temperature.
        loss_type: sigmoid, hinge, ipo or simpo.
        simpo_gamma: SimPO's target reward margin gamma.
        label_smoothing: eps for sigmoid/simpo.
        chosen_nll: optional NLL of the chosen sequences (scalar or [B]).
        cpo_alpha: weight of the NLL term.

    Returns:
        CpoTerms(losses [B], chosen_rewards [B], rejected_rewards [B]).

    Raises:
        ValueError: unknown loss type.
    """
    d = chosen_logps - rejected_logps
    if loss_type in ("sigmoid", "simpo"):
        if loss_type == "simpo":
            d = d - simpo_gamma / beta
        eps = label_smoothing
        losses = -F.logsigmoid(beta * d) * (1 - eps) - F.logsigmoid(-beta * d) * eps
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * d)
    elif loss_type == "ipo":
        losses = (d - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown CPO loss_type {loss_type!r}; expected sigmoid, hinge, ipo or simpo")
    if chosen_nll is not None:
        losses = losses + cpo_alpha * chosen_nll
    return CpoTerms(losses, beta * chosen_logps.detach(), beta * rejected_logps.detach())

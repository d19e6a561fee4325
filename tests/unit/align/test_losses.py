"""Alignment loss math against hand-computed closed forms (math.log / math.exp), plus its properties."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from lmtune.align.logprobs import sequence_logps, token_logps
from lmtune.align.policy_losses import (
    gae,
    group_advantages,
    grpo_token_loss,
    kl_penalty,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    rloo_advantages,
    whiten,
)
from lmtune.align.preference_losses import (
    cpo_loss,
    dpo_loss,
    kto_kl_estimate,
    kto_loss,
    orpo_loss,
    pairwise_reward_loss,
    preference_accuracy,
)

D = torch.float64


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def close(actual: torch.Tensor, expected: list[float] | float, tol: float = 1e-12) -> None:
    exp = torch.as_tensor(expected, dtype=actual.dtype)
    assert torch.allclose(actual, exp, atol=tol, rtol=0), (actual, exp)


# --- log-probabilities ---------------------------------------------------------------------------


def _logits() -> torch.Tensor:
    # position 0 uniform over 3 tokens; position 1 gives token 2 weight 2 (p = 2/4); position 2 unused
    return torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, math.log(2)], [5.0, -1.0, 3.0]]], dtype=D)


def test_token_logps_shifted_closed_form() -> None:
    labels = torch.tensor([[-100, 1, 2]])
    close(token_logps(_logits(), labels), [[0.0, -math.log(3), -math.log(2)]])
    close(token_logps(_logits(), torch.tensor([[-100, -100, 2]])), [[0.0, 0.0, -math.log(2)]])


def test_token_logps_unshifted_scores_each_position_itself() -> None:
    labels = torch.tensor([[0, 2, -100]])
    close(token_logps(_logits(), labels, shift=False), [[-math.log(3), -math.log(2), 0.0]])


def test_sequence_logps_sum_and_average() -> None:
    labels = torch.tensor([[-100, 1, 2], [-100, -100, 2]])
    logits = _logits().expand(2, -1, -1)
    close(sequence_logps(logits, labels), [-math.log(6), -math.log(2)])
    close(sequence_logps(logits, labels, average=True), [-math.log(6) / 2, -math.log(2)])
    close(sequence_logps(logits, torch.full((2, 3), -100), average=True), [0.0, 0.0])


def test_logps_upcast_half_precision_and_check_shapes() -> None:
    out = token_logps(_logits().to(torch.bfloat16), torch.tensor([[-100, 1, 2]]))
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"logits \(1, 3, 3\) and labels \(1, 2\) do not match"):
        token_logps(_logits(), torch.tensor([[1, 2]]))


# --- DPO family ----------------------------------------------------------------------------------

PC, PR, RC, RR = t(-5.0, -9.0), t(-7.0, -6.0), t(-6.0, -8.5), t(-6.5, -7.0)


def test_dpo_sigmoid_closed_form_and_rewards() -> None:
    terms = dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="sigmoid")
    expected = [
        -math.log(sigmoid(0.1 * ((a - c) - (b - d)))) for a, b, c, d in zip(PC, PR, RC, RR, strict=True)
    ]
    close(terms.losses, expected)
    close(terms.chosen_rewards, [0.1 * (-5 + 6), 0.1 * (-9 + 8.5)])
    close(terms.rejected_rewards, [0.1 * (-7 + 6.5), 0.1 * (-6 + 7)])


def test_dpo_hinge_closed_form_both_sides_of_the_margin() -> None:
    # beta * delta = 0.1 * 1.5 = 0.15 (inside) and 0.5 * 3 = 1.5 (past the margin -> 0)
    close(dpo_loss(t(-5.0), t(-7.0), t(-6.0), t(-6.5), beta=0.1, loss_type="hinge").losses, [1 - 0.15])
    close(dpo_loss(t(-4.0), t(-8.0), t(-6.0), t(-7.0), beta=0.5, loss_type="hinge").losses, [0.0])


def test_dpo_ipo_closed_form_with_length_normalisation() -> None:
    terms = dpo_loss(PC, PR, RC, RR, 0.1, "ipo", chosen_lengths=t(2, 4), rejected_lengths=t(5, 0))
    # a zero length is clamped to 1, as TRL does
    expected = [((-5 + 6) / 2 - (-7 + 6.5) / 5 - 5) ** 2, ((-9 + 8.5) / 4 - (-6 + 7) / 1 - 5) ** 2]
    close(terms.losses, expected)
    unnormalised = dpo_loss(PC, PR, RC, RR, 0.1, "ipo").losses
    close(unnormalised, [((-5 + 6) - (-7 + 6.5) - 5) ** 2, ((-9 + 8.5) - (-6 + 7) - 5) ** 2])


def test_dpo_ipo_is_zero_at_its_target_margin() -> None:
    beta = 0.25  # target log-ratio gap 1 / (2 beta) = 2
    close(dpo_loss(t(-3.0), t(-6.0), t(-4.0), t(-5.0), beta, "ipo").losses, [0.0])
    assert dpo_loss(t(-3.0), t(-6.5), t(-4.0), t(-5.0), beta, "ipo").losses.item() > 0


def test_dpo_robust_closed_form_and_reduces_to_sigmoid_without_noise() -> None:
    eps, beta = 0.1, 0.2
    z = beta * ((-5 + 6) - (-7 + 6.5))
    expected = (-(1 - eps) * math.log(sigmoid(z)) + eps * math.log(sigmoid(-z))) / (1 - 2 * eps)
    close(
        dpo_loss(t(-5.0), t(-7.0), t(-6.0), t(-6.5), beta, "robust", label_smoothing=eps).losses, [expected]
    )
    robust0 = dpo_loss(PC, PR, RC, RR, beta, "robust").losses
    close(robust0, dpo_loss(PC, PR, RC, RR, beta, "sigmoid").losses.tolist())


def test_dpo_refuses_label_smoothing_it_would_ignore() -> None:
    with pytest.raises(
        ValueError, match=r"^label_smoothing is used by loss_type 'robust' only, not 'sigmoid'$"
    ):
        dpo_loss(PC, PR, RC, RR, 0.1, "sigmoid", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"^robust DPO needs 0 <= label_smoothing < 0.5, got 0.5$"):
        dpo_loss(PC, PR, RC, RR, 0.1, "robust", label_smoothing=0.5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "robust", "ipo"])
def test_dpo_loss_falls_as_the_chosen_log_ratio_rises(loss_type: str) -> None:
    chosen = torch.linspace(-8.0, -5.5, 6, dtype=D)  # ipo target gap is 1/(2*0.2) = 2.5: stay below it
    n = chosen.numel()
    losses = dpo_loss(chosen, t(-7.0).expand(n), t(-6.0).expand(n), t(-7.0).expand(n), 0.2, loss_type).losses  # type: ignore[arg-type]
    assert (losses[1:] < losses[:-1]).all(), losses
    pc = t(-6.0).requires_grad_()
    dpo_loss(pc, t(-7.0), t(-6.0), t(-7.0), 0.2, loss_type).losses.sum().backward()  # type: ignore[arg-type]
    assert pc.grad is not None and pc.grad.item() < 0


def test_preference_accuracy_counts_ties_as_wrong() -> None:
    close(preference_accuracy(t(1.0, 2.0, 3.0), t(0.0, 2.0, 4.0)), 1 / 3)


# --- reward model --------------------------------------------------------------------------------


def test_pairwise_reward_loss_closed_form_with_margin_and_centring() -> None:
    rc, rr = t(1.5, -0.5), t(0.5, 0.25)
    close(pairwise_reward_loss(rc, rr), [-math.log(sigmoid(1.0)), -math.log(sigmoid(-0.75))])
    close(
        pairwise_reward_loss(rc, rr, margin=t(2.0, 0.0)),
        [-math.log(sigmoid(-1.0)), -math.log(sigmoid(-0.75))],
    )
    close(
        pairwise_reward_loss(rc, rr, center_rewards_coefficient=0.01),
        [-math.log(sigmoid(1.0)) + 0.01 * 2.0**2, -math.log(sigmoid(-0.75)) + 0.01 * 0.25**2],
    )


# --- KTO -----------------------------------------------------------------------------------------


def test_kto_closed_form_per_label() -> None:
    policy, ref, labels = t(-4.0, -6.0, -5.0), t(-5.0, -5.0, -5.5), torch.tensor([True, False, False])
    kl, beta = 0.3, 0.1
    losses = kto_loss(policy, ref, labels, kl, beta, desirable_weight=1.5, undesirable_weight=0.5)
    expected = [
        1.5 * (1 - sigmoid(beta * ((-4 + 5) - kl))),
        0.5 * (1 - sigmoid(beta * (kl - (-6 + 5)))),
        0.5 * (1 - sigmoid(beta * (kl - (-5 + 5.5)))),
    ]
    close(losses, expected)


def test_kto_kl_estimate_is_the_clamped_detached_mean() -> None:
    kl_policy = t(-4.0, -6.0).requires_grad_()
    est = kto_kl_estimate(kl_policy, t(-5.0, -5.5))
    close(est, (1.0 - 0.5) / 2)
    assert not est.requires_grad
    close(kto_kl_estimate(t(-6.0, -6.0), t(-5.0, -5.5)), 0.0)


# --- ORPO ----------------------------------------------------------------------------------------


def test_orpo_closed_form() -> None:
    lw, ll, nll, beta = -0.4, -1.3, 2.5, 0.1

    def log_odds(lp: float) -> float:
        p = math.exp(lp)
        return math.log(p / (1 - p))

    lo = log_odds(lw) - log_odds(ll)
    terms = orpo_loss(t(lw), t(ll), nll, beta)
    close(terms.log_odds, [lo])
    close(terms.log_odds_ratio, [math.log(sigmoid(lo))])
    close(terms.losses, [nll - beta * math.log(sigmoid(lo))])
    close(terms.chosen_rewards, [beta * lw])
    close(terms.rejected_rewards, [beta * ll])


def test_orpo_is_stable_near_probability_one_and_tiny_probabilities() -> None:
    terms = orpo_loss(t(-1e-9, -0.2), t(-60.0, -80.0), 0.0, 1.0)
    assert torch.isfinite(terms.losses).all()
    # log odds(-1e-9) = log((1 - 1e-9) / 1e-9) ~ 20.723; log odds(-60) ~ -60
    close(terms.log_odds[:1], [math.log((1 - 1e-9) / 1e-9) + 60.0], tol=1e-6)


# --- CPO / SimPO ---------------------------------------------------------------------------------


def test_cpo_sigmoid_with_label_smoothing_closed_form() -> None:
    beta, eps, d = 0.1, 0.2, (-5.0) - (-9.0)
    expected = -(1 - eps) * math.log(sigmoid(beta * d)) - eps * math.log(sigmoid(-beta * d))
    terms = cpo_loss(t(-5.0), t(-9.0), beta, "sigmoid", label_smoothing=eps)
    close(terms.losses, [expected])
    close(terms.chosen_rewards, [beta * -5.0])


def test_simpo_closed_form_on_average_logps() -> None:
    beta, gamma, cw, cl = 2.0, 0.5, -0.8, -1.1
    expected = -math.log(sigmoid(beta * (cw - cl) - gamma))
    close(cpo_loss(t(cw), t(cl), beta, "simpo", simpo_gamma=gamma).losses, [expected])


def test_cpo_hinge_ipo_and_the_nll_term() -> None:
    close(cpo_loss(t(-5.0), t(-9.0), 0.1, "hinge").losses, [1 - 0.4])
    close(cpo_loss(t(-5.0), t(-9.0), 0.1, "ipo").losses, [(4 - 5) ** 2])
    with_nll = cpo_loss(t(-5.0), t(-9.0), 0.1, "hinge", chosen_nll=t(1.5), cpo_alpha=2.0).losses
    close(with_nll, [1 - 0.4 + 2.0 * 1.5])


# --- GRPO / RLOO advantages ----------------------------------------------------------------------


def test_group_advantages_closed_form_and_zero_mean_per_group() -> None:
    rewards = [1.0, 2.0, 4.0, 0.0, 0.0, 3.0]
    adv = group_advantages(t(*rewards), group_size=3)
    expected = []
    for g in (rewards[:3], rewards[3:]):
        mean, std = statistics.fmean(g), statistics.stdev(g)  # stdev: Bessel-corrected, as TRL
        expected += [(r - mean) / (std + 1e-4) for r in g]
    close(adv, expected)
    close(adv.view(2, 3).sum(dim=1), [0.0, 0.0])


def test_group_advantages_batch_and_no_scaling() -> None:
    rewards = [1.0, 2.0, 4.0, 0.0, 0.0, 3.0]
    batch_std = statistics.stdev(rewards)
    centred = [1 - 7 / 3, 2 - 7 / 3, 4 - 7 / 3, -1.0, -1.0, 2.0]
    close(group_advantages(t(*rewards), 3, scale="none"), centred)
    close(group_advantages(t(*rewards), 3, scale="batch"), [c / (batch_std + 1e-4) for c in centred])


def test_group_advantages_equal_rewards_and_unscorable_completions() -> None:
    close(group_advantages(t(1.0, 1.0, 1.0), 3), [0.0, 0.0, 0.0])
    close(group_advantages(t(1.0, 5.0), 1), [0.0, 0.0])  # one completion per prompt: no signal
    adv = group_advantages(t(1.0, float("nan"), 3.0), 3)
    std = statistics.stdev([1.0, 3.0])
    close(adv, [-1 / (std + 1e-4), 0.0, 1 / (std + 1e-4)])


def test_rloo_baseline_is_the_mean_of_the_others() -> None:
    adv = rloo_advantages(t(1.0, 2.0, 6.0, 0.0, 4.0, 4.0), group_size=3)
    close(adv, [1 - 4.0, 2 - 3.5, 6 - 1.5, 0 - 4.0, 4 - 2.0, 4 - 2.0])
    # the baseline excludes the completion itself: raising r_0 raises A_0 one for one
    raised = rloo_advantages(t(11.0, 2.0, 6.0, 0.0, 4.0, 4.0), group_size=3)
    close(raised[0] - adv[0], 10.0)


def test_rloo_normalised_and_unscorable() -> None:
    raw = [1 - 4.0, 2 - 3.5, 6 - 1.5, 0 - 4.0, 4 - 2.0, 4 - 2.0]
    mean, std = statistics.fmean(raw), statistics.stdev(raw)
    close(
        rloo_advantages(t(1.0, 2.0, 6.0, 0.0, 4.0, 4.0), 3, normalize=True),
        [(a - mean) / (std + 1e-4) for a in raw],
    )
    close(rloo_advantages(t(1.0, float("nan"), 5.0), 3), [1 - 5.0, 0.0, 5 - 1.0])
    close(rloo_advantages(t(1.0, 5.0), 1), [0.0, 0.0])


# --- KL estimators and the GRPO loss --------------------------------------------------------------


def test_kl_estimators_closed_form() -> None:
    logp, ref = t(-1.0, -2.0), t(-1.5, -1.0)
    u = [-0.5, 1.0]
    close(kl_penalty(logp, ref, "k1"), [-x for x in u])
    close(kl_penalty(logp, ref, "k2"), [x * x / 2 for x in u])
    close(kl_penalty(logp, ref, "k3"), [math.exp(x) - x - 1 for x in u])
    close(kl_penalty(ref, ref, "k3"), [0.0, 0.0])


MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=D)


def test_grpo_on_policy_aggregations_closed_form() -> None:
    logps = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-0.3, -0.7, -5.0, -5.0]], dtype=D)
    adv = t(2.0, -1.0)
    # on policy rho = 1 -> per-token loss = -A; row sums over the mask: -6 and +2
    kw = {"epsilon_low": 0.2, "epsilon_high": 0.28}
    per = grpo_token_loss(logps, logps.detach(), None, adv, MASK, loss_type="grpo", **kw)
    close(per.loss, (-6 / 3 + 2 / 2) / 2)
    close(per.per_token_loss, [[-2.0] * 4, [1.0] * 4])
    close(grpo_token_loss(logps, logps, None, adv, MASK, loss_type="bnpo", **kw).loss, -4 / 5)
    close(grpo_token_loss(logps, logps, None, adv, MASK, loss_type="dapo", **kw).loss, -4 / 5)
    close(grpo_token_loss(logps, logps, None, adv, MASK, loss_type="dapo", num_items=8, **kw).loss, -4 / 8)
    dr = grpo_token_loss(logps, logps, None, adv, MASK, loss_type="dr_grpo", max_completion_length=6, **kw)
    close(dr.loss, -4 / (2 * 6))


def test_grpo_kl_term_and_clipping_closed_form() -> None:
    logps = torch.tensor([[-1.0, -2.0]], dtype=D)
    old = torch.tensor([[-1.5, -1.9]], dtype=D)
    ref = torch.tensor([[-1.2, -2.5]], dtype=D)
    mask = torch.ones(1, 2, dtype=D)
    beta, adv = 0.04, t(1.0)
    terms = grpo_token_loss(logps, old, ref, adv, mask, 0.2, 0.2, beta, loss_type="grpo")
    plain = grpo_token_loss(
        logps, old, ref, adv, mask, 0.2, 0.2, beta, loss_type="grpo", kl_bias_correction=False
    )
    corrected, uncorrected = [], []
    for lp, o, r in ((-1.0, -1.5, -1.2), (-2.0, -1.9, -2.5)):
        rho = math.exp(lp - o)
        surrogate = -min(rho * 1.0, min(max(rho, 0.8), 1.2) * 1.0)
        k3 = math.exp(r - lp) - (r - lp) - 1
        corrected.append(surrogate + beta * rho * k3)
        uncorrected.append(surrogate + beta * k3)
    close(terms.per_token_loss, [corrected])
    close(terms.loss, sum(corrected) / 2)
    close(plain.per_token_loss, [uncorrected])
    close(terms.clip_ratio, 0.5)  # rho_0 = e^0.5 > 1.2 with A > 0
    with pytest.raises(ValueError, match=r"^grpo_token_loss needs ref_logps when beta != 0$"):
        grpo_token_loss(logps, old, None, adv, mask, beta=0.1)
    with pytest.raises(ValueError, match=r"^loss_type 'dr_grpo' needs max_completion_length$"):
        grpo_token_loss(logps, old, None, adv, mask, loss_type="dr_grpo")


def test_grpo_clipped_token_with_favourable_sign_has_no_gradient() -> None:
    logps = torch.tensor([[0.5, 0.05, -0.5]], dtype=D, requires_grad=True)  # rho = e^0.5, e^0.05, e^-0.5
    grpo_token_loss(
        logps, torch.zeros(1, 3, dtype=D), None, t(1.0), torch.ones(1, 3, dtype=D)
    ).loss.backward()
    assert logps.grad is not None
    # rho > 1 + eps with A > 0: clipped, no gradient; inside: d(-rho A)/dlogp = -rho / 3
    close(logps.grad, [[0.0, -math.exp(0.05) / 3, -math.exp(-0.5) / 3]])


# --- PPO -----------------------------------------------------------------------------------------


def test_gae_closed_form_recursion() -> None:
    r, v, gamma, lam = [0.5, -0.2, 1.0], [0.3, 0.1, 0.4], 0.9, 0.8
    d2 = r[2] + gamma * 0.0 - v[2]
    d1 = r[1] + gamma * v[2] - v[1]
    d0 = r[0] + gamma * v[1] - v[0]
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    adv, ret = gae(t(*r, 7.0).unsqueeze(0), t(*v, 9.0).unsqueeze(0), t(1, 1, 1, 0).unsqueeze(0), gamma, lam)
    close(adv, [[a0, a1, a2, 0.0]])
    close(ret, [[a0 + v[0], a1 + v[1], a2 + v[2], 0.0]])


def test_gae_with_unit_gamma_lambda_is_reward_to_go_minus_value() -> None:
    rewards = torch.tensor([[0.1, 0.0, 1.0, 0.0], [0.5, 2.0, 0.0, 0.0]], dtype=D)
    values = torch.tensor([[0.2, 0.4, 0.6, 5.0], [1.0, -1.0, 5.0, 5.0]], dtype=D)
    adv, ret = gae(rewards, values, MASK, gamma=1.0, lam=1.0)
    close(adv, [[1.1 - 0.2, 1.0 - 0.4, 1.0 - 0.6, 0.0], [2.5 - 1.0, 2.0 + 1.0, 0.0, 0.0]])
    close(ret, [[1.1, 1.0, 1.0, 0.0], [2.5, 2.0, 0.0, 0.0]])


def test_whiten_has_zero_mean_unit_unbiased_variance_over_the_mask() -> None:
    x = torch.tensor([[1.0, 2.0, 4.0, 100.0], [3.0, 5.0, -100.0, 7.0]], dtype=D)
    vals = [1.0, 2.0, 4.0, 3.0, 5.0]
    mean, std = statistics.fmean(vals), statistics.stdev(vals)
    w = whiten(x, MASK, eps=0.0)
    close(w[MASK.bool()], [(v - mean) / std for v in vals])
    close(whiten(x, MASK, shift_mean=False, eps=0.0)[MASK.bool()], [(v - mean) / std + mean for v in vals])


def test_ppo_policy_loss_closed_form_clipfrac_and_zero_gradient_when_clipped() -> None:
    logps = torch.tensor([[0.5, 0.05, -0.5, 3.0]], dtype=D, requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, -1.0, 50.0]], dtype=D)
    mask = torch.tensor([[1, 1, 1, 0]], dtype=D)
    loss, clipfrac = ppo_policy_loss(logps, torch.zeros(1, 4, dtype=D), adv, mask, clip_eps=0.2)
    # token 0: rho = e^0.5 > 1.2, A > 0 -> clipped to -1.2; token 2: rho = e^-0.5 < 0.8, A < 0 -> 0.8
    close(loss, (-1.2 - math.exp(0.05) + 0.8) / 3)
    close(clipfrac, 2 / 3)
    loss.backward()
    assert logps.grad is not None
    close(logps.grad, [[0.0, -math.exp(0.05) / 3, 0.0, 0.0]])


def test_ppo_policy_loss_keeps_the_gradient_when_the_clip_would_help() -> None:
    # rho = e^0.5 > 1.2 but A < 0: the unclipped (worse) branch wins, so the gradient pulls rho back
    logps = torch.tensor([[0.5]], dtype=D, requires_grad=True)
    loss, clipfrac = ppo_policy_loss(
        logps, torch.zeros(1, 1, dtype=D), -torch.ones(1, 1, dtype=D), torch.ones(1, 1), 0.2
    )
    loss.backward()
    close(loss, math.exp(0.5))
    close(clipfrac, 0.0)
    assert logps.grad is not None
    close(logps.grad, [[math.exp(0.5)]])


def test_ppo_value_loss_closed_form() -> None:
    values, old, returns = t(1.0, 0.0, 2.0).unsqueeze(0), t(0.5, 0.5, 0.0).unsqueeze(0), t(0.0, 1.0, 9.0)
    mask = t(1, 1, 0).unsqueeze(0)
    # token 0: V - R = 1, V_clip = 0.7 -> 0.49, max 1; token 1: V - R = -1, V_clip = 0.3 -> 0.49, max 1
    close(ppo_value_loss(values, old, returns.unsqueeze(0), mask, clip_value=0.2), 0.5 * (1 + 1) / 2)
    # an unclipped target farther than the clipped one: token 0 R = 0.8 -> (0.2)^2 vs (0.7-0.8)^2
    one = torch.ones(1, 1, dtype=D)
    close(ppo_value_loss(1.0 * one, 0.5 * one, 0.8 * one, one, 0.2), 0.5 * 0.04)
    # the clipped prediction is the farther one: R = 1.2 -> (1 - 1.2)^2 = 0.04 vs (0.7 - 1.2)^2 = 0.25
    close(ppo_value_loss(1.0 * one, 0.5 * one, 1.2 * one, one, 0.2), 0.5 * 0.25)


def test_masked_mean_ignores_masked_values() -> None:
    x = torch.tensor([[1.0, 2.0, 1e9], [4.0, 1e9, 1e9]], dtype=D)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    close(masked_mean(x, mask), 7 / 3)
    close(masked_mean(x, mask, dim=1), [1.5, 4.0])

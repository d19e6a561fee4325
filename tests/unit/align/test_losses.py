"""lmtune's own alignment math against hand-computed closed forms (math.log / math.exp), plus its properties:
the log-probabilities of `lmtune.align.logprobs` (PPO's rollout and value head) and PPO's losses
(`lmtune.align.policy_losses`: GAE, whitening, clipped policy and value losses, masked mean).

The other objectives run TRL's losses; those are checked in test_losses_vs_trl.py.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from lmtune.align.logprobs import sequence_logps, token_logps
from lmtune.align.policy_losses import gae, masked_mean, ppo_policy_loss, ppo_value_loss, whiten

D = torch.float64


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def close(
    actual: torch.Tensor, expected: list[float] | list[list[float]] | float, tol: float = 1e-12
) -> None:
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


# --- PPO -----------------------------------------------------------------------------------------

MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=D)


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

"""PPO's arithmetic (axon.objectives.ppo) against hand computations and exact sums.

Everything runs in float64 and is compared with a bound from tests/numerics.py (kind 3: an fp64
oracle), so a wrong index, sign or clip shows as an error many orders above the bound.
"""

import math
import random

import pytest
import torch
from numerics import order_tol

from axon.objectives.ppo import (
    AdaptiveKL, entropy_from_logits, exact_kl, explained_variance, gae, kl_estimate, masked_mean, policy_loss,
    token_logprobs, token_rewards, value_loss, whiten,
)

F64 = torch.float64


def tol(n=8, depth=4, scale=10.0):
    return order_tol(F64, n=n, depth=depth, scale=scale)


def ragged(B=3, T=6, seed=0):
    """Rewards, values and a right-padding mask with responses of lengths 6, 4 and 1."""
    g = torch.Generator().manual_seed(seed)
    lengths = [T, 4, 1][:B]
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths], dtype=F64)
    return torch.randn(B, T, generator=g, dtype=F64), torch.randn(B, T, generator=g, dtype=F64), mask, lengths


def hand_gae(rewards, values, n, gamma, lam):
    """One response of n real tokens, by the textbook recursion in plain Python."""
    last, out = 0.0, [0.0] * n
    for t in reversed(range(n)):
        next_v = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        out[t] = last
    return out, [a + v for a, v in zip(out, values[:n])]


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.99, 0.9), (1.0, 1.0), (0.9, 0.0)])
def test_gae_is_the_textbook_recursion_and_ignores_padding(gamma, lam):
    rewards, values, mask, lengths = ragged()
    values_padded = values.clone()
    values_padded[mask == 0] = 1e6  # garbage where there is no token: must not leak into the sums
    rewards_padded = rewards * mask
    adv, ret = gae(rewards_padded, values_padded, mask, gamma, lam)
    for b, n in enumerate(lengths):
        want_adv, want_ret = hand_gae(rewards[b].tolist(), values[b].tolist(), n, gamma, lam)
        assert max(abs(a - w) for a, w in zip(adv[b, :n].tolist(), want_adv)) <= tol()
        assert max(abs(a - w) for a, w in zip(ret[b, :n].tolist(), want_ret)) <= tol()
        assert torch.all(adv[b, n:] == 0) and torch.all(ret[b, n:] == 0)


def test_gae_with_lambda_1_and_gamma_1_is_the_return_to_go_minus_the_value():
    rewards, values, mask, _ = ragged()
    adv, ret = gae(rewards * mask, values, mask, 1.0, 1.0)
    to_go = torch.flip(torch.cumsum(torch.flip(rewards * mask, [1]), 1), [1]) * mask
    assert (ret - to_go).abs().max() <= tol()
    assert (adv - (to_go - values * mask)).abs().max() <= tol()


def test_token_rewards_put_the_score_on_each_responses_last_token():
    _, _, mask, lengths = ragged()
    kl = torch.arange(18, dtype=F64).view(3, 6) / 10
    score = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    r = token_rewards(score, kl, mask, beta=0.2)
    for b, n in enumerate(lengths):
        want = [-0.2 * kl[b, t].item() + (score[b].item() if t == n - 1 else 0.0) for t in range(n)]
        assert max(abs(x - w) for x, w in zip(r[b, :n].tolist(), want)) <= tol()
        assert torch.all(r[b, n:] == 0)


def test_whiten_gives_zero_mean_unit_variance_over_the_mask_only():
    x, _, mask, _ = ragged()
    w = whiten(x + 5.0, mask)
    real = w[mask == 1]
    assert abs(real.mean().item()) <= tol() and abs(real.var().item() - 1.0) <= 1e-6  # eps=1e-8 in the rsqrt
    assert torch.all(w[mask == 0] == 0)
    kept = whiten(x + 5.0, mask, shift_mean=False)[mask == 1]
    assert abs(kept.mean().item() - (x + 5.0)[mask == 1].mean().item()) <= tol()


def softmax_pair(V=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, V, generator=g, dtype=F64) * 2, torch.randn(1, 1, V, generator=g, dtype=F64) * 2


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_the_unbiased_kl_estimators_average_to_the_exact_kl_over_the_vocabulary(kind):
    """E_{x ~ p}[k(x)] summed over every token x of a 5-symbol vocabulary equals KL(p || q) exactly."""
    logits, ref = softmax_pair()
    V = logits.size(-1)
    tokens = torch.arange(V).view(1, V)
    logp = token_logprobs(logits.expand(1, V, V), tokens)
    logq = token_logprobs(ref.expand(1, V, V), tokens)
    p = logp.exp()
    expected = (p * kl_estimate(logp, logq, kind)).sum().item()
    exact = exact_kl(logits, ref).item()
    by_hand = sum(math.exp(a) * (a - b) for a, b in zip(torch.log_softmax(logits, -1).flatten().tolist(),
                                                       torch.log_softmax(ref, -1).flatten().tolist()))
    assert abs(exact - by_hand) <= tol(n=V)
    assert abs(expected - exact) <= tol(n=V)
    assert exact > 0


def test_k3_is_never_negative_and_k1_can_be():
    logits, ref = softmax_pair()
    V = logits.size(-1)
    tokens = torch.arange(V).view(1, V)
    logp, logq = token_logprobs(logits.expand(1, V, V), tokens), token_logprobs(ref.expand(1, V, V), tokens)
    assert torch.all(kl_estimate(logp, logq, "k3") >= 0)
    assert torch.any(kl_estimate(logp, logq, "k1") < 0)
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_estimate(logp, logq, "k4")


def test_entropy_against_a_hand_sum():
    logits, _ = softmax_pair()
    p = torch.softmax(logits, -1).flatten().tolist()
    assert abs(entropy_from_logits(logits).item() - (-sum(x * math.log(x) for x in p))) <= tol(n=5)


def hand_policy_loss(logp, old, adv, mask, clip):
    terms, clipped_count, n = [], 0, 0
    for lp, o, a, m in zip(logp, old, adv, mask):
        if not m:
            continue
        r = math.exp(lp - o)
        unclipped, clipped = -a * r, -a * min(max(r, 1 - clip), 1 + clip)
        terms.append(max(unclipped, clipped))
        clipped_count += clipped > unclipped
        n += 1
    return sum(terms) / n, clipped_count / n


def test_policy_loss_is_the_clipped_surrogate():
    rnd = random.Random(0)
    T = 40
    old = [rnd.uniform(-3, -0.1) for _ in range(T)]
    logp = [o + rnd.uniform(-0.5, 0.5) for o in old]  # ratios from 0.6 to 1.65: many clipped
    adv = [rnd.uniform(-2, 2) for _ in range(T)]
    mask = [1.0] * 30 + [0.0] * 10
    to = lambda xs: torch.tensor([xs], dtype=F64)  # noqa: E731
    loss, parts = policy_loss(to(logp), to(old), to(adv), to(mask), clip=0.2)
    want, want_frac = hand_policy_loss(logp, old, adv, mask, 0.2)
    assert abs(loss.item() - want) <= tol(n=T)
    assert parts["clipfrac"].item() == want_frac and 0 < want_frac < 1
    same, same_parts = policy_loss(to(old), to(old), to(adv), to(mask))
    assert abs(same.item() + sum(a for a, m in zip(adv, mask) if m) / 30) <= tol(n=T)  # ratio 1: -mean(A)
    assert same_parts["approx_kl"].item() == 0 and same_parts["clipfrac"].item() == 0


def test_the_policy_gradient_is_cut_where_the_ratio_left_the_clip_range_in_the_advantages_direction():
    old = torch.zeros(1, 4, dtype=F64)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]], dtype=F64)).requires_grad_()
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=F64)
    loss, _ = policy_loss(logp, old, adv, torch.ones(1, 4, dtype=F64), clip=0.2)
    loss.backward()
    # ratio 1.5 with A > 0 and ratio 0.5 with A < 0 are clipped: no gradient; the other two keep theirs
    assert logp.grad[0, 0] == 0 and logp.grad[0, 3] == 0
    assert logp.grad[0, 1] != 0 and logp.grad[0, 2] != 0


def test_value_loss_takes_the_larger_of_the_plain_and_clipped_errors():
    values = torch.tensor([[1.0, 0.0, 2.0, 5.0]], dtype=F64)
    old = torch.tensor([[0.0, 0.0, 1.5, 5.0]], dtype=F64)
    returns = torch.tensor([[0.5, 1.0, 2.0, 0.0]], dtype=F64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=F64)
    loss, parts = value_loss(values, old, returns, mask, clip=0.2)
    # position 0: V moves 0 -> 1, clipped to 0.2: errors 0.25 and 0.09 -> 0.25; 1: 1 both;
    # 2: V moves 1.5 -> 2.0, clipped to 1.7: errors 0 and 0.09 -> 0.09 (the clipped one); 3: padding
    assert abs(loss.item() - 0.5 * (0.25 + 1.0 + 0.09) / 3) <= tol()
    assert abs(parts["value_clipfrac"].item() - 1 / 3) <= tol()


def test_explained_variance():
    returns, _, mask, _ = ragged()
    assert abs(explained_variance(returns, returns, mask).item() - 1.0) <= tol()
    const = torch.full_like(returns, masked_mean(returns, mask).item())
    assert abs(explained_variance(const, returns, mask).item()) <= tol()


def test_the_adaptive_kl_controller_follows_ziegler_et_al():
    c = AdaptiveKL(beta=0.1, target=6.0, horizon=100)
    assert abs(c.update(kl=9.0, n_rollouts=10) - 0.1 * (1 + 0.2 * 10 / 100)) <= 1e-15  # error 0.5 clipped to 0.2
    b = c.beta
    assert abs(c.update(kl=5.4, n_rollouts=10) - b * (1 - 0.1 * 10 / 100)) <= 1e-15  # error -0.1
    b = c.beta
    assert c.update(kl=6.0, n_rollouts=10) == b  # on target: unchanged
    assert c.update(kl=float("nan"), n_rollouts=10) == b  # no rollout KL, no change
    fixed = AdaptiveKL(beta=0.05, target=None)
    assert fixed.update(kl=100.0, n_rollouts=64) == 0.05

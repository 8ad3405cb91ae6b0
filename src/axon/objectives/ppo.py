"""PPO for language models: the arithmetic of one update (Schulman et al. 2017, "Proximal Policy
Optimization"; Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences";
Ouyang et al. 2022, InstructGPT).

A rollout is a prompt and a response r_1..r_T sampled from the policy. Every tensor here is
aligned to the response: (B, T) with ``mask`` (B, T) 1 on the response's tokens and 0 on the right
padding after a response that ended early. Per response token t:

    logp_t   = log pi_old(r_t | prompt, r_<t)      the policy that sampled the rollout
    ref_t    = log pi_ref(r_t | prompt, r_<t)      the frozen SFT model
    kl_t     = logp_t - ref_t                       "k1": its mean under pi is KL(pi || pi_ref)
    reward_t = -beta * kl_t + [t = last] * score    score: the reward model on prompt + response
    V_t      = the value head's estimate of the return from t

    advantages (GAE, Schulman et al. 2016), with V after the last token = 0 (the episode ends):
        delta_t  = reward_t + gamma * V_{t+1} - V_t
        A_t      = delta_t + gamma * lam * A_{t+1}
        return_t = A_t + V_t                        the value head's target

The update, on minibatches of the rollouts, several epochs, ratio = exp(logp_new - logp_old):

    policy loss = mean_t max(-A_t * ratio_t, -A_t * clip(ratio_t, 1 - eps, 1 + eps))
    value loss  = 0.5 * mean_t max((V_new - R)^2, (V_old + clip(V_new - V_old, -eps_v, eps_v) - R)^2)

The KL coefficient beta follows the adaptive controller of Ziegler et al. (2019, sec. 2.2): after
each rollout batch with mean KL (summed over a response) ``kl``,

    beta <- beta * (1 + clip(kl / target - 1, -0.2, 0.2) * n_rollouts / horizon)

Everything here is a function of tensors (no model, no trainer), tested against hand
computations and exact sums (tests/objectives/test_ppo.py); the PPO task builds on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (a scalar)."""
    return (x * mask).sum() / mask.sum().clamp_min(1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Variance of ``x`` over the masked positions, unbiased (n - 1), as TRL and OpenAI's
    lm-human-preferences compute it."""
    n = mask.sum()
    mean = masked_mean(x, mask)
    return ((x - mean) ** 2 * mask).sum() / (n - 1).clamp_min(1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions; ``shift_mean=False`` keeps the mean (scales
    only), as for rewards. Padding positions come out 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] for each position: logits (B, T, V), tokens (B, T) -> (B, T),
    in fp32 at least."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return torch.gather(F.log_softmax(logits, dim=-1), -1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) at each position: (B, T, V) -> (B, T)."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the log-probabilities of a token sampled from pi.

    k1 = log pi - log pi_ref: unbiased, can be negative for one token (InstructGPT's penalty);
    k3 = (r - 1) - log r with r = pi_ref / pi: unbiased and never negative (Schulman 2020,
    "Approximating KL divergence"); k2 = (log r)^2 / 2: biased, low variance. Each one's mean
    under pi is checked against the exact sum over a small vocabulary in the tests.
    """
    log_ratio = ref_logp - logp
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; choose k1, k2 or k3")


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || softmax(ref_logits)) at each position, summed over the vocabulary:
    (B, T, V) -> (B, T). The quantity the estimators above estimate."""
    up = lambda x: x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # noqa: E731
    logp, logq = F.log_softmax(up(logits), dim=-1), F.log_softmax(up(ref_logits), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def token_rewards(score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """reward_t = -beta * kl_t on every response token, plus the sequence's ``score`` (B,) on its
    last token (InstructGPT: the reward model scores the whole response once)."""
    rewards = -beta * kl * mask
    last = (mask.sum(1).long() - 1).clamp_min(0)  # index of each response's last token
    has_tokens = mask.sum(1) > 0
    rows = torch.arange(mask.size(0), device=mask.device)
    return rewards.index_put((rows[has_tokens], last[has_tokens]), score[has_tokens].to(rewards.dtype), accumulate=True)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded responses: (advantages, returns), both
    (B, T) and 0 on padding. The value after a response's last token is 0 (the episode ends), so
    padding never leaks into a real position."""
    B, T = rewards.shape
    values = values * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = (delta + gamma * lam * next_adv) * m
        advantages[:, t] = adv
        next_value = values[:, t] * m  # a padded position hands on 0, as "after the end"
        next_adv = adv
    return advantages, (advantages + values) * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float = 0.2) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate (to minimise), with what to watch: the share of tokens whose ratio
    was clipped, and approx-KL = mean((ratio - 1) - log ratio) between the new and old policies."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, {"clipfrac": clipfrac, "approx_kl": approx_kl}


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> tuple[torch.Tensor, dict]:
    """0.5 * the larger of the plain and the clipped squared error (clipping the new value to
    within ``clip`` of the rollout's), as in OpenAI's baselines and lm-human-preferences."""
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped_values - returns) ** 2), mask)
    with torch.no_grad():
        vclipfrac = masked_mean(((clipped_values - returns) ** 2 > (values - returns) ** 2).float(), mask)
    return loss, {"value_clipfrac": vclipfrac}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns): 1 for a perfect value head, 0 for a constant one,
    negative for one worse than a constant."""
    var = masked_var(returns, mask)
    return 1.0 - masked_var(returns - values, mask) / var.clamp_min(1e-12)


@dataclass
class AdaptiveKL:
    """Ziegler et al. (2019), sec. 2.2: beta is raised when the policy drifts further than
    ``target`` nats (summed over a response) from the reference, and lowered when it stays closer;
    the proportional error is clipped to +-0.2, and ``horizon`` rollouts set the rate. A fixed
    beta: ``target=None``. Its state (``beta``) is part of a checkpoint."""

    beta: float = 0.1
    target: float | None = 6.0
    horizon: int = 10000

    def update(self, kl: float, n_rollouts: int) -> float:
        if self.target is not None and math.isfinite(kl):
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.beta *= 1.0 + error * n_rollouts / self.horizon
        return self.beta

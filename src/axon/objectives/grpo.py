"""GRPO and RLOO for language models: policy gradients whose baseline is the other answers to the
same prompt, no value function (Shao et al. 2024, "DeepSeekMath", sec. 4.1, GRPO; Ahmadian et al.
2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in
LLMs", RLOO), computed as TRL 1.16's GRPOTrainer and RLOOTrainer compute them.

A rollout answers P prompts G times each: N = P x G answers, row r in group r // G, a group's G
rows consecutive. Each answer has one score r (the reward). Advantages, one per answer (N,):

    grpo  A = (r - mean_group(r)) / (std_group(r) + 1e-4)        scale_rewards="group" (TRL's default)
          A = (r - mean_group(r)) / (std_rollout(r) + 1e-4)      "batch" (Liu et al. 2025's advice)
          A =  r - mean_group(r)                                  "none"  (Dr. GRPO)
    rloo  A = r - (sum_group(r) - r) / (G - 1)                    the mean of the other G - 1 answers,
                                                                  optionally whitened over the rollout
    (std: unbiased, n - 1, as TRL's nanstd; a group whose G scores are all equal has A = 0)

The update, per minibatch, with the log-probabilities of the answer tokens under the policy being
trained (logp, (B, T)), at the rollout (old, (B, T)) and under the frozen reference (ref, (B, T)),
mask (B, T) 1 on the answer tokens and the answer's advantage A broadcast to its tokens:

    grpo  ratio_t = exp(logp_t - old_t)                           one ratio per token
          l_t     = -min(ratio_t A, clip(ratio_t, 1 - eps, 1 + eps_high) A)
                    + beta * k3_t,   k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1
          loss    = one of TRL's normalisations of the l_t (``loss_type``):
            dapo     sum_{b,t} l / (B x mean answer length of the whole rollout)   (TRL's default;
                     TRL divides by the rollout's tokens per minibatch, the same number)
            grpo     mean_b (sum_t l / |answer_b|)                 (the paper's: each answer's mean)
            bnpo     sum_{b,t} l / sum_{b,t} mask                  (the minibatch's token mean)
            dr_grpo  sum_{b,t} l / (B x max_new_tokens)            (Dr. GRPO: a constant divisor)
    rloo  ratio_b = exp(sum_t logp_t - sum_t old_t)               one ratio per answer (TRL's RLOO)
          loss    = mean_b -min(ratio_b A, clip(ratio_b, 1 - eps, 1 + eps_high) A)
          with the KL in the reward, not the loss: r <- r - beta * sum_t (old_t - ref_t) (k1, before
          the advantages; RLOOConfig's beta defaults to 0.05, GRPOConfig's to 0.0)

Why the GRPO loss is 0 (trl #2703, #3452): at the first minibatch of a rollout ratio = 1, so the
loss is -mean(A) (+ beta * KL), and a group's advantages sum to 0: the loss starts near 0 while its
gradient, sum A grad log pi, does not vanish. What does make the gradient 0 is a group whose
answers all scored the same (A = 0 for each): :func:`group_figures` counts them (``frac_zero_std``)
beside the mean within-group standard deviation (``group_std``).

Everything here is a function of tensors (no model, no trainer), tested against hand computations
and against TRL's own ``_compute_loss`` on the same model exported with ``to_hf``
(tests/objectives/test_grpo.py); the ``grpo`` task (``axon.tasks.grpo``) builds on it.
"""

from __future__ import annotations

import torch

from axon.objectives.ppo import kl_estimate, masked_mean

ADVANTAGES = ("grpo", "rloo")
LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")
SCALES = ("group", "batch", "none")
EPS = 1e-4  # added to the standard deviation that scales the advantages (TRL's)


def group_advantages(scores: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """GRPO's advantages (N,) of scores (N,) in consecutive groups of ``group_size`` (module docstring)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale_rewards {scale!r}; choose one of: {', '.join(SCALES)}")
    r = scores.view(-1, group_size)
    advantages = (r - r.mean(1, keepdim=True)).reshape(-1)
    if scale == "group":
        std = r.std(1, keepdim=True).expand_as(r).reshape(-1)
    elif scale == "batch":
        std = scores.std()
    else:
        return advantages
    return advantages / (std + EPS)


def rloo_advantages(scores: torch.Tensor, group_size: int, normalize: bool = False) -> torch.Tensor:
    """RLOO's advantages (N,): each score minus the mean of the other answers to its prompt;
    ``normalize``: whitened over the rollout, (A - mean) / (std + 1e-4)."""
    r = scores.view(-1, group_size)
    baseline = (r.sum(1, keepdim=True) - r) / (group_size - 1)
    advantages = (r - baseline).reshape(-1)
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + EPS)
    return advantages


def group_figures(scores: torch.Tensor, group_size: int) -> dict[str, float]:
    """What explains a loss of 0: ``group_std``, the mean over groups of the (unbiased) standard
    deviation of their scores, and ``frac_zero_std``, the share of groups whose scores are all
    equal (no signal: every advantage 0)."""
    r = scores.view(-1, group_size)
    flat = r.max(1).values == r.min(1).values
    return {"group_std": float(r.std(1).mean()), "frac_zero_std": float(flat.double().mean())}


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip: float,
                      clip_high: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(-min(ratio A, clip(ratio, 1 - clip, 1 + clip_high) A), clipped): the per-element loss and
    where the clip held the ratio (ratio < 1 - clip with A < 0, or > 1 + clip_high with A > 0,
    TRL's ``clip_ratio/region_mean``)."""
    high = clip if clip_high is None else clip_high
    loss = -torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + high) * advantages)
    clipped = ((ratio < 1.0 - clip) & (advantages < 0)) | ((ratio > 1.0 + high) & (advantages > 0))
    return loss, clipped


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
              loss_type: str = "dapo", clip: float = 0.2, clip_high: float | None = None, beta: float = 0.0,
              ref_logp: torch.Tensor | None = None, max_new_tokens: int | None = None,
              mean_length: float | None = None) -> tuple[torch.Tensor, dict]:
    """GRPO's loss on a minibatch (module docstring): logp, old_logp, ref_logp, mask (B, T),
    advantages (B,). ``max_new_tokens`` (dr_grpo) and ``mean_length`` (dapo: the mean answer
    length over the whole rollout) are the divisors' constants. Returns the loss and figures:
    ``clipfrac`` and ``token_kl`` (the mean k3 against the reference, when ``ref_logp`` is given)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss type {loss_type!r}; choose one of: {', '.join(LOSS_TYPES)}")
    per_token, clipped = clipped_surrogate((logp - old_logp).exp(), advantages[:, None], clip, clip_high)
    kl = None if ref_logp is None else kl_estimate(logp, ref_logp, "k3")
    if beta != 0.0:
        per_token = per_token + beta * kl
    B = logp.size(0)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token * mask).sum() / mask.sum().clamp_min(1.0)
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (B * max_new_tokens)
    else:
        loss = (per_token * mask).sum() / max(B * mean_length, 1.0)
    with torch.no_grad():
        info = {"clipfrac": masked_mean(clipped.to(mask.dtype), mask)}
        if kl is not None:
            info["token_kl"] = masked_mean(kl, mask)
    return loss, info


def rloo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
              clip: float = 0.2, clip_high: float | None = None) -> tuple[torch.Tensor, dict]:
    """RLOO's loss as TRL's RLOOTrainer computes it (module docstring): one ratio per answer, of
    its summed log-probabilities, clipped; the mean over the minibatch's answers."""
    log_ratio = ((logp - old_logp) * mask).sum(-1)
    per_answer, clipped = clipped_surrogate(log_ratio.exp(), advantages, clip, clip_high)
    return per_answer.mean(), {"clipfrac": clipped.to(mask.dtype).mean()}

"""Pairwise reward-model loss: Bradley-Terry (Ouyang et al. 2022, eq. 1), and its labeller-noise form.

For a comparison "y_w is better than y_l" of prompt x, with delta = r(x, y_w) - r(x, y_l), the
Bradley-Terry model says P(y_w > y_l) = sigmoid(delta), and the loss is its negative log,

    bt(delta) = -log sigmoid(delta),        averaged over the pairs of the batch.

InstructGPT writes it as an expectation over the K(K-1)/2 comparisons of each ranking, divided
by (K choose 2); averaging over every pair of a batch whose prompts all carry their whole ranking
is the same weighting up to how many pairs each prompt has (a prompt with more responses counts
for more, as it would in a batch of single comparisons).

Labellers of unequal reliability (Christiano et al. 2017 learn from several human trainers;
``model.labeller_noise``): labeller l reports the reverse of the truth with probability eps_l,
independently per comparison, so the probability that its label says "y_w > y_l" is

    P_l = (1 - eps_l) sigmoid(delta) + eps_l sigmoid(-delta)

and the loss is -log P_l (Raykar et al. 2010's "learning from crowds" for one flip rate per
annotator). eps_l = sigmoid(a_l), a_l = model.flip_logits, learnt by gradient with the reward: it
is the same maximum-likelihood fit EM would make (the gradient of the marginal likelihood is the
EM-weighted gradient, Fisher's identity), with no state outside the parameters, so one optimizer,
checkpoints, resume and data parallelism need nothing more. eps_l may exceed 0.5: an adversarial
labeller is found, and its labels then count reversed (P_l falls as delta grows). A comparison
without a labeller has a = -inf: eps = 0, and -log P is bt(delta) exactly. Computed in log space,

    log P_l = logaddexp(log sigmoid(-a) + log sigmoid(delta), log sigmoid(a) + log sigmoid(-delta)),

finite for any delta and a. Only differences of rewards enter, so the reward's offset is free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.models.base import unwrap
from axon.nn.precision import at_least_fp32


def bradley_terry_nll(delta: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(delta) per pair, delta = r_chosen - r_rejected."""
    return -F.logsigmoid(delta)


def labeller_nll(delta: torch.Tensor, flip_logit: torch.Tensor) -> torch.Tensor:
    """-log[(1 - eps) sigmoid(delta) + eps sigmoid(-delta)] per pair, eps = sigmoid(flip_logit);
    a flip_logit of -inf (no labeller) gives bradley_terry_nll(delta) bit for bit."""
    honest = F.logsigmoid(-flip_logit) + F.logsigmoid(delta)  # log (1 - eps) + log sigmoid(delta)
    flipped = F.logsigmoid(flip_logit) + F.logsigmoid(-delta)  # log eps + log sigmoid(-delta)
    return -torch.logaddexp(honest, flipped)


class PairwiseReward:
    """For a reward model under the batch contract of ``axon.data.preferences``:

    batch = (tokens (B, K, T), lengths (B, K), pairs (B, P, 2), labeller (B, P));
    ``model(ids (N, T), lengths (N,), labeller (n,))`` -> (rewards (N,), flip logits (n,)) for the
    N real texts and n real pairs (``axon.models.reward``). Each text is scored once, however many
    pairs it is in. Parts: ``ce`` (the mean negative log-likelihood over pairs, without the MoE
    auxiliary losses), ``count`` = n, ``correct`` = pairs with r_better > r_worse (evaluation
    reports their share as ``accuracy``: the pairwise accuracy).
    """

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        tokens, lengths, pairs, labeller = batch
        B, K, T = tokens.shape
        real = lengths > 0  # (B, K) texts, not empty slots
        valid = pairs[..., 0] >= 0  # (B, P) pairs, not padding
        rewards, flip = model(tokens[real], lengths[real], labeller[valid])  # (N,), (n,)
        rewards, flip = at_least_fp32(rewards), at_least_fp32(flip)
        row = torch.full((B, K), -1, dtype=torch.long, device=tokens.device)
        row[real] = torch.arange(rewards.numel(), device=tokens.device)  # (B, K) -> index into rewards
        group = torch.arange(B, device=tokens.device).unsqueeze(1).expand_as(valid)[valid]  # (n,)
        better, worse = pairs[..., 0][valid], pairs[..., 1][valid]  # (n,)
        delta = rewards[row[group, better]] - rewards[row[group, worse]]  # (n,)
        loss = labeller_nll(delta, flip).mean()
        parts = {"ce": loss, "count": delta.numel(), "correct": (delta > 0).sum()}
        for name, value in unwrap(model).aux_losses().items():  # an MoE body's balance and z-losses
            loss = loss + value
            parts[name] = value
        return loss, parts

"""Negative sampling (Mikolov et al. 2013b, eq. 4): k + 1 logistic regressions per example.

    loss = -log sigma(s_pos) - sum_{k=1..K} log sigma(-s_neg_k)

where s_pos is the logit of the true (word, context) pair and s_neg_k those of the k noise pairs
(see ``axon.models.word2vec``). log sigma(x) is computed as ``logsigmoid`` (stable for any x).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def negative_sampling_loss(pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over the examples with ``weight`` 1: pos (...), neg (..., K), weight (...) in {0, 1}.

    Returns (mean loss, number of examples counted)."""
    per_example = -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)  # (...)
    weight = weight.to(per_example.dtype)
    count = weight.sum()
    return (per_example * weight).sum() / count.clamp(min=1), count


class NegativeSampling:
    """Objective for word2vec batches (centers, contexts, context_mask, negatives).

    Skip-gram counts one example per real (centre, context) pair, CBOW one per centre with at
    least one real context word; "count" reports how many, so evaluation weighs batches fairly.
    """

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        centers, contexts, mask, negatives = batch
        pos, neg = model(centers, contexts, mask, negatives)
        weight = mask if pos.dim() == 2 else mask.any(1)  # skip-gram (N, C) pairs, CBOW (N,) centres
        loss, count = negative_sampling_loss(pos, neg, weight)
        return loss, {"ce": loss, "count": count}

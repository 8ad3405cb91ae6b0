"""DPR's training loss (Karpukhin et al. 2020, sec. 3.2): in-batch negatives, plus hard negatives.

A batch holds B questions, their B positive passages, and optionally H further passages (DPR: one
BM25 hard negative per question, H = B). Every passage of the batch is a negative for every question
but its own:

    q (B, D) question vectors        p (B + H, D) passage vectors, p[i] the positive of q[i]
    S = q @ p^T                      (B, B + H) dot-product similarities (DPR's sim)
    loss = mean_i -log softmax(S[i])[i]   = cross-entropy of S against the labels 0 .. B-1

so B + H - 1 negatives per question for the price of B + H passage encodings. ``accuracy`` is the
share of questions whose own passage scores highest in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_negatives_loss(q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) of questions ``q`` (B, D) against passages ``p`` (B + H, D), p[i] q[i]'s positive."""
    B = q.size(0)
    if p.dim() != 2 or q.dim() != 2 or p.size(0) < B or p.size(1) != q.size(1):
        raise ValueError(f"need q (B, D) and p (>= B, D) with the same D, got {tuple(q.shape)} and {tuple(p.shape)}")
    scores = q.float() @ p.float().t()  # (B, B + H)
    labels = torch.arange(B, device=q.device)
    loss = F.cross_entropy(scores, labels)
    accuracy = (scores.argmax(-1) == labels).float().mean()
    return loss, accuracy


class DPRLoss:
    """The ``dpr`` task's objective: batch = (question ids (B, Tq), question mask, passage ids (B + H, Tp),
    passage mask), the B positives first (``axon.data.passages.RetrievalPairs``); ``model(...)`` -> (q, p).
    Parts: ``ce`` (the loss), ``count`` = B and ``correct`` = questions whose own passage scores highest of the
    batch's (evaluation reports the in-batch accuracy from them)."""

    def __call__(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        q_ids, q_mask, p_ids, p_mask = batch
        q, p = model(q_ids, q_mask, p_ids, p_mask)
        loss, accuracy = in_batch_negatives_loss(q, p)
        B = q.size(0)
        return loss, {"ce": loss, "count": B, "correct": (accuracy * B).round()}


__all__ = ["DPRLoss", "in_batch_negatives_loss"]

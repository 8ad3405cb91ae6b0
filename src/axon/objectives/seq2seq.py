"""Sequence-to-sequence: predict each target token from the source and the target tokens before it,
with label smoothing as in "Attention Is All You Need" (sec. 5.4, eps_ls = 0.1).

Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7) trains
against the target distribution q' = (1 - eps) * onehot(y) + eps * uniform(V) instead of the
one-hot: per target token,

    loss = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k)        (k over all V ids)

which is ``F.cross_entropy(..., label_smoothing=eps)``. It hurts perplexity ("the model learns to
be more unsure") but improves accuracy and BLEU (Vaswani et al.). The plain cross-entropy
-log p_y is reported beside it as ``ce``: the loss the evaluation and docs/seq2seq.md quote.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.nn.precision import at_least_fp32


def label_smoothed_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float,
                        ignore_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(smoothed loss, plain cross-entropy, token count), means over targets != ignore_index.

    logits (B, T, V), targets (B, T). One log-softmax serves both losses.
    """
    logp = torch.log_softmax(at_least_fp32(logits), dim=-1)  # (B, T, V), fp32 even under bf16 autocast
    keep = targets != ignore_index  # (B, T)
    logp, tgt = logp[keep], targets[keep]  # (N, V), (N,)
    nll = -logp.gather(-1, tgt[:, None]).squeeze(-1)  # (N,) -log p_y
    ce = nll.mean()
    if eps == 0:
        return ce, ce, keep.sum()
    smooth = -logp.mean(dim=-1)  # (N,) cross-entropy against the uniform distribution
    return ((1 - eps) * nll + eps * smooth).mean(), ce, keep.sum()


class Seq2SeqLoss:
    """Objective for an encoder-decoder: batch = (src (B, S), tgt_in (B, T), tgt_out (B, T)),
    padded with ``pad_id``; the model is called as ``model(src, tgt_in, src_mask)``.

    Parts: ``ce`` (plain cross-entropy), ``count`` (real target tokens) and ``correct``
    (targets that are the argmax: evaluation reports teacher-forced token accuracy).
    """

    def __init__(self, pad_id: int, label_smoothing: float = 0.1):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.pad_id, self.label_smoothing = pad_id, label_smoothing

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        src, tgt_in, tgt_out = batch
        logits = model(src, tgt_in, src != self.pad_id)  # (B, T, V)
        loss, ce, count = label_smoothed_loss(logits, tgt_out, self.label_smoothing, self.pad_id)
        with torch.no_grad():
            keep = tgt_out != self.pad_id
            correct = ((logits.argmax(-1) == tgt_out) & keep).sum()
        return loss, {"ce": ce.detach(), "count": count, "correct": correct}

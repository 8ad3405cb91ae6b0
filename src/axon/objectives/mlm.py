"""Masked-language-model loss (BERT, Devlin et al. 2019, sec. 3.1 task #1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.nn.precision import at_least_fp32
from axon.objectives.causal_lm import IGNORE_INDEX


class MaskedLM:
    """Cross-entropy of the original tokens at the masked positions only.

    batch = (input_ids (B, T), attention_mask (B, T), labels (B, T)) with labels = -100 wherever
    nothing is to be predicted (``axon.data.masking``). The model is asked for logits at the N
    chosen positions only, ``model(ids, mask, predict=chosen)`` -> (N, V), so the (large) output
    layer runs on ~15% of the tokens. Parts: ``ce`` (the loss), ``count`` = N (evaluation
    weights each batch by it), ``correct`` = argmax hits (evaluation reports their share as
    accuracy).
    """

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        ids, mask, labels = batch
        chosen = labels != IGNORE_INDEX  # (B, T)
        logits = at_least_fp32(model(ids, mask, predict=chosen))  # (N, V)
        target = labels[chosen]  # (N,)
        if target.numel() == 0:  # nothing masked (windows of special tokens only): no signal
            loss = logits.sum() * 0.0
            return loss, {"ce": loss, "count": 0, "correct": 0}
        loss = F.cross_entropy(logits, target)
        correct = (logits.argmax(-1) == target).sum()
        return loss, {"ce": loss, "count": target.numel(), "correct": correct}

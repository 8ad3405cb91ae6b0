"""The embedding reader's objective (``axon.models.embed_reader``): next-token cross-entropy over the
answer tokens, given the retrieved passages' vectors.

    batch    (vectors (B, K, D), vector_mask (B, K) bool, x (B, T), y (B, T))
    logits = model(vectors, x, vector_mask)                              (B, T, V)
    loss   = - sum_{t: y_t != -100} log p(y_t | passages, x_<=t) / #{t: y_t != -100}   over the batch

y = -100 (``IGNORE_INDEX``) wherever no loss is taken (the question, padding), so the loss is
``causal_lm_loss``'s, plus the model's auxiliary losses as ``CausalLM`` adds them. The parts hold
``ce`` and ``count``, the answer targets, by which evaluation weights each batch (as ``ResponseLM``).
"""

from __future__ import annotations

import torch
from torch import nn

from axon.models.base import unwrap
from axon.objectives.causal_lm import IGNORE_INDEX, causal_lm_loss


class EmbeddedAnswerLM:
    """Cross-entropy over the targets that are not ``IGNORE_INDEX`` (module docstring)."""

    def __init__(self, z_loss: float = 0.0):
        self.z_loss = z_loss

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        vectors, vector_mask, x, y = batch
        loss, parts = causal_lm_loss(model(vectors, x, vector_mask), y, self.z_loss)
        for name, value in unwrap(model).aux_losses().items():  # none today; kept as every LM objective does
            loss = loss + value
            parts[name] = value
        parts["count"] = (y != IGNORE_INDEX).sum()  # answer targets: evaluation's weight
        return loss, parts


__all__ = ["EmbeddedAnswerLM"]

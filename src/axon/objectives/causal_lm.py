"""Causal language modelling: predict token t+1 from tokens <= t."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.models.base import unwrap
from axon.nn.precision import at_least_fp32

IGNORE_INDEX = -100  # targets with this value (padding) contribute nothing


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy, plus ``z_loss * mean(log Z)^2`` when z_loss > 0.

    logits (B, T, V), targets (B, T) already shifted (targets[:, t] is the token after t).
    The z-loss pulls the softmax normaliser log Z = logsumexp(logits) towards 0, which keeps
    output logits from drifting and stabilises training (PaLM sec. 5; Chameleon sec. 2.3).
    Returns (loss to optimise, {"ce": cross-entropy, "z_loss": the added term}).
    """
    logits = at_least_fp32(logits)  # softmax statistics in fp32 even under bf16 autocast
    flat, tgt = logits.view(-1, logits.size(-1)), targets.reshape(-1)
    ce = F.cross_entropy(flat, tgt, ignore_index=IGNORE_INDEX)
    if z_loss <= 0:
        return ce, {"ce": ce}
    keep = tgt != IGNORE_INDEX
    log_z = torch.logsumexp(flat[keep], dim=-1)
    zl = z_loss * log_z.pow(2).mean()
    return ce + zl, {"ce": ce, "z_loss": zl}


class CausalLM:
    """Objective for any model that maps token ids (B, T) to logits (B, T, V); adds the model's
    ``aux_losses()`` (a dict of scalar tensors from its last forward; axon.models.base).

    ``model`` is what the trainer calls, perhaps a DDP or compile wrapper: the forward goes
    through it (DDP's gradient hooks), the contract to the model underneath (``unwrap``)."""

    def __init__(self, z_loss: float = 0.0):
        self.z_loss = z_loss

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, y = batch
        loss, parts = causal_lm_loss(model(x), y, self.z_loss)
        # Auxiliary losses a model reports for its last forward (MoE load balance, router z-loss):
        # optimised with the loss, reported as their own parts, never in "ce".
        for name, value in unwrap(model).aux_losses().items():
            loss = loss + value
            parts[name] = value
        return loss, parts

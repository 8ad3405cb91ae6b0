"""Evaluation: loss on a fixed validation set, perplexity, bits per character/byte."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def evaluate_loss(model: nn.Module, objective, batches, autocast=None) -> tuple[float, int]:
    """Mean loss (nats per target token) over ``batches`` of (x, y); returns (loss, tokens seen).

    Each batch is weighted by its number of targets, so a short last batch counts fairly.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        if autocast is not None:
            with autocast():
                loss, parts = objective(model, (x, y))
        else:
            loss, parts = objective(model, (x, y))
        n = y.numel()
        total += float(parts.get("ce", loss)) * n
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("no evaluation batches")
    return total / count, count


def language_model_metrics(loss: float, chars_per_token: float | None, bytes_per_token: float | None) -> dict:
    """Perplexity and bits per character / byte from a mean loss in nats per token.

    bits/char = loss / ln 2 * tokens / chars: the same number for any tokenizer of the same text,
    which is what makes character and BPE models comparable.
    """
    out = {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2)}
    if chars_per_token:
        out["bits_per_char"] = loss / math.log(2) / chars_per_token
    if bytes_per_token:
        out["bits_per_byte"] = loss / math.log(2) / bytes_per_token
    return out

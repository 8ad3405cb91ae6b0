"""Evaluation: loss on a fixed validation set, perplexity, bits per character/byte."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn


@torch.no_grad()
def evaluation_sums(model: nn.Module, objective, batches, autocast=None) -> tuple[float, int, int | None]:
    """(sum of per-target losses, targets, correct predictions or None) over ``batches``: the
    parts of :func:`evaluate` that add up across the ranks of a distributed run."""
    was_training = model.training
    model.eval()
    total, count, correct = 0.0, 0, None
    for batch in batches:
        with autocast() if autocast is not None else contextlib.nullcontext():
            loss, parts = objective(model, batch)
        n = int(parts.get("count", batch[-1].numel()))
        total += float(parts.get("ce", loss)) * n
        count += n
        if "correct" in parts:
            correct = (correct or 0) + int(parts["correct"])
    model.train(was_training)
    return total, count, correct


def evaluate(model: nn.Module, objective, batches, autocast=None) -> dict[str, float]:
    """Metrics over ``batches`` (tuples of tensors, the targets last).

    ``loss``: mean per target (the objective's ``ce`` part when it adds regularisers), each batch
    weighted by its number of targets (``parts["count"]``, default ``batch[-1].numel()``), so a
    short last batch counts fairly; ``count``: targets seen; ``accuracy`` when the objective
    reports ``correct`` (classification).
    """
    return summarize_sums(*evaluation_sums(model, objective, batches, autocast))


def summarize_sums(total: float, count: int, correct: int | None) -> dict[str, float]:
    if count == 0:
        raise ValueError("no evaluation batches")
    out = {"loss": total / count, "count": count}
    if correct is not None:
        out["accuracy"] = correct / count
    return out


def evaluate_loss(model: nn.Module, objective, batches, autocast=None) -> tuple[float, int]:
    """(mean loss per target, targets seen) over ``batches``; see :func:`evaluate`."""
    m = evaluate(model, objective, batches, autocast)
    return m["loss"], m["count"]


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


from axon.eval.report import finetune_line, metrics_line, train_line  # noqa: E402  (they use nothing above)
from axon.eval.runs import check_eval_options, evaluate_split, split_metrics  # noqa: E402

__all__ = ["evaluate", "evaluate_loss", "evaluation_sums", "summarize_sums", "language_model_metrics",
           "check_eval_options", "evaluate_split", "split_metrics", "metrics_line", "train_line", "finetune_line"]

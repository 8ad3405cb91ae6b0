"""Sequence classification loss: cross-entropy of one label per sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.models.base import unwrap
from axon.nn.precision import at_least_fp32


class Classification:
    """For any classifier that follows the classification batch contract:

    batch = (input_ids (B, T) int64, attention_mask (B, T) bool, True = a real token,
    labels (B,) int64); ``model(input_ids, attention_mask)`` -> logits (B, num_labels).
    Parts: ``ce`` (the mean cross-entropy), ``count`` = B, ``correct`` = argmax hits (evaluation
    reports accuracy from them).
    """

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        ids, mask, labels = batch
        logits = at_least_fp32(model(ids, mask))  # (B, num_labels)
        loss = F.cross_entropy(logits, labels)
        correct = (logits.argmax(-1) == labels).sum()
        return loss, {"ce": loss, "count": labels.numel(), "correct": correct}


class ImageClassification:
    """Cross-entropy of one label per image: batch = (images (B, C, H, W) float, labels (B,) int64);
    ``model(images)`` -> logits (B, num_labels). Parts as :class:`Classification`'s: ``ce``,
    ``count`` = B, ``correct`` = argmax hits (evaluation reports accuracy from them); the model's
    ``aux_losses()`` (a routed model's balance and z-losses) are added, each its own part."""

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        images, labels = batch
        images = images.to(next(model.parameters()).dtype)  # an fp64 run's model takes fp64 images
        logits = at_least_fp32(model(images))  # (B, num_labels)
        ce = F.cross_entropy(logits, labels)
        correct = (logits.argmax(-1) == labels).sum()
        parts = {"ce": ce, "count": labels.numel(), "correct": correct}
        loss = ce
        for name, value in unwrap(model).aux_losses().items():  # a routed model's balance and z-losses
            loss = loss + value
            parts[name] = value
        return loss, parts

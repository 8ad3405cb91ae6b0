"""Macro F1 of a classifier over a whole split: the figure the TF-IDF baseline (``axon baseline``) prints
beside accuracy, so that a classify run's table and the baseline's compare like for like.

    batches (input_ids, attention_mask, labels)  --model-->  logits (B, K)  --argmax-->  predicted ids
    per label k:  F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)        0 when the label is neither gold nor predicted
    macro F1   =  mean over the K labels of the training file     (scikit-learn's f1_score(average="macro",
                                                                    labels=range(K), zero_division=0))

Accuracy favours the majority class; macro F1 weights every label alike, so a classifier that never
predicts a rare speaker loses a K-th of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from axon.nn.precision import at_least_fp32


def macro_f1(gold: Sequence[int], pred: Sequence[int], num_labels: int) -> float:
    """The unweighted mean over labels 0..num_labels-1 of each label's F1 (module docstring)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    tp, fp, fn = [0] * num_labels, [0] * num_labels, [0] * num_labels
    for g, p in zip(gold, pred):
        if g == p:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    f1 = [2 * t / (2 * t + a + b) if t + a + b else 0.0 for t, a, b in zip(tp, fp, fn)]
    return sum(f1) / num_labels


@torch.no_grad()
def predict_labels(model: nn.Module, batches) -> tuple[list[int], list[int]]:
    """(gold, predicted) label ids of every example of ``batches`` (the classification contract), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gold, pred = [], []
    try:
        for ids, mask, labels in batches:
            logits = at_least_fp32(model(ids.to(device), mask.to(device)))
            gold.extend(labels.tolist())
            pred.extend(logits.argmax(-1).tolist())
    finally:
        model.train(was_training)
    return gold, pred

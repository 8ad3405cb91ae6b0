"""Token classification loss and decoding: the objective of the ``tag`` task.

    batch: input_ids (B, T), attention_mask (B, T), labels (B, T) -- IGNORE (-100) where no word starts
        |
    model(input_ids, attention_mask) -> emissions (B, T, K)         a BiLSTM's (words) or BERT's (sub-tokens)
        |
    word_positions(labels): the non-IGNORE positions of each row, moved to its front in order
        -> emissions (B, W, K), tags (B, W), word mask (B, W)         W = most words in a row
        |
    no CRF:  loss = sum over words of -log softmax(e_w)[y_w] / words      prediction: argmax per word
    CRF:     loss = sum over sentences of (log Z - s(x, y)) / words       prediction: Viterbi
             (the model's ``tag_crf()``, ``axon.nn.crf``: forward algorithm)

Both losses are per word, so the mean loss of a split weights every word alike (``count`` = words);
under no gradient (evaluation) ``correct`` counts the words whose predicted tag -- Viterbi's when
there is a CRF -- is the gold one, which the evaluation reports as accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.data.tagged import IGNORE
from axon.models.base import unwrap
from axon.nn.precision import at_least_fp32


def word_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions (B, W), word mask (B, W)): each row's non-IGNORE positions, left-aligned in order."""
    real = labels != IGNORE
    n = real.sum(1)
    W = max(int(n.max()), 1)
    order = torch.sort((~real).to(torch.uint8), dim=1, stable=True).indices[:, :W]  # real positions first, in order
    return order, torch.arange(W, device=labels.device)[None, :] < n[:, None]


def word_emissions(emissions: torch.Tensor, labels: torch.Tensor):
    """(emissions (B, W, K), tags (B, W) with 0 past each row's words, word mask (B, W))."""
    order, mask = word_positions(labels)
    em = emissions.gather(1, order.unsqueeze(-1).expand(-1, -1, emissions.size(-1)))
    tags = labels.gather(1, order).masked_fill(~mask, 0)
    return em, tags, mask


def decode_words(model: nn.Module, em: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Each row's predicted tag ids, one per word: Viterbi under the model's CRF, else argmax."""
    crf = unwrap(model).tag_crf()
    if crf is not None:
        return crf.decode(em, mask)
    best = em.argmax(-1).tolist()
    return [row[:n] for row, n in zip(best, mask.sum(1).tolist())]


class TokenTagging:
    """The tag task's objective (module docstring): ``(model, batch) -> (loss, parts)``."""

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        ids, attention, labels = batch
        emissions = at_least_fp32(model(ids, attention))  # (B, T, K), through any wrapper (DDP hooks)
        em, tags, mask = word_emissions(emissions, labels)
        words = mask.sum()
        crf = unwrap(model).tag_crf()
        if crf is not None:
            loss = crf.nll(em, tags, mask).sum() / words
        else:
            loss = F.cross_entropy(em[mask], tags[mask], reduction="sum") / words
        parts = {"ce": loss, "count": int(words)}
        if not torch.is_grad_enabled():  # evaluation: Viterbi costs a pass, training does not need it
            pred = decode_words(model, em, mask)
            gold = tags.tolist()
            parts["correct"] = sum(p == g for row, grow in zip(pred, gold) for p, g in zip(row, grow))
        return loss, parts


@torch.no_grad()
def predict_tags(model: nn.Module, batches) -> tuple[list[list[int]], list[list[int]]]:
    """(gold, predicted) tag ids of every sentence of ``batches``, word by word, in order, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gold, pred = [], []
    try:
        for ids, attention, labels in batches:
            ids, attention, labels = ids.to(device), attention.to(device), labels.to(device)
            em, tags, mask = word_emissions(at_least_fp32(model(ids, attention)), labels)
            pred.extend(decode_words(model, em, mask))
            gold.extend(row[:n] for row, n in zip(tags.tolist(), mask.sum(1).tolist()))
    finally:
        model.train(was_training)
    return gold, pred

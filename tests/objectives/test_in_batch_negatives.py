"""DPR's in-batch negative loss (axon.objectives.retrieval) against a hand computation."""

import math

import pytest
import torch

from axon.objectives.retrieval import in_batch_negatives_loss


def test_the_loss_is_each_questions_softmax_over_every_passage_of_the_batch():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])  # two positives, one hard negative
    # q0 . p = (2, 1, 0): -log(e^2 / (e^2 + e^1 + e^0)); q1 . p = (0, 2, -2): -log(e^2 / (e^0 + e^2 + e^-2))
    hand = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
            - math.log(math.exp(2) / (1 + math.exp(2) + math.exp(-2)))) / 2
    loss, acc = in_batch_negatives_loss(q, p)
    assert loss.item() == pytest.approx(hand, rel=1e-6) and acc.item() == 1.0
    loss, acc = in_batch_negatives_loss(q, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # the positives swapped
    assert acc.item() == 0.0 and loss.item() > math.log(2)


def test_gradients_pull_the_positive_closer_and_shapes_are_checked():
    q = torch.randn(4, 8, requires_grad=True)
    p = torch.randn(6, 8, requires_grad=True)
    loss, _ = in_batch_negatives_loss(q, p)
    loss.backward()
    with torch.no_grad():
        q2, p2 = q - 0.1 * q.grad, p - 0.1 * p.grad
    assert in_batch_negatives_loss(q2, p2)[0] < loss
    with pytest.raises(ValueError):
        in_batch_negatives_loss(torch.randn(4, 8), torch.randn(3, 8))
    with pytest.raises(ValueError):
        in_batch_negatives_loss(torch.randn(4, 8), torch.randn(4, 7))

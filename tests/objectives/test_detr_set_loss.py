"""DETR's matching and set loss (axon.objectives.detr): the Hungarian matching is the best of all
assignments, the loss equals a hand computation, and the order of an image's targets does not
change it."""

import itertools
import math

import pytest
import torch

from axon.config import build_model_config
from axon.models import build_model
from axon.models.base import Model
from axon.objectives.detr import SetCriterion, hungarian_match, match_cost, set_loss


@pytest.mark.parametrize("seed", range(12))
def test_the_matching_is_the_cheapest_of_all_assignments(seed):
    g = torch.Generator().manual_seed(seed)
    N = 3 + seed % 3
    n = 1 + seed % N
    cost = torch.randn(N, n, generator=g, dtype=torch.float64)
    rows, cols = hungarian_match(cost)
    best = min(itertools.permutations(range(N), n), key=lambda p: sum(float(cost[p[j], j]) for j in range(n)))
    assert sorted(zip(cols.tolist(), rows.tolist())) == list(enumerate(best))  # target j -> prediction best[j]
    assert len(set(rows.tolist())) == n  # one prediction per target


def test_the_match_cost_is_the_papers():
    """-1 * p(c) + 5 * L1 - 2 * GIoU, for one prediction and one target written out."""
    logits = torch.tensor([[0.0, math.log(3.0), 0.0]])  # p = (1/5, 3/5, 1/5)
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4]])  # xyxy [0.3, 0.3, 0.7, 0.7]
    target = torch.tensor([[0.6, 0.5, 0.4, 0.4]])  # xyxy [0.4, 0.3, 0.8, 0.7]: IoU 0.12 / 0.2, GIoU 0.6
    cost = match_cost(logits, boxes, torch.tensor([1]), target, 1.0, 5.0, 2.0)
    assert cost.shape == (1, 1) and float(cost) == pytest.approx(-0.6 + 5 * 0.1 - 2 * 0.6, abs=1e-6)
    assert float(match_cost(logits, boxes, torch.tensor([1]), target, 1.0, 5.0, 0.0)) == pytest.approx(-0.1, abs=1e-6)


class Fixed(Model):
    """A 'model' that returns given outputs (one decoder layer); no auxiliary losses (the contract's default)."""

    def __init__(self, logits, boxes):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.logits, self.boxes = logits, boxes

    def forward(self, images):
        return (self.logits + self.w)[None], self.boxes[None]


def test_the_set_loss_by_hand():
    """Two queries, one object of class 1. Query 0 predicts it (p = 3/5 for class 1, its box off by
    0.1 in cx: L1 0.1, GIoU 0.6), query 1 is matched to nothing and says "no object" with p = 1/2:
    CE = (1 * -log 3/5 + 0.1 * -log 1/2) / 1.1; loss = CE + 5 * 0.1 + 2 * (1 - 0.6)."""
    logits = torch.tensor([[[0.0, math.log(3.0), 0.0], [0.0, 0.0, math.log(2.0)]]], dtype=torch.float64)
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.2, 0.2, 0.1, 0.1]]], dtype=torch.float64)
    labels, target = torch.tensor([[1, -1]]), torch.tensor([[[0.6, 0.5, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    loss, parts = SetCriterion()(Fixed(logits, boxes).double(), (torch.zeros(1, 3, 4, 4), labels, target))
    ce = (-math.log(3 / 5) + 0.1 * -math.log(1 / 2)) / 1.1
    assert float(parts["class"]) == pytest.approx(ce, rel=1e-12)
    assert float(parts["l1"]) == pytest.approx(0.1, rel=1e-12)
    assert float(parts["giou"]) == pytest.approx(0.4, rel=1e-12)
    assert loss.item() == pytest.approx(ce + 5 * 0.1 + 2 * 0.4, rel=1e-12) and parts["count"] == 1
    # the same parts from set_loss with the matching given
    direct = set_loss(logits, boxes, labels, target, [(torch.tensor([0]), torch.tensor([0]))], 0.1, 1)
    assert all(torch.equal(direct[k], parts[k]) for k in ("class", "l1", "giou"))


def tiny_detr():
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "detr", "preset": "tiny", "num_labels": 3})).double()


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    labels = torch.tensor([[0, 2, 1, 1], [2, 0, -1, -1], [-1, -1, -1, -1]])  # 4, 2 and no objects
    wh = torch.rand(3, 4, 2, generator=g, dtype=torch.float64) * 0.4 + 0.1
    boxes = torch.cat([torch.rand(3, 4, 2, generator=g, dtype=torch.float64) * 0.5 + 0.25, wh], -1)
    return images, labels, boxes * (labels >= 0)[..., None]


@pytest.mark.parametrize("aux", [True, False])
def test_permuting_an_images_targets_does_not_change_the_loss(aux):
    model, (images, labels, boxes) = tiny_detr().eval(), batch()
    objective = SetCriterion(aux_loss=aux)
    loss, parts = objective(model, (images, labels, boxes))
    perm = torch.tensor([2, 0, 3, 1])  # image 0's four objects in another order
    labels2, boxes2 = labels.clone(), boxes.clone()
    labels2[0], boxes2[0] = labels[0, perm], boxes[0, perm]
    loss2, parts2 = objective(model, (images, labels2, boxes2))
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.allclose(loss, loss2, rtol=1e-12, atol=0)
    assert all(torch.allclose(parts[k], parts2[k], rtol=1e-12, atol=0) for k in ("class", "l1", "giou"))


def test_auxiliary_losses_add_every_decoder_layer():
    model = tiny_detr().eval()
    model.decoder.append(type(model.decoder[0])(model.config).double())  # a second decoder layer
    images, labels, boxes = batch()
    with_aux, _ = SetCriterion(aux_loss=True)(model, (images, labels, boxes))
    last, _ = SetCriterion(aux_loss=False)(model, (images, labels, boxes))
    logits, pred = model(images)
    first = SetCriterion(aux_loss=False)(Fixed(logits[0], pred[0]).double(), (images, labels, boxes))[0]
    assert torch.allclose(with_aux, last + first, rtol=1e-12, atol=0)

"""Box conversions, IoU and generalized IoU (axon.nn.boxes): hand-computed values that run
everywhere, and torchvision.ops where it imports."""

import pytest
import torch

from axon.nn.boxes import box_cxcywh_to_xyxy, box_iou, box_xyxy_to_cxcywh, generalized_box_iou


def random_boxes(n: int, seed: int) -> torch.Tensor:
    """(n, 4) proper xyxy boxes in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(n, 2, generator=g), torch.rand(n, 2, generator=g)
    return torch.cat([torch.min(a, b), torch.max(a, b) + 1e-3], dim=1).double()


def test_conversions_invert_each_other():
    xyxy = random_boxes(20, 0)
    c = box_xyxy_to_cxcywh(xyxy)
    assert torch.allclose(box_cxcywh_to_xyxy(c), xyxy, atol=1e-15)
    assert torch.equal(box_xyxy_to_cxcywh(torch.tensor([[1.0, 2.0, 5.0, 4.0]])), torch.tensor([[3.0, 3.0, 4.0, 2.0]]))


def test_iou_and_giou_by_hand():
    """A = [0, 2] x [0, 2], B = [1, 3] x [1, 3]: intersection 1, union 7, enclosing 9 ->
    IoU 1/7, GIoU 1/7 - 2/9. C = [3, 4] x [0, 1], apart from A: IoU 0, enclosing [0, 4] x [0, 2]
    = 8, union 5 -> GIoU -3/8. A box with itself: 1 and 1."""
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [3.0, 0.0, 4.0, 1.0], [0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    iou, union = box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[1 / 7, 0.0, 1.0]], dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.equal(union, torch.tensor([[7.0, 5.0, 4.0]], dtype=torch.float64))
    want = torch.tensor([[1 / 7 - 2 / 9, -3 / 8, 1.0]], dtype=torch.float64)
    assert torch.allclose(generalized_box_iou(a, b), want, rtol=0, atol=1e-15)


def test_giou_is_pairwise_symmetric_and_bounded():
    a, b = random_boxes(7, 1), random_boxes(5, 2)
    g = generalized_box_iou(a, b)
    assert g.shape == (7, 5) and torch.allclose(g, generalized_box_iou(b, a).T, atol=1e-15)
    assert (g <= 1).all() and (g >= -1).all() and (g <= box_iou(a, b)[0] + 1e-15).all()


@pytest.mark.numerics
def test_giou_matches_torchvision():
    ops = pytest.importorskip("torchvision.ops")
    a, b = random_boxes(9, 3), random_boxes(6, 4)
    assert torch.allclose(generalized_box_iou(a, b), ops.generalized_box_iou(a, b), rtol=0, atol=1e-12)
    assert torch.allclose(box_iou(a, b)[0], ops.box_iou(a, b), rtol=0, atol=1e-12)

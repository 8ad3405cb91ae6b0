"""Boxes: conversions between the two layouts, pairwise IoU and generalized IoU.

    cxcywh  (cx, cy, w, h): a centre and a size -- what DETR's box head predicts, in [0, 1]
    xyxy    (x0, y0, x1, y1): two corners, x0 <= x1 and y0 <= y1 -- what IoU is computed on

            x0          x1
        y0  +-----------+              IoU(A, B)  = |A n B| / |A u B|
            |     A  +--|------+
            |        |##|      |       GIoU(A, B) = IoU(A, B) - |C \\ (A u B)| / |C|
            +--------|--+      |                    C: the smallest box enclosing A and B
        y1           |     B   |
                     +---------+       in [-1, 1]; unlike IoU it still says how far apart two
                                       boxes are when they do not overlap (Rezatofighi et al. 2019)

Everything is pairwise over two lists of boxes, (N, 4) and (M, 4) -> (N, M), written out with
broadcasting; ``tests/nn/test_boxes.py`` checks it against hand-computed values and, where it is
installed, ``torchvision.ops.generalized_box_iou``.
"""

from __future__ import annotations

import torch


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre/size -> (..., 4) corners."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corners -> (..., 4) centre/size."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyxy -> (...) areas."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU of xyxy boxes a (N, 4) and b (M, 4): (iou (N, M), union (N, M))."""
    area_a, area_b = box_area(a), box_area(b)  # (N,), (M,)
    top_left = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2): the intersection's corners
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2): 0 where the boxes do not overlap
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter  # (N, M)
    return inter / union, union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU of xyxy boxes a (N, 4) and b (M, 4) -> (N, M), in [-1, 1].
    Boxes must be proper (x1 >= x0, y1 >= y0), or the enclosing area is meaningless."""
    iou, union = box_iou(a, b)
    top_left = torch.min(a[:, None, :2], b[None, :, :2])  # (N, M, 2): the enclosing box C
    bottom_right = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]  # (N, M): |C|
    return iou - (enclosing - union) / enclosing


__all__ = ["box_area", "box_cxcywh_to_xyxy", "box_iou", "box_xyxy_to_cxcywh", "generalized_box_iou"]

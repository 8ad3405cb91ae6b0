"""DETR's set loss (Carion et al. 2020, sec. 3.1): a one-to-one matching of the N predictions to
an image's n <= N objects, then losses on the matched pairs.

    predictions (N per image): class probabilities p_i (K + 1, the last "no object"), boxes b_i
    targets (n per image): classes c_j, boxes t_j                    boxes as (cx, cy, w, h) in [0, 1]

    1. matching (the Hungarian algorithm; scipy's linear_sum_assignment), no gradient:
           cost(i, j) = - cost_class p_i(c_j) + cost_bbox |b_i - t_j|_1 - cost_giou GIoU(b_i, t_j)
           sigma = the assignment of targets to distinct predictions of least total cost
    2. the loss, with sigma fixed:
           class: cross-entropy of every prediction against its matched class, or "no object"
                  for the N - n unmatched ones, whose weight is eos_coef (0.1: they outnumber the
                  objects); torch's weighted mean: sum w_i CE_i / sum w_i
           l1:    sum over matched pairs |b_sigma(j) - t_j|_1 / num_boxes
           giou:  sum over matched pairs (1 - GIoU(b_sigma(j), t_j)) / num_boxes
           loss = loss_ce class + loss_bbox l1 + loss_giou giou,
       num_boxes being the batch's target boxes (at least 1). With auxiliary losses (sec. 3.2) each
       decoder layer's predictions are matched and scored the same way, and the losses add up.

The paper's weights: costs 1 / 5 / 2 and losses 1 / 5 / 2, eos_coef 0.1 (``axon.config.DetectConfig``).
``tests/objectives/test_detr_set_loss.py``: the matching against every permutation of small cost
matrices, the loss against a hand computation, and its invariance to the order of the targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.models.base import unwrap
from axon.nn.boxes import box_cxcywh_to_xyxy, generalized_box_iou
from axon.nn.precision import at_least_fp32


@torch.no_grad()
def match_cost(logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, target_boxes: torch.Tensor,
               cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0) -> torch.Tensor:
    """The matching cost of one image: logits (N, K + 1), boxes (N, 4), labels (n,), target boxes
    (n, 4) -> (N, n). The class term is -p(c), not -log p(c): on the scale of the box terms (sec. 3.1)."""
    prob = logits.float().softmax(-1)  # (N, K + 1)
    boxes, target_boxes = boxes.float(), target_boxes.float()
    c = -cost_class * prob[:, labels]  # (N, n)
    c = c + cost_bbox * torch.cdist(boxes, target_boxes, p=1)
    return c - cost_giou * generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))


def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction indices, target indices), each (n,), of the least-cost one-to-one assignment of
    the n columns of ``cost`` (N, n), N >= n, to distinct rows; sorted by prediction index."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


def set_loss(logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, target_boxes: torch.Tensor,
             matches: list[tuple[torch.Tensor, torch.Tensor]], eos_coef: float, num_boxes: float) -> dict[str, torch.Tensor]:
    """The three losses of one decoder layer, given the matching: logits (B, N, K + 1), boxes (B, N, 4),
    labels (B, M) (-1: padding), target_boxes (B, M, 4), ``matches[b]`` = (prediction indices,
    indices among image b's real targets) -> {"class", "l1", "giou"}."""
    B, N, K1 = logits.shape
    target_classes = torch.full((B, N), K1 - 1, dtype=torch.int64, device=logits.device)  # "no object"
    pred, true = [], []
    for b, (i, j) in enumerate(matches):
        i, j = i.to(logits.device), j.to(logits.device)
        target_classes[b, i] = labels[b, j]
        pred.append(boxes[b, i])
        true.append(target_boxes[b, j])
    weight = torch.ones(K1, dtype=logits.dtype, device=logits.device)
    weight[-1] = eos_coef
    out = {"class": F.cross_entropy(logits.transpose(1, 2), target_classes, weight)}  # (B, K+1, N) vs (B, N)
    pred, true = torch.cat(pred), torch.cat(true)  # (sum n, 4) matched pairs
    out["l1"] = (pred - true).abs().sum() / num_boxes
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(true)))  # (sum n,)
    out["giou"] = (1 - giou).sum() / num_boxes
    return out


class SetCriterion:
    """The detection objective: batch = (images (B, C, H, W), labels (B, M) int64 with -1 after an
    image's objects, boxes (B, M, 4) (cx, cy, w, h) in [0, 1]); ``model(images)`` -> (logits (L, B,
    N, K + 1), boxes (L, B, N, 4)), one row per decoder layer. Parts: the last layer's ``class``,
    ``l1`` and ``giou`` losses, and ``count`` = B (evaluation's mean loss is per image)."""

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 loss_ce: float = 1.0, loss_bbox: float = 5.0, loss_giou: float = 2.0, eos_coef: float = 0.1,
                 aux_loss: bool = True):
        self.costs = dict(cost_class=cost_class, cost_bbox=cost_bbox, cost_giou=cost_giou)
        self.weights = {"class": loss_ce, "l1": loss_bbox, "giou": loss_giou}
        self.eos_coef, self.aux_loss = eos_coef, aux_loss

    def match(self, logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
              target_boxes: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One layer's matching, image by image: logits (B, N, K + 1), boxes (B, N, 4)."""
        out = []
        for b in range(logits.size(0)):
            real = labels[b] >= 0
            cost = match_cost(logits[b], boxes[b], labels[b][real], target_boxes[b][real], **self.costs)
            out.append(hungarian_match(cost))
        return out

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        images, labels, target_boxes = batch
        all_logits, all_boxes = model(images.to(next(model.parameters()).dtype))  # (L, B, N, K + 1), (L, B, N, 4)
        all_logits, all_boxes = at_least_fp32(all_logits), at_least_fp32(all_boxes)
        target_boxes = target_boxes.to(all_boxes.dtype)
        num_boxes = max(int((labels >= 0).sum()), 1)
        layers = range(all_logits.size(0)) if self.aux_loss else [all_logits.size(0) - 1]
        loss = 0.0
        for layer in layers:  # the last layer and, with auxiliary losses, every earlier one: each matched afresh
            matches = self.match(all_logits[layer], all_boxes[layer], labels, target_boxes)
            parts = set_loss(all_logits[layer], all_boxes[layer], labels, target_boxes, matches, self.eos_coef, num_boxes)
            loss = loss + sum(self.weights[k] * v for k, v in parts.items())
        parts = {k: v.detach() for k, v in parts.items()}
        for name, value in unwrap(model).aux_losses().items():  # a routed model's balance and z-losses
            loss = loss + value
            parts[name] = value.detach()
        return loss, {**parts, "count": images.size(0)}


__all__ = ["SetCriterion", "hungarian_match", "match_cost", "set_loss"]

"""GloVe's weighted least squares (Pennington et al. 2014, eqs. 8-9) on sampled co-occurrence entries.

    batch: i (N,), j (N,), X_ij (N,) > 0       model(i, j) = w_i . w~_j + b_i + b~_j   (N,)
    term_ij = f(X_ij) (model(i, j) - log X_ij)^2,    f(x) = (x / x_max)^alpha if x < x_max else 1

J is the sum of the terms over every nonzero entry; a batch's loss is their mean (entries drawn
uniformly: an unbiased estimate of J / nonzeros). The model: ``axon.models.glove``.
"""

from __future__ import annotations

import torch
from torch import nn


def weighting(x: torch.Tensor, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """f(x) = (x / x_max)^alpha for x < x_max, else 1 (eq. 9)."""
    return torch.where(x < x_max, (x / x_max) ** alpha, torch.ones_like(x))


def glove_loss(pred: torch.Tensor, x: torch.Tensor, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """Per-entry terms f(X_ij) (pred_ij - log X_ij)^2, (N,), with pred = w_i . w~_j + b_i + b~_j (N,);
    J is their sum."""
    x = x.to(pred.dtype)
    return weighting(x, x_max, alpha) * (pred - torch.log(x)) ** 2


class GloVeObjective:
    """Objective for glove batches (i, j, X_ij): the mean of the per-entry terms. x_max and alpha
    come from the task (the model's config), so the model is asked only for its forward."""

    def __init__(self, x_max: float = 100.0, alpha: float = 0.75):
        self.x_max, self.alpha = x_max, alpha

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        i, j, x = batch
        loss = glove_loss(model(i, j), x, self.x_max, self.alpha).mean()
        return loss, {"ce": loss, "count": torch.tensor(float(len(i)))}


__all__ = ["weighting", "glove_loss", "GloVeObjective"]

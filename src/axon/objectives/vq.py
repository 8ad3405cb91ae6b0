"""The VQ-VAE's loss (van den Oord et al. 2017, equation 3): reconstruction + the quantiser's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VQReconstruction:
    """batch = (images (B, C, H, W) float in [-1, 1], labels (B,) int64, unused); ``model(images)`` ->
    (reconstruction, vq_loss, codes). loss = mean squared error over pixels + vq_loss (codebook and
    beta x commitment terms, or the commitment term alone with EMA codebook updates). Parts: ``ce``
    (the reconstruction MSE, what evaluation averages), ``vq``, ``count`` = B."""

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        images = batch[0].to(next(model.parameters()).dtype)
        recon, vq_loss, _ = model(images)
        mse = F.mse_loss(recon.float(), images.float())
        return mse + vq_loss, {"ce": mse, "vq": vq_loss, "count": images.shape[0]}

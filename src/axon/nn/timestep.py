"""What a denoiser is told besides its input: the timestep, and a class for guidance.

The sinusoidal embedding is the Transformer's position encoding applied to the timestep (Ho et al.
2020, appendix B; their ``get_timestep_embedding``), then an MLP; a class embedding is added to it.
Both diffusion families (``unet``, ``mlp_denoiser``) condition every block on this vector::

    t (B,) long in [0, T)                      y (B,) long in [0, num_classes], or None
        |                                          |
    sinusoidal(t, dim)        (B, dim)             |   None -> num_classes (the null class) for every row
        |                                          |
    Linear(dim, hidden) -> SiLU -> Linear          class_emb: num_classes + 1 rows   (B, hidden)
        |                     (B, hidden)          |
        +---------------------- (+) ---------------+
                                 |
                             emb (B, hidden)

    sinusoidal(t, dim) = [sin(t w_0), ..., sin(t w_{h-1}), cos(t w_0), ..., cos(t w_{h-1})],
    h = dim // 2,  w_i = 10000^(-i / (h - 1))     (a zero column more when dim is odd)

Row ``num_classes`` of the class table is the null class of classifier-free guidance (Ho &
Salimans 2022): training drops labels to it, and sampling mixes the conditional and the null
prediction. The schedule of the diffusion process is not here: these are parameters only.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t (B,) -> (B, dim) float32: sines then cosines of t at ``dim // 2`` geometric frequencies
    from 1 down to 1 / max_period (Ho et al.'s form: diffusers' ``get_timestep_embedding`` with
    ``flip_sin_to_cos=False, downscale_freq_shift=1``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                      / max(half - 1, 1))  # (half,)
    args = t.to(torch.float32)[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2 half)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """(t, y) -> the conditioning vector (B, hidden) of the diagram above."""

    def __init__(self, dim: int, hidden: int, num_classes: int | None = None):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()
        self.class_emb = nn.Embedding(num_classes + 1, hidden) if num_classes else None

    def forward(self, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = timestep_embedding(t, self.dim).to(self.fc1.weight.dtype)  # (B, dim)
        emb = self.fc2(self.act(self.fc1(emb)))  # (B, hidden)
        if self.class_emb is None:
            if y is not None:
                raise ValueError("class labels given to a denoiser built without classes (num_classes is None)")
            return emb
        if y is None:  # no label: the null class for every row
            y = torch.full_like(t, self.num_classes, dtype=torch.long)
        return emb + self.class_emb(y)  # (B, hidden)

    def matmul_weights(self) -> int:
        """Weights that multiply once per sample (the class table is a lookup)."""
        return self.fc1.weight.numel() + self.fc2.weight.numel()

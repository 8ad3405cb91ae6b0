"""Positional encodings: rotary embeddings (RoPE, Su et al. 2021). Learned absolute positions
are a plain ``nn.Embedding`` in the model that uses them."""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin tables for RoPE.

    Position m rotates each pair of channels (i, i + d/2) by the angle m * theta^(-2i/d): the
    "rotate half" layout of GPT-NeoX and Hugging Face Llama (Meta's original interleaves pairs;
    the two differ by a fixed permutation of the q/k projection rows). Because a rotation by m
    followed by the transpose of a rotation by n is a rotation by m - n, the score <R_m q, R_n k>
    depends only on the offset m - n (RoFormer, eq. 16).
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hs/2,)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)  # (T, hs/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, hs): the same angle for i and i + hs/2
        # Buffers are derived state: not saved in checkpoints, rebuilt from the config.
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, positions: torch.Tensor | int, length: int | None = None):
        """(cos, sin) for ``positions`` (a 1-D or (B, T) tensor), or for ``length`` positions from an int start."""
        if isinstance(positions, int):
            return self.cos[positions : positions + length], self.sin[positions : positions + length]
        return self.cos[positions], self.sin[positions]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, nh, T, hs) by the angles in cos/sin ((T, hs) or (B, T, hs))."""
    if cos.dim() == 3:  # per-sequence positions: broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin

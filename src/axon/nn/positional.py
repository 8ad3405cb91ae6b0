"""Positional encodings: rotary embeddings (RoPE, Su et al. 2021) and the fixed sinusoids of
"Attention Is All You Need" (Vaswani et al. 2017). Learned absolute positions are a plain
``nn.Embedding`` in the model that uses them. For images: fixed 2-D sine-cosine positions
(:func:`sincos_2d`) and the bicubic resampling of a learned grid of positions to another grid
(:func:`resample_grid`), which the ViT and Vision Mamba families use."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.rope_scaling import ROPE_SCALINGS, check_rope_scaling  # noqa: F401 (re-exported)


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin tables for RoPE.

    Position m rotates each pair of channels (i, i + d/2) by the angle m * theta^(-2i/d): the
    "rotate half" layout of GPT-NeoX and Hugging Face Llama (Meta's original interleaves pairs;
    the two differ by a fixed permutation of the q/k projection rows). Because a rotation by m
    followed by the transpose of a rotation by n is a rotation by m - n, the score <R_m q, R_n k>
    depends only on the offset m - n (RoFormer, eq. 16).
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hs/2,)
        inv_freq = scale_frequencies(inv_freq, scaling)
        self._inv_freq = inv_freq  # fp64 on the CPU, not a buffer (a dtype cast of the model must not round it): for at()
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

    def at(self, positions: torch.Tensor | int, length: int | None = None):
        """Like ``forward`` but computed, so positions may lie beyond the tables (a sliding-window
        model decodes past block_size); the same fp64 arithmetic gives the tables' values."""
        if isinstance(positions, int):
            positions = torch.arange(positions, positions + length, device=self.cos.device)
        angles = positions.to(torch.float64)[..., None] * self._inv_freq.to(positions.device)  # (..., hs/2)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(self.cos.dtype), angles.sin().to(self.cos.dtype)


def scale_frequencies(inv_freq: torch.Tensor, scaling: dict | None) -> torch.Tensor:
    """Context-extension rescaling of the RoPE frequencies.

    - linear (position interpolation, Chen et al. 2023): every frequency / factor, i.e. position
      m is treated as m / factor;
    - llama3 (Meta's Llama 3.1): wavelengths longer than original_context / low_freq_factor are
      interpolated (/ factor), shorter than original_context / high_freq_factor kept, and the band
      between blends the two linearly in original_context / wavelength.
    """
    problem = check_rope_scaling(scaling)
    if problem:
        raise ValueError(f"rope scaling: {problem}")
    if scaling is None:
        return inv_freq
    factor = scaling["factor"]
    if scaling["rope_type"] == "linear":
        return inv_freq / factor
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    smooth = ((context / wavelen - low) / (high - low)).clamp(0.0, 1.0)  # 0: interpolate, 1: keep
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, nh, T, hs) by the angles in cos/sin ((T, hs) or (B, T, hs)).

    The formula as written (RoFormer, eq. 34, in the rotate-half layout); :func:`rotary` computes
    the same values in fewer passes, and this is its test oracle."""
    if cos.dim() == 3:  # per-sequence positions: broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


class _Rotary(torch.autograd.Function):
    """x * cos + rotate_half(x) * sin without the concatenations, and its backward.

    With the halves x = [x1, x2] and the same angle in both halves of cos/sin:

        forward:  y1 = x1 cos1 - x2 sin1          y2 = x2 cos2 + x1 sin2
        backward: dx1 = g1 cos1 + g2 sin2         dx2 = g2 cos2 - g1 sin1

    Each line rounds in the order the formula's own autograd does, so values and gradients equal
    :func:`apply_rotary`'s bit for bit (tested) while reading and writing the activations about
    half as often (the default job's step: ~2x faster RoPE). Only cos/sin are saved for backward.
    """

    @staticmethod
    def forward(ctx, x, cos, sin):
        h = x.size(-1) // 2
        y = x * cos
        y[..., :h] -= x[..., h:] * sin[..., :h]
        y[..., h:] += x[..., :h] * sin[..., h:]
        ctx.save_for_backward(cos, sin)
        ctx.dtype = x.dtype
        return y

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        h = g.size(-1) // 2
        dx = g * cos
        dx[..., :h] += g[..., h:] * sin[..., h:]
        dx[..., h:] -= g[..., :h] * sin[..., :h]
        return dx.to(ctx.dtype), None, None


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, T, n, hs) -- heads after time, as a fused qkv projection lays them out, so
    queries and keys rotate in one call -- by cos/sin ((T, hs) or (B, T, hs)); equals
    :func:`apply_rotary` on the transposed layout."""
    return _Rotary.apply(x, cos.unsqueeze(-2), sin.unsqueeze(-2))  # (..., T, 1, hs): broadcast over heads


class SinusoidalPositions(nn.Module):
    """The fixed positional encodings of "Attention Is All You Need" (sec. 3.5):

        PE(pos, 2i)     = sin(pos / 10000^(2i / d))
        PE(pos, 2i + 1) = cos(pos / 10000^(2i / d))

    Each pair of channels is a sinusoid whose wavelength grows geometrically from 2 pi to
    10000 * 2 pi, so PE(pos + k) is a fixed linear function (a rotation per pair) of PE(pos).
    The table (max_positions, dim) is a non-persistent buffer: derived from the config, never
    saved in checkpoints.
    """

    def __init__(self, dim: int, max_positions: int, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal positions pair sin and cos channels: dim must be even, got {dim}")
        inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (d/2,)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)  # (T, d/2)
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (T, d): sin, cos interleaved
        self.register_buffer("table", table.float(), persistent=False)

    def forward(self, positions: torch.Tensor | int, length: int | None = None) -> torch.Tensor:
        """(T, dim) for ``length`` positions from an int start, or (..., dim) for a tensor of positions."""
        if isinstance(positions, int):
            return self.table[positions : positions + length]
        return self.table[positions]


def sincos_2d(dim: int, height: int, width: int, base: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions of a (height, width) grid, (height * width, dim) row-major,
    as MAE's ``get_2d_sincos_pos_embed`` lays them out (He et al. 2022; MoCo v3): the first half of
    the channels encodes the column, the second half the row, each half being 1-D sinusoids

        [sin(p w_0), ..., sin(p w_{d/4-1}), cos(p w_0), ..., cos(p w_{d/4-1})],  w_i = base^(-i / (d/4))

    Computed in float64, returned in float32. ``dim`` must be divisible by 4."""
    if dim % 4:
        raise ValueError(f"2-D sine-cosine positions need dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = base ** (-torch.arange(quarter, dtype=torch.float64) / quarter)  # (d/4,)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")  # (H, W) each

    def one_axis(p: torch.Tensor) -> torch.Tensor:
        angles = torch.outer(p.flatten(), omega)  # (H W, d/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (H W, d/2)

    return torch.cat([one_axis(cols), one_axis(rows)], dim=1).float()  # (H W, d)


def resample_grid(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """A learned grid of positions pos (B, old_h * old_w, C), row-major, resampled to the grid
    ``new`` -> (B, new_h * new_w, C): bicubic, antialiased when shrinking, corners not aligned, in
    float32 -- what timm's ``resample_abs_pos_embed`` does, so a model trained at one image size
    runs at another. At its own grid it returns ``pos`` itself (no interpolation, not even an
    identity one: bicubic resampling onto the same grid is exact only up to rounding)."""
    if tuple(new) == tuple(old):
        return pos
    B, _, C = pos.shape
    grid = pos.reshape(B, old[0], old[1], C).permute(0, 3, 1, 2).float()  # (B, C, h, w)
    grid = F.interpolate(grid, size=tuple(new), mode="bicubic", antialias=True, align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(B, new[0] * new[1], C).to(pos.dtype)

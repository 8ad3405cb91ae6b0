"""Feed-forward blocks: GPT-2's GELU MLP and Llama's SwiGLU (Shazeer 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MLPS = ("gelu", "swiglu")


class GeluMLP(nn.Module):
    """fc -> GELU (tanh approximation, as GPT-2) -> proj."""

    def __init__(self, dim: int, hidden: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(dim, hidden, bias=bias)
        self.proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """proj(silu(x W_gate) * (x W_up)) — "GLU Variants Improve Transformer", eq. 6.

    Gate and up projections are one fused matrix (rows [gate; up]) so the block runs two matmuls
    instead of three.
    """

    def __init__(self, dim: int, hidden: int, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=bias)
        self.proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.proj(F.silu(gate) * up))


def build_mlp(name: str, dim: int, hidden: int, bias: bool, dropout: float) -> nn.Module:
    if name == "gelu":
        return GeluMLP(dim, hidden, bias, dropout)
    if name == "swiglu":
        return SwiGLU(dim, hidden, bias, dropout)
    raise ValueError(f"unknown mlp {name!r}; choose one of {MLPS}")

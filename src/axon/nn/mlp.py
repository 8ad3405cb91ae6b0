"""Feed-forward blocks: GPT-2's GELU MLP and Llama's SwiGLU (Shazeer 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MLPS = ("gelu", "swiglu")


class GeluMLP(nn.Module):
    """fc -> GELU (tanh approximation, as GPT-2; ``approximate="none"``: the exact erf form, as BERT) -> proj."""

    def __init__(self, dim: int, hidden: int, bias: bool = True, dropout: float = 0.0, approximate: str = "tanh"):
        super().__init__()
        self.approximate = approximate
        self.fc = nn.Linear(dim, hidden, bias=bias)
        self.proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)  # called only while training with p > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(F.gelu(self.fc(x), approximate=self.approximate))
        return self.dropout(y) if self.training and self.dropout.p else y


class SwiGLU(nn.Module):
    """proj(silu(x W_gate) * (x W_up)) — "GLU Variants Improve Transformer", eq. 6.

    Gate and up projections are one fused matrix (rows [gate; up]) so the block runs two matmuls
    instead of three.
    """

    def __init__(self, dim: int, hidden: int, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=bias)
        self.proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)  # called only while training with p > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        y = self.proj(F.silu(gate) * up)
        return self.dropout(y) if self.training and self.dropout.p else y


def build_mlp(name: str, dim: int, hidden: int, bias: bool, dropout: float) -> nn.Module:
    if name == "gelu":
        return GeluMLP(dim, hidden, bias, dropout)
    if name == "swiglu":
        return SwiGLU(dim, hidden, bias, dropout)
    raise ValueError(f"unknown mlp {name!r}; choose one of {MLPS}")

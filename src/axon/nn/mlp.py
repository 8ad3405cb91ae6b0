"""Feed-forward blocks: the original Transformer's FFN (ReLU or GELU; seq2seq, DETR), GPT-2's GELU MLP,
Llama's SwiGLU and its GLU siblings (Shazeer 2020), and plain MLPs with other activations.

The decoder's ``model.mlp`` choices (:data:`MLPS`), x: (..., C), hidden H::

    plain  (2 matrices, H = 4C)      fc (C -> H) -> act -> proj (H -> C)
        gelu     GELU, tanh form (GPT-2)      relu     max(0, u)
        sigmoid  1 / (1 + e^-u)               silu     u * sigmoid(u)  (Swish with beta = 1)
    gated  (3 matrices, H = 8/3 C)   gate_up (C -> 2H) = [a; b] -> act(a) * b -> proj (H -> C)
        swiglu   silu(a) * b    reglu   relu(a) * b    geglu   gelu(a) * b  (exact erf GELU, as Shazeer)

A gated block's H is 2/3 of 4C so that its three matrices hold what a plain block's two do; the
FLOPs counted (6 per matrix weight per token, axon.models.flops) follow from the weights, and the
activations' elementwise work is left out for every choice alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MLPS = ("gelu", "relu", "sigmoid", "silu", "swiglu", "reglu", "geglu")
GATED = ("swiglu", "reglu", "geglu")  # gate_up + proj, hidden 8/3 C by default; the others fc + proj, 4 C
_PLAIN_ACTS = {"relu": F.relu, "sigmoid": torch.sigmoid, "silu": F.silu}
_GATE_ACTS = {"reglu": F.relu, "geglu": F.gelu}


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, applied to each position alike ("Attention Is All You
    Need", eq. 2); ``activation="gelu"`` puts the exact GELU in place of the ReLU."""

    def __init__(self, dim: int, hidden: int, activation: str, dropout: float):
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)
        self.act = F.relu if activation == "relu" else F.gelu
        self.dropout = nn.Dropout(dropout)  # called only while training with p > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.act(self.fc(x)))
        return self.dropout(y) if self.training and self.dropout.p else y


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


class _SwiGLU(torch.autograd.Function):
    """silu(gate) * up of the fused projection [gate, up], writing both halves of the gradient into
    one tensor (autograd's chunk would concatenate them: one more pass over the widest activation)::

        d_up = g * silu(gate)        d_gate = silu'(gate) * (g * up)

    The same products in the same order as autograd's, so the gradients are bit for bit those of
    ``F.silu(gate) * up`` (tested).
    """

    @staticmethod
    def forward(ctx, gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        act = F.silu(gate)
        ctx.save_for_backward(gate_up, act)
        return act * up

    @staticmethod
    def backward(ctx, g):
        gate_up, act = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        d = torch.empty_like(gate_up)
        d_gate, d_up = d.chunk(2, dim=-1)
        torch.mul(g, act, out=d_up)
        torch.mul(g, up, out=d_gate)
        torch.ops.aten.silu_backward.grad_input(d_gate, gate, grad_input=d_gate)
        return d


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """(..., 2 H) -> (..., H): silu of the first half times the second."""
    return _SwiGLU.apply(gate_up)


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
        y = self.proj(swiglu(self.gate_up(x)))
        return self.dropout(y) if self.training and self.dropout.p else y


class ActMLP(nn.Module):
    """fc -> ``act`` (relu, sigmoid or silu) -> proj, the parameter names of :class:`GeluMLP`."""

    def __init__(self, dim: int, hidden: int, act: str, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.act_name = act
        self.act = _PLAIN_ACTS[act]
        self.fc = nn.Linear(dim, hidden, bias=bias)
        self.proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)  # called only while training with p > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.act(self.fc(x)))
        return self.dropout(y) if self.training and self.dropout.p else y


class GatedMLP(SwiGLU):
    """proj(act(x W_gate) * (x W_up)) with act = relu (ReGLU) or exact GELU (GeGLU): "GLU Variants
    Improve Transformer", eqs. 6; :class:`SwiGLU`'s fused [gate; up] matrix and parameter names."""

    def __init__(self, dim: int, hidden: int, act: str, bias: bool = False, dropout: float = 0.0):
        super().__init__(dim, hidden, bias, dropout)
        self.act_name = act
        self.act = _GATE_ACTS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (..., H) each
        y = self.proj(self.act(gate) * up)
        return self.dropout(y) if self.training and self.dropout.p else y


def build_mlp(name: str, dim: int, hidden: int, bias: bool, dropout: float) -> nn.Module:
    if name == "gelu":
        return GeluMLP(dim, hidden, bias, dropout)
    if name == "swiglu":
        return SwiGLU(dim, hidden, bias, dropout)
    if name in _PLAIN_ACTS:
        return ActMLP(dim, hidden, name, bias, dropout)
    if name in _GATE_ACTS:
        return GatedMLP(dim, hidden, name, bias, dropout)
    raise ValueError(f"unknown mlp {name!r}; choose one of {MLPS}")

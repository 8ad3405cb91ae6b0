"""Lory: a fully differentiable mixture of experts by merging the experts' parameters per segment.

SMEAR (Muqeeth et al. 2023) replaces top-k routing by a soft merge in parameter space: with
router probabilities p (E,), the layer runs ONE feed-forward network whose matrices are the
weighted sums of the experts' matrices,

    W = sum_e p_e W_e                    (SMEAR eq. 2; Lory eq. 2)

so every expert gets a gradient through p and through W, and nothing is discrete. Merging per
token would cost E times a matrix per token; Lory (Zhong et al. 2024, arXiv 2405.03133, sec. 3.2)
merges once per SEGMENT of S tokens and makes the routing causal:

    x (B, T, C) -> segments (B, n, S, C), n = ceil(T / S) (the last one right-padded)
        |
     mean over each segment's S states -> (B, n, C)
        |
     router logits for segment k from the mean of segment k-1   (causal segment routing)
     segment 0: a learned logit vector, the same for every row  (ours; see below)
        |  softmax -> p (B, n, E)
     merge      W_k = sum_e p[b, k, e] W_e : (B, n, 2H, C) and (B, n, C, H)  one einsum each
        |
     one FFN per segment with its merged matrices: x_k W_k^T ... (B, n, S, C)
        |
     + shared experts (a dense MLP every token passes through), as in axon.nn.moe
        |
    y (B, T, C)

What a position sees. Segment k's merged weights are a function of segment k-1's states (all at
earlier positions) and of parameters; the FFN itself is per token. So the output at position t
depends on the layer inputs at positions <= t only: the layer is exactly causal at EVERY position
(tests/nn/test_lory.py changes one token and compares all earlier outputs, in every segment).

The first segment. Routing segment 0 on its own mean would let a token's output depend on the
later tokens of its segment. As we read the paper, Lory routes the first segment on itself (with
the router's gradient stopped there) and, at inference, makes one routing decision on the prompt
and keeps that merged expert for the generated tokens -- both read tokens after the one being
predicted, inside the first segment or the prompt. We do neither: segment 0 uses a learned logit
vector ``first_logits`` (E,) (zeros at init: the plain average of the experts), and inference uses
the training rule unchanged, which keeps the layer causal everywhere and a cached decode equal to
the full forward. (The decoder decodes a Lory model by recomputation, ``axon.generate.recompute``:
a KV cache would also need each layer's running segment mean.)

Auxiliary losses, with the names and arithmetic of ``axon.nn.moe`` (so ``aux_losses`` and
``routing_metrics`` there serve both layers): the Switch balance E * sum_i f_i P_i with f_i the
mean merge weight of expert i over the segments (no gradient) and P_i the same mean (with it): a
soft load, E * sum P_i^2, minimal (1) at uniform merging; and the router z-loss of ST-MoE.
Statistics: the soft loads sum_segments p (a segment counts once, however many tokens it holds).

Cost (``merge_flops_per_token``): the FFN matmuls are one expert's per token (the active
parameters: one merged FFN, plus the router; the other E - 1 experts' parameters are "inactive"
the way a top-1 MoE's are, although every one of them gets a gradient). The merge adds, per
segment, E multiply-adds per expert parameter forward (2 E P FLOPs) and twice that backward (the
gradients to W_e and to p): 6 E P / S training FLOPs per token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.nn.moe import MoE
from axon.nn.precision import at_least_fp32


class LoryMoE(MoE):
    """Soft-merged experts over causal segments of ``segment`` tokens (see the module doc).

    The expert parameters, router, shared MLP, initialisation and routing counters are
    :class:`axon.nn.moe.MoE`'s (with top_k = 1 for the parameter bookkeeping: a token's matmuls
    use one merged expert); ``first_logits`` (E,) routes the first segment."""

    def __init__(self, dim: int, hidden: int, n_experts: int, segment: int, mlp: str = "swiglu",
                 n_shared: int = 0, aux_loss: float = 0.01, z_loss: float = 0.001, bias: bool = False,
                 dropout: float = 0.0):
        if segment < 1:
            raise ValueError(f"segment={segment} must be >= 1")
        super().__init__(dim, hidden, n_experts, 1, mlp=mlp, capacity_factor=None, normalize=False,
                         n_shared=n_shared, aux_loss=aux_loss, z_loss=z_loss, bias=bias, dropout=dropout)
        self.segment = segment
        self.first_logits = nn.Parameter(torch.zeros(n_experts))  # segment 0's router logits

    def merge_flops_per_token(self) -> float:
        """Training FLOPs per token of merging the experts (6 E P / S; module doc)."""
        return 6.0 * self.n_experts * self.expert_params() / self.segment

    def merge_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, n, S, C) segments -> router logits (B, n, E) and merge weights p (B, n, E).
        Segment k reads the mean state of segment k-1 (Lory's causal segment routing)."""
        B, n = x.shape[:2]
        prev = x[:, :-1].mean(dim=2)  # (B, n-1, C): segments 0..n-2, all complete
        logits = torch.cat([self.first_logits.expand(B, 1, -1).to(prev.dtype), self.router(prev)], dim=1)  # (B, n, E)
        logits = at_least_fp32(logits)
        return logits, logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        S, E = self.segment, self.n_experts
        n = math.ceil(T / S)
        xs = F.pad(x, (0, 0, 0, n * S - T)).view(B, n, S, C)  # (B, n, S, C); the tail segment zero-padded
        logits, p = self.merge_weights(xs)
        w = p.to(x.dtype)  # (B, n, E)
        # Merge: one matrix per (row, segment), W = sum_e p_e W_e (SMEAR eq. 2).
        if self.mlp == "swiglu":
            w_in = torch.einsum("bne,ehc->bnhc", w, self.gate_up)  # (B, n, 2H, C)
        else:
            w_in = torch.einsum("bne,ehc->bnhc", w, self.fc)  # (B, n, H, C)
        a = torch.einsum("bnsc,bnhc->bnsh", xs, w_in)  # (B, n, S, 2H or H)
        if self.fc_bias is not None:
            a = a + torch.einsum("bne,eh->bnh", w, self.fc_bias).unsqueeze(2)
        if self.mlp == "swiglu":
            gate, up = a.chunk(2, dim=-1)
            a = F.silu(gate) * up  # (B, n, S, H)   Shazeer 2020, eq. 6
        else:
            a = F.gelu(a, approximate="tanh")
        w_out = torch.einsum("bne,ech->bnch", w, self.proj)  # (B, n, C, H)
        out = torch.einsum("bnsh,bnch->bnsc", a, w_out)  # (B, n, S, C)
        if self.proj_bias is not None:
            out = out + torch.einsum("bne,ec->bnc", w, self.proj_bias).unsqueeze(2)
        out = out.reshape(B, n * S, C)[:, :T]  # (B, T, C)
        if self.shared is not None:
            out = out + self.shared(x)
        flat = logits.reshape(B * n, E)
        self._record(flat, p.reshape(B * n, E).sum(0).detach(), 0)  # soft loads: f_i = mean merge weight
        return self.dropout(out) if self.training and self.dropout.p else out

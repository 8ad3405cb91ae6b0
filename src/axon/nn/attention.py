"""Causal self-attention: multi-head, grouped-query and multi-query by ``n_kv_head``.

          x (B, T, C)
              |
         qkv Linear           one fused matrix: rows [q (nh*hs); k (nkv*hs); v (nkv*hs)]
        /     |     \\
       q      k      v        q: (B, nh, T, hs)   k, v: (B, nkv, T, hs)
       |      |
   [qk-norm] [qk-norm]        optional, per head (Chameleon / OLMo 2)
       |      |
    [RoPE]  [RoPE]            when positions are rotary
        \\     |     /
   softmax(q k^T / sqrt(hs) + causal mask) v     each group of nh/nkv query heads shares one k/v head
              |
         proj Linear -> (B, T, C)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.nn.norms import build_norm
from axon.nn.positional import rotary

ATTENTION_IMPLS = ("sdpa", "reference")


def reference_attention(q, k, v, dropout_p: float = 0.0, training: bool = False, mask=None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V with a causal mask, written out ("Attention Is All You Need", eq. 1).

    q, k, v: (B, nh, T, hs) with k/v already expanded to nh heads; ``mask`` (B, 1, T, S), True
    where attending is allowed, replaces the causal mask. The test oracle for SDPA.
    """
    T, S = q.size(-2), k.size(-2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, nh, T, S)
    if mask is None:
        # Query i sits at absolute position S - T + i (S > T when earlier keys are cached).
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.dropout(scores.softmax(dim=-1), p=dropout_p, training=training)
    return weights @ v  # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    def __init__(
        self,
        n_embd: int,
        n_head: int,
        n_kv_head: int,
        bias: bool = True,
        qk_norm: str | None = None,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
        impl: str = "sdpa",
    ):
        super().__init__()
        assert n_embd % n_head == 0 and n_head % n_kv_head == 0, "validated by the model config"
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = n_embd // n_head
        self.impl = impl
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, (n_head + 2 * n_kv_head) * self.head_dim, bias=bias)
        self.proj = nn.Linear(n_head * self.head_dim, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # QK-norm normalises each head's query and key before the dot product, which bounds the
        # logits and keeps large-LR training stable (Chameleon, sec. 2.3).
        self.q_norm = build_norm(qk_norm, self.head_dim, norm_eps) if qk_norm else None
        self.k_norm = build_norm(qk_norm, self.head_dim, norm_eps) if qk_norm else None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache=None, layer: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). With a cache (see ``axon.generate.cache``), x continues the
        cached sequence and ``mask`` is the cache's attention mask (None: causal)."""
        B, T, _ = x.shape
        hs, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        # One view for all heads, then split; heads after time, as the projection writes them.
        q, k, v = self.qkv(x).view(B, T, nh + 2 * nkv, hs).split([nh, nkv, nkv], dim=2)  # (B, T, heads, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotary(q, *rope), rotary(k, *rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hs): views
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nkv, S, hs): everything so far
        y = self.attend(q, k, v, mask)  # (B, nh, T, hs)
        y = self.proj(y.transpose(1, 2).reshape(B, T, nh * hs))
        return self.resid_dropout(y) if self.training and self.dropout else y

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of q (B, nh, T, hs) over k/v (B, nkv, S, hs); with fewer k/v heads, each
        serves n_head / n_kv_head queries. Without a mask: causal when T == S, and all keys when
        a cached sequence gets one new token (T == 1)."""
        p = self.dropout if self.training else 0.0
        gqa = self.n_kv_head != self.n_head
        if self.impl == "reference":
            if gqa:
                rep = self.n_head // self.n_kv_head
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # (B, nh, S, hs)
            return reference_attention(q, k, v, p, self.training, mask)
        # enable_gqa: SDPA maps query head h to kv head h // (n_head / n_kv_head) itself, without
        # copying the keys/values n_head / n_kv_head times (the copy would undo GQA's saving).
        causal = mask is None and q.size(2) == k.size(2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal, enable_gqa=gqa)

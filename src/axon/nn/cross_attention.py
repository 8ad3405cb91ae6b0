"""Multi-head attention of queries over a memory, with a key padding mask.

"Attention Is All You Need" (sec. 3.2.3) uses attention three ways; this module is two of them:

- encoder self-attention: queries, keys and values all come from the encoder's input,
  ``attn(x, x, key_mask)``; every position sees every real position (no causal mask);
- encoder-decoder ("cross") attention: queries come from the decoder, keys and values from the
  encoder's output (the memory), ``attn(y, memory, key_mask)``; every target position sees every
  real source position.

(The third, the decoder's masked self-attention, is ``axon.nn.CausalSelfAttention``.)

          x (B, T, C)            memory (B, S, C)
              |                        |
          q Linear                 kv Linear      rows [k (C); v (C)]
              |                    /        \\
       q (B, nh, T, hs)    k (B, nh, S, hs)  v (B, nh, S, hs)
              \\               |          /
        softmax(q k^T / sqrt(hs) + key mask) v      a padded key gets weight 0
                            |
                  proj Linear -> (B, T, C)

For decoding, the memory's keys and values do not change from one target step to the next:
``memory_kv(memory)`` computes them once per source and ``forward(x, kv=...)`` reuses them.

DETR (Carion et al. 2020) adds positions to the queries and keys of every attention layer, not
to the values: ``forward(x, memory, query_pos=, key_pos=)`` projects q from x + query_pos, k
from memory + key_pos and v from the memory alone (the fused kv matrix is then used in its two
halves), as ``torch.nn.MultiheadAttention`` does when called with q = k = x + pos, v = x::

      x + query_pos      memory + key_pos      memory
           |                    |                 |
        q Linear            k rows of kv      v rows of kv
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.nn.attention import reference_attention


def key_padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A (B, S) mask, True = a real token, as the (B, 1, 1, S) boolean attention mask that SDPA
    broadcasts over heads and queries; None (no padding) stays None."""
    return None if mask is None else mask.bool()[:, None, None, :]


class CrossAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0, impl: str = "sdpa"):
        super().__init__()
        assert n_embd % n_head == 0, "validated by the model config"
        self.n_head, self.head_dim = n_head, n_embd // n_head
        self.dropout, self.impl = dropout, impl
        self.q = nn.Linear(n_embd, n_embd, bias=bias)
        self.kv = nn.Linear(n_embd, 2 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def memory_kv(self, memory: torch.Tensor, key_pos: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the memory (B, S, C): each (B, nh, S, hs). With ``key_pos`` (B or 1,
        S, C) the keys are projected from memory + key_pos, the values from the memory alone."""
        B, S, C = memory.shape
        if key_pos is None:
            kv = self.kv(memory)  # (B, S, 2C): rows [k; v] in one matmul
        elif type(self.kv) is nn.Linear:  # the matrix's two halves, each on its own input
            w_k, w_v = self.kv.weight.split(C)  # (C, C) each
            b_k, b_v = self.kv.bias.split(C) if self.kv.bias is not None else (None, None)
            kv = torch.cat([F.linear(memory + key_pos, w_k, b_k), F.linear(memory, w_v, b_v)], dim=-1)  # (B, S, 2C)
        else:  # an adapted layer (LoRA) computes more than its weight: run it whole on both inputs
            kv = torch.cat([self.kv(memory + key_pos)[..., :C], self.kv(memory)[..., C:]], dim=-1)
        k, v = kv.view(B, S, 2 * self.n_head, self.head_dim).transpose(1, 2).split(self.n_head, dim=1)
        return k, v

    @property
    def _plain(self) -> bool:
        """q and kv are plain Linear layers, whose weights are all they compute: a subclass (LoRA's
        adapters) adds to its output, so it must run its own forward."""
        return type(self.q) is nn.Linear and type(self.kv) is nn.Linear

    def self_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of x over itself, each (B, nh, T, hs): the q and kv weights
        stacked into one (3C, C) matrix, one matmul instead of two (timm's fused qkv)."""
        B, T, C = x.shape
        w = torch.cat([self.q.weight, self.kv.weight])
        b = torch.cat([self.q.bias, self.kv.bias]) if self.q.bias is not None else None
        qkv = F.linear(x, w, b).view(B, T, 3 * self.n_head, self.head_dim).transpose(1, 2)  # (B, 3 nh, T, hs)
        return qkv.split(self.n_head, dim=1)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None, query_pos: torch.Tensor | None = None,
                key_pos: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) attends over ``memory`` (B, S, C), or over precomputed ``kv`` from
        :meth:`memory_kv`. ``mask``: (B, 1, 1, S) boolean, True = a real key (see
        :func:`key_padding_mask`); None = every key is real. ``query_pos`` (B or 1, T, C) and
        ``key_pos`` (B or 1, S, C): positions added to the queries' and the keys' inputs (DETR),
        never to the values. Returns (B, T, C)."""
        B, T, C = x.shape
        if memory is x and kv is None and query_pos is None and key_pos is None and self._plain:
            q, k, v = self.self_qkv(x)  # self-attention (ViT, encoders): one matmul, as a fused qkv
        else:
            k, v = kv if kv is not None else self.memory_kv(memory, key_pos)
            q = self.q(x if query_pos is None else x + query_pos).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        p = self.dropout if self.training else 0.0
        if self.impl == "reference":
            full = mask if mask is not None else torch.ones(1, 1, 1, k.size(2), dtype=torch.bool, device=x.device)
            y = reference_attention(q, k, v, p, self.training, full.expand(B, 1, T, k.size(2)))
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)
        y = self.proj(y.transpose(1, 2).reshape(B, T, C))
        return self.resid_dropout(y) if self.training and self.dropout else y

"""Convolution-attention model: a causal hourglass Transformer (a seed model of our own lineage).

Early layers read the full context at a small width; a strided causal convolution then merges
each group of k neighbouring token vectors into one wider vector, so the inner layers attend
over T/k positions at width d_inner; a linear map turns each inner vector back into k token
vectors, added to the residual stream, and a few final layers at the outer width make the
per-token predictions. The closest published relatives are the Hourglass Transformer (Nawrot et
al. 2021, "Hierarchical Transformers Are More Efficient Language Models"), Funnel-Transformer
(Dai et al. 2020) and MEGABYTE (Yu et al. 2023); this file is our own code.

     tokens (B, T)
        |
     wte                                         (B, T, d)      d = n_embd
        |
     n_pre blocks at width d over T positions    (B, T, d)  ----------------------+ residual
        |                                                                         |
     norm -> shift right by k-1 -> strided conv (d -> D, kernel k, stride k)     |
        |                                        (B, T/k, D)    D = inner_embd    |
     n_inner blocks at width D over T/k positions                                 |
        |                                                                         |
     norm -> Linear(D, k*d) -> (B, T, d)  ------------------------------------>  (+)
                                                                                  |
     n_post blocks at width d over T positions   (B, T, d)  <---------------------+
        |
     norm_f -> lm_head -> logits (B, T, vocab_size)

Causality. Without the shift, inner position j would merge tokens jk .. jk+k-1, and upsampling
hands it back to positions jk .. jk+k-1: position jk would see tokens up to jk+k-1, its future.
Shifting right by k-1 first (Hourglass's causal shift, Nawrot et al. 2021) makes inner
position j merge tokens jk-k+1 .. jk (zeros before token 0), whose newest token jk is at or
before every position jk .. jk+k-1 it is handed back to. For k = 3:

    positions       0  1  2 | 3  4  5 | 6  7  8
    group j merges  -  -  0 | 1  2  3 | 4  5  6       (shifted by k-1 = 2)
    and feeds       0  1  2 | 3  4  5 | 6  7  8       newest merged token <= own position

Inner attention is causal over groups, so group j sees tokens <= jk; the outer blocks before and
after are causal per token. A position never sees a later token (tested for every t). The first
k-1 positions get a group made of zeros and token 0 only: still valid predictions.

Positions: RoPE at each level, each level counting its own positions (tokens 0..T-1 outside,
groups 0..T/k-1 inside): relative offsets are what attention needs at either resolution, and no
table bounds the inner level to a learned length.

Cost: inner layers run once per k tokens, so per token they cost 1/k of a block at their width
(``flops_per_token``): a wider inner model at the price of a narrower dense one.

Generation: no incremental decoding (each level would need its own cache and a rule for half-
filled groups); ``make_cache`` returns an ``axon.generate.recompute.RecomputeCache``, which
re-runs this forward over the sequence at each step, exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.model_configs.conv_attention import PRESETS, ConvAttentionConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.models.decoder import Block
from axon.nn import RMSNorm, RotaryEmbedding, build_norm


class ConvAttention(Model):
    def __init__(self, cfg: ConvAttentionConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("ConvAttentionConfig.vocab_size must be set before building the model")
        self.config = cfg
        outer, inner = cfg.level(inner=False), cfg.level(inner=True)
        d, D, k = cfg.n_embd, cfg.inner_embd, cfg.shorten
        self.wte = nn.Embedding(cfg.vocab_size, d)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.rope = RotaryEmbedding(outer.head_dim, cfg.block_size, cfg.rope_theta)
        self.inner_rope = RotaryEmbedding(inner.head_dim, cfg.block_size // k, cfg.rope_theta)
        self.pre = nn.ModuleList(Block(outer) for _ in range(cfg.n_pre_layer))
        self.down_norm = build_norm(cfg.norm, d, cfg.norm_eps)
        # The strided conv as a Linear on each group's k concatenated vectors: the same function as
        # Conv1d(d, D, kernel_size=k, stride=k) with weight W.view(D, k, d).permute(0, 2, 1)
        # (tested), as one matmul, and a 2-D matrix, so Muon orthogonalises it like every other
        # hidden matrix (it leaves 3-D conv weights to AdamW).
        self.down = nn.Linear(k * d, D, bias=cfg.bias)
        self.inner = nn.ModuleList(Block(inner) for _ in range(cfg.n_inner_layer))
        self.up_norm = build_norm(cfg.norm, D, cfg.norm_eps)
        self.up = nn.Linear(D, k * d, bias=cfg.bias)
        self.post = nn.ModuleList(Block(outer) for _ in range(cfg.n_post_layer))
        self.norm_f = build_norm(cfg.norm, d, cfg.norm_eps)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init (as the decoder): N(0, 0.02), zero biases, unit norm gains; the projections
        that write into a residual stream (attention/MLP ``proj`` and ``up``) scaled by
        1/sqrt(2 * n_layer) so the stream's variance does not grow with depth."""
        std, scale = self.config.init_std, math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                s = scale if name.endswith(".proj") or name == "up" else 1.0
                nn.init.normal_(module.weight, 0.0, std / s)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, RMSNorm)):
                module.reset_parameters()

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count, shared tensors once; ``non_embedding`` drops the token table (and
        with it a tied head)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token at context ``seq_len`` (default block_size).

        6 per matmul parameter per position it runs on (forward 2, backward 4; Kaplan et al.
        2020) and 12 * layers * context * width for attention scores and weighted sums, per
        level. The outer level (pre and post blocks, head, final norm) runs on every token. The
        conv runs once per group of k tokens with k*d*D weights, and so does the upsampling: d*D
        per token each. Inner blocks run once per k tokens over a context of T/k groups:
            6 * P_inner / k + 12 * n_inner * (T / k) * D / k.
        """
        cfg = self.config
        T, k, d, D = seq_len or cfg.block_size, cfg.shorten, cfg.n_embd, cfg.inner_embd
        count = lambda modules: sum(p.numel() for m in modules for p in m.parameters())
        outer = count([*self.pre, *self.post, self.norm_f, self.down_norm]) + cfg.vocab_size * d  # head matmul
        shorten = (count([self.down, self.up]) + count([self.up_norm])) / k  # conv + upsampling once per group
        inner = count(self.inner) / k
        attention = 12 * (cfg.n_pre_layer + cfg.n_post_layer) * T * d + 12 * cfg.n_inner_layer * (T / k) * D / k
        return 6.0 * (outer + shorten + inner) + attention

    def make_cache(self, batch_size: int, max_len: int | None = None):
        """A cache for generation: token ids, re-run through the full forward at each step
        (``axon.generate.recompute``); holds at most block_size tokens."""
        from axon.generate.recompute import RecomputeCache

        max_len = min(max_len or self.config.block_size, self.config.block_size)
        return RecomputeCache(batch_size, max_len, self.lm_head.weight.device)

    def forward(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size), or (B, 1, vocab_size) with ``last_only``.

        Any T up to block_size: a T that is not a multiple of k is right-padded to one (padding
        after the last token changes no logit, the model being causal) and the padding's logits
        dropped. With ``cache`` (a RecomputeCache), idx continues the cached sequences.
        """
        if cache is not None:
            return cache.forward(self, idx, pad_mask, last_only)
        cfg = self.config
        B, T = idx.shape
        if T > cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {cfg.block_size}")
        k = cfg.shorten
        Tp = k * math.ceil(T / k)
        if Tp != T:
            idx = F.pad(idx, (0, Tp - T))  # (B, Tp), token 0 after the end
        x = self.drop(self.wte(idx))  # (B, Tp, d)
        rope = self.rope(0, Tp)
        for block in self.pre:
            x = block(x, rope)
        # Shorten: shift right by k-1 (see the module doc), then merge each group of k tokens.
        h = F.pad(self.down_norm(x), (0, 0, k - 1, 0))[:, :Tp]  # (B, Tp, d): row t holds token t-k+1
        h = self.down(h.reshape(B, Tp // k, k * cfg.n_embd))  # (B, Tp/k, D): group j = tokens jk-k+1..jk
        inner_rope = self.inner_rope(0, Tp // k)
        for block in self.inner:
            h = block(h, inner_rope)
        # Upsample: group j -> k vectors for positions jk..jk+k-1, added to the residual stream.
        x = x + self.up(self.up_norm(h)).reshape(B, Tp, cfg.n_embd)  # (B, Tp/k, k*d) -> (B, Tp, d)
        for block in self.post:
            x = block(x, rope)
        x = x[:, T - 1 : T] if last_only else x[:, :T]
        return self.lm_head(self.norm_f(x))  # (B, T, V)

"""Decoder-only Transformer: GPT-2 and Llama are the same family with different switches.

  GPT-2 (Radford et al. 2019): learned positions, LayerNorm with bias, GELU MLP, MHA, tied head.
  Llama (Touvron et al. 2023): RoPE, RMSNorm, SwiGLU, grouped-query attention (Llama 2), untied.

     tokens (B, T)
        |
     wte  [+ wpe]                   token embedding, plus learned positions when pos="learned"
        |
     +--+------------------+
     |  norm -> attention  |  x n_layer   pre-norm residual blocks: x = x + attn(norm(x)),
     |  norm -> mlp        |              x = x + mlp(norm(x))   (GPT-2 sec. 2.3)
     +--+------------------+
        |
     norm_f                         hidden_states(): (B, T, C), what a reward or value head reads
        |
     lm_head -> logits (B, T, vocab_size)

The model returns logits; losses live in ``axon.objectives``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from axon.model_configs.decoder import PRESETS, DecoderConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.models.flops import transformer_flops_per_token
from axon.nn import CausalSelfAttention, RMSNorm, RotaryEmbedding, build_mlp, build_norm
from axon.nn.masks import AttentionPattern, forward_pattern_mask
from axon.nn.lory import LoryMoE
from axon.nn.moe import MoE, aux_losses, moe_layers, routing_metrics


def build_moe(cfg: DecoderConfig) -> MoE:
    """The MoE layer the config's ``moe_*`` fields describe (experts follow its ``mlp``): top-k
    routing per token, or Lory's soft merge per segment (``moe_kind=lory``, ``axon.nn.lory``)."""
    if cfg.moe_kind == "lory":
        return LoryMoE(cfg.n_embd, cfg.moe_hidden or cfg.hidden, cfg.moe_experts, cfg.segment, mlp=cfg.mlp,
                       n_shared=cfg.moe_shared_experts, aux_loss=cfg.moe_aux_loss, z_loss=cfg.moe_z_loss,
                       bias=cfg.bias, dropout=cfg.dropout)
    return MoE(
        cfg.n_embd, cfg.moe_hidden or cfg.hidden, cfg.moe_experts, cfg.moe_top_k, mlp=cfg.mlp,
        capacity_factor=cfg.moe_capacity_factor, normalize=cfg.moe_normalize,
        n_shared=cfg.moe_shared_experts, aux_loss=cfg.moe_aux_loss, z_loss=cfg.moe_z_loss,
        bias=cfg.bias, dropout=cfg.dropout,
    )


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer: int = 0):
        super().__init__()
        self.norm1 = build_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias)
        self.attn = CausalSelfAttention(
            cfg.n_embd, cfg.n_head, cfg.kv_heads, bias=cfg.bias,
            qk_norm=cfg.norm if cfg.qk_norm else None, norm_eps=cfg.norm_eps,
            dropout=cfg.dropout, impl=cfg.attn_impl,
        )
        self.norm2 = build_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias)
        self.mlp = build_moe(cfg) if cfg.is_moe_layer(layer) else build_mlp(cfg.mlp, cfg.n_embd, cfg.hidden, cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor, rope=None, cache=None, layer: int = 0, mask=None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, cache, layer, mask)
        return x + self.mlp(self.norm2(x))


class Decoder(Model):
    def __init__(self, cfg: DecoderConfig, lm_head: bool = True):
        """``lm_head=False`` builds the body alone (no next-token head): a model that puts its own
        head on :meth:`hidden_states` (``axon.models.reward``) keeps the decoder's parameter names,
        so a language model's checkpoint loads into it."""
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("DecoderConfig.vocab_size must be set before building the model")
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.block_size, cfg.rope_theta, cfg.rope_scaling) if cfg.pos == "rope" else None
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = build_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False) if lm_head else None
        if lm_head and cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    @property
    def lory(self) -> bool:
        """Its MoE layers merge experts per segment (moe_kind=lory): generation recomputes."""
        return self.config.moe_experts > 0 and self.config.moe_kind == "lory"

    @property
    def attention_pattern(self) -> AttentionPattern:
        """model.attention and its sizes, as axon.nn.masks takes them (the layers: config.uses_pattern)."""
        cfg = self.config
        return AttentionPattern(cfg.attention, window=cfg.attn_window, block=cfg.attn_block, summary=cfg.attn_summary)

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02) weights, zero biases, unit norm gains, and the projections that
        write into the residual stream scaled by 1/sqrt(2 * n_layer) so its variance does not
        grow with depth (GPT-2 sec. 2.3)."""
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                scale = math.sqrt(2 * self.config.n_layer) if name.endswith(".proj") else 1.0
                nn.init.normal_(module.weight, 0.0, std / scale)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, RMSNorm)):
                module.reset_parameters()
            elif isinstance(module, MoE):  # stacked expert weights, same rule
                module.reset_parameters(std, math.sqrt(2 * self.config.n_layer))

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count, shared tensors once. ``non_embedding`` drops the lookup tables (token
        and position embeddings) as Kaplan et al. do; a tied head goes with the token table."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
        return n

    def active_params(self, non_embedding: bool = False) -> int:
        """Parameters one token uses: all of them, less the experts an MoE layer does not route it to
        (a Lory layer: all but one expert, since its token runs one merged FFN; ``axon.nn.lory``)."""
        return self.num_params(non_embedding) - sum(m.inactive_params() for m in moe_layers(self))

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """MoE balance and router z-losses of the last forward, scaled; the objective adds them."""
        return aux_losses(self)

    def metrics(self) -> dict[str, float]:
        """An MoE's per-expert load and dropped share since the last call (the trainer logs them)."""
        return routing_metrics(self)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token at context ``seq_len`` (default block_size), for MFU; an MoE
        counts its active parameters (the k experts a token visits, plus router and shared ones);
        a sliding-window layer attends to min(seq_len, attn_window) keys (axon.models.flops); a Lory
        layer adds its merge, 6 E P_expert / lory_segment per token (axon.nn.lory)."""
        cfg = self.config
        T = seq_len or cfg.block_size
        matmul_params = self.active_params(non_embedding=True)
        if cfg.tie_embeddings and self.lm_head is not None:  # the head's matmul is work even though its matrix is the embedding
            matmul_params += cfg.vocab_size * cfg.n_embd
        keys = [min(T, cfg.attn_window) if cfg.attention == "sliding" and cfg.uses_pattern(i) else T for i in range(cfg.n_layer)]
        merge = sum(m.merge_flops_per_token() for m in moe_layers(self) if isinstance(m, LoryMoE))
        return transformer_flops_per_token(matmul_params, cfg.n_layer, cfg.n_head * cfg.head_dim, T, layer_keys=keys) + merge

    def make_cache(self, batch_size: int, max_len: int | None = None):
        """An empty KV cache for ``batch_size`` sequences of up to ``max_len`` tokens (at most
        block_size, the default: size it to the prompt plus new tokens to save memory). A model that
        slides in every layer gets a ring buffer of its window instead (``axon.generate.window``).
        A Lory model gets a recompute cache (``axon.generate.recompute``): each of its MoE layers
        would also need the running mean of the current segment, so it re-runs the exact causal
        forward over the whole sequence at each step instead."""
        from axon.generate.cache import KVCache

        cfg, p = self.config, self.wte.weight
        if self.lory:
            from axon.generate.recompute import RecomputeCache

            return RecomputeCache(batch_size, min(max_len or cfg.block_size, cfg.block_size), p.device)
        if cfg.slides_everywhere:
            from axon.generate.window import WindowCache

            limit = cfg.context_limit  # None (RoPE): the ring may be fed past block_size
            max_len = max_len if limit is None else min(max_len or limit, limit)
            return WindowCache(cfg.n_layer, batch_size, cfg.kv_heads, cfg.head_dim, cfg.attn_window, max_len,
                               dtype=p.dtype, device=p.device)
        max_len = min(max_len or cfg.block_size, cfg.block_size)
        return KVCache(cfg.n_layer, batch_size, cfg.kv_heads, cfg.head_dim, max_len, p.dtype, p.device)

    def forward(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size), or (B, 1, vocab_size) with ``last_only``
        (a prefill needs only the next-token distribution; the head is the largest matmul).

        With ``cache``, idx continues the cached sequences (``pad_mask`` (B, T) marks left padding
        of a prompt batch) and the cache is extended; see ``axon.generate.cache``. A Lory model's
        cache is a recompute cache (:meth:`make_cache`).
        """
        if cache is not None and self.lory:
            return cache.forward(self, idx, pad_mask, last_only)  # calls self(ids) without a cache
        return self.lm_head(self.hidden_states(idx, cache, pad_mask, last_only))  # (B, T, V)

    def hidden_states(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None,
                      last_only: bool = False, prefix: torch.Tensor | None = None,
                      prefix_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final normed hidden states (B, T, n_embd) -- what the LM head reads -- or (B, 1,
        n_embd) with ``last_only``; the arguments are :meth:`forward`'s. A scalar head on top of
        them is a reward model (``axon.models.reward``) or, beside the LM head, a value head.
        Causal: the state at position t depends on tokens 0..t only, so right padding never
        changes the states of the real tokens before it.

        ``prefix`` (B, P, n_embd): embeddings put before wte(idx) (a late-fusion model's image
        tokens, ``axon.models.late_fusion``); positions count over both, the states returned are
        (B, P + T, n_embd). Only without a cache. ``prefix_mask`` (B, P) bool, False where a prefix
        embedding is absent (``axon.models.embed_reader``: fewer passages retrieved): no other
        position attends to it (it attends to itself alone if nothing else is open to it, so no row
        of the softmax is empty), so the states of the others do not depend on it."""
        B, T = idx.shape
        if cache is not None and self.lory:
            raise ValueError("a Lory model (moe_kind=lory) takes no KV cache: decode it through make_cache's recompute cache")
        if prefix is not None:
            if cache is not None:
                raise ValueError("a prefix of embeddings is taken only without a cache")
            if prefix.dim() != 3 or prefix.size(0) != B or prefix.size(2) != self.config.n_embd:
                raise ValueError(f"prefix must be (B={B}, P, n_embd={self.config.n_embd}), got {tuple(prefix.shape)}")
            if prefix_mask is not None and prefix_mask.shape != prefix.shape[:2]:
                raise ValueError(f"prefix_mask must be (B, P) = {tuple(prefix.shape[:2])}, got {tuple(prefix_mask.shape)}")
            T = prefix.size(1) + T
        elif prefix_mask is not None:
            raise ValueError("prefix_mask needs a prefix")
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
            positions, mask = 0, None
        else:
            limit = self.config.context_limit
            if limit is not None and cache.length + T > limit:
                raise ValueError(f"{cache.length} cached + {T} new tokens exceed block_size {self.config.block_size}")
            # positions: an int start shared by the batch, or (B, T) with padding; mask (B, 1, T, S) or None
            positions, mask = cache.prepare(T, pad_mask)
        x = self.wte(idx)  # (B, T, C)
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)  # (B, P + T, C)
        shared = isinstance(positions, int)  # then positions p..p+T-1 are a slice of the tables
        if self.wpe is not None:
            x = x + (self.wpe.weight[positions : positions + T] if shared else self.wpe(positions))
        rope = None
        if self.rope is not None:
            if cache is not None and cache.length + T > self.config.block_size:  # sliding models only
                rope = self.rope.at(positions, T)  # computed, beyond the tables
            else:
                rope = self.rope(positions, T) if shared else self.rope(positions)
        if self.training and self.config.dropout:
            x = self.drop(x)
        local = forward_pattern_mask(self.attention_pattern, cache, positions, T, mask, idx.device)  # None: all dense
        if prefix_mask is not None:  # (no cache here) causal, and no key at an absent prefix slot but a query's own
            keys = torch.cat([prefix_mask.to(torch.bool), prefix_mask.new_ones(B, T - prefix_mask.size(1), dtype=torch.bool)], 1)
            self_only = torch.eye(T, dtype=torch.bool, device=idx.device)
            mask = (torch.ones(T, T, dtype=torch.bool, device=idx.device).tril() & keys[:, None, None, :]) | self_only  # (B, 1, T, T)
            local = mask if local is None else local & mask
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i, local if self.config.uses_pattern(i) else mask)
        if cache is not None:
            cache.commit()
        if last_only:
            x = x[:, -1:]
        return self.norm_f(x)  # (B, T, C)


__all__ = ["Block", "Decoder", "DecoderConfig", "PRESETS", "build_moe"]

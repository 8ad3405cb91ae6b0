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
     norm_f -> lm_head -> logits (B, T, vocab_size)

The model returns logits; losses live in ``axon.objectives``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from axon.errors import check
from axon.models.flops import transformer_flops_per_token
from axon.nn import CausalSelfAttention, RMSNorm, RotaryEmbedding, build_mlp, build_norm
from axon.nn.masks import AttentionPattern, forward_pattern_mask
from axon.nn.moe import MoE, aux_losses, moe_layers, routing_metrics
from axon.nn.positional import check_rope_scaling


@dataclass
class DecoderConfig:
    family: Literal["decoder"] = "decoder"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer of the training data
    block_size: int = 128  # context length
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # null = n_head (MHA); 1 = multi-query; in between = grouped-query
    n_embd: int = 128
    mlp: Literal["gelu", "swiglu"] = "swiglu"
    mlp_hidden: int | None = None  # null: 4 * n_embd (gelu) or 8/3 * n_embd rounded up to 32 (swiglu)
    # Mixture-of-experts feed-forward (axon.nn.moe: Switch, GLaM/Mixtral, ST-MoE, DeepSeekMoE)
    moe_experts: int = 0  # routed experts per MoE layer; 0 = dense MLP everywhere
    moe_top_k: int = 2  # experts per token (1 = Switch, 2 = GLaM/Mixtral)
    moe_every: int = 1  # MoE in every moe_every-th layer (layers moe_every-1, 2*moe_every-1, ...), dense MLP elsewhere
    moe_capacity_factor: float | None = None  # capacity = ceil(f * tokens * k / experts) in training; null/0: no dropping
    moe_norm_topk: bool | None = None  # renormalise the top-k gates to sum 1 (Mixtral); null: true iff top_k > 1
    moe_shared_experts: int = 0  # always-active experts (DeepSeekMoE), each moe_hidden wide
    moe_hidden: int | None = None  # hidden size of one expert; null: the dense MLP's (hidden)
    moe_aux_loss: float = 0.01  # Switch load-balancing loss coefficient
    moe_z_loss: float = 0.001  # ST-MoE router z-loss coefficient
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    norm_eps: float = 1e-5
    norm_bias: bool = False  # LayerNorm bias (GPT-2: true); RMSNorm has none
    pos: Literal["learned", "rope"] = "rope"
    rope_theta: float = 10000.0
    # Context-extension rescaling of the RoPE frequencies: null, {rope_type: linear, factor} or
    # {rope_type: llama3, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings}
    rope_scaling: dict[str, Any] | None = None
    qk_norm: bool = False  # normalise q and k per head (Chameleon), with the model's norm type
    bias: bool = False  # biases in the attention and MLP linears (GPT-2: true)
    tie_embeddings: bool = True  # lm_head shares the token embedding matrix
    dropout: float = 0.0
    attn_impl: Literal["sdpa", "reference"] = "sdpa"
    # Sparse attention patterns (axon.nn.masks): sliding window (Longformer / Mistral; HF's
    # sliding_window = attn_window) or the Sparse Transformer's "fixed" block pattern.
    attention: Literal["dense", "sliding", "block_sparse"] = "dense"
    attn_window: int | None = None  # sliding: each query sees the last attn_window keys, itself included
    attn_block: int | None = None  # block_sparse: block length l (blocks aligned to position 0)
    attn_summary: int | None = None  # block_sparse: the last c positions of each block every later query sees (null: 1)
    attn_layers: list[int] | None = None  # layers that use the pattern (null: all); the others are dense
    init_std: float = 0.02

    def __post_init__(self):
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(
            self.n_embd % self.n_head == 0,
            "model.n_embd",
            f"{self.n_embd} is not divisible by n_head={self.n_head}; pick n_embd = n_head * head_dim",
        )
        kv = self.kv_heads
        check(kv > 0, "model.n_kv_head", "must be positive")
        check(
            self.n_head % kv == 0,
            "model.n_kv_head",
            f"n_head={self.n_head} is not a multiple of n_kv_head={kv}; each kv head must serve a whole group of query heads",
        )
        check(
            self.pos != "rope" or self.head_dim % 2 == 0,
            "model.n_embd",
            f"RoPE rotates channel pairs, so head_dim = n_embd / n_head must be even (got {self.head_dim})",
        )
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(self.mlp_hidden is None or self.mlp_hidden > 0, "model.mlp_hidden", "must be positive")
        self._check_moe()
        check(self.rope_theta > 0, "model.rope_theta", "must be positive")
        problem = check_rope_scaling(self.rope_scaling)
        check(problem is None, "model.rope_scaling", problem or "")
        self._check_attention()

    def _check_moe(self) -> None:
        check(self.moe_experts >= 0, "model.moe_experts", "must be >= 0 (0 = dense)")
        check(self.moe_experts > 0 or self.moe_shared_experts == 0, "model.moe_shared_experts",
              "shared experts belong to an MoE layer; set model.moe_experts > 0")
        if self.moe_experts == 0:
            return
        check(self.moe_top_k >= 1, "model.moe_top_k", "must be >= 1")
        check(self.moe_top_k <= self.moe_experts, "model.moe_top_k",
              f"{self.moe_top_k} is larger than moe_experts={self.moe_experts}; a token cannot pick more experts than exist")
        check(self.moe_every >= 1, "model.moe_every", "must be >= 1 (1 = every layer)")
        check(self.moe_every <= self.n_layer, "model.moe_every",
              f"{self.moe_every} > n_layer={self.n_layer} leaves no MoE layer; use moe_experts=0 for a dense model")
        check(self.moe_capacity_factor is None or self.moe_capacity_factor >= 0, "model.moe_capacity_factor",
              "must be positive (or null / 0: no token dropping)")
        check(self.moe_shared_experts >= 0, "model.moe_shared_experts", "must be >= 0")
        check(self.moe_hidden is None or self.moe_hidden > 0, "model.moe_hidden", "must be positive")
        check(self.moe_aux_loss >= 0, "model.moe_aux_loss", "must be >= 0")
        check(self.moe_z_loss >= 0, "model.moe_z_loss", "must be >= 0")

    def _check_attention(self) -> None:
        """Impossible sparse-pattern settings (attention, attn_*), one line each."""
        kind = self.attention
        check(kind == "sliding" or self.attn_window is None, "model.attn_window",
              f"is only used by attention=sliding (got attention={kind}); remove it or set model.attention=sliding")
        for name in ("attn_block", "attn_summary"):
            check(kind == "block_sparse" or getattr(self, name) is None, f"model.{name}",
                  f"is only used by attention=block_sparse (got attention={kind}); remove it or set model.attention=block_sparse")
        check(kind != "dense" or self.attn_layers is None, "model.attn_layers",
              "lists the layers that use a sparse pattern, but attention=dense; set model.attention or remove it")
        if kind == "sliding":
            W = self.attn_window
            check(W is not None, "model.attn_window", "attention=sliding needs attn_window (keys each query sees, itself included)")
            check(W >= 1, "model.attn_window", f"must be >= 1 (got {W}); a query always sees at least itself")
            check(W <= self.block_size, "model.attn_window",
                  f"window {W} is larger than the context block_size={self.block_size}; use a window <= block_size (= block_size is dense)")
        if kind == "block_sparse":
            l, c = self.attn_block, self.attn_summary
            check(l is not None, "model.attn_block", "attention=block_sparse needs attn_block (the block length)")
            check(1 <= l <= self.block_size, "model.attn_block", f"must be in [1, block_size={self.block_size}] (got {l})")
            check(c is None or 1 <= c <= l, "model.attn_summary", f"must be in [1, attn_block={l}] (got {c})")
        if self.attn_layers is not None:
            layers = list(self.attn_layers)
            check(len(layers) > 0, "model.attn_layers", "is empty; list at least one layer, or use attention=dense")
            check(all(0 <= i < self.n_layer for i in layers), "model.attn_layers",
                  f"{layers} has layers outside 0..{self.n_layer - 1} (n_layer={self.n_layer})")
            check(len(set(layers)) == len(layers), "model.attn_layers", f"{layers} lists a layer twice")

    def is_moe_layer(self, i: int) -> bool:
        return self.moe_experts > 0 and (i + 1) % self.moe_every == 0

    @property
    def moe_normalize(self) -> bool:
        """Renormalise the top-k gates: moe_norm_topk, or by default iff moe_top_k > 1."""
        return self.moe_top_k > 1 if self.moe_norm_topk is None else self.moe_norm_topk

    def uses_pattern(self, layer: int) -> bool:
        """Does layer ``layer`` use the sparse pattern of ``attention`` (else dense causal)?"""
        return self.attention != "dense" and (self.attn_layers is None or layer in self.attn_layers)

    @property
    def slides_everywhere(self) -> bool:
        """Every layer slides: the model's keys never reach back more than attn_window tokens."""
        return self.attention == "sliding" and all(self.uses_pattern(i) for i in range(self.n_layer))

    @property
    def context_limit(self) -> int | None:
        """Most tokens a sequence may hold in generation (``axon.generate.cache.context_limit``):
        none for a RoPE model that slides in every layer (its keys reach back attn_window tokens
        and rotary positions keep counting, as Mistral's), block_size otherwise."""
        return None if self.pos == "rope" and self.slides_everywhere else self.block_size

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden(self) -> int:
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "gelu":
            return 4 * self.n_embd
        # SwiGLU has three matrices; 2/3 of 4d keeps the parameter count of a 4d GELU MLP.
        return 32 * math.ceil(8 * self.n_embd / 3 / 32)


# Named sizes. Parameter counts are what this module builds (tests/models check them against
# the published figures); `source` is where the shape comes from.
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="0.1M", source="for tests",
        config=dict(block_size=64, n_layer=2, n_head=4, n_embd=64),
    ),
    "nanogpt-cpu": dict(
        params="0.80M (vocab 65)", source="nanoGPT's shakespeare_char CPU recipe (README)",
        config=dict(block_size=64, n_layer=4, n_head=4, n_embd=128, mlp="gelu", norm="layernorm",
                    norm_bias=False, pos="learned", bias=False, tie_embeddings=True),
    ),
    **{
        name: dict(
            params=params, source="Radford et al. 2019, GPT-2 (Hugging Face config)",
            config=dict(vocab_size=50257, block_size=1024, n_layer=nl, n_head=nh, n_embd=ne, mlp="gelu",
                        norm="layernorm", norm_bias=True, pos="learned", bias=True, tie_embeddings=True),
        )
        for name, nl, nh, ne, params in [
            ("gpt2", 12, 12, 768, "124,439,808"),
            ("gpt2-medium", 24, 16, 1024, "354,823,168"),
            ("gpt2-large", 36, 20, 1280, "774,030,080"),
            ("gpt2-xl", 48, 25, 1600, "1,557,611,200"),
        ]
    },
    "smollm-135m": dict(
        params="134,515,008", source="HuggingFaceTB/SmolLM-135M (Llama architecture, GQA 9/3, tied)",
        config=dict(vocab_size=49152, block_size=2048, n_layer=30, n_head=9, n_kv_head=3, n_embd=576,
                    mlp_hidden=1536, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=True),
    ),
    "tinyllama-1.1b": dict(
        params="1,100,048,384", source="Zhang et al. 2024, TinyLlama (GQA 32/4)",
        config=dict(vocab_size=32000, block_size=2048, n_layer=22, n_head=32, n_kv_head=4, n_embd=2048,
                    mlp_hidden=5632, norm_eps=1e-5, tie_embeddings=False),
    ),
    "llama-3.2-1b": dict(
        params="1,235,814,400", source="Meta Llama 3.2 1B (GQA 32/8, theta 500k, tied)",
        config=dict(vocab_size=128256, block_size=131072, n_layer=16, n_head=32, n_kv_head=8, n_embd=2048,
                    mlp_hidden=8192, rope_theta=500000.0, norm_eps=1e-5, tie_embeddings=True),
    ),
    "llama2-7b": dict(
        params="6,738,415,616", source="Touvron et al. 2023, Llama 2 7B",
        config=dict(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, n_embd=4096,
                    mlp_hidden=11008, norm_eps=1e-5, tie_embeddings=False),
    ),
}


def build_moe(cfg: DecoderConfig) -> MoE:
    """The MoE layer the config's ``moe_*`` fields describe (experts follow its ``mlp``)."""
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


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
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
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

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
        """Parameters one token uses: all of them, less the experts an MoE layer does not route it to."""
        return self.num_params(non_embedding) - sum(m.inactive_params() for m in moe_layers(self))

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """MoE balance and router z-losses of the last forward, scaled; the objective adds them."""
        return aux_losses(self)

    def routing_metrics(self) -> dict[str, float]:
        """Per-expert load and dropped share since the last call (the trainer logs them)."""
        return routing_metrics(self)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token at context ``seq_len`` (default block_size), for MFU; an MoE
        counts its active parameters (the k experts a token visits, plus router and shared ones);
        a sliding-window layer attends to min(seq_len, attn_window) keys (axon.models.flops)."""
        cfg = self.config
        T = seq_len or cfg.block_size
        matmul_params = self.active_params(non_embedding=True)
        if cfg.tie_embeddings:  # the head's matmul is work even though its matrix is the embedding
            matmul_params += cfg.vocab_size * cfg.n_embd
        keys = [min(T, cfg.attn_window) if cfg.attention == "sliding" and cfg.uses_pattern(i) else T for i in range(cfg.n_layer)]
        return transformer_flops_per_token(matmul_params, cfg.n_layer, cfg.n_head * cfg.head_dim, T, layer_keys=keys)

    def make_cache(self, batch_size: int, max_len: int | None = None):
        """An empty KV cache for ``batch_size`` sequences of up to ``max_len`` tokens (at most
        block_size, the default: size it to the prompt plus new tokens to save memory). A model that
        slides in every layer gets a ring buffer of its window instead (``axon.generate.window``)."""
        from axon.generate.cache import KVCache

        cfg, p = self.config, self.lm_head.weight
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
        of a prompt batch) and the cache is extended; see ``axon.generate.cache``.
        """
        B, T = idx.shape
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
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i, local if self.config.uses_pattern(i) else mask)
        if cache is not None:
            cache.commit()
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.norm_f(x))  # (B, T, V)

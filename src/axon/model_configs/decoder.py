"""The decoder family's config and named sizes: GPT-2, Llama, Mistral/Mixtral shapes (the model:
``axon.models.decoder``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``). The options of
the building blocks it configures are validated here, in the words of the config's fields
(``model.attn_window: ...``); the blocks themselves (``axon.nn.masks``, ``axon.nn.moe``,
``axon.nn.positional``) take plain arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from axon.errors import check
from axon.model_configs.fields import check_fields
from axon.rope_scaling import check_rope_scaling

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
    # feed-forward (axon.nn.mlp): plain gelu, relu, sigmoid, silu; gated (GLU variants) swiglu, reglu, geglu
    mlp: Literal["gelu", "relu", "sigmoid", "silu", "swiglu", "reglu", "geglu"] = "swiglu"
    mlp_hidden: int | None = None  # null: 4 * n_embd (plain) or 8/3 * n_embd rounded up to 32 (gated)
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
    # token: top-k routing per token (axon.nn.moe); lory: every expert soft-merged into one FFN per segment of
    # lory_segment tokens, routed on the previous segment (Lory, Zhong et al. 2024; axon.nn.lory). Lory ignores
    # moe_top_k and drops nothing; a Lory model decodes by recomputation (no KV cache).
    moe_kind: Literal["token", "lory"] = "token"
    lory_segment: int | None = None  # tokens per merged segment (moe_kind=lory); null: 16
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
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
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
        check(self.norm_eps > 0, "model.norm_eps", f"must be positive, got {self.norm_eps}")
        check(self.init_std > 0, "model.init_std", f"must be positive (equal weights learn alike), got {self.init_std}")
        problem = check_rope_scaling(self.rope_scaling)
        check(problem is None, "model.rope_scaling", problem or "")
        self._check_attention()

    def _check_moe(self) -> None:
        check(self.moe_experts >= 0, "model.moe_experts", "must be >= 0 (0 = dense)")
        check(self.moe_experts > 0 or self.moe_shared_experts == 0, "model.moe_shared_experts",
              "shared experts belong to an MoE layer; set model.moe_experts > 0")
        check(self.moe_kind == "lory" or self.lory_segment is None, "model.lory_segment",
              f"is only used by moe_kind=lory (got moe_kind={self.moe_kind}); remove it or set model.moe_kind=lory")
        check(self.moe_kind == "token" or self.moe_experts > 0, "model.moe_kind",
              "lory merges the experts of an MoE layer; set model.moe_experts > 0 (or moe_kind=token)")
        if self.moe_experts == 0:
            return
        check(self.mlp in ("gelu", "swiglu"), "model.mlp",
              f"MoE experts are gelu or swiglu MLPs, got {self.mlp}; use one of those or moe_experts=0")
        if self.moe_kind == "lory":
            self._check_lory()
        else:
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

    def _check_lory(self) -> None:
        """Token-routing settings a soft merge has no use for, and the segment length."""
        S = self.segment
        check(1 <= S <= self.block_size, "model.lory_segment", f"must be in [1, block_size={self.block_size}] (got {S})")
        check(not self.moe_capacity_factor, "model.moe_capacity_factor",
              "moe_kind=lory merges every expert into one FFN and drops no token; remove it (null)")
        check(self.moe_norm_topk is None, "model.moe_norm_topk",
              "moe_kind=lory has no top-k gates to renormalise (its merge weights sum to 1); remove it (null)")

    @property
    def segment(self) -> int:
        """Lory's segment length: lory_segment, or 16."""
        return 16 if self.lory_segment is None else self.lory_segment

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
        and rotary positions keep counting, as Mistral's) unless it is a Lory model (recomputed),
        block_size otherwise."""
        if self.moe_kind == "lory" and self.moe_experts > 0:  # decoded by recomputation over at most block_size tokens
            return self.block_size
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
        if self.mlp not in ("swiglu", "reglu", "geglu"):  # axon.nn.mlp.GATED
            return 4 * self.n_embd
        # A gated MLP has three matrices; 2/3 of 4d keeps the parameter count of a 4d GELU MLP.
        return 32 * math.ceil(8 * self.n_embd / 3 / 32)


# Named sizes. Parameter counts are what axon.models.decoder builds (tests/models check them against
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

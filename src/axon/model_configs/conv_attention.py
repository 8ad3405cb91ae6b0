"""The causal hourglass's config and named sizes (the model: ``axon.models.conv_attention``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields
from axon.model_configs.decoder import DecoderConfig


@dataclass
class ConvAttentionConfig:
    family: Literal["conv_attention"] = "conv_attention"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer of the training data
    block_size: int = 128  # context length in tokens; a multiple of shorten
    n_embd: int = 128  # outer width d (embedding, pre and post blocks, head)
    n_head: int = 4  # heads of the outer blocks
    n_pre_layer: int = 1  # blocks at width d before shortening
    n_post_layer: int = 1  # blocks at width d after upsampling
    shorten: int = 4  # k: tokens merged into one inner position (conv kernel = stride = k)
    inner_embd: int = 256  # inner width D
    inner_head: int = 4  # heads of the inner blocks
    n_inner_layer: int = 2  # blocks at width D over block_size / k positions
    mlp: Literal["gelu", "swiglu"] = "swiglu"
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    bias: bool = False  # biases in the attention, MLP, conv and upsampling linears
    tie_embeddings: bool = True  # lm_head shares the token embedding matrix
    dropout: float = 0.0
    attn_impl: Literal["sdpa", "reference"] = "sdpa"
    init_std: float = 0.02

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_embd", "n_head", "inner_embd", "inner_head", "n_inner_layer"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        for name in ("n_pre_layer", "n_post_layer"):
            check(getattr(self, name) >= 0, f"model.{name}", "must be >= 0")
        # With neither, position jk+i would see tokens <= jk and itself only, never jk+1..jk+i-1:
        # a pre block writes them into its residual stream, a post block attends to them.
        check(self.n_pre_layer + self.n_post_layer >= 1, "model.n_post_layer",
              "needs n_pre_layer + n_post_layer >= 1: without an outer block a token never sees the earlier tokens of its own group")
        check(self.shorten >= 1, "model.shorten", f"must be >= 1 (tokens per inner position), got {self.shorten}")
        check(
            self.block_size % self.shorten == 0,
            "model.block_size",
            f"{self.block_size} is not divisible by shorten={self.shorten}; the inner level runs on block_size / shorten positions",
        )
        for width, heads in (("n_embd", "n_head"), ("inner_embd", "inner_head")):
            w, h = getattr(self, width), getattr(self, heads)
            check(w % h == 0, f"model.{width}", f"{w} is not divisible by {heads}={h}; pick {width} = {heads} * head_dim")
            check((w // h) % 2 == 0, f"model.{width}",
                  f"RoPE rotates channel pairs, so {width} / {heads} must be even (got {w // h})")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(self.rope_theta > 0, "model.rope_theta", "must be positive")
        check(self.norm_eps > 0, "model.norm_eps", f"must be positive, got {self.norm_eps}")
        check(self.init_std > 0, "model.init_std", f"must be positive (equal weights learn alike), got {self.init_std}")

    @property
    def n_layer(self) -> int:  # every block, for the record and the residual init scale
        return self.n_pre_layer + self.n_inner_layer + self.n_post_layer

    def level(self, inner: bool) -> DecoderConfig:
        """The config of one level's blocks (axon.models.decoder.Block reads its width from it)."""
        return DecoderConfig(
            vocab_size=self.vocab_size,
            block_size=self.block_size // self.shorten if inner else self.block_size,
            n_layer=self.n_inner_layer if inner else max(1, self.n_pre_layer + self.n_post_layer),
            n_head=self.inner_head if inner else self.n_head,
            n_embd=self.inner_embd if inner else self.n_embd,
            mlp=self.mlp, norm=self.norm, norm_eps=self.norm_eps, pos="rope", rope_theta=self.rope_theta,
            bias=self.bias, dropout=self.dropout, attn_impl=self.attn_impl,
        )


# Named sizes; parameter counts at the bundled character vocabulary (65 symbols).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="377,664 (vocab 65)", source="for tests",
        config=dict(block_size=64, n_embd=64, n_head=4, n_pre_layer=1, n_post_layer=1,
                    shorten=4, inner_embd=128, inner_head=4, n_inner_layer=1),
    ),
    "small": dict(
        params="2,279,552 (vocab 65)", source="CPU recipe: 5.71 MFLOPs/token, as the 0.81M default decoder (5.66M)",
        config=dict(block_size=128, n_embd=128, n_head=4, n_pre_layer=1, n_post_layer=1,
                    shorten=4, inner_embd=256, inner_head=4, n_inner_layer=2),
    ),
}

"""The encoder-decoder Transformer's config and named sizes, family seq2seq (the model:
``axon.models.seq2seq``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class TransformerConfig:
    family: Literal["seq2seq"] = "seq2seq"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # one vocabulary for source and target; null: the tokenizer's + 3 special ids
    block_size: int = 64  # the longest source and the longest target, in tokens, special tokens included
    n_layer: int = 3  # layers of the encoder and of the decoder (the paper's N)
    n_enc_layer: int | None = None  # null = n_layer
    n_dec_layer: int | None = None  # null = n_layer
    n_head: int = 4
    n_embd: int = 128  # the paper's d_model
    mlp_hidden: int | None = None  # the paper's d_ff; null = 4 * n_embd
    activation: Literal["relu", "gelu"] = "relu"  # of the feed-forward sub-layer (the paper: relu)
    norm_first: bool = False  # false: post-LN as in the paper; true: pre-LN with final norms
    norm_eps: float = 1e-5
    dropout: float = 0.1  # the paper's P_drop: sub-layer outputs, embedding sums, attention weights
    tie_embeddings: bool = True  # the output projection is the (source = target) embedding matrix (sec. 3.4)
    attn_impl: Literal["sdpa", "reference"] = "sdpa"

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        for name in ("n_enc_layer", "n_dec_layer", "mlp_hidden"):
            check(getattr(self, name) is None or getattr(self, name) > 0, f"model.{name}", "must be positive (or null)")
        check(
            self.n_embd % self.n_head == 0,
            "model.n_embd",
            f"{self.n_embd} is not divisible by n_head={self.n_head}; pick n_embd = n_head * head_dim",
        )
        check(self.n_embd % 2 == 0, "model.n_embd", "sinusoidal positions pair sin/cos channels: n_embd must be even")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(self.norm_eps > 0, "model.norm_eps", "must be positive")

    #: the task's and ``axon translate``'s test: the model has ``forward(src, tgt_in, src_mask)`` and
    #: ``conditioned(src, src_mask)`` (see docs/adding-a-family.md)
    encoder_decoder = True

    @property
    def enc_layers(self) -> int:
        return self.n_enc_layer or self.n_layer

    @property
    def dec_layers(self) -> int:
        return self.n_dec_layer or self.n_layer

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or 4 * self.n_embd


# Named sizes. `params` is what axon.models.seq2seq builds (tests/models/test_seq2seq_model.py
# checks the counts against torch.nn.Transformer's plus the embedding).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="44,800 (vocab 64)", source="for tests",
        config=dict(block_size=32, n_layer=2, n_head=2, n_embd=32, mlp_hidden=64, dropout=0.0),
    ),
    "dates-cpu": dict(
        params="933,760 (vocab 63: the dates characters + PAD, BOS, EOS)",
        source="the bundled date-normalisation task on a 2-core CPU (configs/seq2seq_dates.yaml)",
        config=dict(block_size=64, n_layer=2, n_head=4, n_embd=128, mlp_hidden=512, dropout=0.1),
    ),
    "transformer-base": dict(
        params="63,082,496 (vocab 37000)",
        source="Vaswani et al. 2017, Table 3 'base' (N=6, d=512, d_ff=2048, h=8; the paper counts 65M)",
        config=dict(vocab_size=37000, block_size=256, n_layer=6, n_head=8, n_embd=512, mlp_hidden=2048, dropout=0.1),
    ),
    "transformer-big": dict(
        params="214,245,376 (vocab 37000)",
        source="Vaswani et al. 2017, Table 3 'big' (N=6, d=1024, d_ff=4096, h=16, P_drop=0.3; the paper counts 213M)",
        config=dict(vocab_size=37000, block_size=256, n_layer=6, n_head=16, n_embd=1024, mlp_hidden=4096, dropout=0.3),
    ),
}

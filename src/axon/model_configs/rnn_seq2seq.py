"""The attention RNN encoder-decoder's config and named sizes, family rnn_seq2seq (the model:
``axon.models.rnn_seq2seq``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class RNNSeq2SeqConfig:
    family: Literal["rnn_seq2seq"] = "rnn_seq2seq"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # one vocabulary for source and target; null: the tokenizer's + 3 special ids
    block_size: int = 64  # the longest source and the longest target, in tokens, special tokens included
    cell: Literal["gru", "lstm"] = "gru"  # of the encoder (both directions) and of the decoder
    attention: Literal["bahdanau", "luong"] = "bahdanau"  # additive (2015a) or multiplicative "general" (2015b)
    input_feed: bool = True  # luong only: the previous attentional vector joins the decoder's input (sec. 3.3)
    n_layer: int = 1  # layers of the encoder (each bidirectional) and of the decoder
    n_embd: int = 64  # the shared source/target embedding width
    hidden: int = 256  # the decoder's state and the memory width; each encoder direction has hidden / 2
    attn_dim: int | None = None  # bahdanau: the width of W s + U h (the paper's n'); null = hidden
    dropout: float = 0.1  # on embeddings, between stacked layers, and on the vector the output layer reads

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_layer", "n_embd", "hidden"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.hidden % 2 == 0, "model.hidden",
              f"{self.hidden} is odd: the bidirectional encoder gives each direction hidden / 2")
        check(self.attn_dim is None or self.attn_dim > 0, "model.attn_dim", "must be positive (or null)")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")

    #: the task's and ``axon translate``'s test: the model has ``forward(src, tgt_in, src_mask)`` and
    #: ``conditioned(src, src_mask)`` (see docs/adding-a-family.md)
    encoder_decoder = True

    @property
    def enc_hidden(self) -> int:
        return self.hidden // 2

    @property
    def score_dim(self) -> int:
        return self.attn_dim or self.hidden


# Named sizes. `params` is what axon.models.rnn_seq2seq builds (tests/models/test_rnn_seq2seq.py checks).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="20,032 (vocab 64, gru, bahdanau)", source="for tests",
        config=dict(block_size=32, n_layer=1, n_embd=16, hidden=32, dropout=0.0),
    ),
    "dates-cpu": dict(
        params="958,207 (vocab 63, gru, bahdanau; luong 875,519)",
        source="the bundled date-normalisation task on a 2-core CPU (configs/rnn_seq2seq_dates.yaml), "
               "about the Transformer recipe's size",
        config=dict(block_size=64, n_layer=1, n_embd=64, hidden=256, dropout=0.1),
    ),
}

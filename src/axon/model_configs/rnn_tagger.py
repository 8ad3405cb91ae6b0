"""The recurrent tagger's config and named sizes (the model: ``axon.models.rnn_tagger``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class RNNTaggerConfig:
    family: Literal["rnn_tagger"] = "rnn_tagger"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: the tag task's word vocabulary (<pad>, <unk> and the kept words)
    block_size: int = 128  # the longest sentence in words
    num_labels: int | None = None  # null: the number of tags in the training file
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    n_layer: int = 1
    n_embd: int = 100  # word embedding width
    n_hidden: int | None = None  # state width per direction; null = n_embd
    bidirectional: bool = True
    dropout: float = 0.0  # on embeddings, between layers and before the head
    crf: bool = False  # a linear-chain CRF over the head's scores (axon.nn.crf): forward-algorithm NLL, Viterbi
    # The word vocabulary (it sizes the embedding, so the model owns it; the tag task builds it,
    # axon.data.tagged.WordVocab): words of the training sentences seen at least vocab_min_count
    # times; any other word is <unk>, or <Unk> when capitalised. word_dropout: in training batches
    # each word is its unknown token with this probability (Lample et al. 2016), which trains them.
    vocab_min_count: int = 1
    lowercase: bool = False
    word_dropout: float = 0.0

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 3, "model.vocab_size", "must hold <pad>, <unk>, <Unk> and a word")
        check(self.num_labels is None or self.num_labels >= 2, "model.num_labels", "a tagger needs at least 2 tags")
        for name in ("block_size", "n_layer", "n_embd", "vocab_min_count"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.n_hidden is None or self.n_hidden > 0, "model.n_hidden", "must be positive")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(0.0 <= self.word_dropout < 1.0, "model.word_dropout", "must be in [0, 1)")

    @property
    def hidden(self) -> int:
        return self.n_embd if self.n_hidden is None else self.n_hidden


PRESETS: dict[str, dict] = {
    "tiny": dict(params="for tests", source="for tests",
                 config=dict(block_size=64, cell="lstm", n_layer=1, n_embd=32, n_hidden=32, vocab_min_count=1)),
    "bilstm-small": dict(
        params="about 100 x vocab + 161,000 (1 layer, 100 wide)", source="a CPU-sized BiLSTM tagger (Huang et al. 2015)",
        config=dict(block_size=128, cell="lstm", n_layer=1, n_embd=100, n_hidden=100, dropout=0.3),
    ),
}

"""The recurrent classifier's config and named sizes (the model: ``axon.models.rnn_classifier``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class RNNClassifierConfig:
    family: Literal["rnn_classifier"] = "rnn_classifier"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer of the training data
    block_size: int = 128  # the longest input in tokens
    num_labels: int | None = None  # null: the number of labels in the training data
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    n_layer: int = 1
    n_embd: int = 128
    n_hidden: int | None = None  # state width per direction; null = n_embd
    bidirectional: bool = True
    pool: Literal["mean", "max", "last"] = "mean"
    dropout: float = 0.0  # on embeddings, between layers and before the head

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        check(self.num_labels is None or self.num_labels >= 2, "model.num_labels", "a classifier needs at least 2 labels")
        for name in ("block_size", "n_layer", "n_embd"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.n_hidden is None or self.n_hidden > 0, "model.n_hidden", "must be positive")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")

    @property
    def hidden(self) -> int:
        return self.n_embd if self.n_hidden is None else self.n_hidden


PRESETS: dict[str, dict] = {
    "tiny": dict(params="for tests", source="for tests",
                 config=dict(block_size=64, cell="lstm", n_layer=1, n_embd=32, n_hidden=32)),
    "bilstm-small": dict(
        params="669,061 (vocab 65, 5 labels)", source="a CPU-sized 2-layer BiLSTM text classifier",
        config=dict(block_size=256, cell="lstm", n_layer=2, n_embd=128, n_hidden=128, dropout=0.1),
    ),
}

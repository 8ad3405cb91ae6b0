"""The recurrent language models' config and named sizes (the model: ``axon.models.rnn``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class RNNConfig:
    family: Literal["rnn"] = "rnn"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer of the training data
    block_size: int = 128  # training window (truncated BPTT length); generation has no context limit
    cell: Literal["rnn", "lstm", "gru"] = "lstm"  # rnn = Elman's, with tanh
    n_layer: int = 2
    n_embd: int = 128  # token embedding width
    n_hidden: int | None = None  # state width per layer; null = n_embd
    dropout: float = 0.0  # on embeddings, between layers and before the head (Zaremba et al. 2014)
    tie_embeddings: bool = False  # lm_head shares the embedding matrix (Press & Wolf 2017); needs n_hidden = n_embd

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_layer", "n_embd"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.n_hidden is None or self.n_hidden > 0, "model.n_hidden", "must be positive")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(
            not self.tie_embeddings or self.hidden == self.n_embd,
            "model.tie_embeddings",
            f"a tied head reads the state with the embedding matrix, so n_hidden ({self.hidden}) must equal "
            f"n_embd ({self.n_embd}); set model.n_hidden=null or model.tie_embeddings=false",
        )

    @property
    def hidden(self) -> int:
        return self.n_embd if self.n_hidden is None else self.n_hidden

    @property
    def context_limit(self) -> None:
        """No context limit for generation (``axon.generate.cache.context_limit``): block_size
        is only the training window."""
        return None


# Named sizes. `source` is where the shape comes from; parameter counts are for the 65-character
# vocabulary of tiny Shakespeare (tests/models/test_rnn.py checks them).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="39,825 (vocab 65)", source="for tests",
        config=dict(block_size=32, cell="lstm", n_layer=2, n_embd=32, n_hidden=48),
    ),
    "char-rnn": dict(
        params="280,897 (vocab 65)",
        source="Karpathy's char-rnn defaults (train.lua: 2-layer LSTM, rnn_size 128, seq_length 50); "
               "block 128 here to match the default transformer job",
        config=dict(block_size=128, cell="lstm", n_layer=2, n_embd=128, n_hidden=128),
    ),
    "char-rnn-large": dict(
        params="6,370,369 (vocab 65)",
        source="the Shakespeare model of Karpathy's 'The Unreasonable Effectiveness of Recurrent Neural "
               "Networks' (2015): 3-layer LSTM, 512 units; slow on a CPU",
        config=dict(block_size=128, cell="lstm", n_layer=3, n_embd=512, n_hidden=512, dropout=0.5),
    ),
}

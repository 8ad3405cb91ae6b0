"""word2vec's config and named sizes (the model: ``axon.models.word2vec``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class Word2VecConfig:
    family: Literal["word2vec"] = "word2vec"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: the vocabulary built from the text (words seen >= min_count times)
    block_size: int = 64  # corpus positions per batch row, each a centre word: batch_size * block_size centres per batch
    n_embd: int = 100  # vector size (word2vec's -size)
    mode: Literal["skipgram", "cbow"] = "skipgram"
    window: int = 5  # largest context distance; each centre draws its own from 1..window (dynamic window)
    negatives: int = 5  # k noise words per positive (2013b: 5-20 for small data, 2-5 for large)
    ns_exponent: float = 0.75  # negatives ~ unigram ** 0.75 (2013b sec. 2.2)
    min_count: int = 5  # words seen fewer times are dropped from the text, as word2vec does
    lowercase: bool = True
    subsample: float = 1e-4  # t: a word of frequency f is dropped with probability 1 - sqrt(t / f) (2013b eq. 5); 0 = off

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 1, "model.vocab_size", "must be at least 2")
        for name in ("block_size", "n_embd", "window", "negatives", "min_count"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.ns_exponent >= 0, "model.ns_exponent", "must be >= 0 (0: uniform negatives, 1: unigram)")
        check(0 <= self.subsample < 1, "model.subsample", "must be in [0, 1) (0 disables subsampling)")


PRESETS: dict[str, dict] = {
    "tiny": dict(params="for tests", source="for tests", config=dict(block_size=16, n_embd=16, window=2, negatives=3)),
    "word2vec": dict(params="2 * vocab * 100", source="word2vec.c defaults: -size 100 -window 5 -negative 5",
                     config=dict(n_embd=100, window=5, negatives=5)),
}

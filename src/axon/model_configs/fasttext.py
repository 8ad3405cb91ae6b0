"""fastText's config and named sizes (the model: ``axon.models.fasttext``).

Torch-free, so that ``axon.config`` validates a run's ``model`` section without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class FastTextConfig:
    family: Literal["fasttext"] = "fasttext"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: the vocabulary built from the text (words seen >= min_count times)
    block_size: int = 64  # corpus positions per batch row, each a centre word (as word2vec)
    n_embd: int = 100  # vector size (fastText's -dim)
    window: int = 5  # largest context distance; each centre draws its own from 1..window (dynamic window)
    negatives: int = 5  # k noise words per (centre, context) pair
    ns_exponent: float = 0.75  # negatives ~ unigram ** 0.75
    min_count: int = 5  # words seen fewer times are dropped from the text (their n-grams still give them vectors)
    lowercase: bool = True
    subsample: float = 1e-4  # t: a word of frequency f is dropped with probability 1 - sqrt(t / f); 0 = off
    minn: int = 3  # shortest character n-gram (fastText's -minn), counted in characters of "<word>"
    maxn: int = 6  # longest (fastText's -maxn)
    buckets: int = 2_000_000  # rows the n-grams are hashed into (fastText's -bucket)
    pool: Literal["sum", "mean"] = "sum"  # a word's input vector: the paper's sum, or fastText's code's mean

    # The training examples are skip-gram's (axon.data.words.ContextWindows reads cfg.mode); a class
    # attribute, not a field: fastText's cbow is not offered here.
    mode = "skipgram"

    def __post_init__(self):
        check_fields(self, "model.")
        check(self.vocab_size is None or self.vocab_size > 1, "model.vocab_size", "must be at least 2")
        for name in ("block_size", "n_embd", "window", "negatives", "min_count", "buckets"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.ns_exponent >= 0, "model.ns_exponent", "must be >= 0 (0: uniform negatives, 1: unigram)")
        check(0 <= self.subsample < 1, "model.subsample", "must be in [0, 1) (0 disables subsampling)")
        check(self.minn >= 1, "model.minn", "must be at least 1 (the shortest character n-gram)")
        check(self.maxn >= self.minn, "model.maxn", f"must be >= model.minn={self.minn}")


PRESETS: dict[str, dict] = {
    "tiny": dict(params="for tests", source="for tests",
                 config=dict(block_size=16, n_embd=16, window=2, negatives=3, buckets=4096)),
    "fasttext": dict(params="(2 * vocab + buckets) * 100", source="fastText skipgram defaults: -dim 100 -ws 5 "
                     "-neg 5 -minn 3 -maxn 6 -bucket 2000000", config=dict(n_embd=100, window=5, negatives=5)),
}

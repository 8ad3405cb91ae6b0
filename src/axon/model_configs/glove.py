"""GloVe's config and named sizes (the model: ``axon.models.glove``).

Torch-free, so that ``axon.config`` validates a run's ``model`` section without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class GloVeConfig:
    family: Literal["glove"] = "glove"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: the vocabulary built from the text (words seen >= min_count times)
    block_size: int = 64  # co-occurrence entries per batch row: batch_size * block_size entries per batch
    n_embd: int = 100  # vector size
    window: int = 10  # symmetric context window; a pair d words apart adds 1/d to X_ij (the paper, sec. 4.2)
    x_max: float = 100.0  # f(x) = (x / x_max)^alpha below x_max, 1 above (eq. 9)
    alpha: float = 0.75
    min_count: int = 5  # words seen fewer times are dropped from the text, as for word2vec
    lowercase: bool = True

    def __post_init__(self):
        check_fields(self, "model.")
        check(self.vocab_size is None or self.vocab_size > 1, "model.vocab_size", "must be at least 2")
        for name in ("block_size", "n_embd", "window", "min_count"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.x_max > 0, "model.x_max", "must be positive")
        check(self.alpha >= 0, "model.alpha", "must be >= 0 (0: every nonzero entry weighs 1)")


PRESETS: dict[str, dict] = {
    "tiny": dict(params="for tests", source="for tests", config=dict(block_size=16, n_embd=16, window=2)),
    "glove": dict(params="2 * vocab * (100 + 1)", source="glove.c demo.sh: -vector-size 50..300, -window-size 10 "
                  "(100 here), x_max 100, alpha 0.75", config=dict(n_embd=100, window=10)),
}

"""GloVe: global vectors from weighted least squares on log co-occurrence counts (Pennington et al. 2014).

  text --(axon.data.words: the word2vec tokenisation and vocabulary)--> ids (n,)
  ids --cooccurrence(window)--> nonzero entries (i (E,), j (E,), X_ij (E,)), symmetric,
        a pair d <= window words apart adding 1/d (the paper, sec. 4.2)

  W (V, D), W~ (V, D), b (V,), b~ (V,):
      J = sum_{ij: X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2          (eq. 8)
      f(x) = (x / x_max)^alpha if x < x_max else 1    (x_max 100, alpha 3/4; eq. 9)

A batch is a sample of the nonzero entries (the task ``glove``, ``axon.tasks.glove``); the
model returns w_i . w~_j + b_i + b~_j, and the objective (``axon.objectives.glove``) averages
f * residual^2 over the batch, an unbiased estimate of J / E. The word vectors one
keeps are W + W~ (sec. 4.2: "we choose to use the sum W + W~ as our word vectors"); neighbours,
analogies and export are word2vec's (``axon.models.word2vec``), so `axon embed` reads both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from axon.model_configs.glove import PRESETS, GloVeConfig  # noqa: F401 (re-exported)
from axon.models.base import Model


def cooccurrence(ids: np.ndarray, vocab_size: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero entries of the symmetric co-occurrence matrix of a stream of word ids: (i, j, X_ij)
    with X_ij = sum over occurrences of i and j at distance 1 <= d <= window of 1/d. Sorted by i * V + j."""
    ids = np.asarray(ids, dtype=np.int64)
    keys, weights = [], []
    for d in range(1, min(window, len(ids) - 1) + 1):
        a, b = ids[:-d], ids[d:]
        keys += [a * vocab_size + b, b * vocab_size + a]  # both orders: X is symmetric
        weights += [np.full(len(a), 1.0 / d)] * 2
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    keys, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    x = np.bincount(inverse, weights=np.concatenate(weights))
    return keys // vocab_size, keys % vocab_size, x


class GloVe(Model):
    def __init__(self, cfg: GloVeConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("GloVeConfig.vocab_size must be set before building the model")
        self.config = cfg
        V, D = cfg.vocab_size, cfg.n_embd
        self.wte = nn.Embedding(V, D)  # W: word vectors
        self.ctx = nn.Embedding(V, D)  # W~: context vectors
        self.bias = nn.Embedding(V, 1)  # b
        self.ctx_bias = nn.Embedding(V, 1)  # b~
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """glove.c: every parameter uniform in +-0.5 / D."""
        D = self.config.n_embd
        for table in (self.wte, self.ctx, self.bias, self.ctx_bias):
            nn.init.uniform_(table.weight, -0.5 / D, 0.5 / D)

    def forward(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """w_i . w~_j + b_i + b~_j for entries i (N,), j (N,) -> (N,)."""
        return (self.wte(i) * self.ctx(j)).sum(-1) + self.bias(i)[:, 0] + self.ctx_bias(j)[:, 0]

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per co-occurrence entry: one dot product of n_embd (2 D), x3 for training."""
        return 6.0 * self.config.n_embd

    def vectors(self) -> torch.Tensor:
        """The word vectors (V, D): W + W~ (the paper's choice)."""
        return (self.wte.weight + self.ctx.weight).detach()


__all__ = ["GloVeConfig", "GloVe", "PRESETS", "cooccurrence"]

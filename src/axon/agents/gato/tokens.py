"""Gato's tokenisation (Reed et al. 2022, sec. 2.1), numpy only.

    continuous x --mu-law--> F(x) in [-1, 1] --clip--> --1024 uniform bins--> bin b --+ T--> token T + b
    discrete  k (0 <= k < 1024) ----------------------------------------------------+

    F(x) = sgn(x) * log(|x| mu + 1) / log(M mu + 1),   mu = 100, M = 256
    F^-1(y) = sgn(y) * ((M mu + 1)^|y| - 1) / mu       (decoding reads a bin's centre)

A timestep is laid out ``[obs tokens, SEP, action tokens]`` and its loss mask is true on the
action tokens only: Gato trains on action and text tokens, never on observations or separators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MU, M_MAX, BINS = 100.0, 256.0, 1024


def mu_law(x: np.ndarray, mu: float = MU, m: float = M_MAX) -> np.ndarray:
    """F(x), before clipping (|F| <= 1 for |x| <= m)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x) * mu) / np.log1p(m * mu)


def inverse_mu_law(y: np.ndarray, mu: float = MU, m: float = M_MAX) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(m * mu)) / mu


def to_bins(x: np.ndarray, mu: float = MU, m: float = M_MAX, bins: int = BINS) -> np.ndarray:
    """Continuous values -> bin indices in [0, bins): mu-law, clip to [-1, 1], uniform bins of width 2/bins."""
    y = np.clip(mu_law(x, mu, m), -1.0, 1.0)
    return np.minimum(((y + 1.0) / 2.0 * bins).astype(np.int64), bins - 1)


def from_bins(b: np.ndarray, mu: float = MU, m: float = M_MAX, bins: int = BINS) -> np.ndarray:
    """Bin indices -> the value at each bin's centre (in mu-law space)."""
    centre = (np.asarray(b, dtype=np.float64) + 0.5) / bins * 2.0 - 1.0
    return inverse_mu_law(centre, mu, m)


@dataclass(frozen=True)
class Vocab:
    """Where each kind of token lives: text ids first, then the value bins, then the separator."""

    text: int  # T: the text tokenizer's vocabulary size
    bins: int = BINS
    mu: float = MU
    m: float = M_MAX

    @property
    def offset(self) -> int:  # the first value token
        return self.text

    @property
    def sep(self) -> int:  # '|'
        return self.text + self.bins

    @property
    def size(self) -> int:
        return self.text + self.bins + 1

    def continuous(self, x: np.ndarray) -> np.ndarray:
        return self.offset + to_bins(x, self.mu, self.m, self.bins)

    def decode_continuous(self, tokens: np.ndarray) -> np.ndarray:
        return from_bins(np.asarray(tokens) - self.offset, self.mu, self.m, self.bins)

    def discrete(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=np.int64)
        if k.size and (k.min() < 0 or k.max() >= self.bins):
            raise ValueError(f"discrete values must lie in [0, {self.bins}), got {k.min()}..{k.max()}")
        return self.offset + k


def timestep_tokens(vocab: Vocab, obs: np.ndarray, action: np.ndarray, continuous_obs: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and loss mask of timesteps: obs (N, O) and action (N, A) -> (N, O + 1 + A) each,
    ``[obs, SEP, action]`` per row, the mask true on the A action tokens."""
    obs = np.asarray(obs).reshape(len(obs), -1)
    action = np.asarray(action).reshape(len(action), -1)
    o = vocab.continuous(obs) if continuous_obs else vocab.discrete(obs)
    sep = np.full((len(obs), 1), vocab.sep, dtype=np.int64)
    tokens = np.concatenate([o, sep, vocab.discrete(action)], axis=1)
    mask = np.zeros_like(tokens, dtype=bool)
    mask[:, o.shape[1] + 1:] = True
    return tokens, mask


def episode_tokens(vocab: Vocab, obs: np.ndarray, action: np.ndarray, continuous_obs: bool) -> tuple[np.ndarray, np.ndarray]:
    """One episode as a flat stream: timestep after timestep (:func:`timestep_tokens`)."""
    tokens, mask = timestep_tokens(vocab, obs, action, continuous_obs)
    return tokens.reshape(-1), mask.reshape(-1)

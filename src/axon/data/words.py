"""word2vec's data: words, a vocabulary, and (centre, context, negatives) batches for skip-gram and CBOW.

Read by the ``word2vec`` task (``axon.tasks.word2vec``).

Text: ``data.train_file`` (plain UTF-8 text; validated on ``data.val_file`` or on its last 10% of
characters) or, when it is null, the bundled corpus ``data.corpus`` split the same way (nanoGPT's
90/10 rule). Words are maximal runs of letters and digits, with inner apostrophes kept
("o'er", "I'll"), lowercased when ``model.lowercase``.

Vocabulary: the words of the training text seen at least ``model.min_count`` times, most frequent
first (ties alphabetical); other words are dropped from the text, as word2vec.c does. It is saved
as ``vocab.txt`` in the run directory ("word count" per line, word2vec's -save-vocab format);
``axon embed`` reads it back.

A batch row is a random stretch of the word stream, drawn as word2vec.c reads it:

    raw words     w0 w1 w2 w3 w4 w5 w6 w7 w8 ...
    subsampling   each word kept with probability min(1, sqrt(t / f(w)))  (Mikolov et al. 2013b, eq. 5;
                  f = relative frequency, t = model.subsample)
    kept words    k0 k1 k2 k3 k4 ...
    centres       k_W .. k_{W+T-1}  (T = model.block_size, W = model.window)
    window        each centre draws b from 1..W; its contexts are the kept words within distance b
                  (the dynamic window: nearer words count more often, 2013a)
    negatives     K words per (centre, context) pair (skip-gram) or per centre (CBOW), drawn from the
                  unigram distribution ** 0.75 (2013b sec. 2.2)

Batch = (centers (N,), contexts (N, 2W), context_mask (N, 2W) True = a real context, negatives
(N, 2W, K) or (N, K)) with N = batch_size * block_size. Every draw comes from a numpy generator
seeded with (seed, step, micro_step), so a batch is a pure function of its arguments and resume
is exact. The validation set is fixed: batches drawn the same way from the validation words
with fixed seeds.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from axon.data.files import read_text, resolve_file
from axon.errors import DataError

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters/digits, inner apostrophes kept
VOCAB_FILE = "vocab.txt"
EVAL_SEED = 2013  # the validation batches' draws: the same for every run


def words_of(text: str, lowercase: bool = True) -> list[str]:
    """The words of ``text`` (module docstring)."""
    return WORD.findall(text.lower() if lowercase else text)


class Vocabulary:
    """Words by descending count (ties alphabetical); id = position."""

    def __init__(self, words: list[str], counts: list[int]):
        if len(words) != len(counts):
            raise ValueError("one count per word")
        self.words = list(words)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, words: Iterable[str], min_count: int = 1) -> Vocabulary:
        counted = Counter(words)
        kept = sorted(((w, c) for w, c in counted.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
        return cls([w for w, _ in kept], [c for _, c in kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Iterable[str]) -> np.ndarray:
        """Ids of the words in the vocabulary, in order; others are dropped."""
        index = self.index
        return np.fromiter((index[w] for w in words if w in index), dtype=np.int64)

    def save(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{w} {c}\n" for w, c in zip(self.words, self.counts.tolist()))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} not found; a word2vec run directory holds its vocabulary there")
        words, counts = [], []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split(" ")
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(f"{path}:{i}: expected 'word count', got {line!r}")
            words.append(parts[0])
            counts.append(int(parts[1]))
        return cls(words, counts)


# ----------------------------------------------------------------------------------------------


class ContextWindows:
    """word2vec training examples drawn from a stream of word ids (module docstring)."""

    def __init__(self, ids: np.ndarray, counts: np.ndarray, cfg, split: str):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.split = split
        self.mode, self.W, self.K = cfg.mode, cfg.window, cfg.negatives
        freq = counts / counts.sum()  # (V,) relative frequencies in the training text
        self.keep_prob = np.minimum(1.0, np.sqrt(cfg.subsample / freq)) if cfg.subsample > 0 else np.ones_like(freq)
        noise = counts.astype(np.float64) ** cfg.ns_exponent
        self.noise_cdf = np.cumsum(noise / noise.sum())  # (V,) inverse-CDF sampling of negatives
        self.keep_rate = float((freq * self.keep_prob).sum())  # expected share of words kept
        if len(self.ids) < 2 * self.W + 1:
            raise DataError(f"the {split} text has {len(self.ids)} words in the vocabulary; a window of "
                            f"{self.W} on each side needs at least {2 * self.W + 1}")

    def _span(self, block_size: int) -> int:
        """Raw words read per row: enough for block_size centres and their windows after subsampling,
        with a margin (a shortfall only leaves the row's last centres unused)."""
        need = block_size + 2 * self.W
        return min(len(self.ids), math.ceil(1.5 * need / self.keep_rate) + 2 * self.W)

    def _batch(self, starts: np.ndarray, span: int, T: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        W, B = self.W, len(starts)
        raw = self.ids[starts[:, None] + np.arange(span)]  # (B, S)
        keep = rng.random(raw.shape) < self.keep_prob[raw]  # subsampling
        order = np.argsort(~keep, axis=1, kind="stable")  # kept words first, in order
        kept = np.take_along_axis(raw, order, axis=1)  # (B, S); the first n_kept[b] are row b's words
        n_kept = keep.sum(1)
        kept = np.pad(kept, ((0, 0), (0, max(0, T + 2 * W - span))))  # room for every index below
        pos = W + np.arange(T)  # (T,) centre positions among the kept words
        centre_ok = pos[None, :] + W < n_kept[:, None]  # (B, T) a full window of kept words around it
        offsets = np.concatenate([np.arange(-W, 0), np.arange(1, W + 1)])  # (2W,)
        centers = kept[:, pos]  # (B, T)
        contexts = kept[:, pos[:, None] + offsets[None, :]]  # (B, T, 2W)
        reach = rng.integers(1, W + 1, size=(B, T))  # dynamic window b per centre
        mask = (np.abs(offsets)[None, None, :] <= reach[..., None]) & centre_ok[..., None]  # (B, T, 2W)
        shape = (B, T, 2 * W, self.K) if self.mode == "skipgram" else (B, T, self.K)
        negatives = np.searchsorted(self.noise_cdf, rng.random(shape), side="right")
        negatives = np.minimum(negatives, len(self.noise_cdf) - 1)  # guard against cdf[-1] < 1 by rounding
        N = B * T
        return (torch.from_numpy(centers.reshape(N)), torch.from_numpy(contexts.reshape(N, 2 * W)),
                torch.from_numpy(mask.reshape(N, 2 * W)), torch.from_numpy(negatives.reshape(N, *shape[2:])))

    def _starts(self, rng: np.random.Generator, batch_size: int, span: int) -> np.ndarray:
        return rng.integers(0, len(self.ids) - span + 1, size=batch_size)

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0,
                  rank: int = 0, world_size: int = 1):
        """``batch_size`` windows of ``block_size`` centre words, flattened to batch_size * block_size
        examples along dimension 0. With ``world_size`` processes, the windows of one process with
        batch_size * world_size, and rank r's share of its examples (axon.train.distributed.rank_batch
        cannot slice them itself: its rows are windows, these are centre words)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        span = self._span(block_size)
        batch = self._batch(self._starts(rng, batch_size * world_size, span), span, block_size, rng)
        if world_size == 1:
            return batch
        rows = batch_size * block_size
        return tuple(t[rank * rows : (rank + 1) * rows] for t in batch)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple]:
        """Fixed batches: as many as the validation words fill (at least one), fixed seeds."""
        n = max(1, len(self.ids) // (batch_size * block_size))
        if max_batches is not None:
            n = min(n, max_batches)
        span = self._span(block_size)

        def batches():
            for b in range(n):
                rng = np.random.default_rng(np.random.SeedSequence([EVAL_SEED, b]))
                yield self._batch(self._starts(rng, batch_size, span), span, block_size, rng)

        return batches()


# ----------------------------------------------------------------------------------------------


def read_texts(data) -> tuple[str, str, str]:
    """(train text, val text, where they came from) for ``data.train_file`` or the bundled corpus."""
    from axon.data.corpus import corpus_path

    if data.train_file is not None:
        origin = resolve_file(data.train_file, "data.train_file", data)
    else:
        origin = corpus_path(data.corpus)
    text = read_text(origin)
    if data.val_file is not None:
        return text, read_text(resolve_file(data.val_file, "data.val_file", data)), str(origin)
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:], str(origin)


def lookup(vocab: Vocabulary, word: str, lowercase: bool) -> int:
    """The id of a query word; a DataError naming the word if it is not in the vocabulary."""
    w = word.lower() if lowercase else word
    if w not in vocab.index:
        raise DataError(f"{word!r} is not in the vocabulary ({len(vocab):,} words seen at least min_count times"
                        + (", lowercased" if lowercase else "") + ")")
    return vocab.index[w]

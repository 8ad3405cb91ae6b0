"""Sentence pairs for sequence-to-sequence models: special ids, encoding, and batches.

Files: one pair per line, ``source<TAB>target`` (``axon.data.files.read_pairs``); config
``data.train_file`` and ``data.val_file`` (null: every 10th pair of the training file is held
out, as the classify task does); ``bundled:dates/train.tsv`` names a file shipped in the package
(``axon/data/corpus/``). Every line must hold exactly one tab with text on both sides; a side
longer than ``model.block_size`` tokens is an error naming the file and line (nothing is skipped
or truncated silently). ``data.tokenizer``: ``char`` (the characters of both files, both
sides), ``bpe`` (byte-level BPE trained on both sides of the training file, ``data.vocab_size``
ids) or a path to a ``tokenizer.json``. One tokenizer serves source and target, so the model
shares one embedding matrix between them (Vaswani et al. 2017, sec. 3.4).

Special ids come after the tokenizer's own: PAD = V, BOS = V + 1, EOS = V + 2 for a tokenizer of
V ids, so the model's vocabulary is V + 3 and any tokenizer works unchanged (the ids are a
function of the run's tokenizer.json alone). A pair becomes

    src     = x1 .. xm EOS  PAD ..      (B, S)   S = the longest source of the batch
    tgt_in  = BOS y1 .. yn  PAD ..      (B, T)   the decoder's input, shifted right
    tgt_out = y1 .. yn EOS  PAD ..      (B, T)   what it must predict at each position

with m + 1 <= block_size and n + 1 <= block_size. A batch is padded to its own longest pair, so
training batches group pairs of similar length (as fairseq and tensor2tensor batch by length):
the pairs are cut into ``num_buckets`` buckets by source length, a step picks bucket b with
probability |b| / N and draws its pairs uniformly from b, so every pair is still drawn with
probability 1 / N while padding shrinks (on the dates task the encoder reads ~2.5x fewer
positions). The numpy generator is seeded by (seed, step, micro_step), so a batch is a pure
function of its arguments and resume is exact; evaluation walks the pairs in file order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from axon.data.files import Pair, read_pairs, resolve_file
from axon.errors import DataError

#: what a missing data.train_file / data.val_file message suggests
EXAMPLE_FILE = "e.g. bundled:dates/train.tsv, see configs/seq2seq_dates.yaml"


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    bos: int
    eos: int
    vocab_size: int  # the model's vocabulary: the tokenizer's ids plus these three

    @classmethod
    def for_tokenizer(cls, tokenizer) -> SpecialIds:
        V = tokenizer.vocab_size
        return cls(pad=V, bos=V + 1, eos=V + 2, vocab_size=V + 3)

    def strip(self, ids: Sequence[int]) -> list[int]:
        """Generated ids up to the first EOS, special ids dropped: what the tokenizer decodes."""
        out = []
        for t in ids:
            if t == self.eos:
                break
            if t < self.pad:
                out.append(int(t))
        return out


def encode_checked(tokenizer, text: str, block_size: int, what: str) -> np.ndarray:
    """Token ids of ``text``, which with its BOS/EOS must fit in ``block_size``."""
    try:
        ids = tokenizer.encode_array(text)
    except DataError as e:  # e.g. a character outside a char tokenizer's vocabulary
        raise DataError(f"{what}: {e}") from None
    if len(ids) + 1 > block_size:
        raise DataError(f"{what} is {len(ids)} tokens, +1 for BOS/EOS exceeds model.block_size={block_size}; "
                        "shorten it or raise model.block_size")
    if len(ids) == 0:
        raise DataError(f"{what} encodes to no tokens")
    return ids


class PairDataset:
    """Tokenised pairs of one split, batched as (src, tgt_in, tgt_out) (see the module docstring)."""

    def __init__(self, pairs: Sequence[Pair], tokenizer, special: SpecialIds, block_size: int, name: str,
                 num_buckets: int = 8):
        if not pairs:
            raise DataError(f"{name}: no sentence pairs")
        self.pairs, self.special, self.name = list(pairs), special, name
        self.block_size = block_size
        self.src = [encode_checked(tokenizer, p.source, block_size, f"{name}:{p.line}: the source") for p in pairs]
        self.tgt = [encode_checked(tokenizer, p.target, block_size, f"{name}:{p.line}: the target") for p in pairs]
        self.num_tokens = sum(len(t) + 1 for t in self.tgt)  # targets the objective predicts
        # Buckets of similar source length: pair ids sorted by (source, target) length, cut in equal parts.
        by_length = np.lexsort(([len(t) for t in self.tgt], [len(s) for s in self.src]))
        self.buckets = [b for b in np.array_split(by_length, max(1, min(num_buckets, len(pairs)))) if len(b)]
        self._bucket_p = np.array([len(b) for b in self.buckets], dtype=np.float64) / len(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def collate(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pairs ``rows`` -> (src (B, S), tgt_in (B, T), tgt_out (B, T)), int64, right-padded."""
        sp = self.special
        S = max(len(self.src[i]) for i in rows) + 1
        T = max(len(self.tgt[i]) for i in rows) + 1
        src = np.full((len(rows), S), sp.pad, dtype=np.int64)
        tgt_in = np.full((len(rows), T), sp.pad, dtype=np.int64)
        tgt_out = np.full((len(rows), T), sp.pad, dtype=np.int64)
        for b, i in enumerate(rows):
            s, t = self.src[i], self.tgt[i]
            src[b, : len(s)], src[b, len(s)] = s, sp.eos
            tgt_in[b, 0], tgt_in[b, 1 : len(t) + 1] = sp.bos, t
            tgt_out[b, : len(t)], tgt_out[b, len(t)] = t, sp.eos
        return torch.from_numpy(src), torch.from_numpy(tgt_in), torch.from_numpy(tgt_out)

    def _check_block(self, block_size: int) -> None:
        if block_size < self.block_size:
            raise DataError(f"{self.name}: pairs were checked for block_size {self.block_size}, asked for {block_size}")

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int,
                  micro_step: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``batch_size`` pairs of one length bucket (each pair drawn with probability 1 / N,
        with replacement); a pure function of the arguments."""
        self._check_block(block_size)
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        bucket = self.buckets[rng.choice(len(self.buckets), p=self._bucket_p)]
        return self.collate(bucket[rng.integers(0, len(bucket), size=batch_size)].tolist())

    def iter_eval_batches(self, batch_size: int, block_size: int,
                          max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Every pair once, in file order, ``batch_size`` at a time (at most ``max_batches``)."""
        self._check_block(block_size)
        starts = range(0, len(self.pairs), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.collate(range(s, min(s + batch_size, len(self.pairs)))) for s in starts)


def pair_splits(data_cfg) -> tuple[list[Pair], list[Pair], str, str]:
    """(train pairs, val pairs, train name, val name) from ``data.train_file`` / ``data.val_file``."""
    train_path = resolve_file(data_cfg.train_file, "data.train_file", data_cfg, example=EXAMPLE_FILE)
    pairs = read_pairs(train_path)
    if data_cfg.val_file:
        val_path = resolve_file(data_cfg.val_file, "data.val_file", data_cfg, example=EXAMPLE_FILE)
        return pairs, read_pairs(val_path), str(train_path), str(val_path)
    if len(pairs) < 10:
        raise DataError(f"{train_path}: {len(pairs)} pairs are too few to hold out every 10th; give data.val_file")
    # Every 10th pair (lines 10, 20, ...) is held out: deterministic and spread over the file.
    train = [p for i, p in enumerate(pairs) if i % 10 != 9]
    val = [p for i, p in enumerate(pairs) if i % 10 == 9]
    return train, val, str(train_path), str(train_path)


def build_pair_tokenizer(data_cfg, train: Sequence[Pair], val: Sequence[Pair]):
    """One tokenizer for both sides (see the module docstring)."""
    from axon.data.tokenizers import KINDS, build_tokenizer, check_tokenizer_choice

    kind = data_cfg.tokenizer
    check_tokenizer_choice(kind, KINDS)
    if kind == "char":
        texts = [t for p in (*train, *val) for t in (p.source, p.target)]
    else:
        texts = [t for p in train for t in (p.source, p.target)]
    return build_tokenizer(kind, texts, data_cfg.vocab_size)

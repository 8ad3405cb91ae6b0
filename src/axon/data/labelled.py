"""Labelled texts as classification batches: the data of the ``classify`` task (``axon.tasks.classify``).

Each text is encoded ``[CLS] text [SEP]`` (``axon.data.bert_tokens``). Batches follow the
classification contract of every classifier family: (input_ids (B, T) int64, attention_mask
(B, T) bool, True = a real token, labels (B,) int64), right-padded to the longest text of the
batch. Training batches draw ``batch_size`` examples uniformly with replacement from a
generator seeded with (seed, step, micro_step) (exact resume); the validation set is every
validation example, in file order. Texts longer than ``block_size`` tokens ([CLS] and [SEP]
included) are refused unless ``truncate``, which keeps their first block_size - 2 tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from axon.data.bert_tokens import BertTokens, pad_batch
from axon.data.files import Example
from axon.errors import DataError


class LabelledTexts:
    """Encoded examples as classification batches (module docstring)."""

    def __init__(self, seqs: list[list[int]], labels: list[int], pad_id: int):
        if not seqs:
            raise DataError("no examples")
        self.seqs, self.labels, self.pad_id = seqs, np.asarray(labels, dtype=np.int64), pad_id

    def __len__(self) -> int:
        return len(self.seqs)

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = pad_batch([self.seqs[i] for i in rows], self.pad_id)
        return ids, mask, torch.from_numpy(self.labels[np.asarray(rows)])

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return self.batch(rng.integers(0, len(self.seqs), size=batch_size))

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        starts = range(0, len(self.seqs), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.batch(range(s, min(s + batch_size, len(self.seqs)))) for s in starts)


def encode_examples(examples: list[Example], tokens: BertTokens, block_size: int, truncate: bool,
                    source: str) -> tuple[list[list[int]], int]:
    """[CLS] text [SEP] ids of each example, and how many were cut to ``block_size``."""
    seqs, cut = [], 0
    for ex, ids in zip(examples, tokens.encode_batch([e.text for e in examples])):
        if len(ids) + 2 > block_size:
            if not truncate:
                raise DataError(f"{source}:{ex.line}: the text is {len(ids) + 2} tokens with [CLS] and [SEP], more than "
                                f"model.block_size={block_size}; shorten it, raise model.block_size, or set "
                                "data.truncate=true to keep the first tokens")
            ids, cut = ids[: block_size - 2], cut + 1
        seqs.append(tokens.wrap(ids))
    return seqs, cut

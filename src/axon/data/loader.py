"""Batches of token windows for the trainer, reproducible for exact resume and many ranks.

A training batch is ``batch_size`` random windows of ``block_size + 1`` consecutive tokens;
``x`` is each window without its last token and ``y`` without its first, so ``y[b, t]`` is the
token that follows ``x[b, t]`` (nanoGPT's ``get_batch``).

Randomness is a pure function of the arguments: a fresh numpy generator seeded with
``(seed, step, micro_step)`` draws ``world_size * batch_size`` window starts, and rank ``r``
takes draws ``[r * batch_size, (r + 1) * batch_size)``. So

* a run resumed at step ``s`` sees the same batches as one that never stopped, with no sampler
  state to checkpoint;
* the ranks of one step take different draws of one sample, and together they read exactly the
  batch a single process would get with ``batch_size * world_size``.

Windows never cross a shard boundary: a start is drawn uniformly from all positions that
leave ``block_size + 1`` tokens inside the same shard. Shards end on document boundaries or
hold ~10^8 tokens, so the windows lost at the seams do not matter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from axon.data.prepare import load_meta
from axon.data.shards import Shard, read_shard
from axon.errors import DataError


class TokenDataset:
    """The token shards of one split, read through memory maps."""

    def __init__(self, shards: Sequence[Shard], split: str, meta: dict | None = None) -> None:
        if not shards:
            raise DataError(f"the {split!r} split has no token shards")
        vocab_sizes = {s.vocab_size for s in shards}
        if len(vocab_sizes) != 1:
            raise DataError(f"the {split!r} shards disagree on vocab_size: {sorted(vocab_sizes)}")
        self.shards = list(shards)
        self.split = split
        self.meta = meta
        self.source: Path = self.shards[0].path  # named in errors; from_dir: the data directory
        self.vocab_size = vocab_sizes.pop()
        self._lengths = np.array([s.num_tokens for s in self.shards], dtype=np.int64)
        self.num_tokens = int(self._lengths.sum())

    @classmethod
    def from_dir(cls, data_dir: str | Path, split: str, verify: bool = True) -> TokenDataset:
        """Open ``{split}*.bin`` in ``data_dir`` (sorted), or the shards its meta.json lists.

        ``verify`` checks every shard's checksum (a sequential read of the split).
        """
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"data directory not found: {data_dir}")
        meta = load_meta(data_dir)
        if meta is not None:
            # meta.json is written last by prepare, so its list is authoritative.
            splits = meta.get("splits", {})
            if not isinstance(splits.get(split), dict) or not isinstance(splits[split].get("shards"), list):
                raise DataError(f"{data_dir / 'meta.json'}: no {split!r} split (has: {', '.join(splits) or 'none'})")
            paths = [data_dir / name for name in splits[split]["shards"]]
            if not paths:
                raise DataError(f"{data_dir / 'meta.json'}: the {split!r} split lists no token shards; prepare the data again")
        else:
            paths = sorted(data_dir.glob(f"{split}*.bin"))
            if not paths:
                raise DataError(f"{data_dir}: no {split!r} token shards ({split}*.bin); prepare the data first")
        dataset = cls([read_shard(p, verify=verify) for p in paths], split, meta)
        expected = meta["splits"][split].get("num_tokens") if meta is not None else None
        if expected is not None and expected != dataset.num_tokens:
            raise DataError(
                f"{data_dir}: meta.json says the {split!r} split has {expected} tokens, its shards hold {dataset.num_tokens}"
            )
        dataset.source = data_dir
        return dataset

    def check_vocab(self, vocab_size: int, tokenizer_file: str | Path) -> None:
        """Refuse a tokenizer smaller than the shards' vocabulary (their header's vocab_size): the
        model takes its vocabulary from the tokenizer, and a token past it would index beyond the
        embedding in the middle of a step."""
        if self.vocab_size > vocab_size:
            raise DataError(
                f"{tokenizer_file}: the tokenizer has {vocab_size} symbols but the {self.split!r} shards of "
                f"{self.source} were written for {self.vocab_size} (their header's vocab_size); use the "
                f"tokenizer.json the data was prepared with, or prepare the data again with this one"
            )

    def check_windows(self, block_size: int, why: str | None = None) -> None:
        """Refuse, at start-up, a split without one window of ``block_size + 1`` tokens in a shard,
        which the first training step (train) or the first evaluation (val) would otherwise meet.
        ``why``: where the length comes from (default: ``model.block_size=<block_size>``)."""
        if int(self._lengths.max()) <= block_size:
            raise self._too_short(block_size, why)

    def _too_short(self, block_size: int, why: str | None = None) -> DataError:
        longest = f" (its longest shard {int(self._lengths.max())})" if len(self.shards) > 1 else ""
        return DataError(
            f"{self.source}: the {self.split!r} split holds {self.num_tokens} tokens{longest}, but a window of "
            f"{why or f'model.block_size={block_size}'} needs {block_size + 1} tokens in one shard; "
            f"prepare more text for this split or lower model.block_size"
        )

    def _gather(self, shard_ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """Rows ``shards[shard_ids[i]].tokens[starts[i] : starts[i] + length]``, as one array."""
        offsets = np.arange(length)
        if len(self.shards) == 1:
            return np.asarray(self.shards[0].tokens[starts[:, None] + offsets])  # one fancy-index read
        out = np.empty((len(starts), length), dtype=self.shards[0].tokens.dtype)
        for k in np.unique(shard_ids):
            rows = shard_ids == k
            out[rows] = self.shards[k].tokens[starts[rows, None] + offsets]
        return out

    @staticmethod
    def _split_xy(windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(windows[:, :-1].astype(np.int64, order="C"))  # (B, T)
        y = torch.from_numpy(windows[:, 1:].astype(np.int64, order="C"))  # (B, T)
        return x, y

    def get_batch(
        self,
        step: int,
        batch_size: int,
        block_size: int,
        seed: int,
        micro_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random training windows: int64 ``x, y`` of shape (batch_size, block_size).

        The result depends only on the arguments (see the module docstring).
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        counts = np.maximum(self._lengths - block_size, 0)  # valid window starts per shard
        total = int(counts.sum())
        if total == 0:
            raise self._too_short(block_size)
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        draws = rng.integers(0, total, size=world_size * batch_size)[rank * batch_size : (rank + 1) * batch_size]
        # Map a draw in [0, total) to (shard, start): shard k owns draws [ends[k] - counts[k], ends[k]).
        ends = np.cumsum(counts)
        shard_ids = np.searchsorted(ends, draws, side="right")
        starts = draws - (ends - counts)[shard_ids]
        return self._split_xy(self._gather(shard_ids, starts, block_size + 1))

    def _eval_windows(self, block_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(shard id, start) of every consecutive non-overlapping window, in order."""
        per_shard = [np.arange((n - 1) // block_size) * block_size for n in self._lengths]
        shard_ids = np.concatenate([np.full(len(s), k) for k, s in enumerate(per_shard)])
        return shard_ids, np.concatenate(per_shard)

    def num_eval_windows(self, block_size: int) -> int:
        """Windows in :meth:`iter_eval_batches`: ``(num_tokens - 1) // block_size`` per shard."""
        return int(np.sum(np.maximum(self._lengths - 1, 0) // block_size))

    def iter_eval_batches(
        self, batch_size: int, block_size: int, max_batches: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The fixed evaluation set: windows starting at 0, T, 2T, ... of each shard, in order.

        Window ``j`` of a shard has ``x = tokens[jT : jT + T]`` and ``y = tokens[jT + 1 : jT + T + 1]``,
        so every token but the first is predicted exactly once. Batches hold ``batch_size``
        windows (the last may hold fewer); at most ``max_batches`` are yielded.
        """
        if self.num_eval_windows(block_size) == 0:
            raise self._too_short(block_size)  # here, not at the first next()
        shard_ids, starts = self._eval_windows(block_size)
        num_batches = -(-len(starts) // batch_size)
        if max_batches is not None:
            num_batches = min(num_batches, max_batches)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for b in range(num_batches):
                rows = slice(b * batch_size, (b + 1) * batch_size)
                yield self._split_xy(self._gather(shard_ids[rows], starts[rows], block_size + 1))

        return batches()


def open_prepared(data_dir: str | Path) -> tuple:
    """(tokenizer, train split, val split) of a prepared data directory, checked against each other
    at start-up (:meth:`TokenDataset.check_vocab`)."""
    from axon.data.tokenizers import load_tokenizer

    data_dir = Path(data_dir)
    tokenizer = load_tokenizer(data_dir)
    splits = [TokenDataset.from_dir(data_dir, split) for split in ("train", "val")]
    for split in splits:
        split.check_vocab(tokenizer.vocab_size, data_dir / "tokenizer.json")
    return tokenizer, *splits

"""The generalist's data: expert episodes collected seeded, saved as npz, and read as windows.

    seeds (data_seed, task, i) --expert--> episodes --tokens--> stream of the task (tokens, loss mask,
                                                                 where each timestep starts)
    batch row = a window of block_size + 1 tokens: with probability text_share from the corpus
                (every target kept), else from a task drawn uniformly, starting at a timestep

``get_batch`` is a pure function of (seed, step, micro_step), so a resumed run draws the batches
the uninterrupted one drew. Targets that are not action or text tokens are -100 (ignored).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from axon.agents.gato.envs import SPECS, Episode, run_episode
from axon.agents.gato.tokens import Vocab, episode_tokens

IGNORE = -100
EVAL_SEED = 0x6A70


def episode_seed(data_seed: int, task: int, i: int, split: str) -> int:
    """The env seed of episode i of a task: training and validation episodes never share one."""
    return int(np.random.SeedSequence([data_seed, task, i, split == "val"]).generate_state(1)[0])


def collect(envs: list[str], n: int, data_seed: int, split: str, policy: str = "expert") -> dict[str, list[Episode]]:
    return {name: [run_episode(SPECS[name], episode_seed(data_seed, SPECS_ORDER[name], i, split), policy)
                   for i in range(n)] for name in envs}


SPECS_ORDER = {name: i for i, name in enumerate(SPECS)}


def save_episodes(path: str | Path, episodes: dict[str, list[Episode]]) -> None:
    """One npz (no pickle): ``<task>/obs``, ``<task>/actions``, ``<task>/rewards`` concatenated and
    ``<task>/lengths`` per episode; written to a temporary file, then renamed."""
    from axon.atomic import atomic_write_bytes

    arrays = {}
    for name, eps in episodes.items():
        arrays[f"{name}/obs"] = np.concatenate([e.obs for e in eps])
        arrays[f"{name}/actions"] = np.concatenate([e.actions for e in eps])
        arrays[f"{name}/rewards"] = np.concatenate([e.rewards for e in eps])
        arrays[f"{name}/lengths"] = np.array([len(e.actions) for e in eps], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_episodes(path: str | Path) -> dict[str, list[Episode]]:
    with np.load(path, allow_pickle=False) as z:
        names = sorted({k.split("/")[0] for k in z.files})
        out = {}
        for name in names:
            cuts = np.cumsum(z[f"{name}/lengths"])[:-1]
            out[name] = [Episode(o, a, r) for o, a, r in zip(np.split(z[f"{name}/obs"], cuts),
                                                              np.split(z[f"{name}/actions"], cuts),
                                                              np.split(z[f"{name}/rewards"], cuts))]
    return out


@dataclass
class Stream:
    """A task's episodes back to back: tokens (L,), loss mask (L,), timestep starts (S,)."""

    tokens: np.ndarray
    mask: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, vocab: Vocab, name: str, episodes: list[Episode]) -> "Stream":
        spec = SPECS[name]
        parts = [episode_tokens(vocab, e.obs, e.actions, spec.continuous_obs) for e in episodes]
        tokens = np.concatenate([p[0] for p in parts])
        mask = np.concatenate([p[1] for p in parts])
        return cls(tokens, mask, np.arange(0, len(tokens), spec.tokens_per_step))

    def window(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """x = tokens[start : start+length], y = the next tokens, -100 where the mask is false."""
        x = self.tokens[start:start + length]
        y = np.where(self.mask[start + 1:start + length + 1], self.tokens[start + 1:start + length + 1], IGNORE)
        return x, y

    def valid_starts(self, length: int) -> np.ndarray:
        return self.starts[self.starts + length + 1 <= len(self.tokens)]


class GatoWindows:
    """Batches (x, y) of windows from the task streams and the corpus (module docstring)."""

    def __init__(self, streams: dict[str, Stream], text: np.ndarray, text_share: float):
        self.streams, self.names = streams, list(streams)
        self.text, self.text_share = text, text_share

    def check(self, block_size: int, what: str) -> None:
        from axon.errors import DataError

        for name, s in self.streams.items():
            if not len(s.valid_starts(block_size)):
                raise DataError(f"{what}: the {name} episodes hold {len(s.tokens)} tokens, fewer than a window of "
                                f"model.block_size + 1 = {block_size + 1}; collect more episodes or shorten the window")

    def _row(self, rng: np.random.Generator, block_size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.text_share > 0 and rng.random() < self.text_share:
            i = int(rng.integers(len(self.text) - block_size - 1))
            return self.text[i:i + block_size], self.text[i + 1:i + block_size + 1]
        stream = self.streams[self.names[int(rng.integers(len(self.names)))]]
        starts = stream.valid_starts(block_size)
        return stream.window(int(starts[int(rng.integers(len(starts)))]), block_size)

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        rows = [self._row(rng, block_size) for _ in range(batch_size)]
        return (torch.from_numpy(np.stack([r[0] for r in rows]).astype(np.int64)),
                torch.from_numpy(np.stack([r[1] for r in rows]).astype(np.int64)))

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple]:
        n = 4 if max_batches is None else max_batches
        for b in range(n):
            yield self.get_batch(b, batch_size, block_size, EVAL_SEED)

"""Strict tensor bookkeeping shared by the key maps.

A conversion must use every tensor of the checkpoint and fill every parameter of the model, with
the right shapes; a silent partial load (a renamed key dropped, a bias left at its init) would
give a model that runs and is wrong. ``Source`` hands out tensors by name and remembers which
were taken; ``finish`` refuses leftovers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

from axon.errors import CheckpointError


class Source:
    """The tensors of one checkpoint, taken by name (``prefix`` is tried first, then no prefix)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], origin: str, prefixes: Iterable[str] = ("",),
                 ignore: Iterable[str] = (), dtype: torch.dtype | None = torch.float32):
        self.tensors = dict(tensors)
        self.origin = origin
        self.dtype = dtype
        found = [p for p in prefixes if p and any(k.startswith(p) for k in self.tensors)]
        self.prefix = found[0] if found else ""
        self.ignore = [re.compile(p) for p in ignore]
        self.taken: set[str] = set()

    def has(self, name: str) -> bool:
        return self._key(name) in self.tensors

    def _key(self, name: str) -> str:
        if name.startswith("/"):  # outside the base model's prefix (e.g. lm_head.weight)
            return name[1:]
        return self.prefix + name

    def take(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        key = self._key(name)
        if key not in self.tensors:
            raise CheckpointError(f"{self.origin}: tensor {key!r} is missing")
        t = self.tensors[key]
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f"{self.origin}: tensor {key!r} has shape {tuple(t.shape)}; the config needs {tuple(shape)}")
        self.taken.add(key)
        return t.to(self.dtype) if self.dtype is not None and t.is_floating_point() else t

    def finish(self) -> None:
        """Every tensor taken, or matching an ignore pattern (derived buffers such as causal masks)."""
        left = sorted(k for k in self.tensors if k not in self.taken and not any(p.fullmatch(k) for p in self.ignore))
        if left:
            more = f" and {len(left) - 5} more" if len(left) > 5 else ""
            raise CheckpointError(f"{self.origin}: tensors with no place in the model: {', '.join(left[:5])}{more}")


def head(src: Source, vocab_size: int, n_embd: int, tied: bool, embedding: torch.Tensor,
         name: str = "/lm_head.weight") -> torch.Tensor:
    """The output projection: its own tensor, or the token embedding when tied. A tied model
    exported from memory may list the shared matrix under both names; then they must be equal."""
    shape = (vocab_size, n_embd)
    if not tied:
        return src.take(name, shape)
    if src.has(name):
        t = src.take(name, shape)
        if not torch.equal(t, embedding):
            raise CheckpointError(f"{src.origin}: {name.lstrip('/')} differs from the token embedding, "
                                  "but the config ties them (tie_word_embeddings)")
    return embedding


def fill(model: torch.nn.Module, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Copy ``state`` into ``model``: every parameter filled, nothing left over, shapes equal."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:  # a key map bug rather than a user error: keep the traceback
        raise RuntimeError(f"{origin}: key map incomplete (missing {missing[:5]}, extra {extra[:5]})")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"{origin}: {k} has shape {tuple(v.shape)}; the model needs {tuple(own[k].shape)}")
    model.load_state_dict(dict(state), strict=True)

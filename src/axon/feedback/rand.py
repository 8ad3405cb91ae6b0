"""Seeded draws that give the same values on every Python version and machine.

The bundled dataset is checked byte for byte against a fresh regeneration (tests/feedback), so
its draws must not depend on the interpreter. Python guarantees only two things of ``random``
across versions: seeding with an int, and the stream of ``Random.random()`` (the docs' "notes on
reproducibility"); ``choice``, ``shuffle`` and ``randrange`` have changed before. numpy's
``Generator`` makes no promise either. So every draw here is built on ``random()`` alone:

    below(n) = floor(random() * n)        (a double has 53 random bits; n is at most a few thousand)

and each item gets its own stream, seeded by a hash of ``(seed, *keys)``: item i's draws do not
depend on how many items came before it, nor on how many draws another item made.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def stream_seed(seed: int, *keys) -> int:
    """A 64-bit seed for the stream named by ``(seed, *keys)`` (sha256 of their text)."""
    text = "/".join(str(k) for k in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class Draw:
    """One seeded stream: ``Draw(seed, "instructions", i)``."""

    def __init__(self, seed: int, *keys):
        self._r = random.Random(stream_seed(seed, *keys))

    def random(self) -> float:
        """Uniform on [0, 1)."""
        return self._r.random()

    def below(self, n: int) -> int:
        """Uniform on {0, ..., n - 1}."""
        if n < 1:
            raise ValueError(f"below({n}): need n >= 1")
        return min(int(self._r.random() * n), n - 1)

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]

    def bernoulli(self, p: float) -> bool:
        """True with probability ``p``."""
        return self._r.random() < p

    def shuffled(self, seq: Sequence[T]) -> list[T]:
        """A uniformly random permutation (Fisher-Yates)."""
        out = list(seq)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        """``k`` distinct items, in random order."""
        return self.shuffled(seq)[:k]

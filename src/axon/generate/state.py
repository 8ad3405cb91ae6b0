"""The cache of a recurrent family: the state after the tokens seen so far.

A recurrent model (RNN, LSTM, GRU) summarises everything it has read in a fixed-size state, so
generation carries that state from call to call instead of keys and values. The cache offers the
interface every decoding function uses (``axon.generate.cache``): the model's forward continues
from ``cache.state`` and stores the new one; ``length`` counts the tokens seen; ``reorder`` keeps
or duplicates sequences (beam search); ``crop`` forgets the last tokens (speculative decoding's
rejected drafts).

Cropping a state: a recurrent state cannot be "un-read". The cache keeps the state at the end
of each forward call (a snapshot; the tensors the model returned, no copy) and the token ids
read since the oldest kept snapshot. ``crop(n)`` restores the newest snapshot at or before
position n and leaves the tokens between it and n *pending*: the model's next forward reads
them first, in the same call as its new tokens, and returns logits for the new tokens only.

    tokens   t0 t1 t2 | t3 t4 t5 | t6 t7 t8     three forward calls; snapshots after t2, t5, t8
    crop(7)  -> state after t5 restored, t6 pending; length = 7
    next forward(x) reads t6 x, returns the logits of x

Snapshots are kept for the last ``max_crop`` tokens (plus the one just before them), so a crop
back by at most ``max_crop`` tokens always works; one further back is a ValueError. Speculative
decoding only crops inside its last few forward calls (at most ``num_draft`` tokens back).

Padding: ``pad_mask`` (B, T), True for real tokens, marks left padding of a prompt batch; the
model must leave a sequence's state unchanged at its pad positions (see ``axon.models.rnn``).
The mask of every kept token is stored too, so replayed tokens are masked the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

State = tuple[torch.Tensor, ...]


class RecurrentStateCache:
    """The recurrent state of a batch of sequences (one or more tensors, e.g. LSTM's (h, c)).

    ``state``: tensors with the batch along dimension ``batch_dim``, e.g. (n_layer, B, hidden)
    for ``torch.nn.LSTM``; the initial state (zeros for a fresh sequence).
    """

    def __init__(self, state: Sequence[torch.Tensor], batch_dim: int = 1, max_crop: int = 64):
        if max_crop < 0:
            raise ValueError(f"max_crop must be >= 0, got {max_crop}")
        self.state: State = tuple(state)
        self.batch_dim = batch_dim
        self.max_crop = max_crop
        self.length = 0  # tokens the cache stands for (read into the state, or pending)
        B = self.state[0].size(batch_dim)
        device = self.state[0].device
        self._applied = 0  # tokens read into ``state``; tokens [_applied, length) are pending
        self._base = 0  # position of the first kept token (= the oldest snapshot's)
        self._tokens = torch.zeros(B, 0, dtype=torch.long, device=device)  # (B, length - base)
        self._valid = torch.ones(B, 0, dtype=torch.bool, device=device)  # (B, length - base), False = padding
        # (position, state after it), increasing; the last one is always (_applied, state)
        self._snapshots: list[tuple[int, State]] = [(0, self.state)]

    @property
    def batch_size(self) -> int:
        return self.state[0].size(self.batch_dim)

    # --- the model's side ---------------------------------------------------------------------

    def begin(self, idx: torch.Tensor, pad_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None, int, State]:
        """What the model's forward reads for new tokens ``idx`` (B, T).

        Returns (tokens (B, n + T), their pad mask or None when every one is real, n, state):
        the ``n`` pending tokens left by a crop come first, and the model returns logits for
        the last T only. Call :meth:`commit` with the new state when done.
        """
        n = self.length - self._applied
        if n == 0:
            mask = None if pad_mask is None or bool(pad_mask.all()) else pad_mask.bool()
            return idx, mask, 0, self.state
        start = self._applied - self._base
        tokens = torch.cat([self._tokens[:, start:], idx], dim=1)
        new_mask = torch.ones_like(idx, dtype=torch.bool) if pad_mask is None else pad_mask.bool()
        mask = torch.cat([self._valid[:, start:], new_mask], dim=1)
        return tokens, (None if bool(mask.all()) else mask), n, self.state

    def commit(self, state: Sequence[torch.Tensor], idx: torch.Tensor, pad_mask: torch.Tensor | None = None) -> None:
        """The forward that read ``idx`` (B, T) (after any pending tokens) left ``state``."""
        T = idx.size(1)
        self.state = tuple(state)
        self._tokens = torch.cat([self._tokens, idx], dim=1)
        valid = torch.ones_like(idx, dtype=torch.bool) if pad_mask is None else pad_mask.bool()
        self._valid = torch.cat([self._valid, valid], dim=1)
        self.length += T
        self._applied = self.length
        self._snapshots.append((self.length, self.state))
        # Keep every snapshot after length - max_crop, and the newest one at or before it, so
        # any crop back by at most max_crop tokens finds a snapshot at or before its target.
        horizon = self.length - self.max_crop
        first = max([i for i, (pos, _) in enumerate(self._snapshots) if pos <= horizon], default=0)
        if first > 0:
            self._snapshots = self._snapshots[first:]
            drop = self._snapshots[0][0] - self._base
            self._tokens, self._valid = self._tokens[:, drop:], self._valid[:, drop:]
            self._base = self._snapshots[0][0]

    # --- the caller's side --------------------------------------------------------------------

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/duplicate sequences by batch ``index`` (beam search); the batch size may change."""
        d = self.batch_dim
        self._snapshots = [(pos, tuple(s.index_select(d, index) for s in st)) for pos, st in self._snapshots]
        self.state = self._snapshots[-1][1]  # the newest snapshot is always the current state
        self._tokens = self._tokens.index_select(0, index)
        self._valid = self._valid.index_select(0, index)

    def crop(self, length: int) -> None:
        """Forget every token from ``length`` on (rejected speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of length {self.length} to {length}")
        if length == self.length:
            return
        kept = [(pos, st) for pos, st in self._snapshots if pos <= length]
        if not kept:
            raise ValueError(
                f"a recurrent state cache can go back at most {self.max_crop} tokens (to position "
                f"{self._snapshots[0][0]}); cannot crop {self.length} tokens to {length}"
            )
        pos, state = kept[-1]
        self._snapshots = kept
        self.state = state
        self._applied = pos
        self.length = length
        self._tokens = self._tokens[:, : length - self._base]
        self._valid = self._valid[:, : length - self._base]

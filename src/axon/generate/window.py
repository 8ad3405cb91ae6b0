"""A KV cache bounded by the attention window: a ring buffer for sliding-window models.

With sliding-window attention (``axon.nn.masks``: query i sees keys i - window < j <= i) a key
older than ``window`` positions is never read again, so a sequence needs only its last
``window`` keys per layer: memory O(window) instead of O(tokens), and decoding may go on past the
cache's size (Mistral 7B, Jiang et al. 2023, sec. 2, "Rolling Buffer Cache"). Token number t of
the stream (padding included) lives in slot ``t % size``, and ``pos`` remembers which position
each slot holds; the attention mask is built from those positions, never from slot numbers.

    size = 6 slots, window = 4, after 9 tokens (positions 0..8):

    slot:      0  1  2  3  4  5
    position:  6  7  8  3  4  5       the next query (position 9) attends to positions 6, 7, 8
                                      and itself; slots holding 3..5 are masked, then overwritten

A forward of T new tokens attends over [the ring as it was, the T new keys] (size + T keys), so
a prompt longer than the ring is read in one forward; then the last min(T, size) new keys are
written into their slots. The ring has ``window + max_crop`` slots (fewer when ``max_len`` is
smaller, i.e. the sequence will never be longer): the ``max_crop`` spare slots let speculative
decoding crop back rejected tokens, which needs the ``window`` keys before the crop point still
in the ring. ``crop`` further back than the ring remembers raises a ValueError that says so.

The interface is that of ``axon.generate.cache`` (prepare / update / commit for the model;
length, reorder, crop for callers), with padded prompt batches through ``pad_mask``.
"""

from __future__ import annotations

import torch

from axon.nn.masks import sliding_window_allowed


class WindowCache:
    """Ring-buffer keys/values of every layer for a model whose every layer attends within
    ``window`` (see module doc). ``length`` counts every token fed (padding included) and is not
    bounded by the ring's size."""

    masks_window = True  # prepare() returns the sliding-window mask itself (read by the decoder)

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, head_dim: int, window: int,
                 max_len: int | None = None, max_crop: int = 16,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        if window < 1 or max_crop < 0:
            raise ValueError(f"window ({window}) must be >= 1 and max_crop ({max_crop}) >= 0")
        size = window + max_crop if max_len is None else max(1, min(max_len, window + max_crop))
        shape = (n_layer, batch_size, n_kv_head, size, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, nkv, size, hs)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.pos = torch.full((batch_size, size), -1, dtype=torch.long, device=device)  # -1: empty or padding
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)  # position of the next real token
        self.window, self.size = window, size
        self.length = 0  # tokens fed so far
        self._written = 0  # 1 + the highest token number ever written (crop does not lower it)
        self.padded = False  # any padding so far? (then positions differ per sequence)
        self._pending = None

    @property
    def batch_size(self) -> int:
        return self.pos.size(0)

    @property
    def nbytes(self) -> int:
        """Bytes held by the keys and values (what grows with a dense cache's length)."""
        return self.k.nbytes + self.v.nbytes

    def _check_holds(self, length: int, what: str) -> None:
        """The ring must still hold tokens length - window + 1 .. length - 1 (the next query's keys)."""
        oldest = max(0, self._written - self.size)  # the oldest token number not yet overwritten
        if max(0, length - self.window + 1) < oldest:
            raise ValueError(
                f"{what}: the sliding-window cache keeps {self.size} slots (window {self.window} + "
                f"{self.size - self.window} spare), so it can go back at most {self.size - self.window + 1} "
                f"tokens from the newest; build it with a larger max_crop"
            )

    # --- the model's side ---------------------------------------------------------------------

    def prepare(self, T: int, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor | int, torch.Tensor]:
        """Claim T new tokens; return their positions (an int start while no sequence has padding,
        else (B, T)) and the mask (B, 1, T, size + T) over [ring slots, new tokens]."""
        L, B, dev = self.length, self.batch_size, self.pos.device
        self._check_holds(L, "cannot continue")
        real = torch.ones(B, T, dtype=torch.bool, device=dev) if pad_mask is None else pad_mask.bool()
        if pad_mask is not None and not bool(real.all()):
            self.padded = True
        positions = (self.next_pos[:, None] + real.long().cumsum(1) - 1).clamp(min=0)  # (B, T); a leading pad's is unused
        new_pos = torch.where(real, positions, -1)
        k_pos = torch.cat([self.pos, new_pos], dim=1)  # (B, size + T)
        mask = sliding_window_allowed(positions[:, :, None], k_pos[:, None, :], self.window) & (k_pos >= 0)[:, None, :]
        # A pad query has no real key; letting it see its own slot keeps softmax finite.
        mask[:, torch.arange(T, device=dev), self.size + torch.arange(T, device=dev)] = True
        n = min(T, self.size)  # only the last n new tokens stay in the ring
        slots = torch.arange(L + T - n, L + T, device=dev) % self.size
        self._pending = (T, slots, new_pos[:, T - n:], real.sum(1))
        return (L if not self.padded else positions), mask[:, None]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New keys/values (B, nkv, T, hs) -> [ring, new] (B, nkv, size + T, hs); the newest go in the ring."""
        T, slots, _, _ = self._pending
        keys, values = self.k[layer], self.v[layer]  # (B, nkv, size, hs)
        out = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)  # read before overwriting
        keys.index_copy_(2, slots, k[:, :, T - slots.numel():])
        values.index_copy_(2, slots, v[:, :, T - slots.numel():])
        return out

    def commit(self) -> None:
        T, slots, new_pos, n_real = self._pending
        self.pos[:, slots] = new_pos
        self.next_pos += n_real
        self.length += T
        self._written = max(self._written, self.length)
        self._pending = None

    # --- the caller's side --------------------------------------------------------------------

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/duplicate sequences by batch ``index`` (beam search); the batch size may change."""
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
        self.pos = self.pos.index_select(0, index)
        self.next_pos = self.next_pos.index_select(0, index)

    def crop(self, length: int) -> None:
        """Forget tokens ``length`` .. self.length - 1 (rejected speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of length {self.length} to {length}")
        self._check_holds(length, f"cannot crop back from {self.length} to {length} tokens")
        slots = torch.arange(length, self.length, device=self.pos.device) % self.size
        self.next_pos -= (self.pos[:, slots] >= 0).sum(1)
        self.pos[:, slots] = -1
        self.length = length

"""Caches that let a decoder process only its new tokens at each step.

A family plugs into generation through the cache it builds (``model.make_cache``) and the
keywords of its forward: ``model(idx, cache=cache)`` processes ``idx`` as the continuation of
everything the cache has seen and returns logits for the new tokens only; ``pad_mask`` marks
left padding of a prompt batch, and ``last_only=True`` asks for the last position's logits. Callers (sampling,
beam search, speculative decoding) never look inside: they create, ``reorder`` (beams) and
``crop`` (rejected draft tokens) caches through this small interface, which a recurrent state
cache (Mamba) implements as well.

Batches of prompts of different lengths are left-padded so that every sequence's newest token
sits in the same slot; ``valid`` marks which slots hold real tokens, and each sequence counts its
own positions, so RoPE and learned positions see 0, 1, 2, ... whatever the padding.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every attention layer, preallocated for ``max_len`` slots.

    Only ``n_kv_head`` heads are stored, so grouped-query and multi-query attention shrink the
    cache by n_head / n_kv_head (the point of the GQA paper, Ainslie et al. 2023).
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, head_dim: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, nkv, S_max, hs)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)  # real token in slot?
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)  # position id of the next token
        self.length = 0  # slots filled
        self.max_len = max_len
        self.padded = False  # any padding slot in the batch (then attention needs an explicit mask)
        self._pending = 0

    @property
    def batch_size(self) -> int:
        return self.valid.size(0)

    @staticmethod
    def bytes_per_token(n_layer: int, n_kv_head: int, head_dim: int, dtype: torch.dtype = torch.float32) -> int:
        """Cache bytes one token costs: keys and values of every layer's kv heads."""
        return 2 * n_layer * n_kv_head * head_dim * torch.finfo(dtype).bits // 8

    # --- the model's side ---------------------------------------------------------------------

    def prepare(self, T: int, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Claim slots for ``T`` new tokens; return their positions (B, T) and the attention mask.

        ``pad_mask`` (B, T), True for real tokens, marks left padding of a prompt batch. The mask
        is None when plain causal attention is right (no padding anywhere: ``is_causal`` for a
        fresh cache, nothing at all for one new token); otherwise a boolean (B, 1, T, S) mask,
        True where query i may attend key j: j is a real token at or before i.
        """
        L = self.length
        if L + T > self.max_len:
            raise ValueError(f"cache holds {self.max_len} positions; {L} used, {T} more requested")
        if pad_mask is None:  # the common case, kept cheap: it runs once per decoded token
            self.valid[:, L : L + T] = True
            positions = self.next_pos[:, None] + torch.arange(T, device=self.valid.device)  # (B, T)
            self.next_pos += T
        else:
            pad_mask = pad_mask.bool()
            self.valid[:, L : L + T] = pad_mask
            positions = (self.next_pos[:, None] + pad_mask.long().cumsum(1) - 1).clamp(min=0)  # a leading pad's is unused
            self.next_pos += pad_mask.sum(1)
            self.padded = self.padded or not bool(pad_mask.all())
        self._pending = T
        S = L + T
        if not self.padded and (L == 0 or T == 1):
            return positions, None
        valid = self.valid[:, :S]
        causal = torch.ones(T, S, dtype=torch.bool, device=valid.device).tril(diagonal=L)  # query i is slot L + i
        mask = causal[None] & valid[:, None, :]  # (B, T, S)
        # A pad query has no real key before it; letting it see itself keeps softmax finite.
        mask[:, torch.arange(T), torch.arange(L, S)] = True
        return positions, mask[:, None]  # (B, 1, T, S)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, nkv, T, hs); return all of them so far (B, nkv, S, hs)."""
        L, T = self.length, k.size(2)
        self.k[layer, :, :, L : L + T] = k
        self.v[layer, :, :, L : L + T] = v
        return self.k[layer, :, :, : L + T], self.v[layer, :, :, : L + T]

    def commit(self) -> None:
        """The forward that called ``prepare`` is done: its slots are now part of the context."""
        self.length += self._pending
        self._pending = 0

    # --- the caller's side --------------------------------------------------------------------

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/duplicate sequences by batch ``index`` (beam search); the batch size may change."""
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
        self.valid = self.valid.index_select(0, index)
        self.next_pos = self.next_pos.index_select(0, index)

    def crop(self, length: int) -> None:
        """Forget every slot from ``length`` on (rejected speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of length {self.length} to {length}")
        self.next_pos -= self.valid[:, length : self.length].sum(1)
        self.valid[:, length:] = False
        self.length = length

"""Caches that let a decoder process only its new tokens at each step.

A family plugs into generation through the cache it builds (``model.make_cache(batch_size,
max_len)``, ``max_len`` the most tokens a sequence will hold, which a state cache may ignore) and
the keywords of its forward: ``model(idx, cache=cache)`` processes ``idx`` as the continuation of
everything the cache has seen and returns logits for the new tokens only; ``pad_mask`` marks
left padding of a prompt batch, and ``last_only=True`` asks for the last position's logits. Callers (sampling,
beam search, speculative decoding) never look inside: they create, ``reorder`` (beams) and
``crop`` (rejected draft tokens) caches through this small interface, which a recurrent state
cache (Mamba) implements as well.

Batches of prompts of different lengths are left-padded so that every sequence's newest token
sits in the same slot; ``valid`` marks which slots hold real tokens, and each sequence counts its
own positions, so RoPE and learned positions see 0, 1, 2, ... whatever the padding.

Context limit: the decoding functions read it with :func:`context_limit`, which is
``model.config.block_size`` unless the config declares ``context_limit`` (None: no limit, as for
a recurrent family, whose block_size is only its training window; see ``axon.generate.state``).
"""

from __future__ import annotations

import torch


def context_limit(model) -> int | None:
    """The most tokens a sequence may hold when ``model`` decodes (None: no limit).

    ``model.config.context_limit`` when the config declares one, else ``model.config.block_size``
    (None when neither exists)."""
    cfg = getattr(model, "config", None)
    if hasattr(cfg, "context_limit"):
        return cfg.context_limit
    return getattr(cfg, "block_size", None)


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
        self._layers = list(zip(self.k.unbind(0), self.v.unbind(0)))  # per-layer views, made once
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)  # real token in slot?
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)  # position id of the next token
        self.length = 0  # slots filled
        self.max_len = max_len
        # Any padding slot in the batch? Until there is one, every slot holds a real token, so
        # slot number = position for every sequence and ``valid``/``next_pos`` need no upkeep:
        # a decode step then costs no tensor ops here at all.
        self.padded = False
        self._pending = 0

    @property
    def batch_size(self) -> int:
        return self.valid.size(0)

    @staticmethod
    def bytes_per_token(n_layer: int, n_kv_head: int, head_dim: int, dtype: torch.dtype = torch.float32) -> int:
        """Cache bytes one token costs: keys and values of every layer's kv heads."""
        return 2 * n_layer * n_kv_head * head_dim * torch.finfo(dtype).bits // 8

    # --- the model's side ---------------------------------------------------------------------

    def prepare(self, T: int, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor | int, torch.Tensor | None]:
        """Claim slots for ``T`` new tokens; return their positions and the attention mask.

        ``pad_mask`` (B, T), True for real tokens, marks left padding of a prompt batch.
        Positions are an int (the first new token's position, the same for every sequence) while
        the batch has no padding, else a (B, T) tensor. The mask is None when plain causal
        attention is right (no padding: ``is_causal`` for a fresh cache, nothing at all for one
        new token); otherwise a boolean (B or 1, 1, T, S) mask, True where query i may attend
        key j: j is a real token at or before i.
        """
        L = self.length
        if L + T > self.max_len:
            raise ValueError(f"cache holds {self.max_len} positions; {L} used, {T} more requested")
        self._pending = T
        S = L + T
        if not self.padded and (pad_mask is None or bool(pad_mask.all())):
            if L == 0 or T == 1:
                return L, None
            causal = torch.ones(T, S, dtype=torch.bool, device=self.k.device).tril(diagonal=L)  # query i is slot L + i
            return L, causal[None, None]
        if not self.padded:  # the first padding: write down what was implicit so far
            self.valid[:, :L] = True
            self.next_pos.fill_(L)
            self.padded = True
        if pad_mask is None:
            self.valid[:, L:S] = True
            positions = self.next_pos[:, None] + torch.arange(T, device=self.valid.device)  # (B, T)
            self.next_pos += T
        else:
            pad_mask = pad_mask.bool()
            self.valid[:, L:S] = pad_mask
            positions = (self.next_pos[:, None] + pad_mask.long().cumsum(1) - 1).clamp(min=0)  # a leading pad's is unused
            self.next_pos += pad_mask.sum(1)
        valid = self.valid[:, :S]
        causal = torch.ones(T, S, dtype=torch.bool, device=valid.device).tril(diagonal=L)
        mask = causal[None] & valid[:, None, :]  # (B, T, S)
        # A pad query has no real key before it; letting it see itself keeps softmax finite.
        mask[:, torch.arange(T), torch.arange(L, S)] = True
        return positions, mask[:, None]  # (B, 1, T, S)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, nkv, T, hs); return all of them so far (B, nkv, S, hs)."""
        L, T = self.length, k.size(2)
        keys, values = self._layers[layer]
        keys[:, :, L : L + T] = k
        values[:, :, L : L + T] = v
        return keys[:, :, : L + T], values[:, :, : L + T]

    def commit(self) -> None:
        """The forward that called ``prepare`` is done: its slots are now part of the context."""
        self.length += self._pending
        self._pending = 0

    # --- the caller's side --------------------------------------------------------------------

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/duplicate sequences by batch ``index`` (beam search); the batch size may change."""
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
        self._layers = list(zip(self.k.unbind(0), self.v.unbind(0)))
        self.valid = self.valid.index_select(0, index)
        self.next_pos = self.next_pos.index_select(0, index)

    def crop(self, length: int) -> None:
        """Forget every slot from ``length`` on (rejected speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of length {self.length} to {length}")
        if self.padded:
            self.next_pos -= self.valid[:, length : self.length].sum(1)
            self.valid[:, length:] = False
        self.length = length

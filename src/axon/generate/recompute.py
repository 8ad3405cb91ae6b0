"""RecomputeCache: for models without incremental decoding.

Some families have no cheap way to continue a sequence token by token (the convolution-attention
model shortens groups of k tokens, so every level would need its own cache and a rule for
half-filled groups). This cache lets such a family use every decoding function anyway (sampling,
beam search, speculative decoding; the interface of ``axon.generate.cache``): it keeps the token
ids seen so far and, at each call, re-runs the model's plain causal forward over the whole
sequence, returning logits for the new tokens only. Each step costs a full forward instead of
one token's work, which is fine for sampling during training and for tests; it is exact.

The model's side, inside its forward::

    if cache is not None:
        return cache.forward(self, idx, pad_mask, last_only)   # calls self(ids) with cache=None

Left padding. A prompt batch arrives left-padded (``pad_mask`` (B, T), True for real tokens) and
the model's plain forward has no pad mask. Because the model is causal, padding placed *after* a
sequence's real tokens changes none of their logits, so each step packs every sequence's real
tokens to the left (a stable sort of the slots by "is padding"), runs one batched forward over
(B, longest real length), and reads each new slot's logits at its token's packed index:

    slots    [pad pad  a   b ] [ c   d   e   f ]        cache rows, left-padded
    packed   [ a   b  pad pad] [ c   d   e   f ]        one forward; row 0's pads come after b
    logits of slot 3 (b) = packed row 0, index 1

So a left-padded batch gives exactly the logits of separate unpadded calls (test). Logits at a
padding slot are zeros (no caller reads them).

Context: the cache holds at most ``max_len`` tokens (the model caps it at its block_size), and
never slides a window: as with the KV cache, no token is ever computed at a wrong position.
"""

from __future__ import annotations

import torch


class RecomputeCache:
    """Token ids (and which slots are real) of a batch of sequences; see the module doc."""

    def __init__(self, batch_size: int, max_len: int, device: torch.device | str = "cpu"):
        self.tokens = torch.zeros(batch_size, 0, dtype=torch.long, device=device)  # (B, length)
        self.valid = torch.ones(batch_size, 0, dtype=torch.bool, device=device)  # (B, length), False = padding
        self.max_len = max_len

    @property
    def length(self) -> int:
        return self.tokens.size(1)

    @property
    def batch_size(self) -> int:
        return self.tokens.size(0)

    # --- the model's side ---------------------------------------------------------------------

    def forward(self, model, idx: torch.Tensor, pad_mask: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Append ``idx`` (B, T) and return the logits of its slots, (B, T, V) or (B, 1, V).

        ``model(ids)`` (no cache) must be a causal forward: ids (B, S) -> logits (B, S, V).
        """
        T, L = idx.size(1), self.length
        if L + T > self.max_len:
            raise ValueError(f"cache holds {self.max_len} positions; {L} used, {T} more requested")
        new_valid = torch.ones_like(idx, dtype=torch.bool) if pad_mask is None else pad_mask.bool()
        self.tokens = torch.cat([self.tokens, idx], dim=1)
        self.valid = torch.cat([self.valid, new_valid], dim=1)
        slots = slice(L + T - 1, L + T) if last_only else slice(L, L + T)
        if bool(self.valid.all()):  # no padding anywhere: one plain forward
            return model(self.tokens)[:, slots]
        # Pack real tokens to the left; a stable sort keeps their order.
        order = torch.sort((~self.valid).to(torch.uint8), dim=1, stable=True).indices  # (B, S)
        n_real = self.valid.sum(1)  # (B,)
        width = int(n_real.max())
        packed = self.tokens.gather(1, order)[:, :width]  # (B, width); pads after each row's real ones
        logits = model(packed)  # (B, width, V)
        # Packed index of slot j = (real tokens at or before j) - 1.
        rank = self.valid.long().cumsum(1)[:, slots] - 1  # (B, n)
        out = logits.gather(1, rank.clamp(min=0)[..., None].expand(-1, -1, logits.size(-1)))
        return out.masked_fill(~self.valid[:, slots, None], 0.0)

    # --- the caller's side --------------------------------------------------------------------

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/duplicate sequences by batch ``index`` (beam search); the batch size may change."""
        self.tokens = self.tokens.index_select(0, index)
        self.valid = self.valid.index_select(0, index)

    def crop(self, length: int) -> None:
        """Forget every slot from ``length`` on (rejected speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of length {self.length} to {length}")
        self.tokens = self.tokens[:, :length]
        self.valid = self.valid[:, :length]

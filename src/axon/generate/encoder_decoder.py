"""The cache of an encoder-decoder (seq2seq) model's decoder, behind the usual cache interface.

Decoding a target conditioned on an encoded source needs two kinds of keys and values:

- the decoder's self-attention keys/values, which grow by one slot per generated token: exactly
  a :class:`~axon.generate.cache.KVCache` (this class is one);
- the cross-attention keys/values of every decoder layer, projections of the encoder output
  (the memory), which never change while decoding: computed once when the cache is made and
  stored here, (B, nh, S, hs) per layer, with the source's key padding mask (B, 1, 1, S).

``reorder(index)`` (beam search) reorders both, so a beam that continues another beam also
continues that beam's source; ``crop`` forgets decoder slots only, as the memory has no steps.
"""

from __future__ import annotations

import torch

from axon.generate.cache import KVCache


class EncoderDecoderCache(KVCache):
    def __init__(self, n_layer: int, batch_size: int, n_head: int, head_dim: int, max_len: int,
                 cross: list[tuple[torch.Tensor, torch.Tensor]], memory_mask: torch.Tensor | None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        super().__init__(n_layer, batch_size, n_head, head_dim, max_len, dtype, device)
        if any(k.size(0) != batch_size or v.size(0) != batch_size for k, v in cross):
            raise ValueError(f"cross-attention keys/values are not for a batch of {batch_size}")
        self.cross = cross  # per decoder layer: (k, v), each (B, nh, S, hs)
        self.memory_mask = memory_mask  # (B, 1, 1, S) bool, True = a real source token; None: no padding

    def reorder(self, index: torch.Tensor) -> None:
        super().reorder(index)
        self.cross = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross]
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, index)

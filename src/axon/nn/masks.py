"""Sparse causal attention patterns as boolean masks built from token positions.

Every pattern is a rule "query at position i may attend key at position j", always within the
causal rule j <= i. Building masks from *positions* rather than from row/column numbers lets the
same function serve training (positions 0..T-1), a KV cache (slot s holds position s, or per
sequence positions when a prompt batch is left-padded) and a ring buffer (slot s holds whatever
position was written there last): see :func:`pattern_mask`.

Sliding window (local attention; Longformer, Beltagy et al. 2020, sec. 3.1; Mistral 7B, Jiang et
al. 2023, sec. 2): query i sees the last ``window`` keys, itself included,

    i - window < j <= i                      window = 3, T = 6  (x: attends, .: masked)

                                                  j: 0 1 2 3 4 5
                                               i=0   x . . . . .
                                               i=1   x x . . . .
                                               i=2   x x x . . .
                                               i=3   . x x x . .
                                               i=4   . . x x x .
                                               i=5   . . . x x x

This is exactly Hugging Face's ``sliding_window`` (transformers' masking_utils:
``kv_idx > q_idx - sliding_window`` and ``kv_idx <= q_idx``), so Mistral / Mixtral configs map
onto ``attention="sliding", attn_window=sliding_window`` unchanged. Stacking L such layers gives a
receptive field of L * (window - 1) + 1 tokens (Mistral sec. 2).

Block-sparse, the "fixed" pattern of the Sparse Transformer (Child et al. 2019, sec. 4.2, eq. for
A^(1) and A^(2), merged into one head): positions are cut into blocks of ``block`` (l) tokens;
query i sees every earlier key of its own block, A^(1) = {j : floor(j / l) = floor(i / l)}, plus
the last ``summary`` (c) positions of every block, A^(2) = {j : j mod l >= l - c}, which act as
the block's "summary" cells that later blocks read. Causal throughout (j <= i).

    block = 3, summary = 1, T = 9                 j: 0 1 2 | 3 4 5 | 6 7 8
                                               i=0   x . . | . . . | . . .
                                               i=1   x x . | . . . | . . .
                                               i=2   x x x | . . . | . . .
                                               i=3   . . x | x . . | . . .
                                               i=4   . . x | x x . | . . .
                                               i=5   . . x | x x x | . . .
                                               i=6   . . x | . . x | x . .
                                               i=7   . . x | . . x | x x .
                                               i=8   . . x | . . x | x x x

Blocks are aligned to position 0, so the last block of a sequence may be partial. Each query
attends to at most l + c * (i // l) keys instead of i + 1.

Cost: here the mask is applied densely (SDPA / the reference path with a boolean mask), which is
what a CPU can do; the FLOPs are those of dense attention. On a GPU, ``torch.nn.attention.
flex_attention`` with a ``BlockMask`` built from the same rule would skip fully masked tiles and
turn the sparsity into speed; nothing here depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PATTERNS = ("dense", "sliding", "block_sparse")


def sliding_window_allowed(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int) -> torch.Tensor:
    """q_pos (..., T, 1), k_pos (..., 1, S) -> (..., T, S): causal and within the last ``window``."""
    return (k_pos <= q_pos) & (k_pos > q_pos - window)


def block_sparse_allowed(q_pos: torch.Tensor, k_pos: torch.Tensor, block: int, summary: int) -> torch.Tensor:
    """q_pos (..., T, 1), k_pos (..., 1, S) -> (..., T, S): Sparse Transformer fixed pattern."""
    same_block = torch.div(k_pos, block, rounding_mode="floor") == torch.div(q_pos, block, rounding_mode="floor")
    summary_cell = torch.remainder(k_pos, block) >= block - summary
    return (k_pos <= q_pos) & (same_block | summary_cell)


def pattern_mask(kind: str, q_pos: torch.Tensor, k_pos: torch.Tensor, *, window: int | None = None,
                 block: int | None = None, summary: int | None = None) -> torch.Tensor:
    """Boolean mask, True where attending is allowed, for queries at positions ``q_pos`` and keys
    at positions ``k_pos``: (T,) and (S,) give (T, S); (B, T) and (B, S) give (B, T, S).

    ``kind`` is one of PATTERNS ("dense" is plain causal attention)."""
    q, k = q_pos[..., :, None], k_pos[..., None, :]  # (..., T, 1), (..., 1, S)
    if kind == "dense":
        return k <= q
    if kind == "sliding":
        return sliding_window_allowed(q, k, window)
    if kind == "block_sparse":
        return block_sparse_allowed(q, k, block, summary if summary is not None else 1)
    raise ValueError(f"unknown attention pattern {kind!r}; choose one of {', '.join(PATTERNS)}")


def causal_pattern_mask(kind: str, T: int, device: torch.device | str = "cpu", **kw) -> torch.Tensor:
    """The (T, T) training mask of a pattern: queries and keys at positions 0..T-1."""
    pos = torch.arange(T, device=device)
    return pattern_mask(kind, pos, pos, **kw)


def kv_cache_key_positions(cache, S: int) -> torch.Tensor:
    """Positions of the first ``S`` slots of a :class:`axon.generate.cache.KVCache`: (S,) while the
    batch has no padding (slot s holds position s), else (B, S) counted per sequence over its real
    tokens. A left-pad slot gets position 0; the cache's own mask already hides it."""
    if not cache.padded:
        return torch.arange(S, device=cache.valid.device)
    return (cache.valid[:, :S].long().cumsum(1) - 1).clamp(min=0)


# --- a model's pattern, for one forward -----------------------------------------------------


@dataclass(frozen=True)
class AttentionPattern:
    """A pattern as :func:`pattern_mask` takes it: ``kind`` one of PATTERNS, ``window`` for
    sliding, ``block`` and ``summary`` (null: 1) for block_sparse. A model maps its own options
    onto it (the decoder: model.attention, attn_window, attn_block, attn_summary) and decides
    which of its layers use it."""

    kind: str = "dense"
    window: int | None = None
    block: int | None = None
    summary: int | None = None


def forward_pattern_mask(pattern: AttentionPattern, cache, positions, T: int, cache_mask, device) -> torch.Tensor | None:
    """The mask of the pattern layers for one forward of a causal model (None: the pattern is dense).

    Without a cache: the (T, T) pattern. With a ring-buffer cache (``masks_window``): the cache's
    own mask, already the window. With a :class:`~axon.generate.cache.KVCache`: the pattern over
    the cached and new slots' positions, (1 or B, 1, T, S), and-ed with the cache's mask (padding);
    so cached decoding masks exactly as training does."""
    if pattern.kind == "dense":
        return None
    kw = dict(window=pattern.window, block=pattern.block, summary=pattern.summary)
    if cache is None:
        return causal_pattern_mask(pattern.kind, T, device, **kw)
    if getattr(cache, "masks_window", False):
        return cache_mask
    S = cache.length + T
    q_pos = positions + torch.arange(T, device=device) if isinstance(positions, int) else positions  # (T,) or (B, T)
    mask = pattern_mask(pattern.kind, q_pos, kv_cache_key_positions(cache, S), **kw)  # (T, S) or (B, T, S)
    mask = mask[None, None] if mask.dim() == 2 else mask[:, None]
    return mask if cache_mask is None else mask & cache_mask

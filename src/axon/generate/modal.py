"""Modality-aware sampling: what a mixed-modal decoder may produce next (Chameleon Team 2024).

In an early-fusion vocabulary (``axon.data.captions.TokenLayout``) text ids, the markers ``<img>``
``</img>`` ``<eos>`` and image codes share one softmax. A free sample could put text inside an image
or stop an image early; the decoded picture needs exactly n codes. :class:`ImageSpans` is the rule
``axon.generate.generate(..., allowed=ImageSpans(...))`` applies at each step:

    state of the sequence so far              may come next
    -----------------------------------       ---------------------------------------
    inside <img>, fewer than n codes           the K image codes only
    inside <img>, n codes                      </img> only
    outside an image (text)                    text ids, <img>, <eos>   (no code, no </img>)

so every image span it produces holds exactly n valid codes.
"""

from __future__ import annotations

import torch


class ImageSpans:
    """``allowed(sequences) -> (B, V) bool`` for :func:`axon.generate.generate` (see the module docstring).

    ``text_vocab`` ids 0..T-1 are text; then ``img_open``, ``img_close``, ``eos``; codes are
    ``code_offset .. code_offset + codebook_size - 1``; ``vocab`` is the width of the logits."""

    def __init__(self, text_vocab: int, img_open: int, img_close: int, eos: int, code_offset: int,
                 codebook_size: int, tokens_per_image: int, vocab: int):
        self.tokens_per_image = tokens_per_image
        self.img_open, self.img_close = img_open, img_close
        self.text = torch.zeros(vocab, dtype=torch.bool)
        self.text[:text_vocab] = True
        self.text[[img_open, eos]] = True
        self.codes = torch.zeros(vocab, dtype=torch.bool)
        self.codes[code_offset:code_offset + codebook_size] = True
        self.close = torch.zeros(vocab, dtype=torch.bool)
        self.close[img_close] = True

    @classmethod
    def of(cls, layout, vocab: int | None = None) -> ImageSpans:
        """From a ``TokenLayout`` (``vocab``: the logits' width, default the layout's vocabulary)."""
        return cls(layout.text_vocab, layout.img_open, layout.img_close, layout.eos, layout.code_offset,
                   layout.codebook_size, layout.tokens_per_image, vocab or layout.vocab_size)

    def codes_so_far(self, seq: list[int]) -> int | None:
        """Codes after the last ``<img>`` when the sequence is inside an image span, else None."""
        for back, tok in enumerate(reversed(seq)):
            if tok == self.img_open:
                return back
            if tok == self.img_close:
                return None
        return None

    def __call__(self, sequences: list[list[int]]) -> torch.Tensor:
        rows = []
        for seq in sequences:
            inside = self.codes_so_far(seq)
            rows.append(self.text if inside is None else self.codes if inside < self.tokens_per_image else self.close)
        return torch.stack(rows)


__all__ = ["ImageSpans"]

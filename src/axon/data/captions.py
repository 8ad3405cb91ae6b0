"""Images with captions, as token sequences for mixed-modal models (``axon.tasks.mixed_modal``).

The data:

* the 8x8 digits with generated captions (:func:`digit_captions`): the class and two attributes
  measured on the pixels, e.g. ``"a handwritten seven, drawn thin, leaning right"``;
* a caption file (:func:`read_caption_file`): JSONL, one ``{"image": PATH, "caption": TEXT}`` per line,
  PATH relative to an image folder (default: the file's own).

The vocabulary of an early-fusion model (Chameleon Team 2024) is the caption tokenizer's ids, three
markers, then the image tokenizer's codes (:class:`TokenLayout`):

    ids:  0 .. T-1       T       T+1      T+2     T+3 .. T+3+K-1
          caption text   <img>   </img>   <eos>   image codes 0 .. K-1

    caption -> image:   c a p t i o n <img> k1 .. kn </img> <eos>
    image -> caption:   <img> k1 .. kn </img> c a p t i o n <eos>

A late-fusion model (an image encoder's vectors as a prefix, MM1) reads ``</img> caption`` after its
image prefix and predicts ``caption <eos>``: the same ids, without the codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from axon.errors import DataError

IGNORE = -100  # target of a padding position (axon.objectives.causal_lm.IGNORE_INDEX)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SLANT_CUTS = (-0.09, 0.01)  # the digits' terciles of the shear -cov(row, col) / var(row): left | upright | right
EVAL_SEED = 1_000_003  # the seed of the evaluation batches' directions


# ---------------------------------------------------------------------------------------------
# Captions of the digits


def ink_and_slant(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (N, 1, H, W) in [-1, 1]: the ink (sum of intensities in [0, 1]) and the slant: how far
    a stroke's column moves per row down, -cov(row, col) / var(row) of the ink's distribution
    (> 0: the top leans to the right, like "/")."""
    w = (images[:, 0].float() + 1) / 2  # (N, H, W)
    H, W = w.shape[1:]
    r = torch.arange(H, dtype=torch.float32).view(1, H, 1)
    c = torch.arange(W, dtype=torch.float32).view(1, 1, W)
    mass = w.sum((1, 2)).clamp_min(1e-6)
    rb = (w * r).sum((1, 2)) / mass
    cb = (w * c).sum((1, 2)) / mass
    dr, dc = r - rb.view(-1, 1, 1), c - cb.view(-1, 1, 1)
    cov = (w * dr * dc).sum((1, 2)) / mass
    var = (w * dr * dr).sum((1, 2)) / mass
    return mass, -cov / var.clamp_min(1e-6)


def digit_captions(images: torch.Tensor, labels: torch.Tensor, ink_medians: torch.Tensor) -> list[str]:
    """``"a handwritten <class>, drawn <thin|bold>, <leaning left|upright|leaning right>"`` for each image:
    thin when its ink is below its class's median ``ink_medians[label]``, the slant by ``SLANT_CUTS``."""
    ink, slant = ink_and_slant(images)
    out = []
    for label, i, s in zip(labels.tolist(), ink.tolist(), slant.tolist()):
        weight = "thin" if i < float(ink_medians[label]) else "bold"
        lean = "leaning left" if s < SLANT_CUTS[0] else "upright" if s <= SLANT_CUTS[1] else "leaning right"
        out.append(f"a handwritten {NUMBER_WORDS[label]}, drawn {weight}, {lean}")
    return out


def class_medians(images: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """The median ink of each class (classes,), over ``images``."""
    ink, _ = ink_and_slant(images)
    return torch.stack([ink[labels == k].median() for k in range(classes)])


def caption_class(text: str) -> int | None:
    """The digit a caption names: its first number word (``"a handwritten seven, ..."`` -> 7), else None."""
    for word in text.replace(",", " ").split():
        if word in NUMBER_WORDS:
            return NUMBER_WORDS.index(word)
    return None


# ---------------------------------------------------------------------------------------------
# A caption file


def read_caption_file(path, image_dir, image_size: int, channels: int) -> list[tuple[np.ndarray, str]]:
    """The (image (C, S, S) in [-1, 1], caption) pairs of a JSONL file of ``{"image": PATH, "caption": TEXT}``,
    each PATH relative to ``image_dir`` (None: the file's folder). A line that is not such an object, an
    empty caption, a missing or unreadable image: a DataError naming the file and line."""
    from axon.data.files import read_text
    from axon.data.images import read_image

    path = Path(path)
    folder = Path(image_dir) if image_dir is not None else path.parent
    pairs = []
    for n, line in enumerate(read_text(path, universal_newlines=True).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str) or "caption" not in obj:
            raise DataError(f'{where}: expected an object {{"image": PATH, "caption": TEXT}}')
        caption = obj["caption"]
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{where}: the caption must be non-empty text, got {caption!r}")
        file = folder / obj["image"]
        if not file.is_file():
            raise DataError(f"{where}: image {file} not found")
        try:
            pairs.append((read_image(file, image_size, channels), caption.strip()))
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
    if not pairs:
        raise DataError(f"{path}: no captioned images")
    return pairs


# ---------------------------------------------------------------------------------------------
# The vocabulary and the sequences


@dataclass(frozen=True)
class TokenLayout:
    """Where each kind of token sits in a mixed-modal vocabulary (see the module docstring)."""

    text_vocab: int  # T: the caption tokenizer's ids come first
    codebook_size: int = 0  # K: image codes (0: a late-fusion model, whose images are no tokens)
    tokens_per_image: int = 0  # n: codes in every image span

    @property
    def img_open(self) -> int:
        return self.text_vocab

    @property
    def img_close(self) -> int:
        return self.text_vocab + 1

    @property
    def eos(self) -> int:
        return self.text_vocab + 2

    @property
    def code_offset(self) -> int:
        return self.text_vocab + 3

    @property
    def vocab_size(self) -> int:
        return self.code_offset + self.codebook_size

    def image_span(self, codes: Sequence[int]) -> list[int]:
        """``<img> k1 .. kn </img>`` for image codes 0..K-1."""
        return [self.img_open, *(self.code_offset + int(c) for c in codes), self.img_close]

    def caption_to_image(self, caption: Sequence[int], codes: Sequence[int]) -> list[int]:
        return [*caption, *self.image_span(codes), self.eos]

    def image_to_caption(self, codes: Sequence[int], caption: Sequence[int]) -> list[int]:
        return [*self.image_span(codes), *caption, self.eos]

    def image_codes(self, tokens: Sequence[int]) -> list[int] | None:
        """The codes 0..K-1 of the first image span in ``tokens`` (which may start inside it, just after
        ``<img>``): None unless it holds exactly n codes and nothing else before ``</img>``."""
        tokens = list(tokens)
        start = tokens.index(self.img_open) + 1 if self.img_open in tokens else 0
        span = tokens[start:start + self.tokens_per_image + 1]
        codes = [t - self.code_offset for t in span[:-1]]
        if len(span) != self.tokens_per_image + 1 or span[-1] != self.img_close or any(
                not 0 <= c < self.codebook_size for c in codes):
            return None
        return codes

    def caption_ids(self, tokens: Sequence[int]) -> list[int]:
        """The caption text ids of generated ``tokens``, up to the first token that is not text (``<eos>``)."""
        out = []
        for t in tokens:
            if not 0 <= t < self.text_vocab:
                break
            out.append(int(t))
        return out

    def to_dict(self) -> dict:
        return {"text_vocab": self.text_vocab, "codebook_size": self.codebook_size,
                "tokens_per_image": self.tokens_per_image, "img_open": self.img_open, "img_close": self.img_close,
                "eos": self.eos, "code_offset": self.code_offset, "vocab_size": self.vocab_size}


DIRECTIONS = {"caption_to_image": (0,), "image_to_caption": (1,), "both": (0, 1)}


class CaptionedImages:
    """A dataset of batches (docs/adding-a-task.md) of image-caption pairs.

    Early fusion (``codes`` given): ``(x, y)``, each (B, block_size): one sequence per example in the
    direction drawn for it, ``y`` the next token of ``x``, right-padded (x with ``<eos>``, y with
    IGNORE). Late fusion (``codes`` None): ``(images (B, C, H, W), x, y)``, x = ``</img> caption`` and
    y = ``caption <eos>``, padded the same way. Training examples and directions are drawn from a
    generator seeded by (seed, step, micro_step); evaluation batches go through the split in order,
    with directions drawn from a fixed seed, so both are reproducible.
    """

    def __init__(self, layout: TokenLayout, captions: list[list[int]], images: torch.Tensor | None = None,
                 codes: torch.Tensor | None = None, direction: str = "both"):
        self.layout, self.captions, self.images, self.codes = layout, captions, images, codes
        self.directions = DIRECTIONS["image_to_caption"] if codes is None else DIRECTIONS[direction]

    def __len__(self) -> int:
        return len(self.captions)

    def longest(self) -> int:
        """Positions the longest example needs (its tokens less one: x and y are shifted)."""
        extra = 1 if self.codes is None else self.layout.tokens_per_image + 3
        return max(len(c) for c in self.captions) + extra

    def sequence(self, i: int, direction: int) -> list[int]:
        cap = self.captions[i]
        if self.codes is None:
            return [self.layout.img_close, *cap, self.layout.eos]
        codes = self.codes[i].tolist()
        return self.layout.caption_to_image(cap, codes) if direction == 0 else self.layout.image_to_caption(codes, cap)

    def _batch(self, rows: Sequence[int], dirs: Sequence[int], block_size: int) -> tuple[torch.Tensor, ...]:
        x = torch.full((len(rows), block_size), self.layout.eos, dtype=torch.long)
        y = torch.full((len(rows), block_size), IGNORE, dtype=torch.long)
        for b, (i, d) in enumerate(zip(rows, dirs)):
            seq = self.sequence(i, d)
            if len(seq) - 1 > block_size:
                raise DataError(f"example {i} needs {len(seq) - 1} positions, more than model.block_size={block_size}")
            x[b, :len(seq) - 1] = torch.tensor(seq[:-1])
            y[b, :len(seq) - 1] = torch.tensor(seq[1:])
        if self.codes is None:
            return self.images[torch.as_tensor(list(rows), dtype=torch.long)], x, y
        return x, y

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        rows = rng.integers(len(self), size=batch_size).tolist()
        dirs = rng.choice(self.directions, size=batch_size).tolist()
        return self._batch(rows, dirs, block_size)

    def eval_directions(self) -> list[int]:
        rng = np.random.default_rng(EVAL_SEED)
        return rng.choice(self.directions, size=len(self)).tolist()

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple]:
        dirs = self.eval_directions()
        for b, start in enumerate(range(0, len(self), batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            rows = list(range(start, min(start + batch_size, len(self))))
            yield self._batch(rows, [dirs[i] for i in rows], block_size)


__all__ = ["CaptionedImages", "IGNORE", "NUMBER_WORDS", "TokenLayout", "caption_class", "class_medians",
           "digit_captions", "ink_and_slant", "read_caption_file"]

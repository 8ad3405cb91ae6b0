"""Images and 2-D points for diffusion: the bundled 8x8 digits, toy point sets, a folder of images.

    load_digits()                     scikit-learn's bundled digits (UCI optdigits test set, 1,797
                                      images, 10 classes): images (1797, 1, 8, 8) float32 in [-1, 1],
                                      labels (1797,) int64; offline, nothing downloads
    split(labels, val_fraction, seed) a stratified split: each class loses the same share to val
    digits_split("train" | "val")     the fixed split every digits run and metric uses:
                                      1,438 train / 359 val (20% of each class, seed 0)
    toy_2d(name, n, seed)             points (n, 2) float32 and labels (n,) int64:
                                      swiss_roll (one class), moons (2), gaussians (8 on a circle)
    load_image_folder(path, size, c)  images (N, c, size, size) float32 in [-1, 1], labels (N,),
                                      class names: one sub-folder per class, or a flat folder = one class

Pixels are scaled to [-1, 1] (x = 2 p / max - 1), the range DDPM's sampler clips to (Ho et al.
2020, section 3.3). Everything here is a pure function of its arguments: random draws come from
``numpy.random.default_rng(seed)``, never from global state, so a dataset is the same in every
process and on resume.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from axon.errors import DataError, OptionError, check_count, is_real

DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_CLASSES = 10


# ----------------------------------------------------------------------------------------------
# The 8x8 digits


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(images (1797, 1, 8, 8) float32 in [-1, 1], labels (1797,) int64) of scikit-learn's digits.

    Each pixel is a count 0..16 of ink in a 4x4 block of the 32x32 original; 0 -> -1, 16 -> 1.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataError("the digits come with scikit-learn, which is not installed "
                        "(pip install scikit-learn)") from None
    d = sk_load_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)  # (N, 1, 8, 8)
    return images.contiguous(), torch.from_numpy(d.target.astype(np.int64))


def split(labels, val_fraction: float = DIGITS_VAL_FRACTION,
          seed: int = DIGITS_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), stratified: of each class's n_c items, round(n_c *
    ``val_fraction``) drawn at random (``seed``) go to val, so both splits keep the class shares.
    Indices are sorted; the same arguments give the same split everywhere."""
    if not (is_real(val_fraction) and 0.0 < val_fraction < 1.0):
        raise OptionError("val_fraction", "must be in (0, 1)", val_fraction)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):  # sorted classes: the draws do not depend on the order of the items
        members = np.flatnonzero(labels == c)
        val.append(rng.permutation(members)[: round(len(members) * val_fraction)])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def digits_split(which: str = "train", val_fraction: float = DIGITS_VAL_FRACTION,
                 seed: int = DIGITS_SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of the ``train`` or ``val`` split of the digits (defaults: 1,438 / 359).

    The digits classifier (``axon.eval.digits_classifier``) trains on ``train``, and the Fréchet
    distance of ``axon.eval.generative.digits_quality`` compares samples with ``val``: a diffusion
    run on the digits trains on ``train`` too, so its metric never sees its own training images.
    """
    if which not in ("train", "val"):
        raise OptionError("which", "must be 'train' or 'val'", which)
    images, labels = load_digits()
    train_idx, val_idx = split(labels.numpy(), val_fraction, seed)
    idx = torch.from_numpy(train_idx if which == "train" else val_idx)
    return images[idx], labels[idx]


# ----------------------------------------------------------------------------------------------
# 2-D toy sets. Each is a clean curve or set of points p(u, k) -- u ~ U[0, 1) along a curve, k a
# component -- plus isotropic Gaussian noise, then centred and scaled by one factor (the shape is
# kept) so that the variance per axis is 1 on average. The mean and scale are those of the
# distribution (from the clean curve by quadrature, plus the noise variance), not of the sample:
# two draws of any size, with any seed, come from the same distribution.

TOY_SETS = ("swiss_roll", "moons", "gaussians")
TOY_CLASSES = {"swiss_roll": 1, "moons": 2, "gaussians": 8}
TOY_NOISE = {"swiss_roll": 0.5, "moons": 0.1, "gaussians": 0.1}  # std of the noise, in the curve's own units


def _clean(name: str, u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Points (n, 2) of the clean set at curve positions ``u`` and components ``k``."""
    if name == "swiss_roll":  # sklearn's make_swiss_roll in the (x, z) plane: t in [1.5 pi, 4.5 pi]
        t = 1.5 * math.pi * (1 + 2 * u)
        return np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    if name == "moons":  # sklearn's make_moons: an upper arc and a lower arc shifted to interlock
        theta = math.pi * u
        upper = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        lower = np.stack([1 - np.cos(theta), 0.5 - np.sin(theta)], axis=1)
        return np.where((k == 0)[:, None], upper, lower)
    angle = 2 * math.pi * k / TOY_CLASSES["gaussians"]  # 8 centres on the unit circle
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _standardizer(name: str, noise: float) -> tuple[np.ndarray, float]:
    """(mean (2,), scale) of the noisy distribution: midpoint quadrature over u for each component."""
    grid = (np.arange(4096) + 0.5) / 4096
    K = TOY_CLASSES[name]
    pts = np.concatenate([_clean(name, grid, np.full(grid.shape, k)) for k in range(K)])
    mean = pts.mean(axis=0)
    var_per_axis = ((pts - mean) ** 2).mean() + noise**2  # the average of the two axes' variances
    return mean, math.sqrt(var_per_axis)


def toy_2d(name: str, n: int, seed: int = 0, noise: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(points (n, 2) float32, labels (n,) int64) drawn from the toy set ``name``.

    ``swiss_roll``: a spiral (labels all 0); ``moons``: two interlocking half circles (label: which);
    ``gaussians``: a mixture of 8 equal Gaussians on a circle (label: the component, usable as a
    class for conditional sampling). ``noise`` (default ``TOY_NOISE[name]``) is in the set's own
    units, before scaling to unit variance per axis. Deterministic given ``seed``.
    """
    if name not in TOY_SETS:
        raise OptionError("name", f"must be one of {', '.join(TOY_SETS)}", name)
    check_count("n", n, 1)
    noise = TOY_NOISE[name] if noise is None else noise
    if not (is_real(noise) and noise >= 0 and math.isfinite(noise)):
        raise OptionError("noise", "must be a finite number >= 0", noise)
    rng = np.random.default_rng(seed)
    k = rng.integers(0, TOY_CLASSES[name], size=n)
    u = rng.random(n)
    pts = _clean(name, u, k) + noise * rng.standard_normal((n, 2))
    mean, scale = _standardizer(name, noise)
    return torch.from_numpy(((pts - mean) / scale).astype(np.float32)), torch.from_numpy(k.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# A folder of images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
# Modes with 8-bit channels convert to L or RGB without loss of range; 16-bit and float pixels
# ("I;16", "I", "F") would be clipped at 255 by Pillow's convert, so they are refused instead.
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def read_image(file: Path, image_size: int, channels: int, crop: bool = True) -> np.ndarray:
    """One image: (channels, image_size, image_size) float32 in [-1, 1]. The largest centred
    square is cut out and resized (bicubic, antialiased) to image_size (``crop=False``: the whole
    image is resized, as detection needs, whose boxes must keep their place); a file Pillow cannot
    read, or whose mode cannot become L / RGB, is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    target = "L" if channels == 1 else "RGB"
    try:
        with Image.open(file) as im:
            im.load()
    except UnidentifiedImageError:
        raise DataError(f"{file}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # truncated or corrupt data
        reason = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"{file}: unreadable or corrupt image ({reason})") from None
    if im.mode not in EIGHT_BIT_MODES:
        raise DataError(f"{file}: mode {im.mode} (16-bit or float pixels) is not supported; save it with 8-bit "
                        f"channels (L or RGB)")
    try:
        im = im.convert(target)
    except ValueError as e:  # Pillow: "conversion from LAB to L not supported"
        raise DataError(f"{file}: mode {im.mode} cannot be converted to {target} ({str(e).splitlines()[0]})") from None
    if crop:
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))  # cut first: resize's box would filter in pixels outside it
    im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
    pixels = np.asarray(im, dtype=np.float32).reshape(image_size, image_size, channels)
    return (pixels / 127.5 - 1.0).transpose(2, 0, 1)  # (C, H, W), 0 -> -1, 255 -> 1


def load_image_folder(path, image_size: int, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images (N, channels, image_size, image_size) float32 in [-1, 1], labels (N,) int64, class names).

    ``path`` holds one sub-folder per class (classes in sorted order of their names; label i is
    ``class_names[i]``), or only images: one class named after the folder. Images are the files
    with a usual suffix (.png, .jpg, ...), read in sorted order; hidden files and other files are
    skipped. ``channels``: 1 (grey, Pillow's L) or 3 (RGB; an alpha channel is dropped). A path
    that is not a folder, a class folder without images, an image beside class folders, a file
    that is not a readable image and a mode that cannot convert each end with one DataError
    naming the path.
    """
    check_count("image_size", image_size, 1)
    if channels not in (1, 3) or not isinstance(channels, int):
        raise OptionError("channels", "must be 1 (grey) or 3 (RGB)", channels)
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a folder' if root.exists() else 'no such folder'} (expected a folder of "
                        f"images, or of one folder of images per class)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders:
        stray = sorted(p for p in root.iterdir() if _is_image(p))
        if stray:
            raise DataError(f"{stray[0]}: an image beside class folders; move it into its class's folder")
        classes = [(p.name, p) for p in folders]
    else:
        classes = [(root.resolve().name, root)]
    images, labels = [], []
    for label, (_, folder) in enumerate(classes):
        files = sorted(p for p in folder.iterdir() if _is_image(p))
        if not files:
            raise DataError(f"{folder}: no images (files ending in {', '.join(IMAGE_SUFFIXES)})")
        images += [read_image(f, image_size, channels) for f in files]
        labels += [label] * len(files)
    return (torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64), [name for name, _ in classes])


# ----------------------------------------------------------------------------------------------
# Labelled images as classification batches (the image_classify task)


class LabelledImages:
    """Images and their labels as batches ``(images (B, C, H, W) float32 in [-1, 1], labels (B,) int64)``.

    Training batches (``get_batch``) draw ``batch_size`` images uniformly with replacement and
    augment them, every draw from one generator seeded with (seed, step, micro_step): a pure
    function of its arguments, so resume is exact. Augmentation: a random crop with padding (pad
    each side by ``crop_padding`` pixels of black, -1, and cut an image_size window out at a random
    offset: a shift of up to ``crop_padding`` pixels each way), then, with ``hflip``, a mirror of
    each image with probability 1/2. Evaluation batches (``iter_eval_batches``) are every image
    in order, unaugmented.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop_padding: int = 0, hflip: bool = False):
        if len(images) == 0:
            raise DataError("no images")
        self.images, self.labels = images, labels
        self.crop_padding, self.hflip = crop_padding, hflip

    def __len__(self) -> int:
        return len(self.images)

    def augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        B, C, H, W = x.shape
        p = self.crop_padding
        if p:
            padded = torch.nn.functional.pad(x, (p, p, p, p), value=-1.0)  # (B, C, H + 2p, W + 2p)
            oy, ox = (torch.from_numpy(rng.integers(0, 2 * p + 1, size=B)) for _ in range(2))  # offsets in [0, 2p]
            rows = (oy[:, None] + torch.arange(H))[:, None, :, None]  # (B, 1, H, 1)
            cols = (ox[:, None] + torch.arange(W))[:, None, None, :]  # (B, 1, 1, W)
            x = padded[torch.arange(B)[:, None, None, None], torch.arange(C)[None, :, None, None], rows, cols]
        if self.hflip:
            flip = torch.from_numpy(rng.random(B) < 0.5)[:, None, None, None]
            x = torch.where(flip, x.flip(-1), x)
        return x

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        idx = torch.from_numpy(rng.integers(0, len(self.images), size=batch_size))
        return self.augment(self.images[idx], rng).contiguous(), self.labels[idx]

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        starts = range(0, len(self.images), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return ((self.images[s:s + batch_size], self.labels[s:s + batch_size]) for s in starts)

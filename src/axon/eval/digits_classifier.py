"""The digits classifier: the feature extractor of Axon's offline Fréchet distance on the 8x8 digits.

FID (Heusel et al. 2017) measures generated images in the features of an ImageNet Inception
network, whose weights cannot be downloaded here and which knows nothing of 8x8 digits anyway. In
its place: a small CNN that Axon trains itself on the digits' train split, in seconds on a CPU,
deterministically from a seed, and caches.

     x (B, 1, 8, 8) in [-1, 1]
         |
     conv3x3 1 -> w, ReLU                 (B, w, 8, 8)
     conv3x3 w -> w, ReLU, maxpool 2      (B, w, 4, 4)
     conv3x3 w -> 2w, ReLU, maxpool 2     (B, 2w, 2, 2)
         |  flatten                       (B, 8w)
     Linear 8w -> F                       features (B, F): what the Fréchet distance compares
         |  ReLU
     Linear F -> 10                       logits (B, 10): class accuracy and entropies

The features are taken before their ReLU, so none is stuck at 0 and their covariance is full rank.

Training: AdamW for ``steps`` batches drawn with replacement from the train split (a torch
Generator seeded with ``seed``; the weights are initialised under the same seed inside
``torch.random.fork_rng``, so the caller's global RNG is untouched), with random shifts of up to one
pixel. The same settings give the same weights on the same machine and thread count. Its accuracy
on the held-out val split is measured when it is trained and stored beside the weights.

Cache: ``<cache_dir>/eval/digits-classifier-<key>.safetensors``, where ``cache_dir`` means what
``data.cache_dir`` means (None: ``$AXON_CACHE``, else ``~/.cache/axon``) and ``key`` is a digest of
the training settings and ``ARCHITECTURE``, so changing either trains a new one and never loads a
stale one. The file is written aside and renamed, so concurrent runs never read half of it; an
unreadable file is retrained over.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from axon.atomic import written_aside
from axon.data.cache import cache_root
from axon.data.images import DIGITS_CLASSES, DIGITS_SPLIT_SEED, DIGITS_VAL_FRACTION, digits_split
from axon.errors import DataError, writing

ARCHITECTURE = "cnn3-v1"  # bump when DigitsClassifier or the training loop changes: old caches stop matching


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything the trained weights depend on; its digest names the cached file."""

    seed: int = 0
    steps: int = 500
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 1e-4
    width: int = 16  # channels of the first convolutions (2x in the third)
    features: int = 32  # F: the penultimate width, the Fréchet distance's dimension
    shift: int = 1  # random translations of up to this many pixels (0: none)
    val_fraction: float = DIGITS_VAL_FRACTION
    split_seed: int = DIGITS_SPLIT_SEED

    def key(self) -> str:
        blob = json.dumps({"architecture": ARCHITECTURE, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


class DigitsClassifier(nn.Module):
    def __init__(self, width: int = 16, features: int = 32, num_classes: int = DIGITS_CLASSES):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.proj = nn.Linear(8 * width, features)
        self.head = nn.Linear(features, num_classes)
        self.val_accuracy: float | None = None  # on the held-out split, measured when trained
        self.train_seconds: float | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) in [-1, 1] -> (B, F), the penultimate layer before its ReLU."""
        return self.proj(self.conv(x).flatten(1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) -> (B, 10)."""
        return self.head(F.relu(self.features(x)))

    forward = logits


def _shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Each image translated by (dy, dx) in [-max_shift, max_shift], background (-1) shifted in."""
    if max_shift == 0:
        return x
    B, _, H, W = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)  # (B, 1, H + 2s, W + 2s)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, B), generator=g)
    rows = (dy[:, None] + torch.arange(H))[:, None, :, None].expand(B, 1, H, W + 2 * max_shift)
    out = padded.gather(2, rows)  # (B, 1, H, W + 2s)
    cols = (dx[:, None] + torch.arange(W))[:, None, None, :].expand(B, 1, H, W)
    return out.gather(3, cols)  # (B, 1, H, W)


@torch.no_grad()
def accuracy(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model.logits(images).argmax(-1) == labels).float().mean())


def train_digits_classifier(settings: ClassifierSettings = ClassifierSettings()) -> DigitsClassifier:
    """Train the classifier on the digits' train split; its ``val_accuracy`` is measured on val."""
    start = time.perf_counter()
    x_train, y_train = digits_split("train", settings.val_fraction, settings.split_seed)
    x_val, y_val = digits_split("val", settings.val_fraction, settings.split_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = DigitsClassifier(settings.width, settings.features)
    g = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
    model.train()
    with torch.enable_grad():  # also when first called under no_grad, e.g. by digits_quality
        for _ in range(settings.steps):
            idx = torch.randint(0, len(x_train), (settings.batch_size,), generator=g)
            loss = F.cross_entropy(model.logits(_shift(x_train[idx], settings.shift, g)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    model.val_accuracy = accuracy(model, x_val, y_val)
    model.train_seconds = time.perf_counter() - start
    return model


def classifier_path(cache_dir=None, settings: ClassifierSettings = ClassifierSettings()) -> Path:
    """Where the classifier of ``settings`` is cached under ``cache_dir`` (see the module docstring)."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "eval" / f"digits-classifier-{settings.key()}.safetensors"


def _load(path: Path, settings: ClassifierSettings) -> DigitsClassifier | None:
    """The cached classifier, or None when the file is missing or unreadable (it is then retrained)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    model = DigitsClassifier(settings.width, settings.features)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            model.load_state_dict({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 (safe_open is not iterable)
        model.val_accuracy = float(meta["val_accuracy"])
        model.train_seconds = float(meta["train_seconds"])
    except (SafetensorError, OSError, RuntimeError, KeyError, ValueError):
        return None
    return model.eval()


def digits_classifier(cache_dir=None, settings: ClassifierSettings = ClassifierSettings()) -> DigitsClassifier:
    """The digits classifier of ``settings`` in eval mode on the CPU: loaded from the cache, or
    trained (seconds) and cached. ``.features(x)`` (B, F), ``.logits(x)`` (B, 10) for x (B, 1, 8, 8)
    in [-1, 1]; ``.val_accuracy``: its accuracy on the held-out digits."""
    from safetensors.torch import save_file

    path = classifier_path(cache_dir, settings)
    model = _load(path, settings)
    if model is not None:
        return model
    model = train_digits_classifier(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the classifier cache {path.parent}: {e.strerror or e}") from None
    meta = {"architecture": ARCHITECTURE, "settings": json.dumps(asdict(settings), sort_keys=True),
            "val_accuracy": repr(model.val_accuracy), "train_seconds": repr(model.train_seconds)}
    with writing(path, "digits classifier"), written_aside(path, ".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    return model

"""Detection data: images with a variable number of labelled boxes, as padded batches.

    shapes(n, seed)                  the generated set: 64x64 RGB canvases with 1-6 circles, squares
                                     and triangles of several colours and sizes; deterministic from
                                     the seed (images (n, 3, S, S) in [-1, 1], one target per image)
    load_coco(json, image_dir, ...)  your own COCO-format detection file and its folder of images:
                                     images resized to (S, S), boxes normalised, categories in
                                     sorted id order; a bad entry ends with one line naming it
    DetectionImages                  the dataset of batches the trainer reads

A target is (labels (n,) int64, boxes (n, 4) float32 as (cx, cy, w, h) in [0, 1] of the image),
DETR's layout. A batch pads every image's target to ``max_objects`` rows:

    (images (B, C, S, S) float32 in [-1, 1], labels (B, M) int64 with -1 after the objects,
     boxes (B, M, 4) float32, zeros after the objects)

Training batches draw images with replacement from a generator seeded with (seed, step,
micro_step) and mirror half of them left-right with ``hflip`` -- the boxes with them (cx -> 1 -
cx), so the labels stay valid: a pure function of the arguments, so resume is exact. Evaluation
batches are every image in order, unaugmented.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from axon.errors import DataError, check_count, reading

SHAPE_CLASSES = ("circle", "square", "triangle")
# Fill colours (RGB 0-255): saturated enough to stand out from every background below.
SHAPE_COLOURS = ((230, 60, 50), (60, 180, 75), (70, 110, 240), (250, 210, 40), (240, 130, 40), (180, 80, 230),
                 (60, 220, 220), (245, 245, 245))
SHAPE_SIZES = (10, 28)  # side / diameter in pixels at 64x64, uniform in [lo, hi]


Target = tuple[torch.Tensor, torch.Tensor]  # (labels (n,) int64, boxes (n, 4) float32 cxcywh in [0, 1])


# ----------------------------------------------------------------------------------------------
# The generated shapes


def _shape_mask(kind: int, x0: float, y0: float, size: float, image_size: int) -> np.ndarray:
    """(S, S) bool: the pixels whose centres lie inside the shape whose bounding box is
    [x0, x0 + size] x [y0, y0 + size] (pixels as the unit, y downwards)."""
    c = np.arange(image_size) + 0.5
    x, y = c[None, :], c[:, None]  # (1, S), (S, 1): pixel centres
    u, v = (x - x0) / size, (y - y0) / size  # in [0, 1]^2 inside the box
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if kind == 0:  # circle inscribed in the box
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    if kind == 1:  # square: the box itself
        return inside
    return inside & (np.abs(u - 0.5) <= v / 2)  # triangle: apex at the top centre, base along the bottom


def shapes(n: int, seed: int | list[int], image_size: int = 64, max_objects: int = 6,
           max_overlap: float = 0.3) -> tuple[torch.Tensor, list[Target]]:
    """``n`` generated images (n, 3, S, S) float32 in [-1, 1] and their targets.

    Each image: a dark background of one random colour with a little pixel noise, then 1 to
    ``max_objects`` shapes (class uniform over circle, square, triangle; colour from
    SHAPE_COLOURS; size uniform in SHAPE_SIZES scaled to ``image_size``), each placed wholly
    inside the image where its box covers at most ``max_overlap`` of any earlier box's area (a
    place is drawn up to 20 times; a shape that finds none is left out). Later shapes paint over
    earlier ones. Boxes are the shapes' exact extents. The same (n, seed, image_size) give the
    same images everywhere: every draw comes from ``numpy.random.default_rng(seed)``.
    """
    check_count("n", n, 1)
    rng = np.random.default_rng(seed)
    S = image_size
    lo, hi = (s * S / 64 for s in SHAPE_SIZES)
    images = np.empty((n, S, S, 3), dtype=np.float32)
    targets = []
    for k in range(n):
        img = rng.uniform(0, 60, size=3)[None, None, :] + rng.normal(0, 6, size=(S, S, 3))  # (S, S, 3)
        labels, boxes = [], []  # boxes as xyxy pixels while placing
        for _ in range(int(rng.integers(1, max_objects + 1))):
            kind, colour = int(rng.integers(len(SHAPE_CLASSES))), SHAPE_COLOURS[int(rng.integers(len(SHAPE_COLOURS)))]
            size = float(rng.uniform(lo, hi))
            for _attempt in range(20):
                x0, y0 = rng.uniform(0, S - size, size=2)
                box = (x0, y0, x0 + size, y0 + size)
                if all(_overlap(box, b) <= max_overlap for b in boxes):
                    break
            else:
                continue
            img[_shape_mask(kind, x0, y0, size, S)] = colour
            labels.append(kind)
            boxes.append(box)
        images[k] = img
        xyxy = torch.tensor(boxes, dtype=torch.float64) / S
        cxcywh = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                              xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], dim=1)
        targets.append((torch.tensor(labels, dtype=torch.int64), cxcywh.float()))
    x = torch.from_numpy(np.clip(images, 0, 255) / 127.5 - 1.0).permute(0, 3, 1, 2).float().contiguous()
    return x, targets


def _overlap(a, b) -> float:
    """The share of box b's area that box a covers (xyxy)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0) / ((b[2] - b[0]) * (b[3] - b[1]))


# ----------------------------------------------------------------------------------------------
# Your own COCO-format file


def load_coco(annotations, image_dir=None, image_size: int = 64,
              channels: int = 3) -> tuple[torch.Tensor, list[Target], list[str]]:
    """(images (n, channels, S, S) float32 in [-1, 1], targets, class names) of a COCO-format
    detection file: ``{"images": [{"id", "file_name", "width", "height"}], "annotations": [{"id",
    "image_id", "category_id", "bbox": [x, y, w, h] in pixels}], "categories": [{"id", "name"}]}``.

    Images are read from ``image_dir`` (default: the JSON file's folder) by ``file_name``, resized
    (not cropped: the boxes keep their place) to S x S; label i is the i-th category in sorted id
    order. An image without annotations is kept (all background); ``iscrowd`` is not read (every
    annotation is one object to find). A box outside its image, an
    unknown category id, an annotation of an unknown image, a file Pillow cannot read: each ends
    with one DataError naming the file and the entry.
    """
    from axon.data.images import read_image

    path = Path(annotations)
    with reading(path, "COCO annotations"):
        data = json.loads(path.read_text(encoding="utf-8"))
    folder = Path(image_dir) if image_dir is not None else path.parent
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO detection file (expected lists \"images\", \"annotations\" and \"categories\")")
    try:
        categories = sorted((c["id"], str(c.get("name", c["id"]))) for c in data["categories"])
        label_of = {cid: i for i, (cid, _) in enumerate(categories)}
        entries = {im["id"]: im for im in data["images"]}
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: an image or category without {e} (COCO: every entry has an \"id\")") from None
    if not categories:
        raise DataError(f"{path}: no categories")
    per_image: dict = {i: ([], []) for i in entries}
    for n, ann in enumerate(data["annotations"]):
        where = f"{path}: annotation {ann.get('id', f'#{n}') if isinstance(ann, dict) else f'#{n}'}"
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= set(ann):
            raise DataError(f"{where}: needs image_id, category_id and bbox")
        if ann["image_id"] not in entries:
            raise DataError(f"{where}: image_id {ann['image_id']!r} is not in \"images\"")
        if ann["category_id"] not in label_of:
            raise DataError(f"{where}: unknown category_id {ann['category_id']!r} (categories: "
                            f"{', '.join(str(c) for c, _ in categories)})")
        im = entries[ann["image_id"]]
        bbox = ann["bbox"]
        W, H = im.get("width"), im.get("height")
        ok = (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
              and isinstance(W, (int, float)) and isinstance(H, (int, float)))
        if not ok:
            raise DataError(f"{where}: bbox must be [x, y, w, h] and its image {im.get('file_name')!r} needs width "
                            f"and height")
        x, y, w, h = bbox
        if not (w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H):
            raise DataError(f"{where}: box [x, y, w, h] = {bbox} lies outside its {W}x{H} image "
                            f"{im.get('file_name')!r} (or is empty)")
        labels, boxes = per_image[ann["image_id"]]
        labels.append(label_of[ann["category_id"]])
        boxes.append([(x + w / 2) / W, (y + h / 2) / H, w / W, h / H])
    images, targets = [], []
    for image_id, im in entries.items():
        if "file_name" not in im:
            raise DataError(f"{path}: image {image_id!r} has no file_name")
        images.append(read_image(folder / im["file_name"], image_size, channels, crop=False))
        labels, boxes = per_image[image_id]
        targets.append((torch.tensor(labels, dtype=torch.int64),
                        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)))
    if not images:
        raise DataError(f"{path}: no images")
    return torch.from_numpy(np.stack(images)), targets, [name for _, name in categories]


# ----------------------------------------------------------------------------------------------
# The dataset of batches


def pad_targets(targets: list[Target], max_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (B, M) with -1 after each image's objects, boxes (B, M, 4) with zeros after them)."""
    labels = torch.full((len(targets), max_objects), -1, dtype=torch.int64)
    boxes = torch.zeros(len(targets), max_objects, 4)
    for b, (lab, box) in enumerate(targets):
        labels[b, :len(lab)] = lab
        boxes[b, :len(lab)] = box
    return labels, boxes


class DetectionImages:
    """Images and their targets as padded batches (see the module docstring); ``max_objects``
    (default: the most objects of any image) fixes M, so every batch has the same shapes."""

    def __init__(self, images: torch.Tensor, targets: list[Target], hflip: bool = False, max_objects: int | None = None):
        if len(images) == 0:
            raise DataError("no images")
        self.images, self.targets, self.hflip = images, targets, hflip
        most = max(len(t[0]) for t in targets)
        self.max_objects = max(most, 1) if max_objects is None else max_objects
        self.labels, self.boxes = pad_targets(targets, self.max_objects)  # (N, M), (N, M, 4)

    def __len__(self) -> int:
        return len(self.images)

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        idx = torch.from_numpy(rng.integers(0, len(self.images), size=batch_size))
        images, labels, boxes = self.images[idx], self.labels[idx], self.boxes[idx].clone()
        if self.hflip:
            flip = torch.from_numpy(rng.random(batch_size) < 0.5)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            real = labels >= 0
            boxes[..., 0] = torch.where(flip[:, None] & real, 1.0 - boxes[..., 0], boxes[..., 0])  # cx -> 1 - cx
        return images.contiguous(), labels, boxes

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        starts = range(0, len(self.images), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return ((self.images[s:s + batch_size], self.labels[s:s + batch_size], self.boxes[s:s + batch_size])
                for s in starts)


__all__ = ["SHAPE_CLASSES", "DetectionImages", "load_coco", "pad_targets", "shapes"]

"""The ``image_classify`` task: one label per image, for every image family (``resnet``; the ViT,
Vision Mamba and hybrid families serve it too, and ``routed_vision`` over classifiers).

    images (B, C, H, W) in [-1, 1] --augment (training only)--> model(images) -> logits (B, K)
                                                                  --> cross-entropy with the labels

Data:

* ``data.dataset: digits`` (the default when ``data.dir`` is null): scikit-learn's bundled 8x8
  digits, 1,438 training and 359 validation images (the stratified split every digits run uses,
  ``axon.data.images.digits_split``); the model must take 8x8 grey images (``model.image_size:
  8``, ``model.in_channels: 1``);
* ``data.dir``: a folder with one sub-folder per class (``axon.data.images.load_image_folder``:
  read with Pillow, centre-cropped and resized to ``model.image_size``, grey or RGB by
  ``model.in_channels``); ``image_classify.val_fraction`` of each class is held out (seed 0).
  A file Pillow cannot read ends the run with one line naming it.

Training batches draw images with replacement from a generator seeded with (seed, step,
micro_step) and augment them (``axon.data.images.LabelledImages``): a random crop with
``image_classify.crop_padding`` pixels of padding, and a horizontal flip of half of them with
``image_classify.hflip`` (null: on for a folder, off for the digits, where a mirrored digit is no
longer that digit). ``model.num_labels`` is filled from the data (the classes of the folder, 10
digits); a configured value must agree.

Metrics: the objective's ``accuracy`` on every evaluation; the final figures (``result.json``,
``axon eval``) add ``acc`` and ``top5`` (``top{image_classify.top_k}``: the label among the k
highest logits) over the split, and ``majority_baseline`` (the accuracy of always answering the
most frequent training class). Samples: the predictions of the first ``image_classify.samples``
validation images, with the probability of each prediction. ``labels.json`` names the classes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch

from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup

LABELS_FILE = "labels.json"


def load_images(cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str], str]:
    """(x_train, y_train, x_val, y_val, class names, where from) for the run's ``data`` section,
    checked against the model's image fields."""
    from axon.data.images import DIGITS_CLASSES, digits_split, load_image_folder, split

    data, m = cfg.data, cfg.model
    if data.dir is not None:
        if data.dataset is not None:
            raise ConfigError(f"data.dataset / data.dir: give one source of images, not both (data.dataset="
                              f"{data.dataset}, data.dir={data.dir}); set data.dataset=null to read the folder")
        folder = Path(data.dir)
        x, y, names = load_image_folder(folder, m.image_size, m.in_channels)
        if len(names) < 2:
            raise DataError(f"{folder}: a classifier needs at least two classes (one sub-folder per class), found "
                            f"{len(names)}")
        train_idx, val_idx = split(y.numpy(), cfg.image_classify.val_fraction, seed=0)
        if len(val_idx) == 0:
            raise DataError(f"{folder}: {len(x)} images leave none for validation at image_classify.val_fraction="
                            f"{cfg.image_classify.val_fraction}; add images or raise the fraction")
        tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        return x[tr], y[tr], x[va], y[va], names, str(folder)
    if data.dataset not in (None, "digits"):
        raise ConfigError(f"data.dataset: {data.dataset!r} is a detection set (task: detect); image_classify reads "
                          "digits or a folder of classes (data.dir)")
    if (m.image_size, m.in_channels) != (8, 1):
        raise ConfigError(f"model.image_size / model.in_channels: the digits are 8x8 grey, got {m.image_size}x"
                          f"{m.image_size} with {m.in_channels} channels (set model.image_size=8 model.in_channels=1)")
    xt, yt = digits_split("train")
    xv, yv = digits_split("val")
    return xt, yt, xv, yv, [str(i) for i in range(DIGITS_CLASSES)], "digits"


def fill_num_labels(cfg, n: int, source: str) -> None:
    m = cfg.model
    if m.num_labels is None:
        m.num_labels = n
    elif m.num_labels != n:
        raise ConfigError(f"model.num_labels={m.num_labels} but {source} has {n} classes; leave model.num_labels null "
                          "to take them from the data")


@torch.no_grad()
def topk_metrics(model, data, k: int, batch_size: int = 256) -> dict[str, float]:
    """``acc`` and ``top{k}`` of ``model`` (eval mode: batch norm's running averages) over every
    image of ``data`` (its evaluation batches)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    hits1 = hitsk = n = 0
    try:
        for images, labels in data.iter_eval_batches(batch_size, 1):
            logits = model(images.to(device, dtype))  # (B, K)
            labels = labels.to(device)
            top = logits.topk(min(k, logits.size(-1)), dim=-1).indices  # (B, k)
            hits1 += int((top[:, 0] == labels).sum())
            hitsk += int((top == labels[:, None]).any(-1).sum())
            n += len(labels)
    finally:
        model.train(was_training)
    return {"acc": hits1 / n, f"top{k}": hitsk / n}


def image_classify_task(cfg, device: torch.device) -> TaskSetup:
    from axon.data.images import LabelledImages
    from axon.objectives.classification import ImageClassification

    ic = cfg.image_classify
    xt, yt, xv, yv, names, source = load_images(cfg)
    fill_num_labels(cfg, len(names), source)
    hflip = ic.hflip if ic.hflip is not None else cfg.data.dir is not None  # auto: never mirror the digits
    train = LabelledImages(xt, yt, crop_padding=ic.crop_padding, hflip=hflip)
    val = LabelledImages(xv, yv)
    counts = Counter(yt.tolist())
    top = max(counts, key=lambda i: (counts[i], -i))  # the most frequent training class (ties: the first)
    majority = {"train": float((yt == top).float().mean()), "val": float((yv == top).float().mean())}

    def summarize(loss: float, split: str) -> dict:
        return {"majority_baseline": majority[split]}

    def model_metrics(model, split: str) -> dict:
        return topk_metrics(model, val if split == "val" else LabelledImages(xt, yt), ic.top_k)

    @torch.no_grad()
    def sample_fn(model, step: int) -> str:
        was_training = model.training
        model.eval()
        p = next(model.parameters())
        try:
            probs = model(xv[:ic.samples].to(p.device, p.dtype)).softmax(-1)  # (S, K)
        finally:
            model.train(was_training)
        lines = []
        for i, (row, label) in enumerate(zip(probs, yv[:ic.samples].tolist())):
            guess = int(row.argmax())
            mark = "ok" if guess == label else "WRONG"
            lines.append(f"val image {i}: label {names[label]}, predicted {names[guess]} (p={float(row[guess]):.2f}) {mark}")
        return "\n".join(lines)

    def write_labels(path: Path) -> None:
        path.write_text(json.dumps({"labels": names, "source": source, "train_images": len(xt),
                                    "val_images": len(xv)}, indent=1, ensure_ascii=False) + "\n")

    return TaskSetup(train_data=train, val_data=val, objective=ImageClassification(), summarize=summarize,
                     model_metrics=model_metrics, sample_fn=sample_fn if ic.samples else None,
                     extra_files={LABELS_FILE: write_labels})


__all__ = ["LABELS_FILE", "image_classify_task", "load_images", "topk_metrics"]

"""The ``detect`` task: object detection as set prediction, for the ``detr`` family (and
``routed_vision`` over DETR experts).

    images (B, C, S, S) in [-1, 1] --hflip, boxes too (training only)--> model(images)
        -> (logits (L, B, N, K + 1), boxes (L, B, N, 4)) --> DETR's set loss (axon.objectives.detr)

Data (``axon.data.detection``):

* ``data.dataset: shapes`` (the default when ``data.train_file`` is null): generated 64x64 RGB
  canvases with 1-6 circles, squares and triangles (3 classes), ``detect.train_images`` and
  ``detect.val_images`` of them from two streams of ``detect.data_seed`` (so every seed of a
  comparison trains on the same images);
* ``data.train_file``: your COCO-format detection JSON, its images in ``data.dir`` (null: the
  JSON's folder), resized to ``model.image_size``; ``data.val_file`` another such file for
  validation, or null to hold out ``detect.val_fraction`` of the images (seed 0). A box outside
  its image, an unknown category id or an unreadable image ends the run in one line naming the
  file and the entry.

``model.num_labels`` is filled from the data (3 shapes, or the file's categories); a configured
value must agree, and ``model.num_queries`` must be at least the most objects of any image.

Metrics: at every evaluation, ``map`` (COCO's mAP@[.5:.95]) and ``map50`` (mAP@.5) over the
validation images through pycocotools' COCOeval (boxes in pixels of the model's input; every
query's box is a detection, scored by its most probable class, as DETR's PostProcess), logged
as ``val_map`` / ``val_map50``; the final figures (``result.json``, ``axon eval``) have them too.
Samples: the confident predictions of the first ``detect.samples`` validation images.
``axon sample RUN`` and ``axon eval RUN`` draw the predicted (and true) boxes on validation
images into a PNG (:func:`save_detections`). ``labels.json`` names the classes. pycocotools is
imported only here, inside the metric: axon itself does not need it.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch

from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup

LABELS_FILE = "labels.json"


def load_detection(cfg) -> tuple[torch.Tensor, list, torch.Tensor, list, list[str], str]:
    """(train images, train targets, val images, val targets, class names, where from) of the
    run's ``data`` and ``detect`` sections, checked against the model's image fields."""
    from axon.data.detection import SHAPE_CLASSES, load_coco, shapes
    from axon.data.images import split

    data, det, m = cfg.data, cfg.detect, cfg.model
    if data.train_file is not None:
        if data.dataset is not None:
            raise ConfigError(f"data.dataset / data.train_file: give one source of images, not both (data.dataset="
                              f"{data.dataset}, data.train_file={data.train_file}); set data.dataset=null to read the file")
        xt, tt, names = load_coco(data.train_file, data.dir, m.image_size, m.in_channels)
        if data.val_file is not None:
            xv, tv, val_names = load_coco(data.val_file, data.dir, m.image_size, m.in_channels)
            if val_names != names:
                raise DataError(f"{data.val_file}: its categories {val_names} are not those of {data.train_file} {names}")
            return xt, tt, xv, tv, names, str(data.train_file)
        train_idx, val_idx = split([0] * len(xt), det.val_fraction, seed=0)
        if len(val_idx) == 0 or len(train_idx) == 0:
            raise DataError(f"{data.train_file}: {len(xt)} images leave none for training or validation at "
                            f"detect.val_fraction={det.val_fraction}; add images, change the fraction or give data.val_file")
        return (xt[torch.from_numpy(train_idx)], [tt[i] for i in train_idx], xt[torch.from_numpy(val_idx)],
                [tt[i] for i in val_idx], names, str(data.train_file))
    if data.dataset not in (None, "shapes"):
        raise ConfigError(f"data.dataset: {data.dataset!r} is not a detection set; detect reads shapes or a COCO file "
                          "(data.train_file)")
    if m.in_channels != 3:
        raise ConfigError(f"model.in_channels: the shapes are RGB, got {m.in_channels} (set model.in_channels=3)")
    xt, tt = shapes(det.train_images, [det.data_seed, 0], m.image_size)
    xv, tv = shapes(det.val_images, [det.data_seed, 1], m.image_size)
    return xt, tt, xv, tv, list(SHAPE_CLASSES), "shapes"


# ----------------------------------------------------------------------------------------------
# Predictions and COCO's mAP


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image (scores (N,), labels (N,), boxes (N, 4) cxcywh in [0, 1]) of the last decoder
    layer, in eval mode: each query's most probable real class and its probability (DETR's
    PostProcess: "no object" is never a label, it only lowers the score)."""
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    out = []
    try:
        for s in range(0, len(images), batch_size):
            logits, boxes = model(images[s:s + batch_size].to(p.device, p.dtype))
            prob = logits[-1].float().softmax(-1)[..., :-1]  # (B, N, K): "no object" dropped
            scores, labels = prob.max(-1)
            out += [(scores[b].cpu(), labels[b].cpu(), boxes[-1][b].float().cpu()) for b in range(len(scores))]
    finally:
        model.train(was_training)
    return out


def coco_map(predictions, targets, image_size: int) -> dict[str, float]:
    """``map`` (mAP@[.5:.95]) and ``map50`` of ``predictions`` (from :func:`predict`) against
    ``targets`` through pycocotools' COCOeval, boxes in pixels of an image_size square image."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ConfigError("the detect task's mAP needs pycocotools: pip install 'axon-lab[vision]'") from None

    def xywh(box: torch.Tensor) -> list[float]:  # cxcywh in [0, 1] -> COCO's [x, y, w, h] in pixels
        cx, cy, w, h = (box.double() * image_size).tolist()
        return [cx - w / 2, cy - h / 2, w, h]

    n_labels = 1 + max([int(t[0].max()) for t in targets if len(t[0])] + [int(p[1].max()) for p in predictions])
    gt = {"images": [{"id": i + 1, "width": image_size, "height": image_size} for i in range(len(targets))],
          "categories": [{"id": c + 1} for c in range(n_labels)], "annotations": []}
    for i, (labels, boxes) in enumerate(targets):
        for label, box in zip(labels.tolist(), boxes):
            x = xywh(box)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": label + 1,
                                      "bbox": x, "area": x[2] * x[3], "iscrowd": 0})
    if not gt["annotations"]:
        return {"map": 0.0, "map50": 0.0}
    dets = [{"image_id": i + 1, "category_id": int(label) + 1, "bbox": xywh(box), "score": float(score)}
            for i, (scores, labels, boxes) in enumerate(predictions) for score, label, box in zip(scores, labels, boxes)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and its table
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(dets), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return {"map": max(float(e.stats[0]), 0.0), "map50": max(float(e.stats[1]), 0.0)}


# ----------------------------------------------------------------------------------------------
# Pictures


def save_detections(images: torch.Tensor, targets, predictions, names: list[str], path: Path,
                    threshold: float = 0.5, scale: int = 4, columns: int = 4) -> Path:
    """A PNG grid of ``images`` (n, C, S, S) in [-1, 1], each ``scale`` times larger, with the true
    boxes in thin white and the predictions scoring at least ``threshold`` in colour (one per
    class), labelled with the class and score. Written via a temporary file."""
    from PIL import Image, ImageDraw

    from axon.atomic import atomic_write_bytes

    palette = [(255, 80, 80), (80, 220, 80), (90, 150, 255), (255, 200, 40), (230, 90, 230), (60, 220, 220)]
    n, C, S, _ = images.shape
    cell = S * scale
    cols = min(columns, n)
    rows = -(-n // cols)
    sheet = Image.new("RGB", (cols * (cell + 2) + 2, rows * (cell + 2) + 2), (255, 255, 255))
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    for i in range(n):
        array = pixels[i].permute(1, 2, 0).numpy()
        im = Image.fromarray(array[:, :, 0] if C == 1 else array).convert("RGB").resize((cell, cell), Image.NEAREST)
        draw = ImageDraw.Draw(im)

        def corners(box):
            cx, cy, w, h = (box.double() * cell).tolist()
            return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]

        for box in targets[i][1]:
            draw.rectangle(corners(box), outline=(255, 255, 255), width=1)
        scores, labels, boxes = predictions[i]
        for score, label, box in zip(scores.tolist(), labels.tolist(), boxes):
            if score >= threshold:
                colour = palette[label % len(palette)]
                x0, y0, x1, y1 = corners(box)
                draw.rectangle([x0, y0, x1, y1], outline=colour, width=2)
                draw.text((x0 + 2, max(y0 - 11, 0)), f"{names[label]} {score:.2f}", fill=colour)
        r, c = divmod(i, cols)
        sheet.paste(im, (2 + c * (cell + 2), 2 + r * (cell + 2)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def draw_run(cfg, model, path: Path, split: str = "val", count: int | None = None) -> Path:
    """The picture of a detection run: its first ``count`` (default ``detect.samples``, at least 1)
    images of ``split`` with true and predicted boxes (what ``axon sample`` / ``axon eval`` write)."""
    xt, tt, xv, tv, names, _ = load_detection(cfg)
    images, targets = (xv, tv) if split == "val" else (xt, tt)
    n = min(len(images), max(count if count is not None else cfg.detect.samples, 1))
    with model.averaged():
        predictions = predict(model, images[:n])
    return save_detections(images[:n], targets[:n], predictions, names, path, cfg.detect.score_threshold)


# ----------------------------------------------------------------------------------------------
# The task


def detect_task(cfg, device: torch.device) -> TaskSetup:
    from axon.data.detection import DetectionImages
    from axon.objectives.detr import SetCriterion
    from axon.tasks.image_classify import fill_num_labels

    det, m = cfg.detect, cfg.model
    xt, tt, xv, tv, names, source = load_detection(cfg)
    fill_num_labels(cfg, len(names), source)
    most = max(len(t[0]) for t in (*tt, *tv))
    if m.num_queries < most:
        raise ConfigError(f"model.num_queries={m.num_queries} but an image of {source} has {most} objects; DETR predicts "
                          f"at most one object per query (set model.num_queries={most} or more)")
    train = DetectionImages(xt, tt, hflip=det.hflip, max_objects=most)
    val = DetectionImages(xv, tv, max_objects=most)
    objective = SetCriterion(det.cost_class, det.cost_bbox, det.cost_giou, det.loss_ce, det.loss_bbox, det.loss_giou,
                             det.eos_coef, det.aux_loss)

    def model_metrics(model, split: str) -> dict:
        images, targets = (xv, tv) if split == "val" else (xt, tt)
        return coco_map(predict(model, images), targets, m.image_size)

    def eval_fn(model, step: int, run_dir) -> dict:
        return coco_map(predict(model, xv), tv, m.image_size)

    def sample_fn(model, step: int) -> str:
        lines = []
        for i, (scores, labels, boxes) in enumerate(predict(model, xv[:det.samples])):
            keep = scores >= det.score_threshold
            truth = ", ".join(names[c] for c in tv[i][0].tolist())
            guess = ", ".join(f"{names[c]} {float(s):.2f}" for s, c in zip(scores[keep], labels[keep].tolist()))
            lines.append(f"val image {i}: true [{truth}]; predicted [{guess}]")
        return "\n".join(lines)

    def write_labels(path: Path) -> None:
        path.write_text(json.dumps({"labels": names, "source": source, "train_images": len(xt),
                                    "val_images": len(xv)}, indent=1, ensure_ascii=False) + "\n")

    return TaskSetup(train_data=train, val_data=val, objective=objective, model_metrics=model_metrics, eval_fn=eval_fn,
                     sample_fn=sample_fn if det.samples else None, extra_files={LABELS_FILE: write_labels})


__all__ = ["LABELS_FILE", "coco_map", "detect_task", "draw_run", "load_detection", "predict", "save_detections"]

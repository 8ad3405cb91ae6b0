"""The ``mixed_modal`` task: images and captions, both ways, in one model (issue 22).

Early fusion (Chameleon Team 2024; any causal LM family, e.g. ``decoder``): a VQ-VAE run
(``mixed_modal.image_tokenizer``, task ``vq``) turns each image into n codes, which become tokens of
the decoder's vocabulary beside the caption's characters (``axon.data.captions.TokenLayout``):

    caption -> image:   a handwritten seven, drawn thin, upright <img> k1 .. k16 </img> <eos>
    image -> caption:   <img> k1 .. k16 </img> a handwritten seven, drawn thin, upright <eos>

One next-token loss over every position, text and image alike (``axon.objectives.mixed_modal``);
``mixed_modal.direction`` picks which sequences are taught (both: each example draws one). Sampling
is modality-aware (``axon.generate.modal.ImageSpans``): after ``<img>`` exactly n codes, then
``</img>``; so a drawn image always decodes.

Late fusion (MM1, McKinnon et al. 2024; family ``late_fusion``): a ViT reads the pixels, a connector
makes k vectors, the decoder reads them as a prefix and writes ``caption <eos>``; image -> caption only.

Data: the 8x8 digits (1,438 train / 359 val) with generated captions (``axon.data.captions.digit_captions``:
the class, thin or bold against the class's median ink, the slant), or ``data.train_file``, a JSONL of
``{"image": PATH, "caption": TEXT}`` (images under ``data.dir``, default the file's folder;
``data.val_file``, else every 10th pair held out, as every file-reading task does). A bad line or image ends in one line
naming it. The caption tokenizer is the characters of all the captions (``tokenizer.json``);
``mixed_modal.json`` records the vocabulary's layout and the image tokenizer.

Metrics, at each evaluation (``val_*`` in metrics.jsonl) and at the end (``result.json``, ``axon eval``),
on the split's first ``mixed_modal.eval_examples``:
    image -> caption  ``caption_exact`` (the greedy caption equals the reference); digits:
                      ``caption_class_acc`` (it names the right digit)
    caption -> image  ``image_spans_valid`` (spans that decode to n codes); digits: ``image_class_acc``
                      (the digits classifier, ``axon.eval.digits_classifier``, reads the asked digit in
                      the drawn image)
and, at each evaluation, ``logit_norm``, ``ce_image`` and ``ce_text`` over ``train.eval_batches``
validation batches (Chameleon's stability signals). Each evaluation of an early-fusion run that
draws writes ``samples/step_NNNNNNN.png`` (a column per caption: the real image above drawn ones);
samples.txt holds captions of validation images. ``axon sample RUN --prompt CAPTION --out FILE.png``
draws images, ``axon sample RUN --image FILE`` writes a caption.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from axon.errors import ConfigError
from axon.tasks.base import TaskSetup, set_vocab_size

SAMPLES_DIR = "samples"
LAYOUT_FILE = "mixed_modal.json"
DRAWN_PER_CAPTION = 3  # drawn images under each real one in the evaluation pictures


def is_late(cfg) -> bool:
    return cfg.model.family == "late_fusion"


# ---------------------------------------------------------------------------------------------
# Data


def load_pairs(cfg, image_size: int, channels: int):
    """(train images, train captions, train labels or None, val images, val captions, val labels or
    None, where from) of the run's ``data`` section."""
    from axon.data.captions import class_medians, digit_captions, read_caption_file
    from axon.data.images import DIGITS_CLASSES, digits_split, load_digits

    data = cfg.data
    if data.train_file is not None:
        if data.dataset is not None:
            raise ConfigError(f"data.dataset / data.train_file: give one source of captioned images, not both "
                              f"(data.dataset={data.dataset}); set data.dataset=null to read the file")
        from axon.data.files import read_splits

        train, train_file, val, _ = read_splits(  # without data.val_file: every 10th pair held out
            data, lambda path: read_caption_file(path, data.dir, image_size, channels), what="captioned images")

        def stack(pairs):
            return torch.from_numpy(np.stack([image for image, _ in pairs])), [caption for _, caption in pairs]

        return *stack(train), None, *stack(val), None, str(train_file)
    if data.dataset not in (None, "digits"):
        raise ConfigError(f"data.dataset: {data.dataset!r} has no captions; mixed_modal reads the digits (data.dataset="
                          "digits) or a caption file (data.train_file)")
    if (image_size, channels) != (8, 1):
        raise ConfigError(f"the digits are 8x8 grey, but the model takes {image_size}x{image_size} images with "
                          f"{channels} channels")
    x, y = load_digits()
    medians = class_medians(x, y, DIGITS_CLASSES)  # over all 1,797: the same captions whichever split
    xt, yt = digits_split("train")
    xv, yv = digits_split("val")
    return xt, digit_captions(xt, yt, medians), yt, xv, digit_captions(xv, yv, medians), yv, "digits"


@torch.no_grad()
def encode_images(vq, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Codes (N, n) of ``images`` under the image tokenizer ``vq`` (eval mode)."""
    p = next(vq.parameters())
    return torch.cat([vq.encode(images[i:i + batch_size].to(p.device, p.dtype)).cpu()
                      for i in range(0, len(images), batch_size)])


# ---------------------------------------------------------------------------------------------
# Generation: captions of images, images of captions


def caption_tokens(model, layout, max_new: int, images: torch.Tensor | None = None,
                   codes: torch.Tensor | None = None, batch_size: int = 256) -> list[list[int]]:
    """Greedy caption ids of each image: late fusion from its pixels (``images``), early fusion from its
    codes (``codes`` (N, n): the prompt ``<img> codes </img>``, then modality-aware decoding)."""
    from axon.generate import generate
    from axon.generate.modal import ImageSpans

    out: list[list[int]] = []
    if codes is None:
        p = next(model.parameters())
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(p.device, p.dtype)
            out += [layout.caption_ids(t) for t in model.greedy_caption(x, [layout.img_close], max_new, layout.eos)]
        return out
    rule = ImageSpans.of(layout, model.config.vocab_size)
    for i in range(0, len(codes), batch_size):
        prompts = [layout.image_span(c) for c in codes[i:i + batch_size].tolist()]
        gen = generate(model, prompts, max_new, temperature=0, stop_tokens=[layout.eos], allowed=rule)
        out += [layout.caption_ids(t) for t in gen.tokens]
    return out


def draw_codes(model, layout, captions: list[list[int]], temperature: float, seed: int,
               batch_size: int = 256) -> list[list[int] | None]:
    """Image codes for each caption: the prompt ``caption <img>``, then n codes and ``</img>`` drawn
    under :class:`~axon.generate.modal.ImageSpans`; None for a span that does not decode (never, with the rule)."""
    from axon.generate import generate
    from axon.generate.modal import ImageSpans

    rule = ImageSpans.of(layout, model.config.vocab_size)
    device = next(model.parameters()).device
    out: list[list[int] | None] = []
    for i in range(0, len(captions), batch_size):
        prompts = [[*c, layout.img_open] for c in captions[i:i + batch_size]]
        gens = [torch.Generator(device=device).manual_seed(seed + i + j) for j in range(len(prompts))]
        gen = generate(model, prompts, layout.tokens_per_image + 1, temperature=temperature,
                       generator=gens if temperature > 0 else None, allowed=rule)
        out += [layout.image_codes(t) for t in gen.tokens]
    return out


def decode_codes(vq, codes: list[list[int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (M, C, H, W), which of the codes were valid (N,) bool) of the valid spans."""
    valid = torch.tensor([c is not None for c in codes], dtype=torch.bool)
    rows = [c for c in codes if c is not None]
    if not rows:
        cfg = vq.config
        return torch.zeros(0, cfg.in_channels, cfg.image_size, cfg.image_size), valid
    p = next(vq.parameters())
    with torch.no_grad():
        return vq.decode(torch.tensor(rows, dtype=torch.long, device=p.device)).float().cpu(), valid


def load_run_layout(run_dir, cfg):
    """(TokenLayout, image tokenizer or None for late fusion) of a mixed_modal run directory, from its
    ``mixed_modal.json``; the image tokenizer is the vq run it records (which must still be there)."""
    from axon.data.captions import TokenLayout
    from axon.errors import DataError, reading

    file = Path(run_dir) / LAYOUT_FILE
    with reading(file, "the run's vocabulary layout"):
        record = json.loads(file.read_text())
    try:
        lay = record["layout"]
        layout = TokenLayout(int(lay["text_vocab"]), int(lay["codebook_size"]), int(lay["tokens_per_image"]))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{file}: not a mixed_modal layout file") from None
    if record.get("fusion") == "late":
        return layout, None
    from axon.tasks.vq import load_image_tokenizer

    vq = load_image_tokenizer(record["image_tokenizer"], "cpu")
    if (vq.config.codebook_size, vq.config.tokens_per_image) != (layout.codebook_size, layout.tokens_per_image):
        raise DataError(f"{record['image_tokenizer']}: its codebook ({vq.config.codebook_size} codes, "
                        f"{vq.config.tokens_per_image} per image) is not the one {run_dir} was trained with")
    return layout, vq


# ---------------------------------------------------------------------------------------------
# The task


class MixedModal:
    """Everything a mixed-modal run needs after its data is read: the layout, the splits, the image
    tokenizer (early fusion), the metrics and pictures."""

    def __init__(self, cfg):
        from axon.data.captions import CaptionedImages, TokenLayout
        from axon.data.tokenizers import CharTokenizer

        mm, m = cfg.mixed_modal, cfg.model
        self.cfg, self.late = cfg, is_late(cfg)
        self.vq = None
        if self.late:
            if mm.direction != "image_to_caption":
                raise ConfigError("mixed_modal.direction: a late_fusion model reads images and writes captions only; "
                                  "set mixed_modal.direction=image_to_caption")
            size, channels = m.vision_image_size, m.vision_in_channels
        else:
            if mm.image_tokenizer is None:
                raise ConfigError("mixed_modal.image_tokenizer: early fusion needs an image tokenizer, the directory of "
                                  "a vq run (axon train --config configs/multimodal/vq_digits.yaml)")
            from axon.tasks.vq import load_image_tokenizer

            self.vq = load_image_tokenizer(mm.image_tokenizer, "cpu")
            # recorded absolute in the run's config.yaml, so axon eval / --resume from elsewhere find it
            mm.image_tokenizer = str(Path(mm.image_tokenizer).resolve())
            size, channels = self.vq.config.image_size, self.vq.config.in_channels
        xt, ct, yt, xv, cv, yv, self.source = load_pairs(cfg, size, channels)
        self.tokenizer = CharTokenizer.from_text(ct + cv)
        vq_cfg = self.vq.config if self.vq is not None else None
        self.layout = TokenLayout(self.tokenizer.vocab_size, vq_cfg.codebook_size if vq_cfg else 0,
                                  vq_cfg.tokens_per_image if vq_cfg else 0)
        set_vocab_size(cfg, self.layout.vocab_size)
        self.images = {"train": xt, "val": xv}
        self.captions = {"train": ct, "val": cv}
        self.labels = {"train": yt, "val": yv}  # None: a caption file
        self.ids = ids = {s: [self.tokenizer.encode(c) for c in self.captions[s]] for s in ("train", "val")}
        self.codes = {s: encode_images(self.vq, self.images[s]) for s in ids} if self.vq is not None else {}
        self.data = {s: CaptionedImages(self.layout, ids[s], images=self.images[s] if self.late else None,
                                        codes=self.codes.get(s), direction=mm.direction) for s in ids}
        need = max(d.longest() for d in self.data.values())
        if m.block_size < need:
            raise ConfigError(f"model.block_size={m.block_size}: the longest example needs {need} positions; set "
                              f"model.block_size={need} or more")
        self.max_caption = max(len(c) for c in ids["train"] + ids["val"]) + 1  # room for <eos>
        if not self.late:
            self.max_caption = min(self.max_caption, m.block_size - self.layout.tokens_per_image - 2)
        self.directions = ("image_to_caption",) if self.late else {
            "both": ("caption_to_image", "image_to_caption")}.get(mm.direction, (mm.direction,))
        self._classifier = None

    # -- metrics ----------------------------------------------------------------------------------

    def classifier(self):
        if self._classifier is None:
            from axon.eval.digits_classifier import digits_classifier

            self._classifier = digits_classifier(self.cfg.data.cache_dir)
        return self._classifier

    def captions_of(self, model, split: str, n: int) -> list[str]:
        src = {"images": self.images[split][:n]} if self.late else {"codes": self.codes[split][:n]}
        return [self.tokenizer.decode(t) for t in caption_tokens(model, self.layout, self.max_caption, **src)]

    def drawn(self, model, captions: list[list[int]], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        codes = draw_codes(model, self.layout, captions, self.cfg.mixed_modal.image_temperature, seed)
        return decode_codes(self.vq, codes)

    @torch.no_grad()
    def generation_metrics(self, model, split: str) -> dict[str, float]:
        from axon.data.captions import caption_class

        n = min(self.cfg.mixed_modal.eval_examples, len(self.captions[split]))
        if n == 0:
            return {}
        out: dict[str, float] = {}
        labels = self.labels[split]
        if "image_to_caption" in self.directions:
            got = self.captions_of(model, split, n)
            ref = self.captions[split][:n]
            out["caption_exact"] = sum(g == r for g, r in zip(got, ref)) / n
            if labels is not None:
                out["caption_class_acc"] = sum(caption_class(g) == int(k) for g, k in zip(got, labels[:n])) / n
        if "caption_to_image" in self.directions:
            images, valid = self.drawn(model, self.ids[split][:n], seed=self.cfg.train.seed)
            out["image_spans_valid"] = float(valid.float().mean())
            if labels is not None:
                guess = self.classifier().logits(images).argmax(-1) if len(images) else torch.zeros(0, dtype=torch.long)
                out["image_class_acc"] = float((guess == labels[:n][valid]).sum()) / n  # an invalid span counts wrong
        return out

    @torch.no_grad()
    def stability(self, model, objective) -> dict[str, float]:
        """Mean logit norm and the image / text cross-entropies over ``train.eval_batches`` validation batches."""
        was_training = model.training
        model.eval()
        p = next(model.parameters())
        sums: dict[str, float] = {}
        batches = 0
        try:
            for batch in self.data["val"].iter_eval_batches(self.cfg.train.batch_size, self.cfg.model.block_size,
                                                            self.cfg.train.eval_batches):
                batch = tuple(t.to(p.device, p.dtype if t.is_floating_point() else t.dtype) for t in batch)
                _, parts = objective(model, batch)
                for k in ("logit_norm", "ce_image", "ce_text"):
                    if k in parts:
                        sums[k] = sums.get(k, 0.0) + float(parts[k])
                batches += 1
        finally:
            model.train(was_training)
        return {k: v / batches for k, v in sums.items()} if batches else {}

    # -- pictures and samples ---------------------------------------------------------------------

    def picture_captions(self, split: str = "val") -> list[int]:
        """Examples shown in a picture: the first of each digit (digits), else the first ``samples``."""
        labels = self.labels[split]
        if labels is None:
            return list(range(min(self.cfg.mixed_modal.samples, len(self.captions[split]))))
        return [int((labels == k).nonzero()[0]) for k in sorted(set(labels.tolist()))]

    @torch.no_grad()
    def draw_picture(self, model, rows: list[int], path: Path, per_caption: int = DRAWN_PER_CAPTION,
                     split: str = "val", seed: int = 0) -> Path:
        """A PNG: one column per example in ``rows``, its real image on top, ``per_caption`` drawn below."""
        from axon.tasks.diffusion import save_grid

        caps = [self.ids[split][i] for i in rows]
        drawn, valid = self.drawn(model, [c for _ in range(per_caption) for c in caps], seed)
        full = torch.full((len(valid), *drawn.shape[1:]), -1.0)
        full[valid] = drawn
        real = self.images[split][rows].float()
        return save_grid(torch.cat([real, full]), path, columns=len(rows))

    @torch.no_grad()
    def sample_text(self, model, step: int) -> str:
        n = self.cfg.mixed_modal.samples
        lines = []
        if "image_to_caption" in self.directions and n:
            for got, ref in zip(self.captions_of(model, "val", n), self.captions["val"][:n]):
                lines.append(f"image -> caption: {got!r} (true: {ref!r}){'' if got == ref else ' DIFFERS'}")
        if "caption_to_image" in self.directions and n and self.labels["val"] is not None:
            images, valid = self.drawn(model, self.ids["val"][:n], seed=self.cfg.train.seed + step)
            probs = self.classifier().logits(images).softmax(-1) if len(images) else torch.zeros(0, 10)
            it = iter(probs)
            for ok, ref in zip(valid.tolist(), self.captions["val"][:n]):
                if not ok:
                    lines.append(f"caption -> image: {ref!r}: the span did not decode")
                    continue
                row = next(it)
                k = int(row.argmax())
                lines.append(f"caption -> image: {ref!r}: the classifier reads a {k} (p={float(row[k]):.2f})")
        return "\n".join(lines)

    def write_layout(self, path: Path) -> None:
        mm = self.cfg.mixed_modal
        record = {"layout": self.layout.to_dict(), "direction": "image_to_caption" if self.late else mm.direction,
                  "fusion": "late" if self.late else "early",
                  "image_tokenizer": str(Path(mm.image_tokenizer).resolve()) if mm.image_tokenizer else None,
                  "source": self.source, "train_examples": len(self.captions["train"]),
                  "val_examples": len(self.captions["val"]), "longest_caption": self.max_caption - 1}
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def mixed_modal_task(cfg, device: torch.device) -> TaskSetup:
    from axon.objectives.mixed_modal import MixedModalLM

    mm = MixedModal(cfg)
    objective = MixedModalLM(cfg.train.z_loss, None if mm.late else mm.layout.code_offset)
    draws = not mm.late and "caption_to_image" in mm.directions

    def model_metrics(model, split: str) -> dict:
        return mm.generation_metrics(model, split)

    def eval_fn(model, step: int, run_dir: Path) -> dict:
        out = mm.stability(model, objective)
        out.update(mm.generation_metrics(model, "val"))
        if draws:
            folder = Path(run_dir) / SAMPLES_DIR
            folder.mkdir(exist_ok=True)
            mm.draw_picture(model, mm.picture_captions(), folder / f"step_{step:07d}.png", seed=cfg.train.seed)
        return out

    return TaskSetup(train_data=mm.data["train"], val_data=mm.data["val"], objective=objective,
                     tokenizer=mm.tokenizer, sample_fn=mm.sample_text if cfg.mixed_modal.samples else None,
                     model_metrics=model_metrics, eval_fn=eval_fn, extra_files={LAYOUT_FILE: mm.write_layout})


__all__ = ["LAYOUT_FILE", "MixedModal", "caption_tokens", "decode_codes", "draw_codes", "encode_images",
           "load_pairs", "load_run_layout", "mixed_modal_task"]

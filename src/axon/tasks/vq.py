"""The ``vq`` task: train a VQ-VAE image tokenizer (``model.family: vqvae``).

    images (B, C, H, W) in [-1, 1] --encoder--> z --nearest code--> codes (B, h*w) --decoder--> recon
    loss = |images - recon|^2 (mean over pixels) + codebook / commitment loss (axon.objectives.vq)

Data: the images of ``image_classify`` (``axon.tasks.image_classify.load_images``): the bundled 8x8
digits (1,438 train / 359 val), or ``data.dir``, a folder with one sub-folder per class
(``image_classify.val_fraction`` held out); the labels are read but unused. A file Pillow cannot
read ends the run with one line naming it. Training batches draw images with replacement from a
generator seeded by (seed, step, micro_step), without augmentation, so resume is exact.

Metrics: the evaluation loss is the reconstruction MSE; at every evaluation (``eval_fn``, logged as
``val_recon_mse``, ``val_codes_used``, ``val_code_perplexity``) and at the end (``result.json``,
``axon eval``) over the whole split: ``recon_mse`` (per pixel, in the [-1, 1] units of the images:
divide by 4 for [0, 1] units), ``codes_used`` (distinct codes among all the split's tokens) and
``code_perplexity``. Each evaluation writes ``samples/step_NNNNNNN.png``: the first 16 validation
images above their reconstructions; ``axon sample RUN --out FILE.png`` writes the same from the
newest checkpoint. ``image_tokenizer.json`` records the codebook size and tokens per image
(:func:`load_image_tokenizer` loads the run as a tokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from axon.tasks.base import TaskSetup

SAMPLES_DIR = "samples"
IMAGE_TOKENIZER_FILE = "image_tokenizer.json"  # codebook size, tokens per image, grid: what a run using the tokens needs
SHOWN = 16  # validation images in each picture


@torch.no_grad()
def vq_metrics(model, images: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """``recon_mse``, ``codes_used`` and ``code_perplexity`` of ``model`` (eval mode) over ``images``."""
    from axon.nn.vq import code_usage

    was_training = model.training
    model.eval()
    p = next(model.parameters())
    se, n, codes = 0.0, 0, []
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(p.device, p.dtype)
            recon, _, c = model(x)
            se += float(((recon.float() - x.float()) ** 2).sum())
            n += x.numel()
            codes.append(c.cpu())
    finally:
        model.train(was_training)
    return {"recon_mse": se / n, **code_usage(torch.cat(codes), model.config.codebook_size)}


@torch.no_grad()
def reconstruction_picture(model, images: torch.Tensor, path: Path) -> Path:
    """A PNG of ``images`` (N, C, H, W) in one row above their reconstructions in the next."""
    from axon.tasks.diffusion import save_grid

    was_training = model.training
    model.eval()
    p = next(model.parameters())
    try:
        recon, _, _ = model(images.to(p.device, p.dtype))
    finally:
        model.train(was_training)
    return save_grid(torch.cat([images.float().cpu(), recon.float().cpu()]), path, columns=len(images))


def load_image_tokenizer(run_dir: str | Path, device: str = "cpu"):
    """The trained VQ-VAE of a ``vq`` run (newest checkpoint), in eval mode: ``encode(images) -> codes
    (B, tokens_per_image)``, ``decode(codes) -> images``, ``codebook_size``, ``tokens_per_image``.
    A run of another family is refused in one line."""
    from axon.errors import ConfigError
    from axon.train.run import load_run

    cfg, model, _ = load_run(run_dir, device)
    if cfg.model.family != "vqvae":
        raise ConfigError(f"{run_dir} is a {cfg.model.family} run, not an image tokenizer (model.family=vqvae, task: vq)")
    return model.eval()


def vq_task(cfg, device: torch.device) -> TaskSetup:
    from axon.data.images import LabelledImages
    from axon.objectives.vq import VQReconstruction
    from axon.tasks.image_classify import load_images

    xt, yt, xv, yv, _, source = load_images(cfg)
    train, val = LabelledImages(xt, yt), LabelledImages(xv, yv)
    m = cfg.model

    def model_metrics(model, split: str) -> dict:
        return vq_metrics(model, xv if split == "val" else xt)

    def eval_fn(model, step: int, run_dir: Path) -> dict:
        folder = Path(run_dir) / SAMPLES_DIR
        folder.mkdir(exist_ok=True)
        reconstruction_picture(model, xv[:SHOWN], folder / f"step_{step:07d}.png")
        return vq_metrics(model, xv)

    def write_tokenizer(path: Path) -> None:
        path.write_text(json.dumps({"kind": "vqvae", "codebook_size": m.codebook_size,
                                    "tokens_per_image": m.tokens_per_image, "grid": [m.grid, m.grid],
                                    "image_size": m.image_size, "in_channels": m.in_channels,
                                    "source": source}, indent=1) + "\n")

    return TaskSetup(train_data=train, val_data=val, objective=VQReconstruction(), model_metrics=model_metrics,
                     eval_fn=eval_fn, extra_files={IMAGE_TOKENIZER_FILE: write_tokenizer})


__all__ = ["IMAGE_TOKENIZER_FILE", "SAMPLES_DIR", "load_image_tokenizer", "reconstruction_picture", "vq_metrics", "vq_task"]

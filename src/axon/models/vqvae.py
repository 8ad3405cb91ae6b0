"""VQ-VAE (van den Oord et al. 2017): an image tokenizer. A convolutional encoder maps an image to
a grid of vectors, each is replaced by its nearest codebook entry (``axon.nn.vq``), and a
transposed-convolution decoder rebuilds the image from the codes. The codes are the image's
tokens: ``encode`` gives them, ``decode`` turns them back into pixels.

Shapes for the ``digits`` preset (8x8 grey, downsample 1, hidden 64, D = 32, K = 128)::

    images (B, 1, 8, 8) in [-1, 1]
        |
    encoder: conv 3x3 -> ReLU                     (B, 64, 8, 8)
             downsample x [conv 4x4 stride 2 -> ReLU]  (B, 64, 4, 4)
             conv 1x1                             (B, 32, 4, 4) = z
        |
    quantiser: each of the B*4*4 vectors -> nearest of K codes      codes (B, 16) int64
        |       (straight-through gradient to the encoder)          z_q (B, 32, 4, 4)
    decoder: conv 1x1 -> ReLU                     (B, 64, 4, 4)
             downsample x [conv-transpose 4x4 stride 2 -> ReLU]  (B, 64, 8, 8)
             conv 3x3 -> tanh                     (B, 1, 8, 8) in [-1, 1]

Training minimises |x - decode(z_q)|^2 + the quantiser's loss (codebook + beta x commitment, or
beta x commitment with EMA codebook updates): the task ``vq`` (``axon.tasks.vq``).

``axon.tasks.vq.load_image_tokenizer(run_dir)`` loads a trained run as a tokenizer: this model in
eval mode, with ``encode`` / ``decode``, ``codebook_size`` and ``tokens_per_image`` (it lives with
the task because a model may not import the trainer's run loader; tests/test_layering.py). Using those codes inside a
decoder's vocabulary (early fusion) is the next step of issue 22, not done here.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.vqvae import PRESETS, VQVAEConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.nn.vq import VectorQuantizer

class VQVAE(Model):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.config = cfg
        C, H = cfg.in_channels, cfg.hidden
        enc: list[nn.Module] = [nn.Conv2d(C, H, 3, padding=1), nn.ReLU()]
        for _ in range(cfg.downsample):
            enc += [nn.Conv2d(H, H, 4, stride=2, padding=1), nn.ReLU()]  # halves H and W
        enc.append(nn.Conv2d(H, cfg.code_dim, 1))
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, beta=cfg.beta, update=cfg.codebook_update,
                                         decay=cfg.ema_decay, dead_after=cfg.dead_code_steps)
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, H, 1), nn.ReLU()]
        for _ in range(cfg.downsample):
            dec += [nn.ConvTranspose2d(H, H, 4, stride=2, padding=1), nn.ReLU()]  # doubles H and W
        dec += [nn.Conv2d(H, C, 3, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def tokens_per_image(self) -> int:
        return self.config.tokens_per_image

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(B * h * w, D)  # (B*h*w, D), row-major over the grid
        zq, loss, codes = self.quantizer(flat)
        zq = zq.reshape(B, h, w, D).permute(0, 3, 1, 2)  # (B, D, h, w)
        return zq, loss, codes.reshape(B, h * w)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction (B, C, H, W) in [-1, 1], VQ loss, codes (B, h*w) int64) of images (B, C, H, W)."""
        z = self.encoder(images)  # (B, D, h, w)
        zq, loss, codes = self._quantize(z)
        return self.decoder(zq), loss, codes

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The tokens of images (B, C, H, W): codes (B, h*w) int64, row by row. No codebook update."""
        z = self.encoder(images)  # (B, D, h, w)
        B, D, h, w = z.shape
        from axon.nn.vq import nearest_codes

        return nearest_codes(z.permute(0, 2, 3, 1).reshape(-1, D).float(), self.quantizer.codebook.float()).reshape(B, h * w)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] from codes (B, h*w) int64."""
        B, g = codes.shape[0], self.config.grid
        zq = self.quantizer.codebook[codes].reshape(B, g, g, -1).permute(0, 3, 1, 2)  # (B, D, h, w)
        return self.decoder(zq)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per image (block_size is 1): 6 x (each convolution's weights x the pixels it
        is applied at: its output's for a convolution, its input's for a transposed one), plus the
        quantiser's distances, 2 x (h*w) x K x D (a forward matmul; argmin passes no gradient).
        Biases, activations and the EMA update are not counted. ``seq_len`` is ignored."""
        cfg = self.config
        macs, size = 0, cfg.image_size
        for m in self.encoder:
            if isinstance(m, nn.Conv2d):
                size = size // m.stride[0]
                macs += m.weight.numel() * size * size
        for m in self.decoder:
            if isinstance(m, nn.ConvTranspose2d):
                macs += m.weight.numel() * size * size  # at its input's pixels
                size *= 2
            elif isinstance(m, nn.Conv2d):
                macs += m.weight.numel() * size * size
        return 6.0 * macs + 2.0 * cfg.tokens_per_image * cfg.codebook_size * cfg.code_dim


__all__ = ["PRESETS", "VQVAE", "VQVAEConfig"]

"""The VQ-VAE image tokenizer's config and named sizes (the model: ``axon.models.vqvae``).

Torch-free (see ``axon.model_configs``). ``image_size`` and ``in_channels`` describe the input as
for the other image families; ``downsample`` strided convolutions shrink it to a grid of
(image_size / 2^downsample)^2 codes -- the image's tokens -- each one of ``codebook_size``.
``block_size`` is 1: one image is one "token" of the trainer's count (FLOPs are per image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class VQVAEConfig:
    family: Literal["vqvae"] = "vqvae"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 8  # height = width of the input images, in pixels
    in_channels: int = 1  # 1: grey, 3: RGB
    hidden: int = 64  # channels of the encoder's and decoder's convolutions
    downsample: int = 1  # stride-2 convolutions: the code grid is image_size / 2^downsample a side (8x8: 1 -> 4x4, 2 -> 2x2)
    code_dim: int = 32  # D: the size of each code vector
    codebook_size: int = 128  # K: the number of codes (the image vocabulary)
    codebook_update: Literal["ema", "gradient"] = "ema"  # EMA averages (Razavi et al.) or the codebook loss
    beta: float = 0.25  # weight of the commitment loss (the paper's 0.25)
    ema_decay: float = 0.99  # codebook_update ema: decay of the averages
    dead_code_steps: int = 20  # a code unused for this many training steps restarts from the batch; 0: never

    def __post_init__(self):
        check_fields(self, "model.")
        for name in ("image_size", "in_channels", "hidden", "code_dim"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.codebook_size >= 2, "model.codebook_size", f"needs at least 2 codes, got {self.codebook_size}")
        check(self.downsample >= 0, "model.downsample", f"must be >= 0, got {self.downsample}")
        check(self.image_size % 2 ** self.downsample == 0, "model.downsample",
              f"{self.downsample} halvings do not divide model.image_size={self.image_size}; use fewer")
        check(self.beta >= 0, "model.beta", f"must be >= 0, got {self.beta}")
        check(0.0 < self.ema_decay < 1.0, "model.ema_decay", f"must be in (0, 1), got {self.ema_decay}")
        check(self.dead_code_steps >= 0, "model.dead_code_steps", f"must be >= 0 (0: no restarts), got {self.dead_code_steps}")

    @property
    def grid(self) -> int:
        """Codes per side of an image: image_size / 2^downsample."""
        return self.image_size // 2 ** self.downsample

    @property
    def tokens_per_image(self) -> int:
        return self.grid ** 2

    @property
    def block_size(self) -> int:
        """One image is one "token" of the trainer's count (``flops_per_token``: per image)."""
        return 1


PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="2,361 (EMA codebook: buffers, not parameters)", source="for tests: 8x8 grey -> 4x4 codes of 8 dims, 16 codes",
        config=dict(image_size=8, in_channels=1, hidden=8, downsample=1, code_dim=8, codebook_size=16),
    ),
    "digits": dict(
        params="136,609 (EMA codebook: buffers, not parameters)",
        source="for scikit-learn's 8x8 digits: 64 channels, 4x4 = 16 codes of 32 dims from 128 "
               "(downsample: 2 gives 2x2 = 4 tokens)",
        config=dict(image_size=8, in_channels=1, hidden=64, downsample=1, code_dim=32, codebook_size=128),
    ),
}

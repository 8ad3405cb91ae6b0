"""Vision Mamba's config and named sizes (the model: ``axon.models.vision_mamba``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``). The image fields
(``image_size``, ``in_channels``, ``num_labels``, ``block_size`` = 1) are those of every image family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class VisionMambaConfig:
    family: Literal["vision_mamba"] = "vision_mamba"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 224  # height = width of the training images; other sizes resample the positions
    in_channels: int = 3
    num_labels: int | None = None  # null: the number of classes in the training data
    patch_size: int = 16
    n_embd: int = 192  # the residual width (Vim's embed_dim)
    n_layer: int = 24
    d_state: int = 16  # N, states per channel
    d_conv: int = 4  # taps of each direction's causal depthwise convolution
    expand: int = 2  # D = expand * n_embd channels inside the mixer
    dt_rank: int | None = None  # R; null = ceil(n_embd / 16)
    # cls: a class token in the middle of the patch sequence, read by the head (Vim's middle class
    # token); mean: no class token, the mean of the patch outputs
    pool: Literal["cls", "mean"] = "cls"
    norm_eps: float = 1e-5
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    init_std: float = 0.02  # truncated normal for the positions and the head
    scan_impl: Literal["auto", "chunked", "sequential"] = "auto"  # as the mamba family's (axon.nn.ssm)
    scan_chunk: int = 16

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        for name in ("image_size", "in_channels", "patch_size", "n_embd", "n_layer", "d_state", "d_conv", "expand",
                     "scan_chunk"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.num_labels is None or self.num_labels >= 2, "model.num_labels",
              f"a classifier needs at least 2 labels, got {self.num_labels}")
        check(self.image_size % self.patch_size == 0, "model.patch_size",
              f"{self.patch_size} does not divide image_size={self.image_size}; choose a divisor of it")
        check(self.dt_rank is None or self.dt_rank > 0, "model.dt_rank", "must be positive, or null for ceil(n_embd / 16)")
        check(0 < self.dt_min <= self.dt_max, "model.dt_min",
              f"need 0 < dt_min <= dt_max (got dt_min={self.dt_min}, dt_max={self.dt_max})")
        check(self.norm_eps > 0 and self.dt_init_floor > 0 and self.init_std > 0, "model.norm_eps",
              "norm_eps, dt_init_floor and init_std must be positive")

    @property
    def d_inner(self) -> int:
        return self.expand * self.n_embd

    @property
    def rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.n_embd / 16)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def block_size(self) -> int:
        """One image is one "token" of the trainer's count (``flops_per_token``: per image)."""
        return 1


PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="22,410 (10 labels)", source="for tests and the 8x8 digits: 2x2 patches (16 tokens + class), 2 layers",
        config=dict(image_size=8, in_channels=1, patch_size=2, n_embd=32, n_layer=2, d_state=8),
    ),
    "digits": dict(
        params="140,682 (10 labels)", source="configs/vision/vision_mamba_digits.yaml: 2x2 patches, 4 layers of 64",
        config=dict(image_size=8, in_channels=1, patch_size=2, n_embd=64, n_layer=4, d_state=8),
    ),
    "vim_tiny": dict(
        params="7,148,008 (1000 labels)", source="Zhu et al. 2024, table 1 (Vim-Ti: 192 wide, 24 layers; paper: 7M)",
        config=dict(image_size=224, in_channels=3, patch_size=16, n_embd=192, n_layer=24, d_state=16),
    ),
    "vim_small": dict(
        params="25,796,584 (1000 labels)", source="Zhu et al. 2024, table 1 (Vim-S: 384 wide, 24 layers; paper: 26M)",
        config=dict(image_size=224, in_channels=3, patch_size=16, n_embd=384, n_layer=24, d_state=16),
    ),
}

"""The diffusion U-Net's config and named sizes (the model: ``axon.models.unet``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).

The network only maps (noisy image, timestep, class) to an image-shaped output: the noise
schedule, the targets and the samplers belong to the diffusion process, never to this config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class UNetConfig:
    family: Literal["unet"] = "unet"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 32  # height = width of the images, in pixels
    in_channels: int = 3  # 1: grey, 3: RGB
    base_channels: int = 128  # channels of the first level (Ho et al.'s ch)
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)  # level i has base_channels * channel_mult[i] channels
    num_res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attn_resolutions: tuple[int, ...] = (16,)  # self-attention after the residual blocks at these sizes
    dropout: float = 0.1  # inside each residual block, before its second convolution
    num_classes: int | None = None  # null: unconditional; else a class embedding of num_classes + 1 rows
    learn_sigma: bool = False  # twice the output channels: the noise and the variance's interpolation
    # an EMA of the weights (axon.nn.ema; Ho et al.: 0.9999), with which evaluation and sampling run; null: none
    ema_decay: float | None = None
    norm_groups: int = 32  # GroupNorm groups; must divide base_channels (fewer for thin models)

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        for name in ("image_size", "in_channels", "base_channels", "num_res_blocks", "norm_groups"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.base_channels >= 4, "model.base_channels",
              f"must be at least 4 (the timestep embedding's width), got {self.base_channels}")
        check(len(self.channel_mult) > 0, "model.channel_mult", "needs at least one level, e.g. [1, 2, 2]")
        check(all(m > 0 for m in self.channel_mult), "model.channel_mult",
              f"multipliers must be positive, got {list(self.channel_mult)}")
        down = 2 ** (len(self.channel_mult) - 1)
        check(self.image_size % down == 0, "model.image_size",
              f"{self.image_size} is not divisible by 2^(levels - 1) = {down} "
              f"({len(self.channel_mult)} levels in model.channel_mult); each level but the last halves it")
        sizes = self.resolutions
        for r in self.attn_resolutions:
            check(r in sizes, "model.attn_resolutions",
                  f"{r} is not a level's resolution; the levels are {', '.join(map(str, sizes))}")
        check(self.base_channels % self.norm_groups == 0, "model.norm_groups",
              f"{self.norm_groups} groups do not divide base_channels={self.base_channels}; "
              "use a divisor of it (e.g. 32 for 128 channels, 8 for 32)")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.ema_decay is None or 0.0 < self.ema_decay < 1.0, "model.ema_decay",
              f"must be in (0, 1) or null (no EMA), got {self.ema_decay}")
        check(self.num_classes is None or self.num_classes > 0, "model.num_classes",
              f"must be positive or null (unconditional), got {self.num_classes}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The image size at each level: image_size, image_size / 2, ..."""
        return tuple(self.image_size // 2**i for i in range(len(self.channel_mult)))

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def block_size(self) -> int:
        """The trainer counts batch_size * block_size "tokens" per micro-batch; for a denoiser one
        token is one image, so MFU and the lab's budgets count images (``flops_per_token``: per image)."""
        return 1


# Named sizes. `source` is where the shape comes from; tests/models/test_unet.py checks the counts
# (unconditional, learn_sigma false).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="11,621", source="for tests: 8x8 grey, two levels, every kind of block once",
        config=dict(image_size=8, in_channels=1, base_channels=4, channel_mult=(1, 2), num_res_blocks=1,
                    attn_resolutions=(4,), dropout=0.0, norm_groups=2),
    ),
    "digits": dict(
        params="1,623,169",
        source="for scikit-learn's 8x8 digits: Ho et al.'s CIFAR-10 layout scaled down (ch 32, levels 8/4/2, "
               "attention at 4); trains on a CPU in minutes",
        config=dict(image_size=8, in_channels=1, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2,
                    attn_resolutions=(4,), dropout=0.1, norm_groups=8),
    ),
    "cifar10": dict(
        params="35,746,307",
        source="Ho et al. 2020, appendix B: the CIFAR-10 model (35.7M parameters; diffusers' UNet2DModel of "
               "google/ddpm-cifar10-32 has the same count)",
        config=dict(image_size=32, in_channels=3, base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                    attn_resolutions=(16,), dropout=0.1, norm_groups=32),
    ),
}

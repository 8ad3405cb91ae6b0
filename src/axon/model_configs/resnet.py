"""The ResNet's config and named sizes (the model: ``axon.models.resnet``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).

The image families share these fields (the ViT, Vision Mamba, the hybrid and DETR read them the
same way): ``image_size`` and ``in_channels`` describe the input, ``num_labels`` the head (null:
the task fills it from its data), and ``block_size`` is 1 because one image is one "token" of the
trainer's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class ResNetConfig:
    family: Literal["resnet"] = "resnet"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 224  # height = width of the input images, in pixels
    in_channels: int = 3  # 1: grey, 3: RGB
    num_labels: int | None = None  # null: the number of classes in the training data (a backbone has no head)
    block: Literal["basic", "bottleneck"] = "basic"  # two 3x3 convs, or 1x1 -> 3x3 -> 1x1 (x4 channels out)
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage; every stage after the first halves the size
    base_width: int = 64  # channels of the stem and of the first stage's 3x3 convs; stage i has base_width * 2^i
    # imagenet: 7x7 conv stride 2 + 3x3 max-pool stride 2 (He et al.); small: one 3x3 conv stride 1,
    # no pool (for 8x8 to 32x32 inputs, as CIFAR ResNets do)
    stem: Literal["imagenet", "small"] = "imagenet"
    zero_init_residual: bool = False  # the last BN of each block starts at 0: every block starts as the identity

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        for name in ("image_size", "in_channels", "base_width"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.num_labels is None or self.num_labels >= 2, "model.num_labels",
              f"a classifier needs at least 2 labels, got {self.num_labels}")
        check(len(self.layers) > 0, "model.layers", "needs at least one stage, e.g. [2, 2, 2, 2]")
        check(all(n > 0 for n in self.layers), "model.layers", f"every stage needs a block, got {list(self.layers)}")
        check(self.image_size >= self.downsampling, "model.image_size",
              f"{self.image_size} is smaller than the network's downsampling factor {self.downsampling} "
              f"(stem {self.stem!r} and {len(self.layers)} stages); use stem: small or fewer stages")

    @property
    def expansion(self) -> int:
        """Output channels of a block over its 3x3 width: 1 (basic), 4 (bottleneck)."""
        return 4 if self.block == "bottleneck" else 1

    @property
    def feature_channels(self) -> int:
        """Channels of the last stage's feature map (512 for resnet18, 2048 for resnet50)."""
        return self.base_width * 2 ** (len(self.layers) - 1) * self.expansion

    @property
    def downsampling(self) -> int:
        """How much smaller the last feature map is than the input: 4 (stem) x 2 per later stage."""
        return (4 if self.stem == "imagenet" else 1) * 2 ** (len(self.layers) - 1)

    @property
    def block_size(self) -> int:
        """The trainer counts batch_size * block_size "tokens" per micro-batch; for an image model one
        token is one image, so MFU and the lab's budgets count images (``flops_per_token``: per image)."""
        return 1


# Named sizes. The counts are at 1000 labels, 3 channels (the head is 1000 x feature_channels + 1000);
# tests/models/test_resnet.py checks them against these strings and, where installed, torchvision.
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="5,122 (10 labels)", source="for tests: 8x8 grey, small stem, one basic block per stage, two stages",
        config=dict(image_size=8, in_channels=1, block="basic", layers=(1, 1), base_width=8, stem="small"),
    ),
    "digits": dict(
        params="77,754 (10 labels)",
        source="for scikit-learn's 8x8 digits: small stem, three stages of one basic block (16/32/64 channels); "
               "trains on a CPU in a minute",
        config=dict(image_size=8, in_channels=1, block="basic", layers=(1, 1, 1), base_width=16, stem="small"),
    ),
    "resnet18": dict(
        params="11,689,512 (1000 labels)", source="He et al. 2016, table 1 (torchvision.models.resnet18's count)",
        config=dict(image_size=224, in_channels=3, block="basic", layers=(2, 2, 2, 2), base_width=64, stem="imagenet"),
    ),
    "resnet34": dict(
        params="21,797,672 (1000 labels)", source="He et al. 2016, table 1 (torchvision.models.resnet34's count)",
        config=dict(image_size=224, in_channels=3, block="basic", layers=(3, 4, 6, 3), base_width=64, stem="imagenet"),
    ),
    "resnet50": dict(
        params="25,557,032 (1000 labels)",
        source="He et al. 2016, table 1, with the stride in the bottleneck's 3x3 (torchvision's v1.5 layout and count)",
        config=dict(image_size=224, in_channels=3, block="bottleneck", layers=(3, 4, 6, 3), base_width=64,
                    stem="imagenet"),
    ),
}


def backbone_config(cfg) -> ResNetConfig:
    """The ResNet a family reads features from (``vit_hybrid``, ``detr``), without a head, from that
    family's ``image_size``, ``in_channels`` and ``backbone_*`` fields (a ConfigError names the
    model.* field)."""
    return ResNetConfig(image_size=cfg.image_size, in_channels=cfg.in_channels, num_labels=None,
                        block=cfg.backbone_block, layers=tuple(cfg.backbone_layers),
                        base_width=cfg.backbone_width, stem=cfg.backbone_stem)

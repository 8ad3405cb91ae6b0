"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition"): stacks of residual
blocks, y = relu(F(x) + shortcut(x)), with batch norm after every convolution, so that a deep
network only has to learn what to add to the identity.

Shapes for ``resnet18`` (224x224x3 in, basic blocks, layers (2, 2, 2, 2))::

    images (B, 3, 224, 224), in [-1, 1]
        |
    stem: conv 7x7 stride 2 -> BN -> ReLU         (B, 64, 112, 112)
          max-pool 3x3 stride 2                   (B, 64, 56, 56)
          (stem: small -- conv 3x3 stride 1 -> BN -> ReLU, no pool: 8x8 in, 8x8 out)
        |
    stage 0: 2 x basic(64)                        (B, 64, 56, 56)
    stage 1: 2 x basic(128), the first stride 2   (B, 128, 28, 28)
    stage 2: 2 x basic(256), the first stride 2   (B, 256, 14, 14)
    stage 3: 2 x basic(512), the first stride 2   (B, 512, 7, 7)      <- forward_features
        |
    global average pool -> head Linear            (B, 512) -> (B, num_labels)

    basic block (width C, stride s):                 bottleneck block (width C, out 4C, stride s):
        h = relu(BN(conv3x3_s(x)))                      h = relu(BN(conv1x1(x)))          (B, C, H, W)
        h = BN(conv3x3(h))                              h = relu(BN(conv3x3_s(h)))        (B, C, H/s, W/s)
        y = relu(h + shortcut(x))                       h = BN(conv1x1(h))                (B, 4C, H/s, W/s)
                                                        y = relu(h + shortcut(x))

    shortcut: the identity, or BN(conv1x1_s(x)) when the stride or the channels change
    (He et al.'s option B, the one torchvision and every later ResNet use).

The bottleneck strides in its 3x3 convolution, not its first 1x1: "ResNet v1.5", torchvision's
layout (the paper's original strides in the 1x1, which skips three quarters of the pixels).
Convolutions have no bias (the BN after each has one). Initialisation as torchvision's: He normal
(fan-out) for the convolutions, BN scale 1 and shift 0, the last BN of each block at 0 with
``zero_init_residual`` (Goyal et al. 2017), the head torch's default.

Batch norm normalises with the batch's statistics in training and with running averages
(buffers, so checkpoints carry them) in eval mode, so logits of ``model.train()`` and
``model.eval()`` differ. Presets resnet18/34/50 have torchvision's parameter counts at 1000
labels (tests/models/test_resnet.py; parity of the logits with torchvision and Hugging Face
transformers in tests/interop/test_resnet.py).
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.resnet import PRESETS, ResNetConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Height (= width) of a convolution's or pooling's output for an input of ``size``."""
    return (size + 2 * padding - kernel) // stride + 1


class ConvBN(nn.Sequential):
    """A bias-free convolution and its batch norm; ``pixels`` is its output's H * W (for FLOPs)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, size: int):
        padding = kernel // 2
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out))
        self.pixels = conv_out(size, kernel, stride, padding) ** 2

    def macs(self) -> int:
        return self[0].weight.numel() * self.pixels


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, the first with the stride: (B, c_in, H, W) -> (B, width, H/s, W/s)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int, size: int):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = ConvBN(c_in, width, 3, stride, size)
        self.conv2 = ConvBN(width, c_out, 3, 1, conv_out(size, 3, stride, 1))
        self.shortcut = ConvBN(c_in, c_out, 1, stride, size) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))  # (B, width, H/s, W/s)
        h = self.conv2(h)
        return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))

    def last_norm(self) -> nn.BatchNorm2d:
        return self.conv2[1]

    def macs(self) -> int:
        return sum(c.macs() for c in (self.conv1, self.conv2, self.shortcut) if c is not None)


class Bottleneck(nn.Module):
    """1x1 down to ``width``, 3x3 with the stride, 1x1 up to 4 * width: (B, c_in, H, W) -> (B, 4w, H/s, W/s)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, size: int):
        super().__init__()
        c_out = width * self.expansion
        out_size = conv_out(size, 3, stride, 1)
        self.conv1 = ConvBN(c_in, width, 1, 1, size)
        self.conv2 = ConvBN(width, width, 3, stride, size)  # v1.5: the stride is here
        self.conv3 = ConvBN(width, c_out, 1, 1, out_size)
        self.shortcut = ConvBN(c_in, c_out, 1, stride, size) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))  # (B, width, H, W)
        h = torch.relu(self.conv2(h))  # (B, width, H/s, W/s)
        h = self.conv3(h)  # (B, 4 width, H/s, W/s)
        return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))

    def last_norm(self) -> nn.BatchNorm2d:
        return self.conv3[1]

    def macs(self) -> int:
        return sum(c.macs() for c in (self.conv1, self.conv2, self.conv3, self.shortcut) if c is not None)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Model):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.config = cfg
        Block = BLOCKS[cfg.block]
        size = cfg.image_size
        if cfg.stem == "imagenet":
            self.stem = ConvBN(cfg.in_channels, cfg.base_width, 7, 2, size)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            size = conv_out(conv_out(size, 7, 2, 3), 3, 2, 1)
        else:
            self.stem = ConvBN(cfg.in_channels, cfg.base_width, 3, 1, size)
            self.pool = nn.Identity()

        # Stage i: layers[i] blocks of width base_width * 2^i; the first block of every stage but the
        # first strides by 2 (and its shortcut projects).
        self.stages = nn.ModuleList()
        c_in = cfg.base_width
        for i, n in enumerate(cfg.layers):
            width = cfg.base_width * 2**i
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(Block(c_in, width, stride, size))
                size, c_in = conv_out(size, 3, stride, 1), width * Block.expansion
            self.stages.append(nn.Sequential(*blocks))
        self.feature_channels = c_in  # C' of forward_features (the DETR and hybrid backbones read it)
        self.feature_size = size  # H' = W' of forward_features at image_size
        # No head without num_labels: the model is then a backbone (forward_features only).
        self.head = nn.Linear(c_in, cfg.num_labels) if cfg.num_labels is not None else None

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if cfg.zero_init_residual:
            for stage in self.stages:
                for block in stage:
                    nn.init.zeros_(block.last_norm().weight)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map: (B, in_channels, H, W) -> (B, feature_channels, H', W')."""
        x = self.pool(torch.relu(self.stem(images)))  # (B, base_width, H/4, W/4); small stem: (.., H, W)
        for stage in self.stages:
            x = stage(x)  # each stage after the first halves H and W
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels) for images (B, in_channels, H, W), float in [-1, 1]."""
        if self.head is None:
            raise ValueError("ResNetConfig.num_labels is not set: this ResNet is a backbone (forward_features only)")
        x = self.forward_features(images)  # (B, C', H', W')
        return self.head(x.mean(dim=(2, 3)))  # global average pool -> (B, C') -> (B, num_labels)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per image (block_size is 1) at ``config.image_size``: 6 x (every convolution
        weight x the pixels of its output, + the head's matrix). Batch norm, ReLU, pooling and the
        residual additions are not counted. ``seq_len`` is ignored."""
        macs = self.stem.macs() + sum(block.macs() for stage in self.stages for block in stage)
        macs += 0 if self.head is None else self.head.weight.numel()
        return 6.0 * macs


__all__ = ["PRESETS", "BasicBlock", "Bottleneck", "ResNet", "ResNetConfig"]

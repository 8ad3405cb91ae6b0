"""The hybrid Vision Transformer (Dosovitskiy et al. 2021, sec. 3.1 "Hybrid Architecture"): a
ResNet's feature map, not pixel patches, is the sequence of tokens.

    images (B, C_in, H, W)
        |
    ResNet.forward_features (axon.models.resnet, no head)      (B, C', H', W')
        |
    1x1 conv C' -> C (the paper's "patches of spatial size 1x1")  (B, C, H', W') -> flattened (B, H' W', C)
        |
    the ViT of axon.models.vit from its class token on: positions on the H' x W' grid, pre-LN
    blocks, pooling, head -> logits (B, num_labels)

Only the tokens differ from the ViT (:meth:`ViTHybrid.patchify`); everything after them is
inherited. The backbone keeps its batch norms, so ``train()`` and ``eval()`` logits differ.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.vit_hybrid import PRESETS, ViTHybridConfig  # noqa: F401 (re-exported)
from axon.models.resnet import ResNet
from axon.models.vit import ViT


class ViTHybrid(ViT):
    def __init__(self, cfg: ViTHybridConfig):
        super().__init__(cfg)  # reads the fields a ViTConfig has; build_patch_embed below makes the tokens

    def build_patch_embed(self) -> nn.Module:
        self.backbone = ResNet(self.config.backbone_config())
        return nn.Conv2d(self.backbone.feature_channels, self.config.n_embd, kernel_size=1)

    @property
    def grid(self) -> tuple[int, int]:
        """The feature map's size at the training image size: the token grid."""
        return (self.backbone.feature_size, self.backbone.feature_size)

    def patchify(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """images (B, C_in, H, W) -> (tokens (B, H' W', C) row-major, (H', W'))."""
        x = self.patch_embed(self.backbone.forward_features(images))  # (B, C, H', W')
        return x.flatten(2).transpose(1, 2), (x.size(2), x.size(3))

    def token_macs(self) -> int:
        """The backbone's convolutions (its FLOPs / 6: it has no head) and the 1x1 projection at every pixel."""
        return int(self.backbone.flops_per_token() // 6) + self.patch_embed.weight.numel() * self.grid[0] * self.grid[1]


__all__ = ["PRESETS", "ViTHybrid", "ViTHybridConfig"]

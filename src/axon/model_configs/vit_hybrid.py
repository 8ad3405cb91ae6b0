"""The hybrid ViT's config and named sizes (the model: ``axon.models.vit_hybrid``): a ResNet's
last feature map, projected 1x1 and flattened, as the tokens of a ViT (Dosovitskiy et al. 2021,
sec. 3.1 "Hybrid Architecture"; timm's ``HybridEmbed``).

Torch-free. The ``backbone_*`` fields are a ``resnet`` config's (``axon.model_configs.resnet``,
without a head); the others are a ``vit`` config's, less the patch size: a token is one pixel of
the feature map (the paper's 1x1 patches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields
from axon.model_configs.resnet import ResNetConfig, backbone_config


@dataclass
class ViTHybridConfig:
    family: Literal["vit_hybrid"] = "vit_hybrid"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 224
    in_channels: int = 3
    num_labels: int | None = None  # null: the number of classes in the training data
    # the backbone: a ResNet without its head (axon.model_configs.resnet's fields of the same names)
    backbone_block: Literal["basic", "bottleneck"] = "basic"
    backbone_layers: tuple[int, ...] = (2, 2, 2)
    backbone_width: int = 64
    backbone_stem: Literal["imagenet", "small"] = "imagenet"
    # the transformer (axon.model_configs.vit's fields of the same names)
    n_embd: int = 384
    n_layer: int = 6
    n_head: int = 6
    mlp_hidden: int | None = None  # null: 4 * n_embd
    qkv_bias: bool = True
    pool: Literal["cls", "mean"] = "cls"
    pos: Literal["learned", "sincos"] = "learned"
    norm_eps: float = 1e-6
    dropout: float = 0.0
    init_std: float = 0.02
    attn_impl: Literal["sdpa", "reference"] = "sdpa"

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        self.backbone_config()  # the ResNet's own checks (stages, image size against its downsampling)
        for name in ("n_embd", "n_layer", "n_head"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.num_labels is None or self.num_labels >= 2, "model.num_labels",
              f"a classifier needs at least 2 labels, got {self.num_labels}")
        check(self.n_embd % self.n_head == 0, "model.n_head", f"{self.n_head} heads do not divide n_embd={self.n_embd}")
        check(self.mlp_hidden is None or self.mlp_hidden > 0, "model.mlp_hidden", "must be positive, or null for 4 * n_embd")
        check(self.pos != "sincos" or self.n_embd % 4 == 0, "model.n_embd",
              f"2-D sine-cosine positions need n_embd divisible by 4, got {self.n_embd}")
        check(self.norm_eps > 0 and self.init_std > 0, "model.norm_eps", "norm_eps and init_std must be positive")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")

    def backbone_config(self) -> ResNetConfig:
        """The backbone as a ``resnet`` config without a head (a ConfigError names the model.* field)."""
        return backbone_config(self)

    @property
    def hidden(self) -> int:
        return self.mlp_hidden if self.mlp_hidden is not None else 4 * self.n_embd

    @property
    def block_size(self) -> int:
        """One image is one "token" of the trainer's count (``flops_per_token``: per image)."""
        return 1


PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="31,874 (10 labels)", source="for tests and the 8x8 digits: a 2-stage ResNet (8, 16 channels; 4x4 map), 2 layers of 32",
        config=dict(image_size=8, in_channels=1, backbone_layers=(1, 1), backbone_width=8, backbone_stem="small",
                    n_embd=32, n_layer=2, n_head=2),
    ),
    "digits": dict(
        params="173,370 (10 labels)", source="configs/vision/hybrid_digits.yaml: a 2-stage ResNet (16, 32 channels; 4x4 map), "
                                       "3 layers of 64",
        config=dict(image_size=8, in_channels=1, backbone_layers=(1, 1), backbone_width=16, backbone_stem="small",
                    n_embd=64, n_layer=3, n_head=4),
    ),
}

"""DETR's config and named sizes (the model: ``axon.models.detr``): a ResNet backbone, a
Transformer encoder-decoder over its feature map, and N learned object queries, each decoded into
a class (or "no object") and a box (Carion et al. 2020, "End-to-End Object Detection with
Transformers").

Torch-free. The ``backbone_*`` fields are a ``resnet`` config's (``axon.model_configs.resnet``,
without a head), as in ``vit_hybrid``; ``num_labels`` counts the object classes (null: the
detection task fills it from its data) and the class head has one more output, "no object".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields
from axon.model_configs.resnet import ResNetConfig, backbone_config


@dataclass
class DETRConfig:
    family: Literal["detr"] = "detr"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 64  # height = width of the input images, in pixels
    in_channels: int = 3
    num_labels: int | None = None  # object classes, "no object" not counted (null: from the training data)
    # the backbone: a ResNet without its head (axon.model_configs.resnet's fields of the same names)
    backbone_block: Literal["basic", "bottleneck"] = "basic"
    backbone_layers: tuple[int, ...] = (1, 1, 1, 1)
    backbone_width: int = 16
    backbone_stem: Literal["imagenet", "small"] = "small"
    # the transformer (the paper: d 256, 8 heads, 6 + 6 layers, FFN 2048, dropout 0.1, 100 queries)
    n_embd: int = 64
    n_head: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    mlp_hidden: int | None = None  # null: 4 * n_embd
    dropout: float = 0.0
    num_queries: int = 12  # N: the most objects one image can be given (the paper: 100 for COCO's <= 63)
    norm_eps: float = 1e-5
    attn_impl: Literal["sdpa", "reference"] = "sdpa"

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        self.backbone_config()  # the ResNet's own checks (stages, image size against its downsampling)
        for name in ("n_embd", "n_head", "enc_layers", "dec_layers", "num_queries"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.num_labels is None or self.num_labels >= 1, "model.num_labels",
              f"a detector needs at least 1 object class, got {self.num_labels}")
        check(self.n_embd % self.n_head == 0, "model.n_head", f"{self.n_head} heads do not divide n_embd={self.n_embd}")
        check(self.n_embd % 4 == 0, "model.n_embd", f"2-D sine positions need n_embd divisible by 4, got {self.n_embd}")
        check(self.mlp_hidden is None or self.mlp_hidden > 0, "model.mlp_hidden", "must be positive, or null for 4 * n_embd")
        check(self.norm_eps > 0, "model.norm_eps", f"must be positive, got {self.norm_eps}")
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
        params="29,648 (3 labels)", source="for tests: 16x16 RGB, a 2-stage ResNet (8, 16 channels; 8x8 map), 1 + 1 layers "
                                           "of 32, 6 queries",
        config=dict(image_size=16, in_channels=3, backbone_layers=(1, 1), backbone_width=8, backbone_stem="small",
                    n_embd=32, n_head=2, enc_layers=1, dec_layers=1, mlp_hidden=64, num_queries=6),
    ),
    "shapes": dict(
        params="559,000 (3 labels)", source="configs/vision/detr_shapes.yaml: 64x64 RGB, a 4-stage ResNet (16..128 channels; "
                                      "8x8 map), 2 + 2 layers of 64, 12 queries",
        config=dict(image_size=64, in_channels=3, backbone_layers=(1, 1, 1, 1), backbone_width=16,
                    backbone_stem="small", n_embd=64, n_head=4, enc_layers=2, dec_layers=2, mlp_hidden=256,
                    num_queries=12),
    ),
}

"""DETR's config and named sizes (the model: ``axon.models.detr``): a ResNet backbone, a
Transformer encoder-decoder over its feature map, and N learned object queries, each decoded into
a class (or "no object") and a box (Carion et al. 2020, "End-to-End Object Detection with
Transformers").

Torch-free. ``backbone`` chooses the backbone: "resnet" (the default, the paper's) reads the
``backbone_*`` fields, a ``resnet`` config's (``axon.model_configs.resnet``, without a head), as
in ``vit_hybrid``. Otherwise it is a spec string, read as the routed family reads its experts
(``axon.model_configs.routed.parse_expert``):

    "vit[:preset] [key=value ...]"             e.g. "vit:tiny", "vit patch_size=8 n_embd=96 n_layer=4"
    "vision_mamba[:preset] [key=value ...]"    e.g. "vision_mamba:tiny n_layer=3"

the family's config started from the preset, the overrides checked against its field types as
``--model.key=value`` is; ``image_size`` and ``in_channels`` are this config's (setting them in
the spec is refused) and the backbone has no head (nor may the spec give it ``num_labels``). Its
feature map is the per-patch outputs on the patch grid (``axon.models.detr``). A ``backbone_*``
field changed from its default beside such a spec is refused: it would do nothing.
A ConfigError names the field: ``model.backbone: ...``.

``num_labels`` counts the object classes (null: the detection task fills it from its data) and
the class head has one more output, "no object".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from axon.errors import ConfigError, check
from axon.model_configs.fields import check_fields
from axon.model_configs.resnet import ResNetConfig, backbone_config
from axon.model_configs.routed import family_config, parse_expert
from axon.model_configs.vision_mamba import VisionMambaConfig
from axon.model_configs.vit import ViTConfig

#: The families a non-ResNet backbone may be: image encoders with a per-patch output (``forward_patches``).
BACKBONE_FAMILIES = ("vit", "vision_mamba")


@dataclass
class DETRConfig:
    family: Literal["detr"] = "detr"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 64  # height = width of the input images, in pixels
    in_channels: int = 3
    num_labels: int | None = None  # object classes, "no object" not counted (null: from the training data)
    # the backbone: "resnet" (the backbone_* fields below), or "vit[:preset] [k=v ...]" / "vision_mamba[:preset] [k=v ...]"
    backbone: str = "resnet"
    # the ResNet backbone, without its head (axon.model_configs.resnet's fields of the same names)
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
        if self.backbone != "resnet":  # a backbone_* field beside a ViT / Vim would silently do nothing
            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                if f.name.startswith("backbone_") and (tuple(value) if isinstance(value, list) else value) != f.default:
                    raise ConfigError(f"model.{f.name}: is {value!r} (default {f.default!r}), but "
                                      f"model.backbone is {self.backbone!r}: the backbone_* fields are the ResNet's; "
                                      "drop it (or start from a preset without a ResNet, e.g. vit-tiny)")
        self.backbone_config()  # the backbone's own checks (ResNet: stages, image size against its downsampling)
        for name in ("n_embd", "n_head", "enc_layers", "dec_layers", "num_queries"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.num_labels is None or self.num_labels >= 1, "model.num_labels",
              f"a detector needs at least 1 object class, got {self.num_labels}")
        check(self.n_embd % self.n_head == 0, "model.n_head", f"{self.n_head} heads do not divide n_embd={self.n_embd}")
        check(self.n_embd % 4 == 0, "model.n_embd", f"2-D sine positions need n_embd divisible by 4, got {self.n_embd}")
        check(self.mlp_hidden is None or self.mlp_hidden > 0, "model.mlp_hidden", "must be positive, or null for 4 * n_embd")
        check(self.norm_eps > 0, "model.norm_eps", f"must be positive, got {self.norm_eps}")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def backbone_family(self) -> str:
        """"resnet", "vit" or "vision_mamba"."""
        return "resnet" if self.backbone == "resnet" else self.backbone.split()[0].partition(":")[0]

    def backbone_config(self) -> ResNetConfig | ViTConfig | VisionMambaConfig:
        """The backbone's config, without a head: a ``resnet`` config from the ``backbone_*`` fields,
        or the spec's ``vit`` / ``vision_mamba`` config with this config's image_size and in_channels
        (a ConfigError names the model.* field)."""
        if self.backbone == "resnet":
            return backbone_config(self)
        key, spec = "model.backbone", self.backbone
        check(spec.split() != [], key, "is empty; write 'resnet' (the backbone_* fields) or 'vit[:preset] [key=value ...]' "
              "or 'vision_mamba[:preset] [key=value ...]'")
        check(parse_expert(spec, key)[0] != "resnet", key, f"{spec!r}: the ResNet backbone takes no spec; write "
              "'resnet' and set the backbone_* fields")
        shared = {"image_size": self.image_size, "in_channels": self.in_channels, "num_labels": None}
        return family_config(spec, key, BACKBONE_FAMILIES, shared, what="a backbone",
                             kind="a backbone family ('resnet' takes the backbone_* fields)",
                             why={"image_size": "it is model.image_size", "in_channels": "it is model.in_channels",
                                  "num_labels": "the backbone has no head (DETR's heads read the decoder)"})

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
    "vit-tiny": dict(
        params="53,064 (3 labels)", source="for tests: tiny on the ViT tiny (2x2 patches of 16x16 RGB: an 8x8 map of 32 channels, "
                              "2 layers, class token), 1 + 1 layers of 32, 6 queries",
        config=dict(image_size=16, in_channels=3, backbone="vit:tiny", n_embd=32, n_head=2, enc_layers=1,
                    dec_layers=1, mlp_hidden=64, num_queries=6),
    ),
    "vim-tiny": dict(
        params="48,936 (3 labels)", source="for tests: tiny on the Vision Mamba tiny (2x2 patches of 16x16 RGB: an 8x8 map of 32 "
                              "channels, 2 layers, middle class token), 1 + 1 layers of 32, 6 queries",
        config=dict(image_size=16, in_channels=3, backbone="vision_mamba:tiny", n_embd=32, n_head=2, enc_layers=1,
                    dec_layers=1, mlp_hidden=64, num_queries=6),
    ),
    "shapes": dict(
        params="559,000 (3 labels)", source="configs/vision/detr_shapes.yaml: 64x64 RGB, a 4-stage ResNet (16..128 channels; "
                                      "8x8 map), 2 + 2 layers of 64, 12 queries",
        config=dict(image_size=64, in_channels=3, backbone_layers=(1, 1, 1, 1), backbone_width=16,
                    backbone_stem="small", n_embd=64, n_head=4, enc_layers=2, dec_layers=2, mlp_hidden=256,
                    num_queries=12),
    ),
    "vit-shapes": dict(
        params="1,169,192 (3 labels)", source="configs/vision/detr_vit_shapes.yaml: shapes with a ViT backbone of about the "
                                        "ResNet's FLOPs (8x8 patches of 64x64: an 8x8 map of 96 channels, 8 layers)",
        config=dict(image_size=64, in_channels=3, backbone="vit patch_size=8 n_embd=96 n_layer=8 n_head=4", n_embd=64,
                    n_head=4, enc_layers=2, dec_layers=2, mlp_hidden=256, num_queries=12),
    ),
    "vim-shapes": dict(
        params="1,085,576 (3 labels)", source="configs/vision/detr_vim_shapes.yaml: shapes with a Vision Mamba backbone of "
                                        "about the ResNet's FLOPs (8x8 patches of 64x64: an 8x8 map of 96 channels, 10 layers)",
        config=dict(image_size=64, in_channels=3, backbone="vision_mamba patch_size=8 n_embd=96 n_layer=10", n_embd=64,
                    n_head=4, enc_layers=2, dec_layers=2, mlp_hidden=256, num_queries=12),
    ),
}

"""The Vision Transformer's config and named sizes (the model: ``axon.models.vit``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).

The image families share ``image_size``, ``in_channels``, ``num_labels`` (null: the task fills it
from its data; a model without labels has no head and returns its pooled features) and a
``block_size`` of 1: one image is one "token" of the trainer's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class ViTConfig:
    family: Literal["vit"] = "vit"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 224  # height = width of the training images; other sizes interpolate the positions
    in_channels: int = 3  # 1: grey, 3: RGB
    num_labels: int | None = None  # null: the number of classes in the training data
    patch_size: int = 16  # a patch of patch_size x patch_size pixels is one token
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    mlp_hidden: int | None = None  # null: 4 * n_embd (the paper's MLP ratio)
    qkv_bias: bool = True
    # cls: a learned class token first, the head reads its output (the paper, eq. 4);
    # mean: no class token, the head reads the mean of the patch outputs (timm's global_pool="avg")
    pool: Literal["cls", "mean"] = "cls"
    # learned: a trained table on the training grid, resampled bicubically for other grids (as timm);
    # sincos: fixed 2-D sine-cosine positions (MAE; Chen et al. 2021's MoCo v3), computed for any grid
    pos: Literal["learned", "sincos"] = "learned"
    norm_eps: float = 1e-6  # timm's LayerNorm eps (Hugging Face's ViT: 1e-12)
    dropout: float = 0.0
    init_std: float = 0.02  # truncated normal for linears, positions and the class token (timm)
    attn_impl: Literal["sdpa", "reference"] = "sdpa"  # reference: softmax written out (the test oracle)

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        for name in ("image_size", "in_channels", "patch_size", "n_embd", "n_layer", "n_head"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.num_labels is None or self.num_labels >= 2, "model.num_labels",
              f"a classifier needs at least 2 labels, got {self.num_labels}")
        check(self.image_size % self.patch_size == 0, "model.patch_size",
              f"{self.patch_size} does not divide image_size={self.image_size}; choose a divisor of it")
        check(self.n_embd % self.n_head == 0, "model.n_head", f"{self.n_head} heads do not divide n_embd={self.n_embd}")
        check(self.mlp_hidden is None or self.mlp_hidden > 0, "model.mlp_hidden", "must be positive, or null for 4 * n_embd")
        check(self.pos != "sincos" or self.n_embd % 4 == 0, "model.n_embd",
              f"2-D sine-cosine positions need n_embd divisible by 4, got {self.n_embd}")
        check(self.norm_eps > 0, "model.norm_eps", "must be positive")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.init_std > 0, "model.init_std", "must be positive")

    @property
    def hidden(self) -> int:
        return self.mlp_hidden if self.mlp_hidden is not None else 4 * self.n_embd

    @property
    def grid(self) -> int:
        """Patches per side at the training size."""
        return self.image_size // self.patch_size

    @property
    def block_size(self) -> int:
        """The trainer counts batch_size * block_size "tokens" per micro-batch; for an image model one
        token is one image, so MFU and the lab's budgets count images (``flops_per_token``: per image)."""
        return 1


# Named sizes. Counts at 224 x 224 RGB and 1000 labels equal timm's vit_*_patch16_224 (tested where
# timm is installed; the strings are checked everywhere).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="26,538 (10 labels)", source="for tests and the 8x8 digits: 2x2 patches (16 tokens + class), 2 layers",
        config=dict(image_size=8, in_channels=1, patch_size=2, n_embd=32, n_layer=2, n_head=2),
    ),
    "digits": dict(
        params="202,186 (10 labels)", source="configs/vision/vit_digits.yaml: 2x2 patches of the 8x8 digits, 4 layers of 64",
        config=dict(image_size=8, in_channels=1, patch_size=2, n_embd=64, n_layer=4, n_head=4),
    ),
    "vit_tiny_patch16": dict(
        params="5,717,416 (1000 labels)", source="Touvron et al. 2021 (DeiT-Ti); timm's vit_tiny_patch16_224",
        config=dict(image_size=224, in_channels=3, patch_size=16, n_embd=192, n_layer=12, n_head=3),
    ),
    "vit_small_patch16": dict(
        params="22,050,664 (1000 labels)", source="Touvron et al. 2021 (DeiT-S); timm's vit_small_patch16_224",
        config=dict(image_size=224, in_channels=3, patch_size=16, n_embd=384, n_layer=12, n_head=6),
    ),
    "vit_base_patch16": dict(
        params="86,567,656 (1000 labels)", source="Dosovitskiy et al. 2021, table 1 (ViT-B/16); timm's vit_base_patch16_224",
        config=dict(image_size=224, in_channels=3, patch_size=16, n_embd=768, n_layer=12, n_head=12),
    ),
}

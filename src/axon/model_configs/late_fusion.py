"""The late-fusion model's config and named sizes (the model: ``axon.models.late_fusion``): a ViT
image encoder, a connector making ``image_tokens`` embeddings of the image, and a decoder that reads
them as a prefix before the text (MM1, McKinnon et al. 2024; LLaVA, Liu et al. 2023).

Torch-free. The ``vision_*`` fields are a ``vit`` config's (``axon.model_configs.vit``, without a
head or class token: :meth:`LateFusionConfig.vision_config`); the unprefixed ones are a
``decoder`` config's of the same names (:meth:`LateFusionConfig.decoder_config`), except that
``block_size`` counts the TEXT positions only: the decoder itself is built for image_tokens +
block_size positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from axon.errors import ConfigError, check
from axon.model_configs.decoder import DecoderConfig
from axon.model_configs.fields import check_fields
from axon.model_configs.vit import ViTConfig


@dataclass
class LateFusionConfig:
    family: Literal["late_fusion"] = "late_fusion"
    preset: str | None = None  # the named size this config started from, for the record
    # the image encoder (axon.model_configs.vit's fields without the prefix; pool mean: no class token)
    vision_image_size: int = 8
    vision_in_channels: int = 1
    vision_patch_size: int = 2
    vision_n_embd: int = 48
    vision_n_layer: int = 2
    vision_n_head: int = 4
    vision_pos: Literal["learned", "sincos"] = "learned"
    # avgpool: the patch grid averaged to s x s (MM1's average pooling); cabstractor: a residual conv
    # block, the pooling, another block (Honeybee's C-Abstractor); then a 2-layer GELU MLP to n_embd
    connector: Literal["avgpool", "cabstractor"] = "avgpool"
    image_tokens: int = 4  # k = s * s image embeddings before the text
    # the decoder (axon.model_configs.decoder's fields of the same names)
    vocab_size: int | None = None  # null: taken from the tokenizer of the training data
    block_size: int = 40  # TEXT positions; the decoder sees image_tokens + block_size
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    mlp: Literal["gelu", "swiglu"] = "swiglu"
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    pos: Literal["learned", "rope"] = "rope"
    qk_norm: bool = False
    dropout: float = 0.0  # both towers
    init_std: float = 0.02  # both towers
    attn_impl: Literal["sdpa", "reference"] = "sdpa"  # both towers

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.block_size > 0, "model.block_size", f"must be positive (text positions), got {self.block_size}")
        vision = self.vision_config()  # the ViT's own checks, named model.vision_*
        k, grid = self.image_tokens, vision.grid
        check(k > 0, "model.image_tokens", f"must be positive, got {k}")
        check(math.isqrt(k) ** 2 == k, "model.image_tokens", f"{k} is not a perfect square s*s (the pooled grid is s x s)")
        check(math.isqrt(k) <= grid, "model.image_tokens",
              f"{k} needs a {math.isqrt(k)}x{math.isqrt(k)} grid, larger than the {grid}x{grid} patch grid")
        self.decoder_config()  # the decoder's own checks (its fields keep their names)

    def vision_config(self) -> ViTConfig:
        """The image encoder as a ``vit`` config: no head, no class token (a ConfigError names the
        model.vision_* field)."""
        try:
            return ViTConfig(image_size=self.vision_image_size, in_channels=self.vision_in_channels, num_labels=None,
                             patch_size=self.vision_patch_size, n_embd=self.vision_n_embd, n_layer=self.vision_n_layer,
                             n_head=self.vision_n_head, pool="mean", pos=self.vision_pos, dropout=self.dropout,
                             init_std=self.init_std, attn_impl=self.attn_impl)
        except ConfigError as e:
            name, _, rest = str(e).partition(": ")
            shared = ("model.dropout", "model.init_std", "model.attn_impl")
            raise ConfigError(f"{name if name in shared else name.replace('model.', 'model.vision_', 1)}: {rest}") from None

    def decoder_config(self) -> DecoderConfig:
        """The decoder as a ``decoder`` config over image_tokens + block_size positions."""
        return DecoderConfig(vocab_size=self.vocab_size, block_size=self.image_tokens + self.block_size,
                             n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, mlp=self.mlp,
                             norm=self.norm, pos=self.pos, qk_norm=self.qk_norm, dropout=self.dropout,
                             init_std=self.init_std, attn_impl=self.attn_impl)

    @property
    def image_size(self) -> int:
        """The input images' side (the tasks read ``model.image_size`` as the image families have it)."""
        return self.vision_image_size

    @property
    def in_channels(self) -> int:
        return self.vision_in_channels

    @property
    def pooled_grid(self) -> int:
        """s: the connector's output grid is s x s = image_tokens."""
        return math.isqrt(self.image_tokens)


# Named sizes. The counts are what axon.models.late_fusion builds (tied head: the token table once);
# the vocabulary comes from the task's tokenizer (tests/models/test_late_fusion.py checks the strings).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="8,336 + 16 x vocab (avgpool; cabstractor: 17,680 + 16 x vocab)", source="for tests: 2x2 patches of 8x8 images, ViT 1 layer of 16, decoder 1 layer of 16, k=4",
        config=dict(vision_image_size=8, vision_in_channels=1, vision_patch_size=2, vision_n_embd=16,
                    vision_n_layer=1, vision_n_head=2, image_tokens=4, block_size=16, n_layer=1, n_head=2, n_embd=16),
    ),
    "digits": dict(
        params="278,512 + 64 x vocab (avgpool; cabstractor: 361,840 + 64 x vocab)", source="the 8x8 digits captioning task: ViT 2 layers of 48, decoder 4 layers of 64, k=4",
        config=dict(vision_image_size=8, vision_in_channels=1, vision_patch_size=2, vision_n_embd=48,
                    vision_n_layer=2, vision_n_head=4, image_tokens=4, block_size=40, n_layer=4, n_head=4, n_embd=64),
    ),
}

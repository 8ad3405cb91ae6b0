"""The Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"), the layout of
timm's ``VisionTransformer`` and Hugging Face's ``ViTForImageClassification``.

    images (B, C_in, H, W), in [-1, 1]
        |
    patch embedding: Conv2d(kernel = stride = P)       (B, C, H/P, W/P) -> flattened row-major
        |                                              (B, N, C), N = (H/P)(W/P)        (eq. 1)
    [class token] ++ patches  +  positions             (B, 1 + N, C) with pool "cls", (B, N, C) with "mean"
        |                                              learned (the training grid, resampled bicubically
        |                                              to other grids) or fixed 2-D sine-cosine
    +---+------------------------------------+
    |  x = x + attn(LN(x))                   |  x n_layer   pre-LN (eq. 2, 3); attention over every
    |  x = x + W2 gelu(W1 LN(x))             |              token in both directions; exact (erf) GELU
    +---+------------------------------------+
        |
    pool "cls":  LN(x)[:, 0]                           the class token's output (eq. 4)
    pool "mean": LN(mean over the patch outputs)       timm's global_pool="avg" (its fc_norm)
        |
    features (B, C) -> head Linear -> logits (B, num_labels)     (no head when num_labels is null)

At the training size the learned positions are added as they are; an image of another size
(any multiple of P) gets the table resampled to its grid (``axon.nn.positional.resample_grid``,
as timm's ``dynamic_img_size``), the class token's position kept. The hybrid (``axon.models.
vit_hybrid``) replaces the patch embedding by a ResNet's feature map (:meth:`ViT.patchify`).
The model returns logits; losses live in ``axon.objectives``.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.vit import PRESETS, ViTConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.nn import CrossAttention, GeluMLP
from axon.nn.positional import resample_grid, sincos_2d


class EncoderBlock(nn.Module):
    """Pre-LN: x = x + attn(LN(x)); x = x + mlp(LN(x)) (eq. 2, 3). Self-attention is attention of x
    over itself: the shared module with memory = x, no mask (every token sees every token)."""

    def __init__(self, n_embd: int, n_head: int, hidden: int, qkv_bias: bool, norm_eps: float, dropout: float,
                 attn_impl: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(n_embd, eps=norm_eps)
        self.attn = CrossAttention(n_embd, n_head, bias=qkv_bias, dropout=dropout, impl=attn_impl)
        if not qkv_bias:  # timm's qkv_bias=False drops q/k/v biases only; the output projection keeps its own
            self.attn.proj = nn.Linear(n_embd, n_embd, bias=True)
        self.norm2 = nn.LayerNorm(n_embd, eps=norm_eps)
        self.mlp = GeluMLP(n_embd, hidden, bias=True, dropout=dropout, approximate="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h)  # (B, T, C)
        return x + self.mlp(self.norm2(x))


class ViT(Model):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        C = cfg.n_embd
        self.patch_embed = self.build_patch_embed()
        self.n_prefix = 1 if cfg.pool == "cls" else 0  # tokens before the patches (the class token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if cfg.pool == "cls" else None
        n_pos = self.n_prefix + self.grid[0] * self.grid[1]
        if cfg.pos == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, C))
        else:  # fixed; derived from the config, never saved (the class token's position is 0, as MAE's)
            table = torch.cat([torch.zeros(self.n_prefix, C), sincos_2d(C, *self.grid)])
            self.register_buffer("pos_embed", table.unsqueeze(0), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(C, cfg.n_head, cfg.hidden, cfg.qkv_bias, cfg.norm_eps, cfg.dropout, cfg.attn_impl)
            for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.head = nn.Linear(C, cfg.num_labels) if cfg.num_labels is not None else None
        self.reset_parameters()

    # -- the tokens: a patch embedding here, a ResNet's feature map in the hybrid ----------------

    def build_patch_embed(self) -> nn.Module:
        cfg = self.config
        return nn.Conv2d(cfg.in_channels, cfg.n_embd, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    @property
    def grid(self) -> tuple[int, int]:
        """Tokens per side (rows, columns) at the training image size."""
        return (self.config.grid, self.config.grid)

    def patchify(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """images (B, C_in, H, W) -> (tokens (B, h w, C) row-major, (h, w))."""
        P = self.config.patch_size
        H, W = images.shape[-2:]
        if H % P or W % P:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {P}")
        x = self.patch_embed(images)  # (B, C, H/P, W/P)
        return x.flatten(2).transpose(1, 2), (x.size(2), x.size(3))  # (B, N, C)

    def reset_parameters(self) -> None:
        """timm's init ("jax"-free default): truncated normal (std init_std) for linears and the
        learned positions, zero biases, the class token at N(0, 1e-6), LayerNorms at (1, 0)."""
        std = self.config.init_std
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=std)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """The positions for a (h, w) grid of tokens (class token first): (1, n_prefix + h w, C).
        The training grid's table itself; another grid's resampled (learned) or computed (sincos)."""
        if tuple(grid) == self.grid:
            return self.pos_embed
        if self.config.pos == "sincos":
            table = sincos_2d(self.config.n_embd, *grid).to(self.pos_embed)
        else:
            table = resample_grid(self.pos_embed[:, self.n_prefix:], self.grid, grid)[0]
        return torch.cat([self.pos_embed[:, : self.n_prefix], table.unsqueeze(0)], dim=1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C_in, H, W) -> every token's output (B, n_prefix + N, C), before the final LN."""
        return self.encode_grid(images)[0]

    def encode_grid(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """:meth:`encode`, with the (h, w) grid of the patch tokens."""
        x, grid = self.patchify(images)  # (B, N, C)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.size(0), -1, -1), x], dim=1)  # (B, 1 + N, C)
        x = x + self.positions(grid)
        if self.training and self.config.dropout:
            x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return x, grid

    def forward_patches(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """images (B, C_in, H, W) -> (every patch token's output after the final LN (B, h w, C), row-major,
        the class token dropped; (h, w)): the feature map a detector reads (``axon.models.detr``). The
        class token is still an input: the patches attend to it. The head is not used."""
        x, grid = self.encode_grid(images)
        return self.norm(x[:, self.n_prefix:]), grid  # LN acts per token

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C_in, H, W) -> the pooled, normalised feature vector (B, C)."""
        x = self.encode(images)
        if self.config.pool == "cls":
            return self.norm(x[:, 0])  # LN acts per token: the class token's row alone
        return self.norm(x[:, self.n_prefix:].mean(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C_in, H, W) in [-1, 1] -> logits (B, num_labels) (features (B, C) without a head)."""
        f = self.forward_features(images)
        return self.head(f) if self.head is not None else f

    def token_macs(self) -> int:
        """Multiply-accumulates of the weights per image, before the blocks: the patch convolution."""
        return self.patch_embed.weight.numel() * self.grid[0] * self.grid[1]

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per image (block_size is 1: one image is one "token"), by axon.models.flops'
        convention: 6 x (the patch embedding's weights at every patch + the blocks' matrices at every
        token + the head once) + 12 x T x C per layer and token for the scores and the weighted sum
        over T = n_prefix + N keys. ``seq_len`` is ignored."""
        cfg = self.config
        T = self.n_prefix + self.grid[0] * self.grid[1]
        block = sum(m.weight.numel() for m in self.blocks.modules() if isinstance(m, nn.Linear))
        head = self.head.weight.numel() if self.head is not None else 0
        return 6.0 * (self.token_macs() + T * block + head) + 12.0 * cfg.n_layer * T * T * cfg.n_embd


__all__ = ["PRESETS", "ViT", "ViTConfig", "EncoderBlock"]

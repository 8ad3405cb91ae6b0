"""Late fusion (MM1, McKinnon et al. 2024; LLaVA, Liu et al. 2023): an image encoder, a connector
that turns its patch grid into k image tokens, and a decoder that reads them before the text.

    images (B, C_in, H, W) in [-1, 1]                     idx (B, T) text ids
        |                                                    |
    ViT.encode (axon.models.vit; pool mean: no class        wte
    token), its final LN           (B, g*g, Cv)              |
        |                                                    |
    connector on the g x g grid:                             |
      avgpool      adaptive average pool to s x s            |
      cabstractor  res-conv block, pool to s x s, res-conv   |
                   block (Honeybee's C-Abstractor)           |
        | (B, k = s*s, Cv)                                   |
    projection Linear Cv -> C, GELU, Linear C -> C           |
        | prefix (B, k, C)                                   |
        +--------------------[prefix ; wte(idx)]-------------+
                                   |  (B, k + T, C), positions 0 .. k+T-1
    Decoder.hidden_states (axon.models.decoder): causal over the whole, the image first
                                   |
    keep the text positions h[:, k:] -> lm_head -> logits (B, T, vocab_size)

Position t of the logits predicts idx token t+1, so the targets are (B, T) as a causal LM's; every
text position sees the whole image, no image token sees the text. The model returns logits;
losses live in ``axon.objectives``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from axon.model_configs.late_fusion import PRESETS, LateFusionConfig  # noqa: F401 (re-exported)
from axon.models.base import Model
from axon.models.decoder import Decoder
from axon.models.vit import ViT


class ResConvBlock(nn.Module):
    """x + conv3x3(gelu(conv3x3(GroupNorm(x)))) on a (B, C, h, w) grid; the second conv starts at
    zero, so the block starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)  # LayerNorm over (C, h, w)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.conv1.reset_parameters()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(self.norm(x))))


class Connector(nn.Module):
    """Patch tokens (B, g*g, Cv) on a g x g grid -> k = s*s image tokens (B, k, C)."""

    def __init__(self, kind: str, vision_embd: int, n_embd: int, s: int):
        super().__init__()
        self.s = s
        self.pre = ResConvBlock(vision_embd) if kind == "cabstractor" else None
        self.post = ResConvBlock(vision_embd) if kind == "cabstractor" else None
        self.proj = nn.Sequential(nn.Linear(vision_embd, n_embd), nn.GELU(), nn.Linear(n_embd, n_embd))

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, Cv = tokens.shape
        x = tokens.transpose(1, 2).reshape(B, Cv, *grid)  # (B, Cv, g, g), row-major as patchify made it
        if self.pre is not None:
            x = self.pre(x)
        x = F.adaptive_avg_pool2d(x, self.s)  # (B, Cv, s, s)
        if self.post is not None:
            x = self.post(x)
        return self.proj(x.flatten(2).transpose(1, 2))  # (B, k, C)

    def macs(self, grid: int) -> int:
        """Multiply-accumulates of its weights per image: the convs at every pixel of their grid,
        the projection at every image token (pooling and norms are not counted)."""
        def convs(block: ResConvBlock | None, side: int) -> int:
            return 0 if block is None else (block.conv1.weight.numel() + block.conv2.weight.numel()) * side * side

        proj = sum(m.weight.numel() for m in self.proj if isinstance(m, nn.Linear))
        return convs(self.pre, grid) + convs(self.post, self.s) + proj * self.s * self.s


class LateFusion(Model):
    def __init__(self, cfg: LateFusionConfig):
        super().__init__()
        self.config = cfg
        self.vision = ViT(cfg.vision_config())  # no head, no class token: encode() gives the patch grid
        self.connector = Connector(cfg.connector, cfg.vision_n_embd, cfg.n_embd, cfg.pooled_grid)
        self.decoder = Decoder(cfg.decoder_config())  # raises when vocab_size is still null
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The ViT's timm init, the decoder's GPT-2 init; the connector's convs at PyTorch's default
        (each block's last conv at zero) and its projection truncated normal (init_std), zero biases."""
        self.vision.reset_parameters()
        self.decoder.reset_parameters()
        for block in (self.connector.pre, self.connector.post):
            if block is not None:
                block.reset_parameters()
        for m in self.connector.proj:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=self.config.init_std)
                nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        """Parameters, shared tensors (the decoder's tied head) once."""
        return sum({id(p): p.numel() for p in self.parameters()}.values())

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C_in, H, W) in [-1, 1] -> the prefix (B, k, n_embd)."""
        P = self.config.vision_patch_size
        grid = (images.size(-2) // P, images.size(-1) // P)  # the patch grid encode() makes
        tokens = self.vision.norm(self.vision.encode(images))  # (B, g*g, Cv): LN per token
        return self.connector(tokens, grid)

    def forward(self, images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """images (B, C_in, H, W), idx (B, T) -> logits (B, T, vocab_size) for the text positions."""
        prefix = self.encode_images(images)  # (B, k, C)
        h = self.decoder.hidden_states(idx, prefix=prefix)  # (B, k + T, C)
        return self.decoder.lm_head(h[:, prefix.size(1):])

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs of ONE example divided by its T = seq_len (default block_size) text
        positions, by axon.models.flops' convention, so that the trainer's tokens per step (batch x
        block_size) times this is the FLOPs of a step: the ViT's per image (patch conv, blocks,
        attention over the g*g patches) + 6 x the connector's convs and projection at their
        positions + the decoder's over k + T positions (weights and attention over k + T keys),
        less the LM head at the k image positions, which it never computes."""
        cfg = self.config
        T, k = seq_len or cfg.block_size, cfg.image_tokens
        vision = self.vision.flops_per_token()
        connector = 6.0 * self.connector.macs(cfg.vision_config().grid)
        decoder = (k + T) * self.decoder.flops_per_token(k + T) - 6.0 * k * cfg.vocab_size * cfg.n_embd
        return (vision + connector + decoder) / T

    @torch.no_grad()
    def greedy_caption(self, images: torch.Tensor, start_ids: list[int], max_new: int,
                       stop_id: int | None = None) -> list[list[int]]:
        """Greedy captions of images (B, C_in, H, W): each starts from ``start_ids`` (at least one
        id, e.g. BOS) and gets up to ``max_new`` tokens, stopping early at ``stop_id`` (left out of
        the caption) or at block_size text positions. No cache: the images are encoded once and the
        decoder recomputes the whole sequence each step (captions are short). Returns the new ids."""
        if not start_ids:
            raise ValueError("start_ids must hold at least one id (e.g. BOS): position t predicts token t+1")
        was_training = self.training
        self.eval()
        try:
            prefix = self.encode_images(images)
            B = images.size(0)
            idx = torch.tensor(start_ids, dtype=torch.long, device=images.device).repeat(B, 1)  # (B, T0)
            out: list[list[int]] = [[] for _ in range(B)]
            done = [False] * B
            for _ in range(max_new):
                if idx.size(1) > self.config.block_size or all(done):  # the next id would have no position
                    break
                h = self.decoder.hidden_states(idx, prefix=prefix, last_only=True)  # (B, 1, C)
                nxt = self.decoder.lm_head(h)[:, -1].argmax(-1)  # (B,)
                for b, t in enumerate(nxt.tolist()):
                    if done[b]:
                        continue
                    if stop_id is not None and t == stop_id:
                        done[b] = True
                    else:
                        out[b].append(t)
                idx = torch.cat([idx, nxt[:, None]], dim=1)
            return out
        finally:
            self.train(was_training)


__all__ = ["Connector", "LateFusion", "LateFusionConfig", "PRESETS", "ResConvBlock"]

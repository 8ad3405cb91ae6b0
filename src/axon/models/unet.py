"""The U-Net of DDPM (Ho et al. 2020, appendix B; PixelCNN++'s backbone with Wide ResNet blocks,
group norm and self-attention at 16x16): a noisy image and its timestep in, an image-shaped
prediction out (the noise, x0 or v: the diffusion process decides what it means).

Shapes for the ``digits`` preset (8x8x1, base_channels 32, channel_mult (1, 2, 2), two residual
blocks per level, attention at 4x4); ``emb`` (B, 128) conditions every residual block::

    x (B, 1, 8, 8)      t (B,), y (B,) or None
        |                   |
    conv_in 3x3             TimestepEmbedding (axon.nn.timestep): sinusoidal(32) -> MLP -> (+ class) -> emb (B, 128)
        |  (B, 32, 8, 8) ------------------------------------------------------ skip 0
    res 32 -> 32, res 32 -> 32                     (B, 32, 8, 8)    ----------- skips 1, 2
    down: 3x3 conv, stride 2                       (B, 32, 4, 4)    ----------- skip 3
    res 32 -> 64 + attn, res 64 -> 64 + attn      (B, 64, 4, 4)    ----------- skips 4, 5
    down                                           (B, 64, 2, 2)    ----------- skip 6
    res 64 -> 64, res 64 -> 64                     (B, 64, 2, 2)    ----------- skips 7, 8
        |
    middle: res, attn, res                         (B, 64, 2, 2)
        |
    3 x res(cat skip 8, 7, 6) -> 64                (B, 64, 2, 2)      each up block reads one skip,
    up: nearest x2 -> 3x3 conv                     (B, 64, 4, 4)      last in, first out
    3 x (res(cat skip 5, 4, 3) -> 64 + attn)       (B, 64, 4, 4)
    up                                             (B, 64, 8, 8)
    3 x res(cat skip 2, 1, 0) -> 32                (B, 32, 8, 8)
        |
    GroupNorm -> SiLU -> conv_out 3x3              (B, 1, 8, 8)      (B, 2, 8, 8) with learn_sigma

    residual block (in C_in, out C):
        h = conv3x3(SiLU(GN(x)))                              (B, C, H, W)
        h = h + Linear(SiLU(emb))[:, :, None, None]           the timestep (and class), per channel
        h = conv3x3(dropout(SiLU(GN(h))))
        out = h + (x, or conv1x1(x) when C_in != C)

    attention block (C channels, one head over the H*W positions):
        q, k, v = Linear(GN(x)) (B, HW, C);  out = x + Linear(softmax(q k^T / sqrt(C)) v)

Class conditioning: an embedding of num_classes + 1 rows added to the time embedding; row
num_classes is the null class (classifier-free guidance), used for every row when y is None.
``learn_sigma`` doubles the output channels (the noise, then the variance interpolation v of
Nichol & Dhariwal 2021). The model holds no schedule: its state is parameters only, so an EMA
of the weights cannot overwrite the diffusion process.

Differences from Ho et al.'s TensorFlow code, none of which changes the parameter count (35,746,307
for the ``cifar10`` preset, Ho et al.'s "35.7M", equal to diffusers' UNet2DModel built as
google/ddpm-cifar10-32; tested): torch's default initialisation (theirs zero-initialises the last
conv of each block; diffusers uses torch's), and downsampling pads 1 pixel on every side (TF's
"SAME" pads only after).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.model_configs.unet import PRESETS, UNetConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model, keep_ema
from axon.nn.timestep import TimestepEmbedding


class ResBlock(nn.Module):
    """Ho et al.'s residual block, conditioned on emb; ``resolution`` is its input's height."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, groups: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C, H, W)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, C, 1, 1) broadcast over the pixels
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + (x if self.skip is None else self.skip(x))

    def macs(self) -> int:
        """Multiply-accumulates per image: the convolutions at every pixel, the projection once."""
        convs = self.conv1.weight.numel() + self.conv2.weight.numel()
        convs += 0 if self.skip is None else self.skip.weight.numel()
        return convs * self.resolution**2 + self.emb_proj.weight.numel()


class SpatialAttention(nn.Module):
    """Single-head self-attention over the H*W positions of a feature map, with a residual."""

    def __init__(self, ch: int, groups: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = nn.Linear(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(h).unsqueeze(1).chunk(3, dim=-1)  # each (B, 1, HW, C): one head
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # (B, HW, C), scaled by 1/sqrt(C)
        return x + self.proj(h).transpose(1, 2).reshape(B, C, H, W)

    def macs(self) -> int:
        n = self.resolution**2
        return n * (self.qkv.weight.numel() + self.proj.weight.numel()) + 2 * n * n * self.proj.in_features


class Level(nn.Module):
    """One step of a path: a residual block, then attention where the resolution asks for it."""

    def __init__(self, res: ResBlock, attn: SpatialAttention | None):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.res(x, emb)
        return h if self.attn is None else self.attn(h)

    def macs(self) -> int:
        return self.res.macs() + (0 if self.attn is None else self.attn.macs())


class Downsample(nn.Module):
    """3x3 convolution with stride 2: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch: int, resolution: int):
        super().__init__()
        self.resolution = resolution  # of the input
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)

    def macs(self) -> int:
        return self.conv.weight.numel() * (self.resolution // 2) ** 2


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, ch: int, resolution: int):
        super().__init__()
        self.resolution = resolution  # of the input
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    def macs(self) -> int:
        return self.conv.weight.numel() * (2 * self.resolution) ** 2


class UNet(Model):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        ch, groups, drop = cfg.base_channels, cfg.norm_groups, cfg.dropout
        emb_dim = 4 * ch
        self.embed = TimestepEmbedding(ch, emb_dim, cfg.num_classes)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        # Down: every step's output is kept for the way up (skips), conv_in's too.
        self.down = nn.ModuleList()
        skips, cur, res = [ch], ch, cfg.image_size
        last = len(cfg.channel_mult) - 1
        for i, mult in enumerate(cfg.channel_mult):
            out = ch * mult
            for _ in range(cfg.num_res_blocks):
                attn = SpatialAttention(out, groups, res) if res in cfg.attn_resolutions else None
                self.down.append(Level(ResBlock(cur, out, emb_dim, drop, groups, res), attn))
                cur = out
                skips.append(cur)
            if i != last:
                self.down.append(Downsample(cur, res))
                res //= 2
                skips.append(cur)

        self.mid = nn.ModuleList([
            Level(ResBlock(cur, cur, emb_dim, drop, groups, res), SpatialAttention(cur, groups, res)),
            Level(ResBlock(cur, cur, emb_dim, drop, groups, res), None),
        ])

        # Up: one more residual block per level than down, each reading one skip (last in, first out).
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(cfg.channel_mult))):
            out = ch * mult
            for _ in range(cfg.num_res_blocks + 1):
                attn = SpatialAttention(out, groups, res) if res in cfg.attn_resolutions else None
                self.up.append(Level(ResBlock(cur + skips.pop(), out, emb_dim, drop, groups, res), attn))
                cur = out
            if i != 0:
                self.up.append(Upsample(cur, res))
                res *= 2
        assert not skips and res == cfg.image_size

        self.norm_out = nn.GroupNorm(groups, cur)
        self.conv_out = nn.Conv2d(cur, cfg.out_channels, 3, padding=1)
        keep_ema(self, cfg.ema_decay)  # last: it averages the parameters made above (axon.nn.ema)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) float, t (B,) (or one shared scalar) long in [0, T), y (B,) long class in
        [0, num_classes] or None (the null class for every row) -> (B, out_channels, H, W)."""
        if t.dim() == 0:
            t = t.expand(x.size(0))
        emb = self.embed(t, y)  # (B, 4 ch)
        h = self.conv_in(x)  # (B, ch, H, W)
        hs = [h]
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, Level):
                h = torch.cat([h, hs.pop()], dim=1)  # (B, C + C_skip, H', W')
            h = block(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H, W)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per image (the config's block_size is 1: one image is one "token"), by
        axon.models.flops' convention: 6 per multiply-accumulate of a weight (every convolution
        weight at every output pixel; the embedding MLP and projections once per image), plus
        12 * positions * C per attention layer and query. Norms and activations are not counted.
        ``seq_len`` is ignored."""
        n = self.config.image_size**2
        macs = self.embed.matmul_weights() + n * (self.conv_in.weight.numel() + self.conv_out.weight.numel())
        macs += sum(block.macs() for path in (self.down, self.mid, self.up) for block in path)
        return 6.0 * macs


__all__ = ["PRESETS", "UNet", "UNetConfig", "ResBlock", "SpatialAttention"]

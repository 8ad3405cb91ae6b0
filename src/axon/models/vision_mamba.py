"""Vision Mamba (Zhu et al. 2024, "Vision Mamba: Efficient Visual Representation Learning with
Bidirectional State Space Model"): a ViT whose attention is a bidirectional selective scan.

    images (B, C_in, H, W)
        |
    patch embedding Conv2d(kernel = stride = P) -> (B, N, C) row-major, + learned positions
        |
    class token (+ its position) inserted at index m = N // 2:           (sec. 3.2, "middle class token")
        [p_0 .. p_{m-1}, CLS, p_m .. p_{N-1}]                             (B, N + 1, C)
        |
    +---+------------------------------+
    |  x = x + bimamba(RMSNorm(x))     |  x n_layer
    +---+------------------------------+
        |
    RMSNorm -> x[:, m] (the class token's output) -> head -> logits (B, num_labels)
               (pool "mean": no class token, the mean of the patch outputs)

The bidirectional mixer (Algorithm 1; Vim's ``bimamba_type="v2"``, ``if_divide_out=True``), with
D = expand * C channels and one selective SSM per direction (``axon.nn.ssm``):

    x, z = in_proj(u)                                            (B, T, D) each, shared by both directions
    y_fwd = SSM_fwd(silu(conv_fwd(x)))                           the scan from the first token to the last
    y_bwd = flip(SSM_bwd(silu(conv_bwd(flip(x)))))               the same on the reversed sequence, flipped back
    out = out_proj((y_fwd + y_bwd) / 2 * silu(z))                (B, T, C)

Each direction is Mamba's selective path (``axon.models.mamba``' mixer without its projections):
a causal depthwise conv, x_proj -> (dt, B, C), dt_proj + softplus, A = -exp(A_log), the scan, + D x.
Every token thus sees every other one, through the forward scan (those before it) and the
backward scan (those after it), at a cost linear in the number of patches; the middle class token
is reached by half the sequence in each direction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.model_configs.vision_mamba import PRESETS, VisionMambaConfig  # noqa: F401 (re-exported)
from axon.models.base import Model
from axon.nn import RMSNorm
from axon.nn.positional import resample_grid
from axon.nn.ssm import SCANS


class SelectiveScan(nn.Module):
    """One direction of the mixer: x (B, T, D) -> y (B, T, D), the selective SSM of Mamba
    (Gu & Dao 2023, Algorithm 2) after a causal depthwise convolution, with the D-skip."""

    def __init__(self, cfg: VisionMambaConfig):
        super().__init__()
        D, N, R = cfg.d_inner, cfg.d_state, cfg.rank
        self.cfg = cfg
        self.conv1d = nn.Conv1d(D, D, cfg.d_conv, groups=D, padding=cfg.d_conv - 1)  # weight (D, 1, K)
        self.x_proj = nn.Linear(D, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, D, bias=True)
        self.A_log = nn.Parameter(torch.empty(D, N))
        self.D = nn.Parameter(torch.empty(D))
        self.A_log._no_weight_decay = self.D._no_weight_decay = True  # dynamics, not features (as Mamba)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba's reference init: dt_proj.weight uniform in +-R^-0.5, softplus(dt_proj.bias) = dt
        log-uniform in [dt_min, dt_max], A = -(1..N) (S4D-real), D = 1."""
        cfg = self.cfg
        self.conv1d.reset_parameters()
        self.x_proj.reset_parameters()
        nn.init.uniform_(self.dt_proj.weight, -cfg.rank**-0.5, cfg.rank**-0.5)
        dt = torch.exp(torch.rand(cfg.d_inner) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        dt = dt.clamp(min=cfg.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log.copy_(torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float32)).expand(cfg.d_inner, -1))
        self.D.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        T = x.size(1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :T].transpose(1, 2))  # causal: the first T outputs, (B, T, D)
        dt, Bm, Cm = self.x_proj(x).split([cfg.rank, cfg.d_state, cfg.d_state], dim=-1)  # (B, T, R), (B, T, N) x 2
        dt = F.softplus(self.dt_proj(dt))  # (B, T, D), > 0
        A = -torch.exp(self.A_log.float())  # (D, N), < 0
        impl = cfg.scan_impl if cfg.scan_impl != "auto" else ("sequential" if x.device.type == "cpu" else "chunked")
        kw = {"chunk": cfg.scan_chunk} if impl == "chunked" else {}
        y, _ = SCANS[impl](x, dt, A, Bm, Cm, **kw)  # (B, T, D)
        return y + self.D * x  # (B, T, D)


class BiMambaMixer(nn.Module):
    """The bidirectional mixer of the module docstring: shared in/out projections, a forward and a
    backward selective scan, averaged, gated by silu(z)."""

    def __init__(self, cfg: VisionMambaConfig):
        super().__init__()
        self.in_proj = nn.Linear(cfg.n_embd, 2 * cfg.d_inner, bias=False)
        self.fwd = SelectiveScan(cfg)
        self.bwd = SelectiveScan(cfg)
        self.out_proj = nn.Linear(cfg.d_inner, cfg.n_embd, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, T, D) each
        y = (self.fwd(x) + self.bwd(x.flip(1)).flip(1)) / 2  # token t: the scans of tokens <= t and >= t
        return self.out_proj(y * F.silu(z))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: VisionMambaConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mixer = BiMambaMixer(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class VisionMamba(Model):
    def __init__(self, cfg: VisionMambaConfig):
        super().__init__()
        self.config = cfg
        C, G = cfg.n_embd, cfg.grid
        self.patch_embed = nn.Conv2d(cfg.in_channels, C, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.n_prefix = 1 if cfg.pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if cfg.pool == "cls" else None
        # positions: the class token's first, then the training grid's row-major (the token itself sits in the middle)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_prefix + G * G, C))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(C, cfg.norm_eps)
        self.head = nn.Linear(C, cfg.num_labels) if cfg.num_labels is not None else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Vim's init: truncated normal (init_std) for positions, class token and head; Mamba's for
        the scans; out_proj scaled by 1/sqrt(n_layer) (GPT-2's residual scaling, as Mamba)."""
        std = self.config.init_std
        nn.init.trunc_normal_(self.pos_embed, std=std)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=std)
        if self.head is not None:
            nn.init.trunc_normal_(self.head.weight, std=std)
            nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            for block in self.blocks:
                block.norm.reset_parameters()
                block.mixer.in_proj.reset_parameters()
                block.mixer.out_proj.reset_parameters()
                block.mixer.out_proj.weight /= math.sqrt(self.config.n_layer)
                block.mixer.fwd.reset_parameters()
                block.mixer.bwd.reset_parameters()
        self.norm_f.reset_parameters()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @staticmethod
    def cls_index(n_patches: int) -> int:
        """Where the class token sits in a sequence of ``n_patches`` patches: index n_patches // 2
        (Vim's token_position = M // 2), so floor(N/2) patches come before it and ceil(N/2) after."""
        return n_patches // 2

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, int | None, tuple[int, int]]:
        """images (B, C_in, H, W) -> (every token's output after the final norm (B, N + n_prefix, C),
        the class token's index (None with pool "mean"), the (h, w) patch grid)."""
        P = self.config.patch_size
        if images.size(-2) % P or images.size(-1) % P:
            raise ValueError(f"image size {images.size(-2)}x{images.size(-1)} is not a multiple of the patch size {P}")
        x = self.patch_embed(images)  # (B, C, h, w)
        grid = (x.size(2), x.size(3))
        G = self.config.grid
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        x = x + resample_grid(self.pos_embed[:, self.n_prefix:], (G, G), grid)  # the table itself at (G, G)
        m = None
        if self.cls_token is not None:
            m = self.cls_index(x.size(1))
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.size(0), -1, -1)
            x = torch.cat([x[:, :m], cls, x[:, m:]], dim=1)  # (B, N + 1, C)
        for block in self.blocks:
            x = block(x)
        return self.norm_f(x), m, grid

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C_in, H, W) -> the class token's normalised output (or the patches' mean) (B, C)."""
        x, m, _ = self.encode(images)
        return x[:, m] if m is not None else x.mean(1)

    def forward_patches(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """images (B, C_in, H, W) -> (every patch token's output after the final norm (B, h w, C),
        row-major, the middle class token dropped; (h, w)): the feature map a detector reads
        (``axon.models.detr``). The class token is still an input: both scans carry it to the
        patches on its other side. The head is not used."""
        x, m, grid = self.encode(images)
        if m is not None:
            x = torch.cat([x[:, :m], x[:, m + 1:]], dim=1)  # (B, N, C), the patches in their order
        return x, grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C_in, H, W) in [-1, 1] -> logits (B, num_labels) (features (B, C) without a head)."""
        f = self.forward_features(images)
        return self.head(f) if self.head is not None else f

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per image (block_size is 1), by axon.models.flops' convention as the mamba
        family counts it: 6 x every multiplying weight at every token (each direction's x_proj and
        dt_proj, the shared in/out projections, the patch conv at every patch, the head once) + 3 x
        the elementwise conv and scan work (2 D K + 8 D N per direction and token). ``seq_len`` is ignored."""
        cfg = self.config
        N = cfg.grid**2
        T = N + self.n_prefix
        D, S, R, C = cfg.d_inner, cfg.d_state, cfg.rank, cfg.n_embd
        per_token = C * 2 * D + 2 * (D * (R + 2 * S) + R * D) + D * C
        elementwise = 2 * (2 * D * cfg.d_conv + 8 * D * S)
        head = self.head.weight.numel() if self.head is not None else 0
        matmul = self.patch_embed.weight.numel() * N + cfg.n_layer * T * per_token + head
        return 6.0 * matmul + 3.0 * cfg.n_layer * T * elementwise


__all__ = ["PRESETS", "VisionMamba", "VisionMambaConfig", "BiMambaMixer", "SelectiveScan"]

"""A residual MLP denoiser for low-dimensional data (the 2-D toy sets: swiss roll, moons, Gaussian
mixtures): the U-Net's residual block with Linear layers in place of convolutions and LayerNorm
in place of GroupNorm, conditioned on the same timestep (and class) embedding::

    x (B, D)            t (B,), y (B,) or None
        |                   |
    in_proj Linear(D, n)    TimestepEmbedding (axon.nn.timestep): sinusoidal(n) -> MLP -> (+ class) -> emb (B, n)
        |  h (B, n)
    n_layer x block:  h = h + fc2(dropout(SiLU(fc1(SiLU(LN(h))) + Linear(SiLU(emb)))))      (B, n)
        |
    LN -> SiLU -> out_proj Linear(n, D)              (B, D)      (B, 2D) with learn_sigma

n = n_embd. Class conditioning: num_classes + 1 rows, the last the null class of classifier-free
guidance (every row when y is None). The model holds no schedule: its state is parameters only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.model_configs.mlp_denoiser import PRESETS, MLPDenoiserConfig  # noqa: F401 (re-exported: config and sizes)
from axon.models.base import Model, keep_ema
from axon.nn.timestep import TimestepEmbedding


class ResidualMLPBlock(nn.Module):
    def __init__(self, n_embd: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(n_embd)
        self.fc1 = nn.Linear(n_embd, n_embd)
        self.emb_proj = nn.Linear(emb_dim, n_embd)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(n_embd, n_embd)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        a = self.fc1(F.silu(self.norm(h))) + self.emb_proj(F.silu(emb))  # (B, n)
        return h + self.fc2(self.dropout(F.silu(a)))


class MLPDenoiser(Model):
    def __init__(self, cfg: MLPDenoiserConfig):
        super().__init__()
        self.config = cfg
        n = cfg.n_embd
        self.embed = TimestepEmbedding(n, n, cfg.num_classes)
        self.in_proj = nn.Linear(cfg.data_dim, n)
        self.blocks = nn.ModuleList([ResidualMLPBlock(n, n, cfg.dropout) for _ in range(cfg.n_layer)])
        self.norm_out = nn.LayerNorm(n)
        self.out_proj = nn.Linear(n, cfg.out_dim)
        keep_ema(self, cfg.ema_decay)  # last: it averages the parameters made above (axon.nn.ema)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, D) float, t (B,) (or one shared scalar) long in [0, T), y (B,) long class in
        [0, num_classes] or None (the null class for every row) -> (B, out_dim)."""
        if t.dim() == 0:
            t = t.expand(x.size(0))
        emb = self.embed(t, y)  # (B, n)
        h = self.in_proj(x)  # (B, n)
        for block in self.blocks:
            h = block(h, emb)
        return self.out_proj(F.silu(self.norm_out(h)))  # (B, out_dim)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per point (the config's block_size is 1): 6 per Linear weight, the class
        table being a lookup. ``seq_len`` is ignored."""
        return 6.0 * sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))


__all__ = ["PRESETS", "MLPDenoiser", "MLPDenoiserConfig"]

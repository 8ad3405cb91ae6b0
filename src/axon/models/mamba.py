"""Mamba: a language model of selective state spaces (Gu & Dao 2023, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces"), the architecture of the reference ``mamba_simple.py`` and
Hugging Face's ``MambaForCausalLM``.

     tokens (B, T)
        |
     wte                                          (B, T, C)            C = n_embd
        |
     +--+------------------+
     |  x = x + mixer(norm(x))  |  x n_layer       RMSNorm, pre-norm residual (no MLP: the mixer is
     +--+------------------+                      both the "attention" and the "MLP", sec. 3.4)
        |
     norm_f -> lm_head -> logits (B, T, vocab_size)   (head tied to wte)

The mixer (sec. 3.4, Figure 3), D = expand * C channels, N = d_state, R = dt_rank:

     x (B, T, C) -> in_proj -> [x (B, T, D) | z (B, T, D)]
     x -> causal depthwise conv1d (d_conv taps) -> SiLU             (B, T, D)
     x -> x_proj -> [dt (B, T, R) | B (B, T, N) | C (B, T, N)]       the selection (Algorithm 2)
     dt -> dt_proj -> softplus                                       (B, T, D), > 0
     A = -exp(A_log)                                                 (D, N), S4D-real init A[:, n] = -(n + 1)
     y = SSM(A, B, C, dt)(x) + D * x                                 (B, T, D), axon.nn.ssm
     y = y * SiLU(z) -> out_proj                                     (B, T, C)

The SSM (sec. 2 and 3.2): dA_t = exp(dt_t A), dB_t x_t = dt_t B_t x_t; h_t = dA_t h_{t-1} + dB_t x_t;
y_t = C_t h_t + D x_t, with a state h (B, D, N) per layer. Training runs it as a scan over the
window (``scan_impl``: the step-by-step recurrence or the chunked scan of ``axon.nn.ssm``);
generation carries (conv state, h) from token to token in a ``RecurrentStateCache`` and a single
new token costs one closed-form step, whatever the context length. There is no context limit:
``block_size`` is only the training window.

The model returns logits; losses live in ``axon.objectives``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.model_configs.mamba import PRESETS, MambaConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.nn import RMSNorm
from axon.nn.precision import at_least_fp32
from axon.nn.ssm import scan_chunked, scan_sequential, selective_step
from axon.models.base import Model


class MambaMixer(nn.Module):
    """The selective SSM block of Figure 3 (right). Its state: (conv (B, D, d_conv), h (B, D, N))."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        D, N, R = cfg.d_inner, cfg.d_state, cfg.rank
        self.cfg = cfg
        self.in_proj = nn.Linear(cfg.n_embd, 2 * D, bias=cfg.bias)
        self.conv1d = nn.Conv1d(D, D, cfg.d_conv, groups=D, bias=cfg.conv_bias)  # weight (D, 1, d_conv)
        self.x_proj = nn.Linear(D, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, D, bias=True)
        self.A_log = nn.Parameter(torch.empty(D, N))
        self.D = nn.Parameter(torch.empty(D))
        # dynamics, not feature maps: no weight decay and no Muon (axon.train.optim), as in the reference
        self.A_log._no_weight_decay = self.D._no_weight_decay = True
        self.out_proj = nn.Linear(D, cfg.n_embd, bias=cfg.bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The reference init (mamba_simple.py): torch's default for the linears and the conv, then
        dt_proj.weight uniform in +-R^-0.5, softplus(dt_proj.bias) = dt log-uniform in [dt_min,
        dt_max] (so that the initial steps span that range, sec. 3.6), A = -(1..N) (S4D-real),
        D = 1, out_proj scaled by 1/sqrt(n_layer) (GPT-2's residual scaling)."""
        cfg = self.cfg
        for lin in (self.in_proj, self.x_proj, self.out_proj):
            lin.reset_parameters()
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        self.conv1d.reset_parameters()
        self.out_proj.weight /= math.sqrt(cfg.n_layer)
        std = cfg.rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(cfg.d_inner) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        dt = dt.clamp(min=cfg.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log.copy_(torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float32)).expand(cfg.d_inner, -1))
        self.D.fill_(1.0)

    def conv(self, x: torch.Tensor, conv_state: torch.Tensor | None, mask: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal depthwise convolution of x (B, D, T) continuing from ``conv_state`` (B, D, K), the
        last K = d_conv inputs read (zeros for a fresh sequence) -> (out (B, D, T), new state).

        Padding (``mask`` (B, T), False = pad) must not enter any window: each row's columns are
        stably sorted so its pads come first, [pads | state | real tokens], convolved, and put back.
        A pad position's output is then meaningless (its dt is zeroed, so the SSM skips it)."""
        Bsz, Dch = x.shape[:2]
        K = self.cfg.d_conv
        if conv_state is None:
            conv_state = x.new_zeros(Bsz, Dch, K)
        seq = torch.cat([conv_state, x], dim=2)  # (B, D, K + T)
        if mask is None:
            out = F.conv1d(seq, self.conv1d.weight, self.conv1d.bias, groups=Dch)  # (B, D, T + 1): window ends at K-1.. K+T-1
            return out[:, :, 1:], seq[:, :, -K:]
        keep = torch.cat([mask.new_ones(Bsz, K), mask], dim=1)  # (B, K + T)
        order = torch.argsort(keep.long(), dim=1, stable=True)  # pads first, then everything real in order
        seq = seq.gather(2, order.unsqueeze(1).expand(-1, Dch, -1))
        out = F.conv1d(F.pad(seq, (K - 1, 0)), self.conv1d.weight, self.conv1d.bias, groups=Dch)  # (B, D, K + T)
        out = out.gather(2, torch.argsort(order, dim=1).unsqueeze(1).expand(-1, Dch, -1))  # back to the input order
        return out[:, :, K:], seq[:, :, -K:]

    def forward(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """u (B, T, C) -> (out (B, T, C), new state (conv (B, D, K), h (B, D, N))).

        ``state`` None: a fresh sequence. ``mask`` (B, T), False at pads: a pad leaves the state
        unchanged (no conv window sees it; dt = 0 there, so dA = 1 and dB x = 0)."""
        cfg = self.cfg
        N, R = cfg.d_state, cfg.rank
        conv_state, h = state if state is not None else (None, None)
        A = -torch.exp(at_least_fp32(self.A_log))  # (D, N), < 0
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, T, D) each

        if state is not None and mask is None and u.size(1) == 1:  # one new token: a closed-form step
            conv_state = torch.cat([conv_state[:, :, 1:], x.transpose(1, 2)], dim=2)  # (B, D, K)
            x = (conv_state * self.conv1d.weight.squeeze(1)).sum(-1)  # (B, D)
            if self.conv1d.bias is not None:
                x = x + self.conv1d.bias
            x = F.silu(x)
            dt, Bm, Cm = self.x_proj(x).split([R, N, N], dim=-1)  # (B, R), (B, N), (B, N)
            dt = F.softplus(self.dt_proj(dt))  # (B, D)
            y, h = selective_step(x, dt, A, Bm, Cm, h)
            y = (y + self.D * x).unsqueeze(1)  # (B, 1, D)
        else:
            x, conv_state = self.conv(x.transpose(1, 2), conv_state, mask)
            x = F.silu(x.transpose(1, 2))  # (B, T, D)
            dt, Bm, Cm = self.x_proj(x).split([R, N, N], dim=-1)  # (B, T, R), (B, T, N), (B, T, N)
            dt = F.softplus(self.dt_proj(dt))  # (B, T, D)
            if mask is not None:
                dt = dt * mask.unsqueeze(-1)  # a pad: h_t = exp(0) h_{t-1} + 0
            impl = cfg.scan_impl if cfg.scan_impl != "auto" else ("sequential" if x.device.type == "cpu" else "chunked")
            if impl == "chunked":
                y, h = scan_chunked(x, dt, A, Bm, Cm, h, cfg.scan_chunk)
            else:
                y, h = scan_sequential(x, dt, A, Bm, Cm, h)
            y = y + self.D * x  # (B, T, D), the skip connection D x
        y = y * F.silu(z)  # the gate (Figure 3)
        return self.out_proj(y), (conv_state, h)


class Block(nn.Module):
    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mixer = MambaMixer(cfg)
        self.residual_in_fp32 = cfg.residual_in_fp32

    def forward(self, x, state=None, mask=None):
        residual = at_least_fp32(x) if self.residual_in_fp32 else x
        out, state = self.mixer(self.norm(x.to(self.norm.weight.dtype)), state, mask)
        return residual + out, state


class Mamba(Model):
    def __init__(self, cfg: MambaConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("MambaConfig.vocab_size must be set before building the model")
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.wte.weight, 0.0, self.config.init_std)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, 0.0, self.config.init_std)
        for block in self.blocks:
            block.norm.reset_parameters()
            block.mixer.reset_parameters()
        self.norm_f.reset_parameters()

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward 1x, backward 2x): 2 per multiplying weight (the four
        projections and the head), plus per layer the conv (2 D K) and the scan (~8 D N: dt A,
        exp, dt B x, the update, C h); no term grows with the sequence."""
        cfg = self.config
        D, N, R, C = cfg.d_inner, cfg.d_state, cfg.rank, cfg.n_embd
        matmul = cfg.n_layer * (C * 2 * D + D * (R + 2 * N) + R * D + D * C) + cfg.vocab_size * C
        elementwise = cfg.n_layer * (2 * D * cfg.d_conv + 8 * D * N)
        return 3.0 * (2 * matmul + elementwise)

    def make_cache(self, batch_size: int, max_len: int | None = None):
        """A zero state for ``batch_size`` sequences: conv (n_layer, B, D, d_conv) and h (n_layer, B,
        D, N); ``max_len`` is not needed, the state has a fixed size whatever the length."""
        from axon.generate.state import RecurrentStateCache

        cfg, p = self.config, self.lm_head.weight
        conv = torch.zeros(cfg.n_layer, batch_size, cfg.d_inner, cfg.d_conv, dtype=p.dtype, device=p.device)
        ssm = torch.zeros(cfg.n_layer, batch_size, cfg.d_inner, cfg.d_state, dtype=torch.float32, device=p.device)
        return RecurrentStateCache([conv, ssm], batch_dim=1)

    def forward(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size), or (B, 1, vocab_size) with ``last_only``.

        Without ``cache`` every sequence starts from a zero state. With ``cache`` idx continues the
        cached sequences (``pad_mask`` (B, T) marks left padding of a prompt batch; pads leave the
        state unchanged) and the cache keeps the new state; see ``axon.generate.state``.
        """
        replay, states = 0, None
        if cache is not None:
            idx_new, mask_new = idx, pad_mask
            idx, pad_mask, replay, (conv, ssm) = cache.begin(idx, pad_mask)  # tokens pending after a crop come first
            states = list(zip(conv.unbind(0), ssm.unbind(0)))
        elif pad_mask is not None:
            pad_mask = None if bool(pad_mask.all()) else pad_mask.bool()
        x = self.wte(idx)  # (B, T, C)
        new_states = []
        for i, block in enumerate(self.blocks):
            x, st = block(x, states[i] if states is not None else None, pad_mask)
            new_states.append(st)
        if cache is not None:
            cache.commit((torch.stack([c for c, _ in new_states]), torch.stack([h for _, h in new_states])), idx_new, mask_new)
        x = x[:, replay:]
        if last_only:
            x = x[:, -1:]
        x = self.norm_f(x.to(self.norm_f.weight.dtype))
        return self.lm_head(x)  # (B, T, V)


__all__ = ["PRESETS", "Mamba", "MambaConfig", "MambaMixer"]

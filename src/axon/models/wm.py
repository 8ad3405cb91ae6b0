"""World Models (Ha & Schmidhuber 2018): V, a convolutional VAE of frames; M, an MDN-RNN that
predicts the next latent; C, a linear controller on [z, h] (trained by CMA-ES).

    frame (B, 3, S, S) --V.encode--> mu, logvar (B, Z) --sample--> z_t
                                                                    |
           a_t (from C) ----------------------------+--> [z_t, a_t] --M: LSTM--> h_{t+1}
                                                    |                             |
    C: a_t = tanh(W [z_t, h_t] + b)  <--------------+   MDN head: per latent dim, K Gaussians
                                                        (pi, mu, sigma) of z_{t+1}; reward r_t

V (the paper's encoder/decoder, at 32x32 and fewer channels): three stride-2 4x4 convolutions
(S -> S/8, channels c, 2c, 4c, ReLU) to mu and log-variance; the decoder mirrors them with
transposed convolutions to a sigmoid frame in [0, 1]. Trained on L2 reconstruction plus KL with
the paper's "free bits" floor (``world_model.kl_tolerance`` nats per latent dim).

M: the recurrent family's cell (``axon.models.rnn.CELLS``: nn.LSTM or nn.GRU) over [z_t, a_t];
its output h_{t+1} feeds a linear head giving, per latent dim d and mixture k, log pi (softmax
over k), mu and log sigma of z_{t+1, d}, and the reward r_t of the step (a regression head). The
paper's loss is the negative log-likelihood of the mixture (``mdn_nll``); sampling at temperature
tau divides the mixture logits by tau and scales sigma by sqrt(tau) (``sample_mdn``).

C: a single linear layer (the paper's 867 parameters for CarRacing; here (Z + H + 1) x A), its
weights the mean of a CMA-ES search whose state (``axon.agents.worldmodels.cma_es.CMAES``) lives
in the model's buffers, so a checkpoint holds the search and resume is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.agents.worldmodels.cma_es import CMAES
from axon.model_configs.wm import (  # noqa: F401 (re-exported: the families' configs and sizes)
    CONTROLLER_PRESETS, MDNRNN_PRESETS, VAE_PRESETS, ControllerConfig, MDNRNNConfig, WMVAEConfig,
)
from axon.models.base import Model
from axon.models.rnn import CELLS, recurrent_matmul_params

__all__ = ["CONTROLLER_PRESETS", "MDNRNN_PRESETS", "VAE_PRESETS", "ControllerConfig", "ConvVAE", "LinearController",
           "MDNRNN", "MDNRNNConfig", "WMVAEConfig", "mdn_nll", "sample_mdn"]

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class ConvVAE(Model):
    """V: frames (B, 3, S, S) in [0, 1] -> (reconstruction (B, 3, S, S), mu (B, Z), logvar (B, Z))."""

    def __init__(self, cfg: WMVAEConfig):
        super().__init__()
        self.config = cfg
        c, S = cfg.channels, cfg.frame_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.ReLU(),  # (B, c, S/2, S/2)
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.ReLU(),  # (B, 2c, S/4, S/4)
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.ReLU(),  # (B, 4c, S/8, S/8)
            nn.Flatten(),
        )
        self.flat = 4 * c * (S // 8) ** 2
        self.mu = nn.Linear(self.flat, cfg.z_dim)
        self.logvar = nn.Linear(self.flat, cfg.z_dim)
        self.expand = nn.Linear(cfg.z_dim, self.flat)
        self.decoder = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1), nn.ReLU(),  # (B, 2c, S/4, S/4)
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),  # (B, c, S/2, S/2)
            nn.ConvTranspose2d(c, 3, 4, 2, 1), nn.Sigmoid(),  # (B, 3, S, S)
        )

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(frames)  # (B, flat)
        return self.mu(h), self.logvar(h).clamp(-10, 5)  # (B, Z) each

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        S8 = self.config.frame_size // 8
        return self.decoder(self.expand(z).view(-1, 4 * self.config.channels, S8, S8))  # (B, 3, S, S)

    def forward(self, frames: torch.Tensor):
        mu, logvar = self.encode(frames)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu  # eval: the mean
        return self.decode(z), mu, logvar

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Per frame: 6 x (each convolution's weights x its output positions + the linears)."""
        S, c = self.config.frame_size, self.config.channels
        macs = 0
        for i, (cin, cout) in enumerate([(3, c), (c, 2 * c), (2 * c, 4 * c)], start=1):
            macs += cin * cout * 16 * (S // 2**i) ** 2  # encoder conv i, output S / 2^i
            macs += cin * cout * 16 * (S // 2 ** (i - 1)) ** 2  # its mirror in the decoder, output S / 2^(i-1)
        macs += 3 * self.flat * self.config.z_dim  # mu, logvar, expand
        return 6.0 * macs


class MDNRNN(Model):
    """M: (z (B, T, Z), a (B, T, A), state) -> (log_pi, mu, log_sigma (B, T, Z, K), reward (B, T), state)."""

    def __init__(self, cfg: MDNRNNConfig):
        super().__init__()
        if cfg.z_dim is None:
            raise ValueError("MDNRNNConfig.z_dim must be set (V's z_dim) before building the model")
        self.config = cfg
        self.rnn = CELLS[cfg.cell](cfg.z_dim + cfg.action_dim, cfg.hidden, batch_first=True)
        self.head = nn.Linear(cfg.hidden, 3 * cfg.z_dim * cfg.mixtures + 1)

    def forward(self, z: torch.Tensor, a: torch.Tensor, state=None):
        out, state = self.rnn(torch.cat([z, a], -1), state)  # (B, T, H)
        return (*self.mixture(out), state)

    def mixture(self, out: torch.Tensor):
        """The head on h (..., H) -> log_pi, mu, log_sigma (..., Z, K) and reward (...)."""
        Z, K = self.config.z_dim, self.config.mixtures
        y = self.head(out)
        params, reward = y[..., :-1].unflatten(-1, (3, Z, K)), y[..., -1]
        logit, mu, log_sigma = params.unbind(-3)
        return F.log_softmax(logit, -1), mu, log_sigma.clamp(-7, 3), reward

    @staticmethod
    def hidden_of(state) -> torch.Tensor:
        """h (B, H) of the recurrent state (LSTM: (h, c); GRU: h), what C reads."""
        h = state[0] if isinstance(state, tuple) else state
        return h[-1]

    def flops_per_token(self, seq_len: int | None = None) -> float:
        return 6.0 * (recurrent_matmul_params(self.rnn) + self.head.weight.numel())


def mdn_nll(log_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log sum_k pi_k N(target | mu_k, sigma_k^2) per element: log_pi, mu, log_sigma (..., K), target (...)."""
    x = target.unsqueeze(-1)
    log_normal = -0.5 * ((x - mu) / log_sigma.exp()) ** 2 - log_sigma - LOG_SQRT_2PI  # (..., K)
    return -torch.logsumexp(log_pi + log_normal, -1)


def sample_mdn(log_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, temperature: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per element (...): component k ~ softmax(log_pi / tau), then N(mu_k, sigma_k^2 tau)."""
    probs = F.softmax(log_pi / temperature, -1)
    flat = probs.reshape(-1, probs.size(-1))
    k = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])  # (...)
    m = mu.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    s = log_sigma.gather(-1, k.unsqueeze(-1)).squeeze(-1).exp() * math.sqrt(temperature)
    return m + s * torch.randn(m.shape, dtype=m.dtype, device=m.device, generator=generator)


class LinearController(Model):
    """C: (z (B, Z), h (B, H)) -> actions (B, A) = tanh(W [z, h] + b). W and b are the mean of the
    CMA-ES search in ``self.es`` (module docstring); the task writes them after each generation."""

    def __init__(self, cfg: ControllerConfig):
        super().__init__()
        if cfg.z_dim is None or (cfg.use_hidden and cfg.hidden is None):
            raise ValueError("ControllerConfig.z_dim and hidden must be set (V's and M's sizes) before building C")
        self.config = cfg
        self.inputs = cfg.z_dim + (cfg.hidden if cfg.use_hidden else 0)
        self.weight = nn.Parameter(torch.zeros(cfg.action_dim, self.inputs))
        self.bias = nn.Parameter(torch.zeros(cfg.action_dim))
        for p in (self.weight, self.bias):
            p._no_weight_decay = True  # searched by CMA-ES: the optimizer (zero gradients) must leave it alone
        self.es = CMAES(self.weight.numel() + self.bias.numel(), cfg.sigma0)

    def features(self, z: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([z, h], -1) if self.config.use_hidden else z  # (B, inputs)

    def forward(self, z: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(F.linear(self.features(z, h), self.weight, self.bias))  # (B, A)

    def act_population(self, flat: torch.Tensor, z: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """Actions of P candidate controllers at once: flat (P, n) parameter vectors, z (P, E, Z), h
        (P, E, H) (E episodes each) -> (P, E, A)."""
        A, n_in = self.config.action_dim, self.inputs
        W, b = flat[:, : A * n_in].view(-1, A, n_in), flat[:, A * n_in :]  # (P, A, in), (P, A)
        x = self.features(z, h)  # (P, E, in)
        return torch.tanh(torch.einsum("pei,pai->pea", x, W.to(x.dtype)) + b.to(x.dtype)[:, None])

    def flat(self) -> torch.Tensor:
        return torch.cat([self.weight.detach().flatten(), self.bias.detach()]).double()

    @torch.no_grad()
    def set_flat(self, flat: torch.Tensor) -> None:
        A, n_in = self.config.action_dim, self.inputs
        self.weight.copy_(flat[: A * n_in].view(A, n_in))
        self.bias.copy_(flat[A * n_in :])

    def flops_per_token(self, seq_len: int | None = None) -> float:
        return 2.0 * self.weight.numel()  # a forward per step; no backward trains C

"""Gaussian diffusion as tensor math: the forward process, its posterior, the losses, the samplers, the bound.

Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (DDPM), with DDIM (Song, Meng &
Ermon 2021), the cosine schedule and importance sampling (Nichol & Dhariwal 2021, "Improved DDPM"),
v-prediction (Salimans & Ho 2022), Min-SNR weighting (Hang et al. 2023) and classifier-free guidance
(Ho & Salimans 2022). The denoiser is a callable ``denoise(x_t, t) -> out``: this module knows no
model family, task or trainer.

  forward q, fixed:     x_0 --q--> x_1 --q--> ... --q--> x_{t-1} --q--> x_t --q--> ... --q--> x_T  ~ N(0, I)
  reverse p, learned:   x_0 <--p-- x_1 <--p-- ... <--p-- x_{t-1} <--p-- x_t <--p-- ... <--p-- x_T  ~ N(0, I)
     data (B, ...)            q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)      (DDPM eq. 2)
                              p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I)           (DDPM eq. 1)
                              mu_theta from the net's out = denoise(x_t, t), (B, ...) like x_t

  in one jump     q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),  abar_t = prod_{s<=t} (1 - beta_s)   (eq. 4)
                  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I)
  posterior       q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)                                      (eq. 6)
                  mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0
                          + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t                       (eq. 7)
                  beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t                                  (eq. 7)
  the net's out   target "eps": eps;  "x0": x_0;  "v": sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
                  (v: Salimans & Ho 2022, sec. 4 and appendix D)
                  x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)                          (eq. 15)
                         = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_hat
                  mu_theta(x_t, t) = mu~_t(x0_hat, x_t)                                             (eq. 11)
  DDPM step       x_{t-1} = mu_theta + sigma_t z,  sigma_t^2 = beta~_t ("fixed_small") or beta_t ("fixed_large")
                  (sec. 3.2, Algorithm 2; no noise at the last step)
  learned sigma   out = [prediction, v] along dim 1 (twice the channels), v in about [-1, 1]:
                  log sigma_t^2 = (v + 1)/2 log beta_t + (1 - v)/2 log beta~_t  ("learned_range", N & D eq. 15)
  DDIM step       x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps_hat + sigma z   (DDIM eq. 12)
                  sigma = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})     (DDIM eq. 16)
  losses          simple: ||target - out||^2                                                        (eq. 14)
                  vlb:    L_{t-1} = ||mu~_t - mu_theta||^2 / (2 sigma_t^2) + C                       (eq. 8, 12)
                  snr:    min(SNR_t, gamma) ||x_0 - x0_hat||^2,  SNR_t = abar_t / (1 - abar_t)    (Hang et al. 2023)
                  hybrid: simple + lambda T L_{t-1}[mu_theta frozen, sigma learned] in bits, lambda = 0.001
                          (Nichol & Dhariwal eq. 16: the bound teaches only the variance)
                  t ~ p_t, p_t ~ sqrt(E[L_t^2]):  L_vlb = E_{t~p}[L_t / p_t]           (Nichol & Dhariwal eq. 18)
  bound           L = L_T + sum_{t>1} L_{t-1} + L_0                                                (eq. 5)
                  L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),  L_T = KL(q(x_T | x_0) || N(0, I))
                  L_0 = -log p(x_0 | x_1): a Gaussian integrated over 256 levels in [-1, 1]         (eq. 13)
  guidance        out~ = out(x_t, null) + s (out(x_t, c) - out(x_t, null)),  s = 1 + w    (Ho & Salimans eq. 6)

Indices count from 0, as in diffusers and in Ho et al.'s own code: the net sees t in {0, ..., T-1},
``table[t]`` holds the paper's quantity at step t + 1, the sampler's last step (t = 0) yields the
data, and abar "at step -1" is 1. Shapes: x_0, x_t, noise and out share one shape (B, ...) -- images
(B, C, H, W) or points (B, 2); t is (B,) long, or an int where every row is at the same step.

Tables are float64, computed once in float64 (``sqrt(1 - abar_t)`` for abar_t near 1 loses digits in
float32) and cast to the input's dtype and device when used. Every draw of noise comes from the
``generator`` given, so a sample, a step and a bound are deterministic given its seed.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch

from axon.errors import OptionError, check_count

SCHEDULES = ("linear", "cosine")
TARGETS = ("eps", "x0", "v")
# sigma_t^2 = beta~_t (posterior) or beta_t (DDPM sec. 3.2), or learned between the two (Nichol & Dhariwal)
VARIANCES = ("fixed_small", "fixed_large", "learned_range")
SAMPLERS = ("ddpm", "ddim")
WEIGHTINGS = ("simple", "vlb", "snr")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, ...), t (B,) long) -> out (B, ...)


def _one_of(field: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(field, f"must be one of {', '.join(choices)}", value)


def make_betas(schedule: str, timesteps: int) -> torch.Tensor:
    """The noise schedule: (T,) float64 betas.

    linear: Ho et al.'s 1e-4 -> 0.02 over T = 1000 (sec. 4). At another T both ends scale by 1000 / T,
    as Nichol & Dhariwal's code does, so x_T is noise at any T (abar_T = 4e-5 at T = 1000; with fixed
    ends, T = 100 would end at abar_T = 0.36: half signal).
    cosine: abar(t) = f(t) / f(0), f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, s = 0.008; beta_t =
    1 - abar(t + 1) / abar(t) clipped at 0.999 (Nichol & Dhariwal eq. 17; diffusers' "squaredcos_cap_v2").
    """
    check_count("timesteps", timesteps, 2)
    _one_of("schedule", schedule, SCHEDULES)
    if schedule == "linear":
        scale = 1000 / timesteps
        if 0.02 * scale >= 1:
            raise OptionError("timesteps", "must be >= 21 for the linear schedule (its last beta is 20 / timesteps)",
                              timesteps)
        return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)
    s = 0.008

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / timesteps) / f(i / timesteps), 0.999) for i in range(timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def cfg(out_cond: torch.Tensor, out_uncond: torch.Tensor, scale: float, channels: int | None = None) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 with scale = 1 + w): out_uncond + scale *
    (out_cond - out_uncond). Scale 1 returns the conditional output itself and scale 0 the
    unconditional one (no rounding). Guiding eps, x0 or v is the same guidance: each is affine in
    the others at fixed x_t, with weights that sum to 1. ``channels``: guide only the first that
    many along dim 1 and keep the conditional rest -- a learned variance's v, which extrapolated
    would leave [-1, 1] (GLIDE guides eps alone the same way)."""
    if scale == 1:
        return out_cond
    if scale == 0:
        return out_uncond
    if channels is not None and out_cond.shape[1] > channels:
        mixed = out_uncond[:, :channels] + scale * (out_cond[:, :channels] - out_uncond[:, :channels])
        return torch.cat([mixed, out_cond[:, channels:]], 1)
    return out_uncond + scale * (out_cond - out_uncond)


def guided(denoise_cond: Denoiser, denoise_uncond: Denoiser, scale: float) -> Denoiser:
    """The guided denoiser ``(x_t, t) -> cfg(cond, uncond, scale)``; scale 1 (0) calls only the
    conditional (unconditional) net. A net that takes both in one batch calls :func:`cfg` itself."""
    if scale == 1:
        return denoise_cond
    if scale == 0:
        return denoise_uncond
    return lambda x_t, t: cfg(denoise_cond(x_t, t), denoise_uncond(x_t, t), scale)


def importance_probs(history: torch.Tensor, counts: torch.Tensor, uniform: float = 0.001) -> torch.Tensor:
    """p_t for importance-sampled timesteps (Nichol & Dhariwal 2021, sec. 3.3, eq. 18): p_t ~
    sqrt(E[L_t^2]) over the last k values of L_t in ``history`` (T, k), mixed with ``uniform`` / T;
    uniform until every t has k values (``counts`` (T,)). With t ~ p, ``loss(..., "vlb") / (T * p[t])``
    estimates the same bound as uniform t with less variance. -> (T,) float64."""
    T, k = history.shape
    if bool((counts < k).any()):
        return torch.full((T,), 1 / T, dtype=torch.float64)
    w = history.double().pow(2).mean(1).sqrt()
    return w / w.sum() * (1 - uniform) + uniform / T


class ImportanceSampler:
    """Importance-sampled timesteps (Nichol & Dhariwal 2021, sec. 3.3; their
    ``LossSecondMomentResampler``): the last ``k`` losses at each t, p_t from them
    (:func:`importance_probs`), a draw of t by inverse CDF and the weights 1 / (T p_t) that keep
    the loss an unbiased estimate of the uniform one. Its state -- ``history`` (T, k), ``counts``
    (T,) -- is two tensors (:meth:`state_tensors`), so a checkpoint carries it and resume is exact.
    """

    def __init__(self, timesteps: int, k: int = 10, uniform: float = 0.001):
        check_count("timesteps", timesteps, 2)
        check_count("k", k, 1)
        self.T, self.k, self.uniform = timesteps, k, uniform
        self.history = torch.zeros(timesteps, k, dtype=torch.float64)
        self.counts = torch.zeros(timesteps, dtype=torch.long)

    def probs(self) -> torch.Tensor:
        return importance_probs(self.history, self.counts, self.uniform)

    def draw(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniforms ``u`` (B,) in [0, 1) -> (t (B,) long, weight (B,) float64 = 1 / (T p_t)), on u's device."""
        p = self.probs()
        t = torch.searchsorted(p.cumsum(0), u.detach().double().cpu(), right=True).clamp(max=self.T - 1)
        return t.to(u.device), (1.0 / (self.T * p[t])).to(u.device)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record each example's loss at its t, in order; a full row drops its oldest value. A
        non-finite loss (a step the trainer will skip) is not recorded."""
        for step, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if not math.isfinite(loss):
                continue
            n = int(self.counts[step])
            if n == self.k:
                self.history[step, :-1] = self.history[step, 1:].clone()
                self.history[step, -1] = loss
            else:
                self.history[step, n] = loss
                self.counts[step] = n + 1

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"history": self.history.clone(), "counts": self.counts.clone()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        history, counts = tensors.get("history"), tensors.get("counts")
        if (history is None or counts is None or history.shape != self.history.shape
                or counts.shape != self.counts.shape):
            raise ValueError(f"the importance sampler's state must be history {tuple(self.history.shape)} and counts "
                             f"{tuple(self.counts.shape)}, got {sorted(tensors)}")
        self.history, self.counts = history.double().clone(), counts.long().clone()


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) for x on 256 levels in [-1, 1] under N(mean, e^{2 log_scale}) integrated over x's bin
    of width 2/255, the two end bins open to +-infinity (DDPM eq. 13). Elementwise; Phi by erf."""
    def phi(z):
        return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))

    centered, inv_std = x - mean, torch.exp(-log_scale)
    cdf_plus = phi(inv_std * (centered + 1 / 255))
    cdf_min = phi(inv_std * (centered - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def _randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """N(0, I) of ``shape``, drawn as diffusers' ``randn_tensor`` draws it (on the generator's device
    when that is the CPU, then moved), so the same seed gives both the same noise."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    where = generator.device if generator is not None and generator.device.type == "cpu" else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


def _step(t) -> int | None:
    """An int for a single step (int or 0-d tensor), None for a (B,) tensor of steps."""
    if isinstance(t, numbers.Integral):
        return int(t)
    if isinstance(t, torch.Tensor) and t.dim() == 0:
        return int(t.item())
    return None


def _per_dim(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,): the mean over every dimension but the first."""
    return x.reshape(x.shape[0], -1).mean(1)


class Diffusion:
    """The process for one schedule, target and variance; plain float64 tables, no parameters.

    ``Diffusion(make_betas("linear", 1000), target="eps", variance="fixed_small")``. Attributes
    (each (T,) float64): ``betas``, ``alphas``, ``alphas_cumprod`` (abar_t), ``alphas_cumprod_prev``
    (abar_{t-1}, 1 at t = 0), ``posterior_variance`` (beta~_t), ``posterior_mean_coef1/2``,
    ``model_variance`` (sigma_t^2; for ``learned_range`` the lower end, beta~_t), ``snr``.

    ``variance="learned_range"`` (Nichol & Dhariwal 2021): the net returns twice the channels, the
    prediction then v (:meth:`split`); every method that takes the net's ``out`` takes it whole.
    """

    def __init__(self, betas: torch.Tensor, target: str = "eps", variance: str = "fixed_small"):
        _one_of("target", target, TARGETS)
        _one_of("variance", variance, VARIANCES)
        betas = torch.as_tensor(betas).detach().to("cpu", torch.float64)
        if betas.dim() != 1 or betas.numel() < 2 or not bool(((betas > 0) & (betas < 1)).all()):
            raise OptionError("betas", "must be a 1-D tensor of at least 2 values in (0, 1)",
                              f"{tuple(betas.shape)} in [{betas.min().item():g}, {betas.max().item():g}]")
        self.target, self.variance, self.T = target, variance, betas.numel()
        self.learned = variance == "learned_range"
        self.betas = betas
        self.log_betas = torch.log(betas)
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)                                  # abar_t (eq. 4)
        self.alphas_cumprod_prev = torch.cat([betas.new_ones(1), self.alphas_cumprod[:-1]])  # abar_{t-1}
        abar, prev = self.alphas_cumprod, self.alphas_cumprod_prev
        self.sqrt_alphas_cumprod = abar.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - abar).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / abar).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / abar - 1.0).sqrt()
        self.snr = abar / (1.0 - abar)
        # q(x_{t-1} | x_t, x_0) (eq. 6-7); beta~ is 0 at t = 0, so its log is clipped to beta~_1 there.
        self.posterior_variance = betas * (1.0 - prev) / (1.0 - abar)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * prev.sqrt() / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - prev) * self.alphas.sqrt() / (1.0 - abar)
        # sigma_t^2 of the reverse step. At t = 0 (the decoder L_0) both use beta~_1, as Ho et al.'s code
        # does: beta~_0 is 0, and beta_0 = 1e-4 would be a needlessly wide decoder.
        upper = betas if variance == "fixed_large" else self.posterior_variance
        self.model_variance = torch.cat([self.posterior_variance[1:2], upper[1:]])
        self.model_log_variance = torch.log(self.model_variance)
        # ||x_0 - x0_hat||^2 = c_t^2 ||target - out||^2: c^2 = 1/SNR (eps), 1 (x0), 1 - abar (v).
        self.x0_err = {"eps": 1.0 / self.snr, "x0": torch.ones_like(abar), "v": 1.0 - abar}[target]
        self.vlb_weight = self.posterior_mean_coef1 ** 2 / (2.0 * self.model_variance) * self.x0_err  # eq. 12
        self._cast: dict = {}

    # ------------------------------------------------------------------------------------------
    # Tables at t, in the input's dtype and device

    def _table(self, name: str, like: torch.Tensor) -> torch.Tensor:
        key = (name, like.dtype, like.device)
        if key not in self._cast:
            self._cast[key] = getattr(self, name).to(device=like.device, dtype=like.dtype)
        return self._cast[key]

    def _at(self, name: str, t, like: torch.Tensor) -> torch.Tensor:
        """table[t] shaped to broadcast against ``like`` (B, ...): 0-d for an int t, (B, 1, ...) for (B,)."""
        table = self._table(name, like)
        step = _step(t)
        if step is not None:
            return table[step]
        return table[t.to(like.device)].reshape(-1, *([1] * (like.dim() - 1)))

    def split(self, out: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prediction like x_t, v or None): a learned variance's net returns [prediction, v] along
        dim 1 (channels of an image, features of a point), v raw -- about [-1, 1], not clamped."""
        if not self.learned:
            return out, None
        C = x_t.shape[1]
        if out.shape[1] != 2 * C:
            raise OptionError("variance", f"learned_range needs a net with twice the data's {C} channels along dim 1 "
                                          "(model.learn_sigma: true)", f"{out.shape[1]} channels")
        return out[:, :C], out[:, C:]

    def log_variance(self, t, like: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        """log sigma_t^2 of the reverse step, broadcastable against ``like``: the fixed table, or with
        ``v`` the interpolation (v + 1)/2 log beta_t + (1 - v)/2 log beta~_t (Nichol & Dhariwal eq. 15;
        beta~ clipped to beta~_1 at t = 0) -- v = 1 gives fixed_large, v = -1 fixed_small."""
        if v is None:
            return self._at("model_log_variance", t, like)
        frac = (v + 1) / 2
        return frac * self._at("log_betas", t, like) + (1 - frac) * self._at("posterior_log_variance_clipped", t, like)

    # ------------------------------------------------------------------------------------------
    # The forward process and what the net predicts

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise, a draw from q(x_t | x_0) (eq. 4). -> like x0."""
        return self._at("sqrt_alphas_cumprod", t, x0) * x0 + self._at("sqrt_one_minus_alphas_cumprod", t, x0) * noise

    def target_of(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """What the net regresses: eps, x_0, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0."""
        if self.target == "eps":
            return noise
        if self.target == "x0":
            return x0
        return self._at("sqrt_alphas_cumprod", t, x0) * noise - self._at("sqrt_one_minus_alphas_cumprod", t, x0) * x0

    def x0_from(self, x_t: torch.Tensor, t, out: torch.Tensor) -> torch.Tensor:
        """x0_hat from the net's output (eq. 15 for eps; x_0 = sqrt(abar) x_t - sqrt(1 - abar) v)."""
        if self.target == "eps":
            return (self._at("sqrt_recip_alphas_cumprod", t, x_t) * x_t
                    - self._at("sqrt_recipm1_alphas_cumprod", t, x_t) * out)
        if self.target == "x0":
            return out
        return self._at("sqrt_alphas_cumprod", t, x_t) * x_t - self._at("sqrt_one_minus_alphas_cumprod", t, x_t) * out

    def eps_from(self, x_t: torch.Tensor, t, out: torch.Tensor) -> torch.Tensor:
        """eps_hat from the net's output (x0: eq. 4 solved for eps; v: sqrt(abar) v + sqrt(1 - abar) x_t)."""
        if self.target == "eps":
            return out
        if self.target == "x0":
            return (self._at("sqrt_recip_alphas_cumprod", t, x_t) * x_t - out) / self._at(
                "sqrt_recipm1_alphas_cumprod", t, x_t)
        return self._at("sqrt_alphas_cumprod", t, x_t) * out + self._at("sqrt_one_minus_alphas_cumprod", t, x_t) * x_t

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t):
        """q(x_{t-1} | x_t, x_0) (eq. 6-7) -> (mean like x_t, variance, log variance clipped at t = 0),
        the last two broadcastable against x_t."""
        mean = self._at("posterior_mean_coef1", t, x_t) * x0 + self._at("posterior_mean_coef2", t, x_t) * x_t
        return mean, self._at("posterior_variance", t, x_t), self._at("posterior_log_variance_clipped", t, x_t)

    def p_mean(self, out: torch.Tensor, x_t: torch.Tensor, t, clip_x0: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """mu_theta(x_t, t) = mu~_t(x0_hat, x_t) (eq. 11 in any parameterisation) -> (mean, x0_hat)."""
        x0_hat = self.x0_from(x_t, t, self.split(out, x_t)[0])
        if clip_x0:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        mean = self._at("posterior_mean_coef1", t, x_t) * x0_hat + self._at("posterior_mean_coef2", t, x_t) * x_t
        return mean, x0_hat

    # ------------------------------------------------------------------------------------------
    # Training losses

    def loss(self, out: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
             weighting: str = "simple", gamma: float = 5.0, *, hybrid_lambda: float = 0.001,
             discrete: bool = True) -> torch.Tensor:
        """Per-example loss (B,), each a mean over the example's dimensions.

        simple: ||target - out||^2, the paper's L_simple (eq. 14) for any target.
        vlb:    the bound's own weight (eq. 8; eq. 12 for eps): coef1_t^2 / (2 sigma_t^2) ||x_0 - x0_hat||^2
                = L_{t-1} up to a constant (exactly ``vb_terms`` for fixed_small at t > 0); at t = 0 the
                Gaussian decoder of variance beta~_1. Its scale spans ~5 orders over t: pair it with
                importance-sampled t (:func:`importance_probs`, divide by T p_t) as Nichol & Dhariwal do.
        snr:    Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
                Strategy"): min(SNR_t, gamma) ||x_0 - x0_hat||^2, i.e.
                min(SNR, gamma) / SNR on the eps error, min(SNR, gamma) / (SNR + 1) on the v error.

        A learned variance (``learned_range``) adds the hybrid term to simple and snr: ``hybrid_lambda``
        T L_{t-1} in bits/dim (:meth:`vb_terms`, ``discrete`` decoder at t = 0) with the prediction
        detached, so the bound trains only v and the mean keeps its own loss (Nichol & Dhariwal
        sec. 3.1: L_hybrid = L_simple + 0.001 L_vlb; their code's "rescaled MSE"). With vlb the loss
        is the term itself, L_{t-1} in nats/dim, mean and variance both (their L_vlb).
        """
        _one_of("weighting", weighting, WEIGHTINGS)
        pred, v = self.split(out, x0)
        mse = _per_dim((pred - self.target_of(x0, noise, t)) ** 2)  # (B,)
        t = t.to(mse.device)
        if v is not None:
            x_t = self.q_sample(x0, t, noise)
            if weighting == "vlb":
                return self.vb_terms(out, x0, x_t, t, discrete=discrete, clip_x0=False).to(mse.dtype)
            frozen = torch.cat([pred.detach(), v], 1)
            vb = self.vb_terms(frozen, x0, x_t, t, discrete=discrete, clip_x0=False) / math.log(2.0)
            return self._weighted(mse, t, weighting, gamma) + (hybrid_lambda * self.T) * vb.to(mse.dtype)
        return self._weighted(mse, t, weighting, gamma)

    def _weighted(self, mse: torch.Tensor, t: torch.Tensor, weighting: str, gamma: float) -> torch.Tensor:
        if weighting == "simple":
            return mse
        if weighting == "vlb":
            return self._table("vlb_weight", mse)[t] * mse
        return (self._table("snr", mse).clamp(max=gamma) * self._table("x0_err", mse))[t] * mse

    # ------------------------------------------------------------------------------------------
    # Sampling

    def ddpm_step(self, out: torch.Tensor, x_t: torch.Tensor, t: int, generator: torch.Generator | None = None,
                  clip_x0: bool = True) -> torch.Tensor:
        """x_{t-1} = mu_theta(x_t, t) + sigma_t z (Algorithm 2); z drawn from ``generator`` only when
        t > 0, with x0_hat clipped to [-1, 1] first when ``clip_x0``; sigma_t from v for a learned
        variance. -> like x_t."""
        t = self._check_step(t)
        mean, _ = self.p_mean(out, x_t, t, clip_x0)
        if t == 0:
            return mean
        z = _randn(x_t.shape, generator, x_t.device, x_t.dtype)
        _, v = self.split(out, x_t)
        if v is not None:  # the learned variance (diffusers' "learned_range")
            return mean + torch.exp(0.5 * self.log_variance(t, x_t, v)) * z
        return mean + self._at("model_variance", t, x_t).sqrt() * z

    def ddim_step(self, out: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
                  generator: torch.Generator | None = None, clip_x0: bool = True,
                  clipped_eps: bool = False) -> torch.Tensor:
        """x_{t_prev} by DDIM (Song et al. eq. 12, sigma by eq. 16); ``t_prev`` = -1: the last step, to
        x_0 (abar = 1). eps_hat comes from the net's output before x0_hat is clipped (diffusers'
        default), or with ``clipped_eps`` from the clipped x0_hat, eps = (x_t - sqrt(abar) x0_hat) /
        sqrt(1 - abar) (diffusers' ``use_clipped_model_output``; the DDIM authors' and guided-diffusion's
        code): the two then describe one x0, which classifier-free guidance needs -- its extrapolated
        eps, used unclipped beside a clipped x0, turned digits to noise (docs/diffusion.md). Noise is
        drawn whenever eta > 0, even where sigma is 0, as diffusers draws it. A learned variance's v
        is not used: DDIM's sigma comes from eta."""
        t = self._check_step(t)
        out = self.split(out, x_t)[0]
        t_prev = _step(t_prev)
        if t_prev is None or not -1 <= t_prev < t:
            raise OptionError("t_prev", f"must be an integer in [-1, {t})", t_prev)
        if not 0 <= eta <= 1:
            raise OptionError("eta", "must be in [0, 1] (0: DDIM, 1: DDPM's variance)", eta)
        abar = self.alphas_cumprod[t].item()
        abar_prev = self.alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0
        x0_hat, eps_hat = self.x0_from(x_t, t, out), self.eps_from(x_t, t, out)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
            if clipped_eps:
                eps_hat = (x_t - math.sqrt(abar) * x0_hat) / math.sqrt(1 - abar)
        sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
        x_prev = math.sqrt(abar_prev) * x0_hat + math.sqrt(max(1 - abar_prev - sigma ** 2, 0.0)) * eps_hat
        if eta > 0:
            x_prev = x_prev + sigma * _randn(x_t.shape, generator, x_t.device, x_t.dtype)
        return x_prev

    def _check_step(self, t) -> int:
        step = _step(t)
        if step is None or not 0 <= step < self.T:
            raise OptionError("t", f"must be an integer step in [0, {self.T})", t)
        return step

    def timesteps_for(self, sampler: str = "ddpm", steps: int | None = None) -> list[int]:
        """The steps a sampler visits, from the noisiest: ddpm all T; ddim ``steps`` of them spaced as
        diffusers' DDIMScheduler does by default ("leading", steps_offset 0): k * (T // steps) for
        k = steps-1 ... 0, so 50 of T = 1000 start at 980, not 999. steps None: all T."""
        _one_of("sampler", sampler, SAMPLERS)
        if steps is None:
            steps = self.T
        check_count("steps", steps, 1)
        if sampler == "ddpm" and steps != self.T:
            raise OptionError("steps", f"must be {self.T} (every step) for the ddpm sampler; ddim with eta=1 takes "
                                       "fewer stochastic steps", steps)
        if steps > self.T:
            raise OptionError("steps", f"must be at most the process's {self.T} timesteps", steps)
        ratio = self.T // steps
        return [k * ratio for k in range(steps - 1, -1, -1)]

    @torch.no_grad()
    def sample(self, denoise: Denoiser, shape, *, sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
               generator: torch.Generator | None = None, clip_x0: bool = True, keep: int = 0,
               progress: Callable[[int, int], None] | None = None, x_T: torch.Tensor | None = None,
               device=None, dtype: torch.dtype = torch.float32, clipped_eps: bool = False):
        """Draw samples of ``shape`` (B, ...) by ``sampler`` (ddpm: Algorithm 2; ddim: eq. 12 over
        :meth:`timesteps_for`), starting from ``x_T`` or from N(0, I) drawn from ``generator`` on
        ``device`` in ``dtype``. ``denoise(x_t, t (B,) long) -> out`` predicts the configured target.
        ``progress(done, total)`` is called after each step.

        -> x_0; with ``keep`` = k >= 2, (x_0, [(t, x_t)] * k): k states evenly along the trajectory,
        from the start (the noise, t = the first step) to the end (the sample, t = -1).
        """
        ts = self.timesteps_for(sampler, steps)
        n = len(ts)
        if keep != 0 and not (isinstance(keep, numbers.Integral) and 2 <= keep <= n + 1):
            raise OptionError("keep", f"must be 0 or an integer from 2 to {n + 1} (steps + 1)", keep)
        x = x_T.clone() if x_T is not None else _randn(tuple(shape), generator, device, dtype)
        kept = set(torch.linspace(0, n, keep).round().long().tolist()) if keep else set()
        strip = [(ts[0], x)] if 0 in kept else []
        for i, (t, t_prev) in enumerate(zip(ts, ts[1:] + [-1])):
            out = denoise(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
            if sampler == "ddpm":
                x = self.ddpm_step(out, x, t, generator, clip_x0)
            else:
                x = self.ddim_step(out, x, t, t_prev, eta, generator, clip_x0, clipped_eps)
            if i + 1 in kept:
                strip.append((t_prev, x))
            if progress is not None:
                progress(i + 1, n)
        return (x, strip) if keep else x

    # ------------------------------------------------------------------------------------------
    # The variational bound

    def vb_terms(self, out: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *,
                 discrete: bool = True, clip_x0: bool | None = None) -> torch.Tensor:
        """One term of the bound per example, in nats per dimension (B,), float64: L_{t-1} = KL(q(x_{t-1} |
        x_t, x_0) || p(x_{t-1} | x_t)) where t > 0, and the decoder's -log p(x_0 | x_1) where t = 0:
        discretised (eq. 13, data on 256 levels in [-1, 1]) when ``discrete``, else a Gaussian density.
        ``clip_x0`` (default: ``discrete``) clips x0_hat to [-1, 1] as sampling does."""
        clip = discrete if clip_x0 is None else clip_x0
        out, x0, x_t = out.double(), x0.double(), x_t.double()
        t = t.to(x_t.device)
        mean_q, _, logvar_q = self.q_posterior(x0, x_t, t)
        mean_p, _ = self.p_mean(out, x_t, t, clip)
        logvar_p = self.log_variance(t, x_t, self.split(out, x_t)[1])
        kl = _per_dim(normal_kl(mean_q, logvar_q, mean_p, logvar_p))
        if discrete:
            log_p = discretized_gaussian_log_likelihood(x0, mean_p, 0.5 * logvar_p)
        else:
            log_p = -0.5 * (math.log(2 * math.pi) + logvar_p + (x0 - mean_p) ** 2 * torch.exp(-logvar_p))
        return torch.where(t == 0, -_per_dim(log_p), kl)

    def prior_term(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) in nats per dimension (B,), float64."""
        x0 = x0.double()
        mean = self.sqrt_alphas_cumprod[-1].item() * x0
        logvar = torch.full_like(x0, math.log(1.0 - self.alphas_cumprod[-1].item()))
        return _per_dim(normal_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0)))

    @torch.no_grad()
    def bits_per_dim(self, denoise: Denoiser, x0: torch.Tensor, generator: torch.Generator | None = None, *,
                     discrete: bool = True, clip_x0: bool | None = None, chunk: int = 25,
                     progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """The bound L_T + sum_t L_{t-1} + L_0 (eq. 5) in bits per dimension (B,), float64: every one of
        the T terms, each at one draw x_t ~ q(x_t | x_0) from ``generator``; the net is called on
        ``chunk`` timesteps at once (chunk * B rows). ``discrete``: the decoder of eq. 13 for data on 256
        levels in [-1, 1] (comparable with the paper's 3.70 bits/dim on CIFAR-10); otherwise a Gaussian
        density (continuous data: bits of a density, which may be negative)."""
        check_count("chunk", chunk, 1)
        B, rest = x0.shape[0], tuple(x0.shape[1:])
        total = self.prior_term(x0)
        for start in range(0, self.T, chunk):
            ts = torch.arange(start, min(start + chunk, self.T), device=x0.device)
            t = ts.repeat_interleave(B)                                             # (c * B,)
            xs = x0.unsqueeze(0).expand(len(ts), *x0.shape).reshape(-1, *rest)     # (c * B, ...)
            x_t = self.q_sample(xs, t, _randn(xs.shape, generator, x0.device, x0.dtype))
            terms = self.vb_terms(denoise(x_t, t), xs, x_t, t, discrete=discrete, clip_x0=clip_x0)
            total = total + terms.view(len(ts), B).sum(0)
            if progress is not None:
                progress(int(ts[-1]) + 1, self.T)
        return total / math.log(2.0)

"""CMA-ES, written from Hansen's tutorial ("The CMA Evolution Strategy: A Tutorial", 2016; section
and equation numbers below are its), with its whole state as tensors so a checkpoint resumes it
exactly. World Models trains its controller C with it (``axon.agents.worldmodels.tasks``).

    one generation (minimising f):
      ask:   y_k = B D z_k,  z_k ~ N(0, I)          (B D: C = B D^2 B^T, eigen-decomposition)  (38-39)
             x_k = m + sigma y_k,   k = 1..lambda
      tell:  sort by f; y_w = sum_i w_i y_{i:lambda} over the mu best                           (41)
             m     <- m + sigma y_w                                  (c_m = 1)                 (42)
             p_s   <- (1 - c_s) p_s + sqrt(c_s (2 - c_s) mu_eff) C^{-1/2} y_w                  (43)
             p_c   <- (1 - c_c) p_c + h_s sqrt(c_c (2 - c_c) mu_eff) y_w                       (45)
             C     <- (1 - c_1 - c_mu + (1 - h_s) c_1 c_c (2 - c_c)) C
                      + c_1 p_c p_c^T + c_mu sum_i w_i y_i y_i^T                               (47)
             sigma <- sigma exp(c_s / d_s (|p_s| / E|N(0, I)| - 1))                            (44)

with the default strategy parameters of the tutorial's Table 1 (positive recombination weights
only: w_i proportional to ln((lambda + 1) / 2) - ln i for the mu = lambda // 2 best) and h_s
the stall of p_c's update when |p_s| is large (the tutorial's footnote to (45)). Everything is
float64; the samples of generation g come from the generator the caller seeds, so a run is a
pure function of its seeds.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def strategy_parameters(n: int, popsize: int) -> dict[str, float | torch.Tensor]:
    """Table 1 of the tutorial for dimension ``n`` and population ``popsize`` (lambda)."""
    mu = popsize // 2
    w = math.log((popsize + 1) / 2) - torch.log(torch.arange(1, mu + 1, dtype=torch.float64))
    w = w / w.sum()
    mu_eff = float(1 / (w**2).sum())
    c_s = (mu_eff + 2) / (n + mu_eff + 5)
    d_s = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + c_s
    c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)
    c_1 = 2 / ((n + 1.3) ** 2 + mu_eff)
    c_mu = min(1 - c_1, 2 * (mu_eff - 2 + 1 / mu_eff) / ((n + 2) ** 2 + mu_eff))
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
    return dict(mu=mu, weights=w, mu_eff=mu_eff, c_s=c_s, d_s=d_s, c_c=c_c, c_1=c_1, c_mu=c_mu, chi_n=chi_n)


class CMAES(nn.Module):
    """The state of CMA-ES as persistent buffers: ``mean`` (n,), ``sigma`` (), ``cov`` (n, n),
    ``p_sigma`` and ``p_c`` (n,), ``generation`` () int64 (generations told so far). A module so
    that a model holding it checkpoints it with its weights (the trainer saves buffers)."""

    def __init__(self, n: int, sigma0: float = 0.5, mean: torch.Tensor | None = None):
        super().__init__()
        self.n = n
        self.register_buffer("mean", torch.zeros(n, dtype=torch.float64) if mean is None else mean.double().clone())
        self.register_buffer("sigma", torch.tensor(float(sigma0), dtype=torch.float64))
        self.register_buffer("cov", torch.eye(n, dtype=torch.float64))
        self.register_buffer("p_sigma", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("p_c", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("generation", torch.zeros((), dtype=torch.int64))

    def _eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        """B (n, n) and D (n,) with C = B diag(D^2) B^T (C symmetrised first; eigenvalues floored)."""
        c = (self.cov + self.cov.T) / 2
        evals, B = torch.linalg.eigh(c)
        return B, evals.clamp_min(1e-20).sqrt()

    @torch.no_grad()
    def ask(self, popsize: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``popsize`` candidates (popsize, n) float64: m + sigma B D z, z ~ N(0, I) from ``generator``."""
        B, D = self._eig()
        z = torch.randn(popsize, self.n, dtype=torch.float64, generator=generator)
        return self.mean + self.sigma * (z * D) @ B.T

    @torch.no_grad()
    def tell(self, x: torch.Tensor, fitness: torch.Tensor) -> None:
        """Update from candidates ``x`` (lambda, n) and their ``fitness`` (lambda,), lower is better."""
        lam, n = x.shape
        p = strategy_parameters(n, lam)
        w, mu, mu_eff = p["weights"], p["mu"], p["mu_eff"]
        order = torch.argsort(fitness.double(), stable=True)[:mu]
        y = (x[order].double() - self.mean) / self.sigma  # (mu, n)
        y_w = w @ y  # (n,)
        B, D = self._eig()
        c_inv_sqrt = B @ torch.diag(1 / D) @ B.T
        g = int(self.generation) + 1
        self.mean += self.sigma * y_w
        self.p_sigma.mul_(1 - p["c_s"]).add_(math.sqrt(p["c_s"] * (2 - p["c_s"]) * mu_eff) * (c_inv_sqrt @ y_w))
        norm_ps = float(self.p_sigma.norm())
        h_s = float(norm_ps / math.sqrt(1 - (1 - p["c_s"]) ** (2 * g)) < (1.4 + 2 / (n + 1)) * p["chi_n"])
        self.p_c.mul_(1 - p["c_c"]).add_(h_s * math.sqrt(p["c_c"] * (2 - p["c_c"]) * mu_eff) * y_w)
        c_1, c_mu = p["c_1"], p["c_mu"]
        rank_mu = (y.T * w) @ y  # sum_i w_i y_i y_i^T
        self.cov.mul_(1 - c_1 - c_mu + (1 - h_s) * c_1 * p["c_c"] * (2 - p["c_c"]))
        self.cov.add_(c_1 * torch.outer(self.p_c, self.p_c) + c_mu * rank_mu)
        self.sigma.mul_(math.exp(p["c_s"] / p["d_s"] * (norm_ps / p["chi_n"] - 1)))
        self.generation += 1

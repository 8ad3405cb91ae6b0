"""Scaling-law fits on (N, D, loss) points: Kaplan's power laws, Chinchilla's L(N, D), IsoFLOP minima.

Pure numpy/scipy (no torch), so a CSV from anywhere can be fitted. Notation:

    N     parameters of the model (``axon scaling`` uses non-embedding parameters, as Kaplan et al.)
    D     training tokens
    C     training compute in FLOPs (C ~ 6 N D: 2 FLOPs per parameter per token forward, 4 backward)
    L     final validation loss (nats per token)

Three views of the same runs:

  Kaplan et al. 2020 (arXiv:2001.08361), eq. 1.1 and 1.2:
      L(N) = (N_c / N)^alpha_N      at "enough" data          -> log L = alpha_N log N_c - alpha_N log N
      L(D) = (D_c / D)^alpha_D      at "enough" parameters    -> log L = alpha_D log D_c - alpha_D log D
    both straight lines in log-log space, fitted by least squares. Kaplan fits L(N) on converged
    (early-stopped) runs; a sweep rarely has those, so per model size we keep the run with the most
    tokens, and for L(D) per token count the run with the most parameters (the runs least limited by
    the other variable). With an IsoFLOP sweep these selections are small and biased (the largest-D
    run of a small model is still data-limited far less than the largest model is), which is why the
    Chinchilla fit below is the one predictions use.

  Hoffmann et al. 2022 (Chinchilla, arXiv:2203.15556), sec. 3.3 and appendix D.2 ("approach 3"):
      L(N, D) = E + A / N^alpha + B / D^beta
    fitted by minimising over (a, b, e, alpha, beta), with A = e^a, B = e^b, E = e^e,
      sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),   delta = 1e-3,
    with L-BFGS from a grid of initialisations, keeping the best. LSE is log-sum-exp, so
    LSE(...) = log(A/N^alpha + B/D^beta + E) is the model's log-loss, always finite, and the Huber
    loss makes the fit robust to outlying runs.

  Compute-optimal allocation (Chinchilla eq. 4 and appendix D.2): minimising L(N, D) subject to
  C = 6 N D gives
      N_opt(C) = G (C/6)^(beta/(alpha+beta)),   D_opt(C) = G^-1 (C/6)^(alpha/(alpha+beta)),
      G = (alpha A / (beta B))^(1/(alpha+beta)).
    Derivation: with D = C/(6N), dL/dN = -alpha A N^(-alpha-1) + beta B D^(-beta) / N = 0
    <=> alpha A N^-alpha = beta B D^-beta; substitute D = C/(6N) and solve for N.

  Chinchilla "approach 2" (IsoFLOP profiles, sec. 3.2): for each compute budget, fit a parabola
  to loss against log N; its vertex is that budget's loss-optimal N; then N_opt = k C^a by least
  squares in log-log space.

Uncertainty: bootstrap (Efron 1979). Resample the runs with replacement B times, refit each
sample, and report the 2.5th and 97.5th percentiles of every constant (a 95% percentile interval).
The bootstrap samples are kept, so an interval on a prediction is the percentile interval of the
prediction made by every bootstrap fit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from axon.errors import DataError

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022, appendix D.2
# Their initialisation grid (appendix D.2): alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
# a, b in {0, 5, ..., 25}: 5 * 5 * 5 * 6 * 6 = 4,500 starting points.
GRID_ALPHA = np.arange(0.0, 2.01, 0.5)
GRID_E = np.arange(-1.0, 1.01, 0.5)
GRID_A = np.arange(0.0, 25.1, 5.0)
# Bounds (Hoffmann et al. leave every constant free). alpha, beta >= 0: the loss falls with size; on
# a small, noisy sweep a negative exponent fits noise and makes the allocation meaningless.
# e >= -10 (E >= 4.5e-5): runs far above the irreducible loss cannot pin E, and without a floor
# L-BFGS walks e towards -inf for thousands of iterations; a fit that ends on the floor is flagged
# (Chinchilla.e_at_bound) rather than trusted.
E_FLOOR = -10.0
BOUNDS = [(None, None), (None, None), (E_FLOOR, None), (0.0, None), (0.0, None)]
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # their published fit (eq. 10)


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap samples (ignoring fits that failed: NaN); (NaN, NaN),
    undetermined, when there are none -- or when the interval has no width. A zero-width
    interval means the resamples all gave the same fit (points that determine the law exactly, or
    lie on it without noise), which says nothing of how far the law could be off: it is not
    certainty, so it is not reported as an interval."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi)):
        return (math.nan, math.nan)
    return (float(lo), float(hi))


# A law is fitted from more points than it has free parameters: as many determine it exactly, with
# no residual to tell its error (every bootstrap resample gives the same fit). Kaplan's power law
# has two (alpha, X_c); Chinchilla's L(N, D) five, whose minimum of 5 runs is its Huber fit's with
# bounded exponents (fewer points than parameters are refused either way).
POWER_LAW_MIN_POINTS = 3
CHINCHILLA_MIN_RUNS = 5


def _check_points(*arrays: np.ndarray, min_points: int = 2) -> None:
    n = len(arrays[0])
    if n < min_points:
        raise DataError(f"need at least {min_points} runs to fit, got {n}")
    for a in arrays:
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise DataError("N, D and loss must be finite and positive in every run")


# --------------------------------------------------------------------------------------------
# Kaplan et al. 2020: single-variable power laws


@dataclass
class PowerLaw:
    """L(X) = (X_c / X)^alpha (Kaplan et al. 2020, eq. 1.1/1.2), with bootstrap intervals."""

    alpha: float
    x_c: float
    alpha_ci: tuple[float, float] = (math.nan, math.nan)
    x_c_ci: tuple[float, float] = (math.nan, math.nan)
    points: int = 0

    def __call__(self, x):
        return (self.x_c / np.asarray(x, dtype=float)) ** self.alpha


def _loglog_line(x: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """(alpha, log X_c) of log L = alpha log X_c - alpha log X by least squares."""
    slope, intercept = np.polyfit(np.log(x), np.log(loss), 1)
    alpha = -slope
    return float(alpha), float(intercept / alpha) if alpha != 0 else math.nan


def fit_power_law(x, loss, bootstrap: int = 200, seed: int = 0) -> PowerLaw:
    x, loss = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    _check_points(x, loss)
    if np.unique(x).size < POWER_LAW_MIN_POINTS:
        raise DataError(f"a power law needs at least {POWER_LAW_MIN_POINTS} distinct values of its variable (two "
                        f"distinct values fit its two parameters exactly, leaving no error to measure), got {np.unique(x).size}")
    alpha, log_xc = _loglog_line(x, loss)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(x), len(x))
        if np.unique(x[idx]).size < 2:  # a degenerate resample (one distinct X) has no slope
            continue
        boot.append(_loglog_line(x[idx], loss[idx]))
    b = np.array(boot) if boot else np.full((1, 2), math.nan)
    with np.errstate(over="ignore"):
        xc_samples = np.exp(b[:, 1])
    return PowerLaw(alpha, math.exp(log_xc), interval(b[:, 0]), interval(xc_samples), len(x))


def kaplan_points(n, d, loss, by: str) -> tuple[np.ndarray, np.ndarray]:
    """The runs a Kaplan fit uses. by="N": per model size, the run with the most tokens (least
    data-limited); by="D": per token count, the run with the largest model. Returns (x, loss)."""
    n, d, loss = (np.asarray(a, dtype=float) for a in (n, d, loss))
    key, other = (n, d) if by == "N" else (d, n)
    xs, ls = [], []
    for value in np.unique(key):
        rows = np.flatnonzero(key == value)
        best = rows[np.argmax(other[rows])]
        xs.append(value)
        ls.append(loss[best])
    return np.array(xs), np.array(ls)


# --------------------------------------------------------------------------------------------
# Hoffmann et al. 2022 (Chinchilla), approach 3: L(N, D) = E + A / N^alpha + B / D^beta


def _predict_log(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """log L of theta = (a, b, e, alpha, beta), shape (..., 5), at points (n,) -> (..., n)."""
    a, b, e, alpha, beta = (theta[..., i : i + 1] for i in range(5))
    terms = np.stack(np.broadcast_arrays(a - alpha * log_n, b - beta * log_d, e + 0 * log_n), axis=0)  # (3, ..., n)
    m = terms.max(axis=0)
    return m + np.log(np.exp(terms - m).sum(axis=0))  # log-sum-exp, stable


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber(r) / delta: r^2 / (2 delta) near 0, |r| - delta/2 beyond delta. Dividing by delta does
    not move the minimum and keeps the objective O(|r|), so L-BFGS's tolerances are meaningful."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta)


def _objective(theta, log_n, log_d, log_l, weights, delta):
    """Weighted Huber objective and its gradient with respect to (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # (3, n)
    m = terms.max(axis=0)
    w = np.exp(terms - m)
    s = w.sum(axis=0)
    r = m + np.log(s) - log_l  # residual in log-loss, (n,)
    w = w / s  # softmax weights: d LSE / d term_j, (3, n)
    value = float(np.sum(weights * _huber(r, delta)))
    dr = weights * np.clip(r / delta, -1.0, 1.0)  # d Huber/delta / d r
    grad = np.array([
        np.sum(dr * w[0]),
        np.sum(dr * w[1]),
        np.sum(dr * w[2]),
        -np.sum(dr * w[0] * log_n),
        -np.sum(dr * w[1] * log_d),
    ])
    return value, grad


def _grid() -> np.ndarray:
    """The 4,500 initialisations of Hoffmann et al. as rows (a, b, e, alpha, beta)."""
    return np.array(list(itertools.product(GRID_A, GRID_A, GRID_E, GRID_ALPHA, GRID_ALPHA)))


def _minimise(log_n, log_d, log_l, weights, starts, delta) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    best, best_value = None, math.inf
    for x0 in starts:
        res = minimize(_objective, x0, args=(log_n, log_d, log_l, weights, delta), jac=True, method="L-BFGS-B",
                       bounds=BOUNDS, options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9})
        if np.all(np.isfinite(res.x)) and res.fun < best_value:
            best, best_value = res.x, float(res.fun)
    return best, best_value


def _grid_starts(grid, log_n, log_d, log_l, weights, delta, k) -> np.ndarray:
    """The k grid points with the lowest objective. Hoffmann et al. run L-BFGS from all 4,500; the
    objective is evaluated at every grid point at once (vectorised) and L-BFGS started from the
    best k. On the synthetic Chinchilla data of the tests, the best of 8 reached the same optimum
    as all 4,500 starts (objectives equal to 1e-14; 0.1 s instead of 53 s on this CPU), which is
    what makes a bootstrap of hundreds of refits affordable."""
    values = (weights * _huber(_predict_log(grid, log_n, log_d) - log_l, delta)).sum(axis=-1)
    return grid[np.argsort(values)[:k]]


@dataclass
class Chinchilla:
    """L(N, D) = E + A / N^alpha + B / D^beta with bootstrap samples of every constant."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))  # (B, 5): E, A, B, alpha, beta
    points: int = 0
    objective: float = math.nan

    NAMES = ("E", "A", "B", "alpha", "beta")

    @property
    def e_at_bound(self) -> bool:
        """E sits on its floor: the runs do not determine the irreducible loss."""
        return self.E <= math.exp(E_FLOOR) * 1.001

    def loss(self, n, d):
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def ci(self, name: str, level: float = 0.95) -> tuple[float, float]:
        return interval(self.samples[:, self.NAMES.index(name)], level) if len(self.samples) else (math.nan, math.nan)

    def optimal(self, flops, flops_per_param: float = 6.0, level: float = 0.95) -> dict:
        """Loss-optimal N, D (and the loss there) for compute ``flops`` with C = k N D, k = 6."""
        point = optimal_allocation(self.E, self.A, self.B, self.alpha, self.beta, flops, flops_per_param)
        out = dict(point)
        if len(self.samples):
            with np.errstate(all="ignore"):
                boot = optimal_allocation(*self.samples.T, flops, flops_per_param)
            for key in point:
                out[f"{key}_ci"] = interval(boot[key], level)
        return out

    def to_dict(self) -> dict:
        out = {"law": "L(N, D) = E + A / N^alpha + B / D^beta", "points": self.points,
               "bootstrap": len(self.samples), "objective": self.objective}
        for name in self.NAMES:
            out[name] = getattr(self, name)
            out[f"{name}_ci"] = list(self.ci(name))
        g, a_exp, b_exp = allocation_constants(self.A, self.B, self.alpha, self.beta)
        out.update(G=g, a=a_exp, b=b_exp, E_at_bound=self.e_at_bound)
        if len(self.samples):
            with np.errstate(all="ignore"):
                gs, as_, bs = allocation_constants(*self.samples[:, 1:].T)
            out.update(G_ci=list(interval(gs)), a_ci=list(interval(as_)), b_ci=list(interval(bs)))
        out["samples"] = self.samples.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Chinchilla:
        try:
            return cls(*(float(data[k]) for k in cls.NAMES), samples=np.array(data.get("samples") or np.empty((0, 5)), dtype=float).reshape(-1, 5),
                       points=int(data.get("points", 0)), objective=float(data.get("objective", math.nan)))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"not a Chinchilla fit (missing or bad {e})") from None


def allocation_constants(A, B, alpha, beta):
    """(G, a, b) of Chinchilla's eq. 4: N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b."""
    A, B, alpha, beta = (np.asarray(v, dtype=float) for v in (A, B, alpha, beta))
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return g, beta / (alpha + beta), alpha / (alpha + beta)


def optimal_allocation(E, A, B, alpha, beta, flops, flops_per_param: float = 6.0) -> dict:
    """N_opt, D_opt and L(N_opt, D_opt) for compute ``flops`` under C = k N D (k = 6: Chinchilla)."""
    g, a_exp, b_exp = allocation_constants(A, B, alpha, beta)
    c = float(flops) / flops_per_param
    n_opt = g * c**a_exp
    d_opt = c**b_exp / g
    loss = np.asarray(E) + np.asarray(A) / n_opt ** np.asarray(alpha) + np.asarray(B) / d_opt ** np.asarray(beta)
    return {"N": n_opt, "D": d_opt, "loss": loss}


def fit_chinchilla(n, d, loss, bootstrap: int = 200, seed: int = 0, delta: float = HUBER_DELTA,
                   starts: int = 8, boot_starts: int = 2, progress: bool = False) -> Chinchilla:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, approach 3) with ``bootstrap``
    resamples for intervals. ``starts`` L-BFGS runs from the best grid points (``boot_starts`` per
    bootstrap sample, plus the full-data optimum as a warm start)."""
    n, d, loss = (np.asarray(a, dtype=float) for a in (n, d, loss))
    _check_points(n, d, loss, min_points=CHINCHILLA_MIN_RUNS)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    grid = _grid()
    ones = np.ones_like(log_n)
    theta, value = _minimise(log_n, log_d, log_l, ones, _grid_starts(grid, log_n, log_d, log_l, ones, delta, starts), delta)
    if theta is None:
        raise DataError("the Chinchilla fit failed from every initialisation")
    rng = np.random.default_rng(seed)
    samples = []
    from tqdm import tqdm

    for _ in tqdm(range(bootstrap), desc="bootstrap fits", unit="fit", disable=not progress, leave=False):
        # Resampling with replacement = integer weights on the runs (a run drawn twice counts twice).
        weights = np.bincount(rng.integers(0, len(n), len(n)), minlength=len(n)).astype(float)
        x0 = np.vstack([theta[None], _grid_starts(grid, log_n, log_d, log_l, weights, delta, boot_starts)])
        t, _ = _minimise(log_n, log_d, log_l, weights, x0, delta)
        samples.append(_constants(t) if t is not None else [math.nan] * 5)
    return Chinchilla(*_constants(theta), samples=np.array(samples, dtype=float).reshape(-1, 5), points=len(n), objective=value)


def _constants(theta) -> list[float]:
    a, b, e, alpha, beta = theta
    with np.errstate(over="ignore"):
        return [math.exp(min(e, 700)), math.exp(min(a, 700)), math.exp(min(b, 700)), float(alpha), float(beta)]


# --------------------------------------------------------------------------------------------
# Chinchilla approach 2: IsoFLOP profiles


def isoflop_minima(n, loss, budget) -> list[dict]:
    """Per compute budget, the vertex of the parabola loss = p2 (log N)^2 + p1 log N + p0 (needs
    >= 3 sizes and an upward parabola; other budgets are skipped). Returns [{budget, N, loss,
    coef}] sorted by budget."""
    n, loss, budget = (np.asarray(a, dtype=float) for a in (n, loss, budget))
    out = []
    for c in np.unique(budget):
        rows = budget == c
        if np.unique(n[rows]).size < 3:
            continue
        x = np.log(n[rows])
        p2, p1, p0 = np.polyfit(x, loss[rows], 2)
        if p2 <= 0:  # no minimum: the sweep did not bracket this budget's optimum
            continue
        x_min = -p1 / (2 * p2)
        if not -700 < x_min < 700:  # a nearly flat profile: its vertex is nowhere near the runs
            continue
        out.append({"budget": float(c), "N": float(math.exp(x_min)), "loss": float(p0 - p1 * p1 / (4 * p2)),
                    "coef": [float(p2), float(p1), float(p0)],
                    "bracketed": bool(x.min() <= x_min <= x.max())})
    return out


def fit_isoflop(minima: list[dict], bootstrap: int = 200, seed: int = 0) -> dict | None:
    """N_opt = k C^a through the bracketed IsoFLOP minima (Chinchilla approach 2: a vertex outside
    the sizes a budget tried is an extrapolation of a parabola, not a measured optimum); None below
    two such budgets."""
    minima = [m for m in minima if m["bracketed"]]
    if len(minima) < 2:
        return None
    c = np.array([m["budget"] for m in minima])
    n = np.array([m["N"] for m in minima])
    a, log_k = np.polyfit(np.log(c), np.log(n), 1)
    out = {"law": "N_opt = k C^a", "a": float(a), "k": float(math.exp(log_k)), "budgets": len(minima)}
    if len(minima) >= 3:
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(bootstrap):
            idx = rng.integers(0, len(c), len(c))
            if np.unique(c[idx]).size >= 2:
                boot.append(np.polyfit(np.log(c[idx]), np.log(n[idx]), 1))
        if boot:
            b = np.array(boot)
            out.update(a_ci=list(interval(b[:, 0])), k_ci=list(interval(np.exp(b[:, 1]))))
    return out


__all__ = ["CHINCHILLA", "Chinchilla", "PowerLaw", "allocation_constants", "fit_chinchilla", "fit_isoflop",
           "fit_power_law", "interval", "isoflop_minima", "kaplan_points", "optimal_allocation"]

"""Offline quality metrics for generative models: Fréchet distance, class metrics, 2-D distances.

    samples ----------------+                              held-out digits (val split)
       |                    |                                          |
  digits classifier    classifier logits                      digits classifier
  .features (N, F)          |                                    .features (M, F)
       |               class_metrics: accuracy on the               |
       |               classes asked for, entropies                 |
       +------------ frechet_with_interval -------------------------+
                     distance, bootstrap interval, N and M

    2-D points:  sliced_wasserstein(a, b), mmd_rbf(a, b)  (against held-out points)

``digits_quality`` combines the digits metrics (what the diffusion task reports at each
evaluation); ``points_quality`` the 2-D ones.

A Fréchet distance is biased upwards by the finite number of samples, and the bias depends on that
number: the covariance of N samples has rank at most N - 1, and its noise adds to the trace term
(Chong & Forsyth 2020, "Effectively Unbiased FID"; lucidrains/denoising-diffusion-pytorch #224: its
trainer computed FID from at most one training batch of samples). Two distances are comparable only
at the same sample counts, which is why every result carries ``n_gen`` and ``n_ref`` beside it; with
fewer samples than feature dimensions the number means little.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from axon.errors import check_count

LEVEL = 0.95  # of every interval here


def _matrix(x, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a (samples, features) array, got shape {tuple(a.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"{name}: a Fréchet distance needs at least 2 samples, got {a.shape[0]}")
    return a


def _gaussian(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def _frechet(mu_a, sigma_a, mu_b, sigma_b, eps: float = 1e-6) -> float:
    """d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))  (Dowson & Landau 1982; FID's formula).

    Round-off, handled as pytorch-fid does: a singular product (fewer samples than features) gets
    ``eps`` added to both diagonals; sqrtm of a product of two symmetric PSD matrices is real in
    exact arithmetic, so a small imaginary part is dropped. Where pytorch-fid raises on a large one,
    the trace is taken the symmetric way instead, Tr((S_a S_b)^1/2) = Tr((S_a^1/2 S_b S_a^1/2)^1/2),
    so that an evaluation never ends a run. NaN when a statistic is not finite (a diverged model's
    samples): reported, not raised, for the same reason.
    """
    from scipy import linalg

    if not all(np.isfinite(m).all() for m in (mu_a, sigma_a, mu_b, sigma_b)):
        return math.nan
    diff = mu_a - mu_b
    with warnings.catch_warnings():  # "Matrix is singular": the case handled here, not news at each evaluation
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma_a.shape[0]) * eps
            covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real if np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3) else None
    trace = np.trace(covmean) if covmean is not None else _trace_sqrt_symmetric(sigma_a, sigma_b)
    d = float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace)
    return max(d, 0.0)  # >= 0 in exact arithmetic; identical sets round to +-1e-12


def _trace_sqrt_symmetric(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """Tr((S_a S_b)^1/2) through the symmetric PSD matrix S_a^1/2 S_b S_a^1/2 (its eigenvalues' roots)."""
    w, v = np.linalg.eigh(sigma_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sigma_b @ root_a), 0, None)).sum())


def frechet_distance(feats_a, feats_b) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features (N, F) and (M, F):
    FID's formula on any features (here: the digits classifier's). 0 for identical sets; with
    fewer samples it is larger (see the module docstring), so compare it only at equal counts."""
    a, b = _matrix(feats_a, "feats_a"), _matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features of different widths: {a.shape[1]} and {b.shape[1]}")
    return _frechet(*_gaussian(a), *_gaussian(b))


def frechet_with_interval(feats_gen, feats_ref, resamples: int = 200, seed: int = 0, level: float = LEVEL) -> dict:
    """The Fréchet distance of generated features against reference ones, with a bootstrap interval.

    -> ``{"distance", "ci": (lo, hi), "n_gen", "n_ref", "bootstrap_bias"}``. The generated samples
    are resampled with replacement ``resamples`` times (``seed``); the reference set is held fixed
    (it is the same for every model compared). Resampling repeats rows, which itself inflates the
    distance (the small-sample bias again), so the percentiles of the resampled distances sit above
    the estimate by about that bias; the interval is those percentiles shifted down by it
    (``bootstrap_bias``: mean resampled distance minus the estimate). It shows how much the number
    moves from one draw of ``n_gen`` samples to another; it says nothing of the bias common to all
    draws of that size, which ``bootstrap_bias`` estimates. A distance is meaningful only beside
    ``n_gen`` and ``n_ref``: compare models at the same counts.
    """
    check_count("resamples", resamples, 1)
    gen, ref = _matrix(feats_gen, "feats_gen"), _matrix(feats_ref, "feats_ref")
    if gen.shape[1] != ref.shape[1]:
        raise ValueError(f"features of different widths: {gen.shape[1]} and {ref.shape[1]}")
    mu_ref, sigma_ref = _gaussian(ref)
    distance = _frechet(*_gaussian(gen), mu_ref, sigma_ref)
    rng = np.random.default_rng(seed)
    boot = np.array([_frechet(*_gaussian(gen[rng.integers(0, len(gen), len(gen))]), mu_ref, sigma_ref)
                     for _ in range(resamples)])
    if not np.isfinite(boot).all():  # samples that are not finite: no distance, no interval
        return {"distance": math.nan, "ci": (math.nan, math.nan), "n_gen": len(gen), "n_ref": len(ref),
                "bootstrap_bias": math.nan}
    bias = float(boot.mean() - distance)
    lo, hi = np.percentile(boot - bias, [50 * (1 - level), 50 * (1 + level)])
    return {"distance": distance, "ci": (max(float(lo), 0.0), float(hi)), "n_gen": len(gen), "n_ref": len(ref),
            "bootstrap_bias": bias}


def class_metrics(logits, labels=None) -> dict:
    """What a classifier makes of samples (N, C) logits; all entropies in nats.

    ``accuracy`` (with ``labels``, the classes the samples were asked to be): how often a "7" is a 7;
    ``entropy_of_mean_prediction``: H(mean of p(y|x)), diversity across classes: log C (2.303 for
    10 classes) when every class is drawn equally often, 0 when all samples are one class;
    ``mean_entropy``: mean of H(p(y|x)), how unsure the classifier is per sample (low: each
    sample looks like some class). exp(the first minus the second) is the Inception Score's form.
    """
    logits = torch.as_tensor(logits).detach().double()
    logp = logits.log_softmax(-1)  # (N, C)
    p = logp.exp()
    p_mean = p.mean(0)
    out = {
        "entropy_of_mean_prediction": float(-(p_mean * p_mean.clamp_min(1e-300).log()).sum()),
        "mean_entropy": float(-(p * logp).sum(-1).mean()),
    }
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != logits.shape[:1]:
            raise ValueError(f"{labels.shape[0] if labels.ndim else 0} labels for {logits.shape[0]} samples")
        out["accuracy"] = float((logits.argmax(-1) == labels.to(logits.device)).double().mean())
    return out


def _points(x, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name}: expected (n >= 2, d) points, got shape {tuple(a.shape)}")
    return a


def _quantiles(sorted_cols: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles at ``levels`` of each column of a column-sorted (n, P) array, the i-th of n values
    standing at level (i + 0.5) / n, linear in between (np.quantile is ~10x slower on many columns)."""
    n = len(sorted_cols)
    pos = np.clip(levels * n - 0.5, 0, n - 1)
    i = np.minimum(pos.astype(np.int64), n - 2) if n > 1 else np.zeros(len(pos), dtype=np.int64)
    frac = (pos - i)[:, None]
    upper = sorted_cols[np.minimum(i + 1, n - 1)]
    return sorted_cols[i] * (1 - frac) + upper * frac


def sliced_wasserstein(a, b, projections: int = 256, seed: int = 0) -> float:
    """The sliced 2-Wasserstein distance between point sets a (N, d) and b (M, d) (Rabin et al. 2011).

    SW_2(a, b)^2 = E_theta[W_2(theta . a, theta . b)^2] over directions theta uniform on the sphere:
    the mean squared gap between the sorted projections of the two sets (their quantile functions,
    at the midpoints of max(N, M) equal bins when N != M), over ``projections`` directions drawn
    with ``seed``. In the units of the points: it measures how far mass must move, so a shift of
    the whole set by delta gives about |delta| / sqrt(d). It is positive for two samples of one
    distribution (about 1 / sqrt(N) for unit-variance data): compare it with that floor.
    """
    check_count("projections", projections, 1)
    x, y = _points(a, "a"), _points(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"points of different dimensions: {x.shape[1]} and {y.shape[1]}")
    theta = np.random.default_rng(seed).standard_normal((x.shape[1], projections))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)  # (d, P) unit directions
    px, py = np.sort(x @ theta, axis=0), np.sort(y @ theta, axis=0)  # (N, P), (M, P)
    if len(px) != len(py):
        levels = (np.arange(max(len(px), len(py))) + 0.5) / max(len(px), len(py))
        px, py = _quantiles(px, levels), _quantiles(py, levels)
    return float(math.sqrt(((px - py) ** 2).mean()))


def mmd_rbf(a, b, bandwidths=(0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """The squared maximum mean discrepancy between point sets a (N, d) and b (M, d), unbiased
    (Gretton et al. 2012, eq. 3), with the kernel k(x, y) = sum_s exp(-|x - y|^2 / (2 s^2)) over
    ``bandwidths`` s (in the units of the points; the defaults suit unit-variance data).

    MMD^2 = E k(a, a') + E k(b, b') - 2 E k(a, b): 0 exactly when the distributions are equal (the
    RBF kernel is characteristic), sensitive at the scales of the bandwidths -- a wrong shape of a
    mode, a missing mode. Unbiased: the pairs i = j are left out, so two samples of one
    distribution give a value around 0, possibly slightly negative.
    """
    x, y = _points(a, "a"), _points(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"points of different dimensions: {x.shape[1]} and {y.shape[1]}")
    scales = np.asarray(bandwidths, dtype=np.float64)
    if scales.ndim != 1 or not len(scales) or not (np.isfinite(scales) & (scales > 0)).all():
        raise ValueError(f"bandwidths must be positive numbers, got {bandwidths!r}")

    def kernel(u, v):  # (n, m): the sum of the RBF kernels of the squared distances
        d2 = np.maximum((u**2).sum(1)[:, None] + (v**2).sum(1)[None, :] - 2 * u @ v.T, 0.0)
        return sum(np.exp(d2 * (-0.5 / s**2)) for s in scales)

    n, m = len(x), len(y)
    kxx, kyy = kernel(x, x), kernel(y, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * kernel(x, y).mean())


def points_quality(samples, reference, projections: int = 256, seed: int = 0) -> dict:
    """2-D samples against held-out points: ``sliced_wasserstein``, ``mmd`` (MMD^2), and the counts."""
    return {"sliced_wasserstein": sliced_wasserstein(samples, reference, projections, seed),
            "mmd": mmd_rbf(samples, reference), "n_gen": len(samples), "n_ref": len(reference)}


@torch.no_grad()
def digits_quality(samples: torch.Tensor, labels=None, reference: torch.Tensor | None = None, cache_dir=None,
                   resamples: int = 200, seed: int = 0) -> dict:
    """Generated digits (N, 1, 8, 8) in [-1, 1] through the digits classifier: one flat dict of numbers.

    ``frechet_distance`` on the classifier's features against ``reference`` (default: the held-out
    val split, 359 images) with ``frechet_lo``/``frechet_hi`` (the bootstrap interval of
    :func:`frechet_with_interval`), ``frechet_bias`` and the counts ``n_gen``, ``n_ref``;
    ``accuracy`` when ``labels`` (the classes the samples were asked for) is given;
    ``entropy_of_mean_prediction`` and ``mean_entropy`` (:func:`class_metrics`); and
    ``classifier_accuracy``, the classifier's own accuracy on the held-out digits, which bounds
    what ``accuracy`` can mean. ``cache_dir``: as ``data.cache_dir`` (where the classifier is kept).
    """
    from axon.data.images import digits_split
    from axon.eval.digits_classifier import digits_classifier

    samples = torch.as_tensor(samples)
    if samples.ndim != 4 or tuple(samples.shape[1:]) != (1, 8, 8):
        raise ValueError(f"digits_quality takes (N, 1, 8, 8) images, got {tuple(samples.shape)}")
    model = digits_classifier(cache_dir)
    if reference is None:
        reference, _ = digits_split("val")
    samples = samples.detach().float().cpu()
    frechet = frechet_with_interval(model.features(samples), model.features(reference.float().cpu()),
                                    resamples=resamples, seed=seed)
    return {
        "frechet_distance": frechet["distance"], "frechet_lo": frechet["ci"][0], "frechet_hi": frechet["ci"][1],
        "frechet_bias": frechet["bootstrap_bias"], "n_gen": frechet["n_gen"], "n_ref": frechet["n_ref"],
        **class_metrics(model.logits(samples), labels),
        "classifier_accuracy": model.val_accuracy,
    }

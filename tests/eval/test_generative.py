"""Offline quality metrics: Fréchet distance and its interval, the digits classifier and its cache,
class metrics, sliced Wasserstein and MMD. The classifier is trained once for the module (~4 s)."""

import math

import numpy as np
import pytest
import torch

from axon.data.images import digits_split, toy_2d
from axon.eval import digits_classifier as dc
from axon.eval.generative import (
    class_metrics,
    digits_quality,
    frechet_distance,
    frechet_with_interval,
    mmd_rbf,
    points_quality,
    sliced_wasserstein,
)

CHEAP = dc.ClassifierSettings(steps=30)  # for the checks that train again: determinism, the cache key, a bad file


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # the session's one digits classifier (~5 s to train): tests/tasks/test_diffusion_task.py reads the same
    path = tmp_path_factory.getbasetemp() / "digits-classifier-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def classifier(cache):
    return dc.digits_classifier(cache)


@pytest.fixture(scope="module")
def val():
    return digits_split("val")


# ----------------------------------------------------------------------------------------------
# Fréchet distance


def _closed_form(mu_a, s_a, mu_b, s_b) -> float:
    """The distance between two Gaussians computed another way: Tr((S_a S_b)^1/2) =
    Tr((S_a^1/2 S_b S_a^1/2)^1/2), a symmetric PSD matrix whose square root is its eigenvalues'."""
    w, v = np.linalg.eigh(s_a)
    root_a = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross)


def test_frechet_distance_is_zero_for_identical_features_and_grows_with_a_shift():
    feats = np.random.default_rng(0).standard_normal((500, 6))
    assert frechet_distance(feats, feats) < 1e-9
    assert frechet_distance(torch.from_numpy(feats), feats) < 1e-9  # tensors or arrays
    shifted = [frechet_distance(feats, feats + d) for d in (0.25, 0.5, 1.0, 2.0)]
    assert shifted == sorted(shifted) and shifted[0] > 0
    # A pure shift by d in each of the 6 dimensions changes only the mean term: 6 d^2.
    np.testing.assert_allclose(shifted, [6 * d * d for d in (0.25, 0.5, 1.0, 2.0)], rtol=1e-6)


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    rng = np.random.default_rng(1)
    mu_a, mu_b = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 1.0])
    m_a, m_b = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    s_a, s_b = m_a @ m_a.T + 0.1 * np.eye(3), m_b @ m_b.T + 0.1 * np.eye(3)  # non-commuting covariances
    n = 200_000
    a = rng.multivariate_normal(mu_a, s_a, n)
    b = rng.multivariate_normal(mu_b, s_b, n)
    expected = _closed_form(mu_a, s_a, mu_b, s_b)
    # Sample means and covariances err by ~ scale / sqrt(n) ~ 0.01 here; the distance by a few times that.
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.1)
    assert expected > 3  # the test distinguishes: the distance is far from 0


def test_the_bootstrap_interval_holds_the_estimate_and_reports_the_counts():
    rng = np.random.default_rng(2)
    gen, ref = rng.standard_normal((200, 4)) + 0.5, rng.standard_normal((300, 4))
    out = frechet_with_interval(gen, ref, resamples=100, seed=0)
    assert (out["n_gen"], out["n_ref"]) == (200, 300)
    assert out["distance"] == pytest.approx(frechet_distance(gen, ref))
    lo, hi = out["ci"]
    assert lo < out["distance"] < hi
    assert out["bootstrap_bias"] > 0  # resampling repeats rows, which inflates the distance
    assert frechet_with_interval(gen, ref, resamples=100, seed=0) == out  # seeded
    fewer = frechet_with_interval(gen[:50], ref, resamples=100, seed=0)
    assert fewer["ci"][1] - fewer["ci"][0] > hi - lo  # fewer samples, a wider interval
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(gen[:1], ref)


def test_collapsed_and_diverged_samples_are_reported_not_raised():
    ref = np.random.default_rng(3).standard_normal((300, 4))
    collapsed = np.ones((50, 4))  # every sample the same: a zero covariance
    mu, sigma = ref.mean(0), np.cov(ref, rowvar=False)
    assert frechet_distance(collapsed, ref) == pytest.approx(float(((1 - mu) ** 2).sum() + np.trace(sigma)))
    diverged = collapsed.copy()
    diverged[3, 1] = np.nan
    assert math.isnan(frechet_distance(diverged, ref))
    out = frechet_with_interval(diverged, ref, resamples=5)
    assert math.isnan(out["distance"]) and all(map(math.isnan, out["ci"])) and out["n_gen"] == 50


def test_the_symmetric_trace_agrees_with_sqrtm():
    from scipy.linalg import sqrtm

    from axon.eval.generative import _trace_sqrt_symmetric

    rng = np.random.default_rng(4)
    m_a, m_b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    s_a, s_b = m_a @ m_a.T, m_b @ m_b.T

    assert _trace_sqrt_symmetric(s_a, s_b) == pytest.approx(float(np.trace(sqrtm(s_a @ s_b)).real), rel=1e-9)


# ----------------------------------------------------------------------------------------------
# The digits classifier


def test_the_classifier_reaches_its_accuracy_on_held_out_digits(classifier, val):
    images, labels = val
    assert classifier.val_accuracy >= 0.95
    with torch.no_grad():
        logits, feats = classifier.logits(images), classifier.features(images)
    assert logits.shape == (len(images), 10) and feats.shape == (len(images), CHEAP.features)
    assert float((logits.argmax(1) == labels).float().mean()) == pytest.approx(classifier.val_accuracy)


def test_the_cached_classifier_is_loaded_not_retrained(classifier, cache, monkeypatch):
    path = dc.classifier_path(cache)
    assert path.is_file() and path.parent == cache / "eval"
    stamp = path.stat().st_mtime_ns

    def no_training(settings):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(dc, "train_digits_classifier", no_training)
    again = dc.digits_classifier(cache)
    assert path.stat().st_mtime_ns == stamp
    assert again.val_accuracy == classifier.val_accuracy and again.train_seconds == classifier.train_seconds
    for (name, a), b in zip(classifier.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    first, second = dc.train_digits_classifier(CHEAP), dc.train_digits_classifier(CHEAP)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    other = dc.train_digits_classifier(dc.ClassifierSettings(steps=30, seed=1))
    assert not torch.equal(first.proj.weight, other.proj.weight)


def test_other_settings_are_another_file_and_a_damaged_file_is_retrained(cache):
    path = dc.classifier_path(cache, CHEAP)
    assert path != dc.classifier_path(cache) and path != dc.classifier_path(cache, dc.ClassifierSettings(seed=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not safetensors")
    model = dc.digits_classifier(cache, CHEAP)
    assert model.val_accuracy is not None and path.stat().st_size > 1000
    assert torch.equal(dc.digits_classifier(cache, CHEAP).head.weight, model.head.weight)


# ----------------------------------------------------------------------------------------------
# Class metrics and the digits report


def test_class_metrics_on_one_hot_logits():
    classes = torch.arange(10)
    confident = 50.0 * torch.nn.functional.one_hot(classes, 10)
    out = class_metrics(confident, classes)
    assert out["accuracy"] == 1.0 and out["mean_entropy"] < 1e-15
    assert out["entropy_of_mean_prediction"] == pytest.approx(math.log(10))
    one_class = class_metrics(50.0 * torch.nn.functional.one_hot(torch.full((10,), 3), 10), classes)
    assert one_class["accuracy"] == 0.1 and one_class["entropy_of_mean_prediction"] < 1e-15
    unsure = class_metrics(torch.zeros(4, 10))
    assert "accuracy" not in unsure
    assert unsure["mean_entropy"] == pytest.approx(math.log(10)) == unsure["entropy_of_mean_prediction"]


def test_real_digits_are_much_closer_than_noise(classifier, cache, val):
    x_train, y_train = digits_split("train")
    pick = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[: len(val[0])]
    real = digits_quality(x_train[pick], y_train[pick], cache_dir=cache, resamples=50)
    noise = digits_quality(torch.rand(len(pick), 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                           cache_dir=cache, resamples=50)
    assert (real["n_gen"], real["n_ref"]) == (359, 359) == (noise["n_gen"], noise["n_ref"])
    assert real["frechet_lo"] <= real["frechet_distance"] <= real["frechet_hi"]
    assert noise["frechet_lo"] > 20 * real["frechet_hi"]  # measured: ~350 against ~4 (its interval ends near 8)
    assert real["accuracy"] >= 0.95 and "accuracy" not in noise
    assert real["entropy_of_mean_prediction"] > 0.98 * math.log(10)  # every class drawn
    assert real["mean_entropy"] < noise["mean_entropy"]
    assert real["classifier_accuracy"] == classifier.val_accuracy
    wrong = digits_quality(x_train[pick], (y_train[pick] + 1) % 10, cache_dir=cache, resamples=2)
    assert wrong["accuracy"] < 0.05  # "a 7 asked for, a 8 drawn" is counted wrong
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\) images"):
        digits_quality(torch.zeros(4, 3, 8, 8), cache_dir=cache)


# ----------------------------------------------------------------------------------------------
# 2-D distances


def test_sliced_wasserstein_is_near_zero_for_one_distribution_and_measures_a_shift():
    a, _ = toy_2d("moons", 2000, seed=0)
    b, _ = toy_2d("moons", 1500, seed=1)  # unequal sizes: compared at common quantiles
    same = sliced_wasserstein(a, b)
    assert same < 0.06  # ~1/sqrt(n) sampling floor
    # Translating a set by delta moves each projection theta . x by theta . delta:
    # SW_2 = |delta| sqrt(E cos^2) = |delta| / sqrt(2).
    assert sliced_wasserstein(a, a + torch.tensor([0.6, 0.8])) == pytest.approx(1 / math.sqrt(2), rel=0.05)
    assert sliced_wasserstein(a, toy_2d("gaussians", 2000, seed=1)[0]) > 4 * same
    assert sliced_wasserstein(a, b, seed=0) == sliced_wasserstein(a, b, seed=0)


def _mmd_by_loops(x, y, scales):
    k = lambda u, v: sum(math.exp(-float(((u - v) ** 2).sum()) / (2 * s * s)) for s in scales)
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_is_the_unbiased_estimate_near_zero_for_one_distribution():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((5, 2)) + 1
    assert mmd_rbf(x, y, bandwidths=(0.5, 2.0)) == pytest.approx(_mmd_by_loops(x, y, (0.5, 2.0)), rel=1e-9)
    a, b = toy_2d("gaussians", 1000, seed=0)[0], toy_2d("gaussians", 1000, seed=1)[0]
    same, shifted = mmd_rbf(a, b), mmd_rbf(a, b + 0.5)
    assert abs(same) < 0.01 and shifted > 0.1
    out = points_quality(a, b)
    assert out["mmd"] == same and (out["n_gen"], out["n_ref"]) == (1000, 1000) and out["sliced_wasserstein"] < 0.1


def test_the_classifier_trains_when_first_asked_for_under_no_grad():
    """digits_quality runs under no_grad; a first call with an empty cache must still train."""
    from dataclasses import replace

    from axon.eval.digits_classifier import ClassifierSettings, train_digits_classifier

    settings = replace(ClassifierSettings(), steps=3)
    with torch.no_grad():
        a = train_digits_classifier(settings)
    b = train_digits_classifier(settings)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))

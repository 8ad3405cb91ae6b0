"""Scaling-law fits (axon.lab.fit) on synthetic losses whose true constants are known."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from axon.errors import DataError
from axon.lab.fit import (
    CHINCHILLA,
    Chinchilla,
    fit_chinchilla,
    fit_isoflop,
    fit_power_law,
    isoflop_minima,
    kaplan_points,
    optimal_allocation,
)


def chinchilla_loss(n, d, c=CHINCHILLA):
    return c["E"] + c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"]


@pytest.fixture(scope="module")
def synthetic_fit():
    """Chinchilla's published constants, a 7 x 7 grid of N in 1e7..1e10 and D in 1e8..1e12, and
    1% multiplicative noise on the loss (about the seed-to-seed spread of real runs)."""
    rng = np.random.default_rng(7)
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e10, 7), np.geomspace(1e8, 1e12, 7)))
    loss = chinchilla_loss(n, d) * np.exp(rng.normal(0.0, 0.01, n.size))
    return fit_chinchilla(n, d, loss, bootstrap=150, seed=1, boot_starts=0), (n, d, loss)


def test_chinchilla_fit_recovers_the_published_constants_within_its_intervals(synthetic_fit):
    fit, _ = synthetic_fit
    for name, true in CHINCHILLA.items():
        lo, hi = fit.ci(name)
        assert lo <= true <= hi, f"{name}: true {true} outside the bootstrap interval ({lo:.4g}, {hi:.4g})"
        assert hi / lo < 2.5, f"{name}: interval ({lo:.4g}, {hi:.4g}) too wide to mean anything"
    # the exponents, which decide the allocation, are pinned much tighter than A and B
    assert abs(fit.alpha - 0.34) < 0.03 and abs(fit.beta - 0.28) < 0.03
    assert abs(fit.E - 1.69) < 0.1


def test_chinchilla_fit_is_exact_without_noise():
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e10, 5), np.geomspace(1e8, 1e12, 5)))
    fit = fit_chinchilla(n, d, chinchilla_loss(n, d), bootstrap=0)
    got = {k: getattr(fit, k) for k in Chinchilla.NAMES}
    for k, v in CHINCHILLA.items():  # noiseless data: only L-BFGS's stopping tolerance separates fit and truth
        assert got[k] == pytest.approx(v, rel=2e-3), k


def test_chinchilla_fit_shrugs_off_an_outlier():
    """The Huber loss on log-loss: one diverged run (loss x 3) barely moves the exponents."""
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e10, 5), np.geomspace(1e8, 1e12, 5)))
    loss = chinchilla_loss(n, d)
    loss[7] *= 3.0
    fit = fit_chinchilla(n, d, loss, bootstrap=0)
    # a squared loss would move them by ~0.1; Huber keeps them within 0.01 of the truth
    assert fit.alpha == pytest.approx(0.34, abs=0.01) and fit.beta == pytest.approx(0.28, abs=0.01)


def test_allocation_matches_brute_force_minimisation():
    c = CHINCHILLA
    for flops in (1e18, 5.76e23, 1e26):
        got = optimal_allocation(c["E"], c["A"], c["B"], c["alpha"], c["beta"], flops)
        # minimise L(N, C / 6N) over log N numerically
        res = minimize_scalar(lambda x, c=flops: chinchilla_loss(math.exp(x), c / (6 * math.exp(x))),
                              bounds=(math.log(1e3), math.log(1e15)), method="bounded", options={"xatol": 1e-10})
        n_star = math.exp(res.x)
        # the minimiser stops at |d log N| ~ 1e-5 on a flat optimum: N and D to 1e-4, the loss
        # (second order there) to 1e-9; float64 Python arithmetic, no kernel in the path
        assert got["N"] == pytest.approx(n_star, rel=1e-4)
        assert got["D"] == pytest.approx(flops / (6 * n_star), rel=1e-4)
        assert got["loss"] == pytest.approx(res.fun, rel=1e-9)
        assert 6 * got["N"] * got["D"] == pytest.approx(flops)


def test_optimal_with_intervals_brackets_the_truth(synthetic_fit):
    fit, _ = synthetic_fit
    c = CHINCHILLA
    truth = optimal_allocation(c["E"], c["A"], c["B"], c["alpha"], c["beta"], 1e21)
    got = fit.optimal(1e21)
    for key in ("N", "D", "loss"):
        lo, hi = got[f"{key}_ci"]
        assert lo <= got[key] <= hi and lo <= truth[key] <= hi, key


def test_fit_round_trips_through_a_dict(synthetic_fit):
    fit, _ = synthetic_fit
    back = Chinchilla.from_dict(fit.to_dict())
    assert back.alpha == fit.alpha and back.ci("B") == fit.ci("B")
    assert back.optimal(1e20)["N_ci"] == fit.optimal(1e20)["N_ci"]
    with pytest.raises(DataError):
        Chinchilla.from_dict({"E": 1.0})


def test_kaplan_power_laws_on_synthetic_data():
    rng = np.random.default_rng(0)
    n = np.geomspace(1e5, 1e9, 9)
    loss = (8.8e13 / n) ** 0.076 * np.exp(rng.normal(0, 0.002, n.size))  # Kaplan's L(N) constants
    law = fit_power_law(n, loss, bootstrap=200)
    # 0.2% noise on 9 points over 4 decades: the slope's standard error is ~0.001; 0.004 is 4 of them
    assert law.alpha == pytest.approx(0.076, abs=0.004)
    assert law.alpha_ci[0] <= 0.076 <= law.alpha_ci[1]
    assert law.x_c_ci[0] <= 8.8e13 <= law.x_c_ci[1]
    assert law(1e7) == pytest.approx((8.8e13 / 1e7) ** 0.076, rel=0.01)
    exact = fit_power_law(n, (5.4e13 / n) ** 0.095, bootstrap=0)  # L(D) constants, noiseless: a line in log-log, fit to rounding
    assert exact.alpha == pytest.approx(0.095, rel=1e-9) and exact.x_c == pytest.approx(5.4e13, rel=1e-6)


def test_kaplan_point_selection():
    n = np.array([1, 1, 2, 2, 3.0])
    d = np.array([10, 20, 10, 20, 10.0])
    loss = np.array([5, 4, 3, 2, 1.0])
    assert kaplan_points(n, d, loss, "N")[1].tolist() == [4, 2, 1]  # per N, the most data
    x, l = kaplan_points(n, d, loss, "D")
    assert x.tolist() == [10, 20] and l.tolist() == [1, 2]  # per D, the largest model


def test_isoflop_parabola_minima_follow_the_allocation():
    """Approach 2 on noiseless Chinchilla losses: IsoFLOP vertices give N_opt ~ C^a with a near
    beta / (alpha + beta) = 0.45 (the parabola in log N is only an approximation of the profile)."""
    rows = []
    for c in (1e18, 1e19, 1e20, 1e21):
        n_star = optimal_allocation(*CHINCHILLA.values(), c)["N"]
        for n in n_star * np.geomspace(0.25, 4, 7):
            rows.append((n, c / (6 * n), c))
    n, d, c = map(np.array, zip(*rows))
    minima = isoflop_minima(n, chinchilla_loss(n, d), c)
    assert len(minima) == 4 and all(m["bracketed"] for m in minima)
    for m in minima:
        assert m["N"] == pytest.approx(optimal_allocation(*CHINCHILLA.values(), m["budget"])["N"], rel=0.1)
    law = fit_isoflop(minima)
    assert law["a"] == pytest.approx(0.28 / 0.62, abs=0.02)


def test_bad_points_are_data_errors():
    with pytest.raises(DataError, match="at least 5"):
        fit_chinchilla([1, 2], [1, 2], [1, 2])
    with pytest.raises(DataError, match="positive"):
        fit_chinchilla([1, 2, 3, 4, -5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    with pytest.raises(DataError, match="two distinct"):
        fit_power_law([3, 3, 3], [1, 2, 3])


def test_a_law_needs_more_points_than_its_parameters():
    """Two distinct values fit a power law's two parameters exactly: refused, since every bootstrap
    resample would give the same line and report a zero-width interval (issue 16)."""
    with pytest.raises(DataError, match="at least 3 distinct values of its variable .* got 2"):
        fit_power_law([1e6, 2e6], [3.0, 2.8])
    from axon.lab.scaling import fit_sweep

    rows = [{"N": 1e6, "D": 1e8, "loss": 3.0}, {"N": 2e6, "D": 1e8, "loss": 2.8}]
    with pytest.raises(DataError, match="2 runs are too few to fit any law: Kaplan's L\\(N\\) needs 3 distinct model sizes"):
        fit_sweep(rows, bootstrap=10)


def test_a_zero_width_bootstrap_interval_is_undetermined_not_certain():
    """Points on the law without noise: every resample gives the same fit. The interval is NaN
    (undetermined) and printed as such, with a note -- never as [x, x]."""
    from axon.lab.fit import interval
    from axon.lab.scaling import fit_sweep, summary_lines

    assert all(math.isnan(v) for v in interval(np.full(50, 0.0489)))
    assert interval(np.array([1.0, 2.0, 3.0])) == (pytest.approx(1.05), pytest.approx(2.95))
    n = np.array([1e6, 2e6, 4e6])
    law = fit_power_law(n, (8.8e13 / n) ** 0.076, bootstrap=50)
    assert law.alpha == pytest.approx(0.076) and all(math.isnan(v) for v in (*law.alpha_ci, *law.x_c_ci))
    fits = fit_sweep([{"N": x, "D": 1e8, "loss": (8.8e13 / x) ** 0.076} for x in n], bootstrap=50)
    text = "\n".join(summary_lines(fits))
    assert "alpha_N [undetermined]" in text and "it is not certainty" in text and "[0.076" not in text

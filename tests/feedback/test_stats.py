"""Win rate with a binomial interval: against scipy, against hand values, ties as half."""

import math

import pytest
import torch
from numerics import order_tol
from scipy import stats

from axon.errors import ConfigError
from axon.feedback.instructions import make_instruction
from axon.feedback.stats import binomial_interval, judge_win_rate, win_rate

# Wilson: the same closed form evaluated by two libraries, a dozen float64 operations on numbers of
# order one and a normal quantile each computes to a few ulp.
WILSON_TOL = order_tol(torch.float64, n=16, depth=4)
# Clopper-Pearson: ours reads beta quantiles, scipy's binomtest finds the same p by brentq on the
# binomial tail, which stops within its default xtol = 2e-12 (plus rtol * p, 9e-16) of the root.
EXACT_TOL = 2 * (2e-12 + 9e-16)


@pytest.mark.numerics
@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 10), (3, 10), (8, 10), (10, 10), (37, 80), (512, 1000)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_intervals_match_scipy(k, n, level):
    for method, tol in (("wilson", WILSON_TOL), ("exact", EXACT_TOL)):
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method=method)
        low, high = binomial_interval(k, n, level, method)
        assert abs(low - ref.low) <= tol and abs(high - ref.high) <= tol, (method, low, high, ref)


def test_wilson_by_hand():
    # 8 of 10 at 95%: z = 1.959964, centre (0.8 + z^2/20) / (1 + z^2/10) = 0.716741,
    # half-width z sqrt(0.016 + z^2/400) / (1 + z^2/10) = 0.226580
    low, high = binomial_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # the exact interval covers at least 95% everywhere, so it is wider here
    e_low, e_high = binomial_interval(8, 10, method="exact")
    assert (round(e_low, 4), round(e_high, 4)) == (0.4439, 0.9748)  # Clopper-Pearson's table value
    assert e_low < low and e_high > high


def test_ties_count_as_half():
    w = win_rate([1, 1, 0, 0.5, 0.5, 0.2], [0, 0, 1, 0.5, 0.5, 0.1])
    assert (w.wins, w.ties, w.losses, w.n) == (3, 2, 1, 6)
    assert w.rate == 4 / 6
    assert (w.low, w.high) == binomial_interval(4.0, 6)
    assert w.low < w.rate < w.high
    # a half-integer count lies between its neighbours' intervals
    lo3, hi3 = binomial_interval(3, 6)
    lo4, hi4 = binomial_interval(4, 6)
    lo, hi = binomial_interval(3.5, 6)
    assert lo3 < lo < lo4 and hi3 < hi < hi4
    for method in ("wilson", "exact"):
        all_ties = win_rate([1] * 20, [1] * 20, method=method)
        assert all_ties.rate == 0.5 and all_ties.low < 0.5 < all_ties.high


def test_interval_narrows_like_one_over_root_n():
    widths = [binomial_interval(n // 2, n)[1] - binomial_interval(n // 2, n)[0] for n in (100, 400, 1600)]
    assert widths[0] / widths[1] == pytest.approx(2, rel=0.02) and widths[1] / widths[2] == pytest.approx(2, rel=0.01)
    # ... and tends to the Wald width 2 z sqrt(p (1 - p) / n), from which it differs by O(z^2 / n)
    z = 1.959964
    assert widths[2] == pytest.approx(2 * z * math.sqrt(0.25 / 1600), rel=z * z / 1600)


def test_judge_win_rate_scores_both_models_with_the_gold_judge():
    x = make_instruction("repeat", "king")
    gold = lambda p, r: x.judge(r)  # noqa: E731
    prompts = [x.prompt] * 4
    w = judge_win_rate(gold, prompts, ["king king", "king king", "king", "king"], ["king", "no", "king", "king king"])
    assert (w.wins, w.ties, w.losses) == (2, 1, 1) and w.rate == 2.5 / 4
    assert str(w).startswith("0.625 [") and "2 wins, 1 ties, 1 losses" in str(w)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ConfigError, match="n: need at least one trial"):
        binomial_interval(0, 0)
    with pytest.raises(ConfigError, match="successes: must be in"):
        binomial_interval(11, 10)
    with pytest.raises(ConfigError, match="level: must be in"):
        binomial_interval(1, 10, level=95)
    with pytest.raises(ConfigError, match="method: 'agresti'"):
        binomial_interval(1, 10, method="agresti")
    with pytest.raises(ConfigError, match="scores_b: one score per prompt"):
        win_rate([1, 0], [1])
    with pytest.raises(ConfigError, match="n: need at least one trial"):
        win_rate([], [])

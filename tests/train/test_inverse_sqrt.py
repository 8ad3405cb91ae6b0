"""The Transformer paper's learning-rate schedule (sec. 5.3) as a factor of optim.lr."""

import math

import pytest

from axon.config import ScheduleConfig
from axon.errors import ConfigError
from axon.train.schedule import lr_factor


def factor(step, warmup):
    return lr_factor(step, 10_000, "inverse_sqrt", warmup, 0.1, 0.2)


def test_peaks_at_one_at_the_end_of_warmup_then_falls_as_one_over_sqrt_step():
    w = 100
    assert factor(0, w) == pytest.approx(1 / w)
    assert factor(w - 1, w) == pytest.approx(1.0)  # step_num = w
    assert factor(4 * w - 1, w) == pytest.approx(0.5)  # step_num = 4w: sqrt(w / 4w)
    assert factor(100 * w - 1, w) == pytest.approx(0.1)
    assert factor(w, w) < 1.0
    assert lr_factor(5000, 20_000, "inverse_sqrt", w, 0.1, 0.2) == factor(5000, w)  # the run's length plays no part


def test_times_the_paper_peak_it_is_the_paper_formula():
    d, w = 512, 4000
    peak = d ** -0.5 * w ** -0.5  # optim.lr for the paper's schedule
    assert peak == pytest.approx(6.99e-4, rel=1e-3)  # the paper's figure, printed to 3 digits
    for n in (1, 10, 1000, 3999, 4000, 4001, 10_000, 100_000):  # the paper's step_num, from 1
        paper = d ** -0.5 * min(n ** -0.5, n * w ** -1.5)
        assert peak * factor(n - 1, w) == pytest.approx(paper, rel=1e-9)  # float64, the same formula regrouped


def test_needs_a_warmup():
    with pytest.raises(ConfigError, match="warmup_steps"):
        ScheduleConfig(name="inverse_sqrt", warmup_steps=0)
    assert ScheduleConfig(name="inverse_sqrt", warmup_steps=1).name == "inverse_sqrt"
    assert math.isfinite(factor(0, 1))

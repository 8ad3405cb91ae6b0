"""Gato's tokenisation (Reed et al. 2022 sec. 2.1): mu-law and bins, the timestep layout, the loss
mask, and the windows the gato task trains on."""

import numpy as np
import pytest

from axon.agents.gato.data import IGNORE, GatoWindows, Stream
from axon.agents.gato.envs import Episode
from axon.agents.gato.tokens import BINS, Vocab, episode_tokens, from_bins, inverse_mu_law, mu_law, to_bins


def test_mu_law_is_the_papers_formula_and_inverts():
    x = np.array([-256.0, -3.0, -0.01, 0.0, 0.5, 256.0])
    by_hand = np.sign(x) * np.log(np.abs(x) * 100 + 1) / np.log(256 * 100 + 1)
    assert np.allclose(mu_law(x), by_hand)
    assert mu_law(np.array([256.0]))[0] == pytest.approx(1.0)  # |x| = M lands on the edge of [-1, 1]
    assert np.allclose(inverse_mu_law(mu_law(x)), x)


def test_round_trip_lands_within_one_bin():
    """encode -> decode puts a value back in its own bin: in mu-law space within half a bin width
    (2 / 1024 / 2) of where it was; values beyond M clip to the last bin."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 2000), rng.normal(0, 0.05, 2000), rng.uniform(-250, 250, 2000)])
    b = to_bins(x)
    assert b.min() >= 0 and b.max() < BINS
    back = from_bins(b)
    assert np.all(to_bins(back) == b)
    assert np.max(np.abs(mu_law(back) - mu_law(x))) <= 1.0 / BINS + 1e-12
    # near 0 the bins are fine: CartPole's angles (|theta| < 0.2) come back within 2e-3
    small = rng.uniform(-0.2, 0.2, 1000)
    assert np.max(np.abs(from_bins(to_bins(small)) - small)) < 2e-3
    assert to_bins(np.array([1e6]))[0] == BINS - 1 and to_bins(np.array([-1e6]))[0] == 0
    assert np.all(np.diff(to_bins(np.linspace(-300, 300, 5000))) >= 0)  # monotone


def test_layout_and_loss_mask_of_a_planted_episode():
    v = Vocab(text=65)
    assert (v.offset, v.sep, v.size) == (65, 65 + 1024, 65 + 1025)
    obs = np.array([[0.0, 1.0], [-1.0, 0.25]])
    tokens, mask = episode_tokens(v, obs, np.array([2, 0]), continuous_obs=True)
    o = 65 + to_bins(obs)
    assert tokens.tolist() == [o[0, 0], o[0, 1], v.sep, 65 + 2, o[1, 0], o[1, 1], v.sep, 65 + 0]
    assert mask.tolist() == [False, False, False, True] * 2  # actions only: no observations, no '|'
    tokens, _ = episode_tokens(v, np.array([[3, 4]]), np.array([1]), continuous_obs=False)
    assert tokens.tolist() == [65 + 3, 65 + 4, v.sep, 65 + 1]  # discrete values: the integer itself, offset
    with pytest.raises(ValueError, match="discrete values"):
        v.discrete(np.array([BINS]))


def _stream(v, n_steps, first_obs):
    obs = np.stack([np.array([first_obs + t, 1]) for t in range(n_steps)])
    return Episode(obs, np.arange(n_steps) % 4, np.zeros(n_steps))


def test_windows_keep_action_and_text_targets_only_and_are_pure():
    v = Vocab(text=65)
    streams = {"gridmaze": Stream.of(v, "gridmaze", [_stream(v, 30, 0), _stream(v, 30, 100)])}
    text = np.arange(500) % 65
    data = GatoWindows(streams, text, text_share=0.25)
    x, y = data.get_batch(3, 64, 16, seed=1)
    x2, y2 = data.get_batch(3, 64, 16, seed=1)
    assert x.equal(x2) and y.equal(y2) and not x.equal(data.get_batch(4, 64, 16, seed=1)[0])
    is_text = (x < 65).all(1)
    assert 0 < is_text.sum() < 64  # both kinds of rows drawn
    for xi, yi, t in zip(x, y, is_text):
        if t:  # text: every target kept, the next character
            assert (yi[:-1] == xi[1:]).all()
            continue
        assert xi[0] >= 65 and xi[2] == v.sep  # starts at a timestep: obs, obs, '|', action
        kept = yi != IGNORE
        assert ((yi[kept] >= 65) & (yi[kept] < 69)).all()  # targets: action tokens only
        assert (x[0].new_tensor([False, False, True, False] * 4)[: len(yi)] == kept).all()


def test_the_core_and_the_gato_task_module_import_no_environment_package():
    """gymnasium (the agents extra) is imported when an environment is made, never with the package."""
    import subprocess
    import sys

    code = ("import sys, axon.tasks, axon.agents.gato.data, axon.agents.gato.policy; "
            "print(sorted(m for m in ('gymnasium', 'pygame') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Chase and the worlds of World Models as gymnasium environments (axon.agents.worldmodels.gym_env):
gymnasium's own checker passes, seeding makes episodes repeat, and the real environment seen
through V and M and the dream share their spaces, so one agent runs in both."""

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from axon.agents.worldmodels.gym_env import ChaseEnv, DreamEnv, LatentEnv  # noqa: E402
from axon.config import build_model_config  # noqa: E402
from axon.models import build_model  # noqa: E402


def test_chase_passes_gymnasiums_checker_and_repeats_under_a_seed():
    env = ChaseEnv(horizon=8)
    check_env(env, skip_render_check=True)

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        frames, rewards = [obs], []
        truncated = False
        while not truncated:
            obs, r, terminated, truncated, _ = env.step(np.array([0.5], dtype=np.float32))
            frames.append(obs)
            rewards.append(r)
        return np.stack(frames), rewards

    a, b = episode(3), episode(3)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and len(a[1]) == 8
    assert not np.array_equal(episode(4)[0], a[0])


def test_the_real_world_through_v_and_m_and_the_dream_share_an_interface():
    torch.manual_seed(0)
    vae = build_model(build_model_config({"family": "wm_vae", "preset": "tiny"})).eval()
    mdn = build_model(build_model_config({"family": "wm_mdnrnn", "preset": "tiny", "z_dim": 8})).eval()
    real = LatentEnv(vae, mdn, horizon=5)
    dream = DreamEnv(mdn, torch.randn(4, 8), horizon=5)
    assert real.observation_space == dream.observation_space and real.action_space == dream.action_space
    for env in (real, dream):
        check_env(env, skip_render_check=True)
        obs, _ = env.reset(seed=1)
        assert obs.shape == (8 + 32,) and np.all(obs[8:] == 0)  # h starts at zero
        obs, r, _, _, _ = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(r)

"""mpe2's simple_spread behind the mappo environments' interface, and a run on it."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mpe2")

from axon.agents.marl.envs import SimpleSpread  # noqa: E402
from axon.config import load_config  # noqa: E402
from axon.train.run import train  # noqa: E402


def test_simple_spread_is_seeded_and_gives_the_team_the_mean_reward():
    env = SimpleSpread(2, n_agents=3, horizon=5)
    obs = env.reset([(7, 0, e) for e in range(2)])
    assert obs.shape == (2, 3, env.obs_dim) and env.obs_dim == 18 + 1 and obs[0, 0, -1] == 0
    again = SimpleSpread(2, n_agents=3, horizon=5).reset([(7, 0, e) for e in range(2)])
    assert np.array_equal(obs, again) and not np.array_equal(obs[0], obs[1])
    actions = np.array([[1, 2, 3], [4, 0, 1]])
    o, r = env.step(actions)
    raw = env.envs[0]  # the same step by hand on a fresh copy: the team reward is the agents' mean
    twin = SimpleSpread(1, n_agents=3, horizon=5)
    twin.reset([(7, 0, 0)])
    _, rewards, *_ = twin.envs[0].step({a: int(actions[0, i]) for i, a in enumerate(twin.names)})
    assert r[0] == pytest.approx(np.mean(list(rewards.values()))) and raw is not twin.envs[0]
    for _ in range(4):
        o, r = env.step(actions)
    assert o.shape == (2, 3, 19) and np.isfinite(r).all()  # the last step: pettingzoo returns no observation


def test_a_mappo_run_on_simple_spread_draws_a_gif(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(None, ["--task=mappo", "--model.family=marl", "--model.preset=tiny", "--mappo.env=simple_spread",
                             "--mappo.n_agents=3", "--mappo.horizon=25", "--mappo.envs=2", "--mappo.epochs=1",
                             "--mappo.eval_episodes=2", "--mappo.frames=1", "--train.batch_size=25",
                             "--train.max_steps=4", "--train.eval_interval=4", "--train.eval_batches=1",
                             f"--out_dir={tmp_path}", "--name=spread", "--log.progress=false", "--train.threads=1"])
    out = train(cfg)
    run = Path(out["run_dir"])
    assert cfg.model.obs_dim == 19 and (run / "rollout.gif").stat().st_size > 0 and out["val_return"] < 0

"""The mappo task and the marl family: the centralised critic reads every agent's observation (a
shape test, and changing agent j's observation moves the central V_i of every i but the local V_i
only for i = j), the cover grid's rules, GAE per agent against a hand computation, a rollout as a
pure function of the weights and its index, MAPPO beating the random policy on a tiny cooperative
task, exact resume (at a rollout boundary and in the middle of a rollout), the run's files, and
one-line refusals. Needs no optional package (cover is numpy); simple_spread: test_marl_spread.py.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from axon.agents.marl.envs import ENVS, CoverGrid
from axon.cli import main
from axon.config import MAPPO_ENVS, load_config
from axon.errors import ConfigError
from axon.model_configs.marl import PRESETS, MARLConfig
from axon.models import build_model
from axon.models.marl import ROLLOUT_STATS, MultiAgentActorCritic
from axon.tasks import build_task
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import train

CPU = torch.device("cpu")
QUIET = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0"]
# a tiny task: 2 agents, 2 landmarks on a 4x4 grid, 8 steps; 8 episodes a rollout, minibatches of 16 steps
TINY = ["--task=mappo", "--model.family=marl", "--model.preset=tiny", "--mappo.n_agents=2", "--mappo.size=4",
        "--mappo.horizon=8", "--mappo.envs=8", "--mappo.epochs=2", "--mappo.eval_episodes=16", "--mappo.frames=1",
        "--train.batch_size=16", "--optim.name=adam", "--optim.lr=3e-3", "--optim.weight_decay=0",
        "--schedule.name=constant", "--schedule.warmup_steps=0", "--train.eval_batches=1", *QUIET]


def config(root, name, *extra):
    return load_config(None, [*TINY, f"--out_dir={root}", f"--name={name}", *extra])


def records(run):
    return [r for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r]


def model_for(critic="central", share_actor=True, n_agents=3, obs_dim=5):
    return MultiAgentActorCritic(MARLConfig(obs_dim=obs_dim, n_agents=n_agents, n_actions=5, n_embd=16, n_layer=2,
                                            critic=critic, share_actor=share_actor))


# ----------------------------------------------------------------------------------------------
# The family


def test_the_central_critic_reads_every_agents_observation_and_the_local_only_its_own():
    B, N, D = 4, 3, 5
    obs = torch.randn(B, N, D)
    central, local = model_for("central"), model_for("local")
    assert central.critic_inputs(obs).shape == (B, N, N * D + N)  # every observation, then i's id
    assert local.critic_inputs(obs).shape == (B, N, D + N)
    assert central.critic[0].in_features == N * D + N and local.critic[0].in_features == D + N
    logits, values = central(obs)
    assert logits.shape == (B, N, 5) and values.shape == (B, N)
    moved = obs.clone()
    moved[:, 1] += 1.0  # agent j = 1 sees something else
    for model in (central, local):
        dv = (model.values(moved) - model.values(obs)).abs()  # (B, N)
        if model is central:
            assert (dv > 1e-6).all()  # V_i moves for every i
        else:
            assert (dv[:, 1] > 1e-6).all() and (dv[:, [0, 2]] == 0).all()  # only V_1


def test_the_shared_actor_tells_agents_apart_by_their_id_and_separate_actors_read_their_own_obs():
    obs = torch.randn(2, 1, 5).expand(2, 3, 5)  # every agent sees the same thing
    shared = model_for("central", True)
    with torch.no_grad():
        shared.actor[-1].weight.normal_()  # the 0.01 gain makes the first policy near-uniform
        logits = shared.logits(obs)
    assert not torch.allclose(logits[:, 0], logits[:, 1])  # the one-hot id differs
    apart = model_for("local", False)
    assert len(apart.actors) == 3 and apart.actors[0][0].in_features == 5
    moved = torch.randn(2, 3, 5)
    changed = moved.clone()
    changed[:, 2] += 1.0
    d = (apart.logits(changed) - apart.logits(moved)).abs().sum(-1)
    assert (d[:, 2] > 0).all() and (d[:, :2] == 0).all()


def test_presets_have_the_parameter_counts_they_state():
    for name, preset in PRESETS.items():  # stated for cover, 2 agents, view 1: obs_dim 2 + 6 + 3 + 1 = 12
        model = MultiAgentActorCritic(MARLConfig(obs_dim=12, n_agents=2, n_actions=5, **preset["config"]))
        n = sum(p.numel() for p in model.parameters())
        assert preset["params"].startswith(f"{n:,}"), (name, n)


def test_the_rollout_buffers_take_a_checkpoints_shapes():
    a, b = model_for(), model_for()
    a.rollout.store(index=torch.tensor(3), obs=torch.randn(8, 3, 5), actions=torch.zeros(8, 3, dtype=torch.long))
    b.load_state_dict(a.state_dict())
    assert b.rollout.held == 3 and torch.equal(b.rollout.obs, a.rollout.obs) and b.rollout.actions.dtype == torch.long


# ----------------------------------------------------------------------------------------------
# The environment


def test_cover_is_seeded_moves_within_the_grid_and_pays_zero_when_every_landmark_is_covered():
    assert ENVS == MAPPO_ENVS
    env = CoverGrid(3, n_agents=2, size=4, horizon=5)
    first = env.reset([(1, 0, e) for e in range(3)])
    again = CoverGrid(3, n_agents=2, size=4, horizon=5).reset([(1, 0, e) for e in range(3)])
    assert np.array_equal(first, again) and first.shape == (3, 2, env.obs_dim) and env.obs_dim == 2 + 6 + 3 + 1
    assert not np.array_equal(first[0], first[1])  # each copy from its own seed
    env.pos[0] = [[0, 0], [3, 3]]
    env.step(np.array([[1, 4], [0, 0], [0, 0]]))  # up from row 0 and right from column 3: both stay
    assert env.pos[0].tolist() == [[0, 0], [3, 3]]
    env.step(np.array([[2, 3], [0, 0], [0, 0]]))  # down, left
    assert env.pos[0].tolist() == [[1, 0], [3, 2]]
    env.marks[0] = [[3, 2], [0, 0]]  # landmark 0 under agent 1; landmark 1 one step from agent 0
    assert env.reward()[0] == pytest.approx(-(0 + 1) / 2 / 4)
    env.marks[0] = [[3, 2], [1, 0]]
    obs, reward = env.step(np.array([[0, 0], [0, 0], [0, 0]]))
    assert reward[0] == 0.0 and obs[0, 0, -1] == pytest.approx(3 / 5)  # the time t / horizon comes last


def test_cover_hides_what_lies_outside_the_view():
    env = CoverGrid(1, n_agents=2, size=5, horizon=4, view=1)
    env.reset([0])
    env.pos[0], env.marks[0] = [[0, 0], [4, 4]], [[1, 1], [4, 3]]
    o = env.observe()[0, 0]  # agent 0 at (0, 0): own (2), landmarks 2 x (dy, dx, seen), agent 1 (dy, dx, seen), t
    assert o[:2].tolist() == [0, 0]
    assert o[2:5].tolist() == pytest.approx([0.2, 0.2, 1.0])  # landmark 0 is next to it
    assert o[5:8].tolist() == [0, 0, 0] and o[8:11].tolist() == [0, 0, 0]  # landmark 1 and agent 1 are not


# ----------------------------------------------------------------------------------------------
# Rollouts and GAE


def test_a_rollout_stores_gae_of_the_team_reward_for_every_agent(tmp_path):
    cfg = config(tmp_path, "gae", "--mappo.whiten_advantages=false", "--mappo.gamma=0.9", "--mappo.lam=0.8")
    task = build_task(cfg, CPU)
    model = build_model(cfg.model)
    task.objective.rollout(model, 0)
    st = model.rollout
    E, H, N = cfg.mappo.envs, cfg.mappo.horizon, cfg.mappo.n_agents
    assert st.obs.shape == (E * H, N, cfg.model.obs_dim) and st.actions.shape == (E * H, N)
    # redo episode e's rewards by hand, from the stored observations: replay the actions in the env
    env = CoverGrid(E, N, cfg.mappo.size, H)
    env.reset([(cfg.train.seed, 0, e) for e in range(E)])
    actions = st.actions.view(E, H, N).numpy()
    rewards = np.stack([env.step(actions[:, t])[1] for t in range(H)], 1)  # (E, H)
    values = st.values.view(E, H, N).double().numpy()
    e, i = 3, 1
    adv, ret = np.zeros(H), np.zeros(H)
    next_v, next_a = 0.0, 0.0  # after the last step: the episode ends
    for t in reversed(range(H)):
        delta = rewards[e, t] + 0.9 * next_v - values[e, t, i]
        next_a = delta + 0.9 * 0.8 * next_a
        adv[t], ret[t], next_v = next_a, next_a + values[e, t, i], values[e, t, i]
    assert st.advantages.view(E, H, N)[e, :, i].double().numpy() == pytest.approx(adv, abs=1e-5)
    assert st.returns.view(E, H, N)[e, :, i].double().numpy() == pytest.approx(ret, abs=1e-5)
    stats = dict(zip(ROLLOUT_STATS, st.stats.tolist()))
    assert stats["episode_return"] == pytest.approx(rewards.sum(1).mean(), abs=1e-5)
    assert stats["env_steps"] == E * H


def test_the_rollout_is_a_pure_function_of_the_weights_and_its_index(tmp_path):
    cfg = config(tmp_path, "pure")
    task = build_task(cfg, CPU)
    model = build_model(cfg.model)
    task.objective.rollout(model, 5)
    first = {k: v.clone() for k, v in model.rollout.state_dict().items()}
    task.objective.rollout(model, 2)
    assert not torch.equal(model.rollout.obs, first["obs"])  # another index: other episodes
    torch.manual_seed(123)  # the global generator plays no part
    build_task(config(tmp_path, "pure"), CPU).objective.rollout(model, 5)
    assert all(torch.equal(v, first[k]) for k, v in model.rollout.state_dict().items())


# ----------------------------------------------------------------------------------------------
# Runs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("mappo")


def test_mappo_beats_the_random_policy_and_writes_its_figures(root):
    # 8 steps a rollout (2 epochs x 64 / 16), 80 rollouts = 5,120 environment steps: a few seconds
    out = train(config(root, "learn", "--train.max_steps=640", "--train.eval_interval=320",
                       "--train.checkpoint_interval=640", "--train.log_interval=8"))
    run = Path(out["run_dir"])
    # the random policy's return on the 16 validation episodes is -3.39; the trained one's is
    # measured on the same episodes (same starts), so the gap is the policy's: -2.34 and -2.13 at
    # train.seed 1337 and 1 (an episode covering both landmarks from the start scores 0)
    assert out["val_random_return"] < -2.5
    assert out["val_return"] > out["val_random_return"] + 0.6, out
    rows = records(run)
    assert rows[-1]["env_steps"] == 80 * 64 and rows[-1]["episode_return"] > rows[0]["episode_return"]
    for name in ("rollout.gif", "rollout.png", "returns.png"):
        assert (run / name).stat().st_size > 0, name
    from PIL import Image

    with Image.open(run / "rollout.gif") as gif:
        assert gif.n_frames == 8 + 1  # the start and each of the 8 steps of the one episode drawn


@pytest.mark.parametrize("keep", ["boundary", "mid-rollout"])
def test_a_resumed_run_gives_the_same_losses_bit_for_bit(root, keep):
    # 8 steps per rollout, a checkpoint every 4: step 8 opens rollout 1, step 12 is in its middle
    name = f"resume-{keep}"
    cfg = config(root, name, "--train.max_steps=24", "--train.checkpoint_interval=4", "--train.keep_checkpoints=10",
                 "--train.log_interval=1", "--train.eval_interval=1000")
    run = Path(train(cfg)["run_dir"])
    copy = root / f"{name}-copy"
    shutil.copytree(run, copy)
    for c in list_checkpoints(copy / "checkpoints"):
        if int(c.name.split("_")[1]) > (8 if keep == "boundary" else 12):
            shutil.rmtree(c)
    resumed = train(resume=copy)
    losses = lambda r: [(x["step"], x["train_loss"], x["episode_return"]) for x in records(r)]  # noqa: E731
    assert resumed["step"] == 24 and len(losses(run)) == 24
    assert losses(copy) == losses(run)
    assert resumed["val_loss"] == json.loads((run / "result.json").read_text())["val_loss"]


def test_independent_ppo_and_separate_actors_train_from_the_command_line(root, capsys):
    code = main(["train", "--config", "configs/agents/marl_cover.yaml", *TINY[1:], f"--out_dir={root}", "--name=ippo",
                 "--model.critic=local", "--model.share_actor=false", "--train.max_steps=16",
                 "--train.eval_interval=16", "--train.checkpoint_interval=16", "--train.log_interval=8"])
    assert code == 0
    saved = load_config(root / "ippo" / "config.yaml")
    assert saved.model.critic == "local" and saved.model.obs_dim == 12 and saved.model.n_agents == 2
    capsys.readouterr()
    assert main(["eval", str(root / "ippo"), "--split", "train"]) == 0  # the validation episodes again
    assert "return" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("flags, message", [
    (["--mappo.envs=3"], r"mappo.envs: a rollout of 3 x 8 = 24 environment steps does not split into minibatches"),
    (["--model.obs_dim=7"], r"model.obs_dim: 7, but the cover environment has 12"),
    (["--model.n_agents=3"], r"model.n_agents: 3, but the cover environment has 2"),
    (["--train.init_from=somewhere"], r"train.init_from: mappo trains from scratch"),
])
def test_bad_settings_are_refused_in_one_line(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=message) as e:
        build_task(config(tmp_path, "bad", *flags), CPU)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("flags, message", [
    (["--mappo.env=starcraft"], "mappo.env: unknown environment 'starcraft'; choose one of: cover, simple_spread"),
    (["--mappo.size=2", "--mappo.n_agents=3"], "mappo.size: a 2x2 grid has no room for 3 agents"),
    (["--model.n_agents=1"], "model.n_agents: must be >= 2"),
    (["--model.critic=global"], "model.critic"),
])
def test_bad_configs_are_refused_in_one_line(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=message) as e:
        config(tmp_path, "bad", *flags)
    assert "\n" not in str(e.value)


def test_the_cli_refuses_a_decoder_for_mappo_with_exit_status_2(tmp_path, capsys):
    code = main(["train", "--task=mappo", "--model.preset=tiny", f"--out_dir={tmp_path}", *QUIET])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "model.family=marl" in err[0]


def test_the_comparison_script_draws_every_run_and_tabulates_their_returns(tmp_path):
    import os
    import subprocess
    import sys

    for critic in ("central", "local"):
        train(config(tmp_path, f"cover-{critic}-s1", f"--model.critic={critic}", "--train.max_steps=16",
                     "--train.eval_interval=8", "--train.checkpoint_interval=16", "--train.log_interval=8"))
    out = tmp_path / "cmp.png"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "marl_compare.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    p = subprocess.run([sys.executable, str(script), *map(str, sorted(tmp_path.glob("cover-*"))), "--out", str(out)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| cover-")]
    assert [r.split(" | ")[1] for r in rows] == ["central", "local"] and out.stat().st_size > 10000
    result = json.loads((tmp_path / "cover-local-s1" / "result.json").read_text())
    assert f"{result['val_return']:.3f}" in rows[1]

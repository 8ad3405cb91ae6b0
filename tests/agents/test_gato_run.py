"""The gato task end to end: the generalist overfits a few expert episodes and reproduces their
actions, a run resumes exactly (evaluation returns included), and bad settings end in one line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from axon.agents.gato.data import collect, load_episodes  # noqa: E402
from axon.agents.gato.policy import greedy_actions, rollout  # noqa: E402
from axon.agents.gato.tokens import Vocab  # noqa: E402
from axon.cli import main  # noqa: E402
from axon.config import load_config  # noqa: E402
from axon.errors import ConfigError  # noqa: E402
from axon.train.checkpoint import list_checkpoints  # noqa: E402
from axon.train.logging import read_metrics  # noqa: E402
from axon.train.run import load_run, train  # noqa: E402

CONFIG = "configs/agents/gato_generalist.yaml"
SMALL = ["--model.block_size=64", "--model.n_layer=2", "--model.n_embd=64", "--gato.envs=[gridmaze, cartpole]",
         "--gato.episodes=2", "--gato.val_episodes=6", "--train.threads=1", "--train.sample_tokens=0",
         "--train.eval_batches=1"]


def test_the_generalist_overfits_a_few_episodes_and_reproduces_their_actions(tmp_path):
    """Two maze and two CartPole expert episodes, 300 steps: the greedy action at every timestep
    of every training episode (teacher-forced on its own history) is the expert's, and acting in
    the env from a training episode's seed replays it (same actions, the expert's return)."""
    out = train(load_config(CONFIG, [*SMALL, f"--out_dir={tmp_path}", "--name=overfit", "--gato.text_share=0",
                                     "--gato.eval_episodes=0", "--train.max_steps=300", "--optim.lr=3e-3",
                                     "--train.eval_interval=1000", "--train.checkpoint_interval=1000"]))
    run = Path(out["run_dir"])
    saved = load_episodes(run / "episodes.npz")  # the dataset file of the run: what was trained on
    assert sorted(saved) == ["cartpole", "gridmaze"] and all(len(e) == 2 for e in saved.values())
    again = collect(["gridmaze", "cartpole"], 2, 0, "train")  # seeded: collected again, the same
    assert all(np.array_equal(a.obs, b.obs) for n in saved for a, b in zip(saved[n], again[n]))
    cfg, model, _ = load_run(run, "cpu")
    vocab = Vocab(cfg.model.vocab_size - 1025)
    for name, episodes in saved.items():
        for ep in episodes:
            assert np.array_equal(greedy_actions(model, vocab, name, ep, 64), ep.actions), name
    # before training, the same check fails (the planted behaviour is learnt, not given)
    from axon.models import build_model

    fresh = build_model(cfg.model)
    assert not all(np.array_equal(greedy_actions(fresh, vocab, n, e, 64), e.actions) for n in saved for e in saved[n])
    # closed loop, laid out as in training (episode 0, then episode 1): prompted with episode 0 and
    # started from episode 1's env seed, the policy acts in the env and replays the expert
    from axon.agents.gato.data import SPECS_ORDER, episode_seed

    for name in saved:
        ep = saved[name][1]
        returns, _, actions = rollout(model, vocab, name, saved[name][0], 1, 64,
                                      seed=episode_seed(0, SPECS_ORDER[name], 1, "train"))
        assert actions == ep.actions.tolist() and returns[0] == pytest.approx(ep.ret), name


def losses(run):
    return [(r["step"], r["train_loss"]) for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r]


def evals(run):
    return [{k: v for k, v in r.items() if k.startswith("val_return") or k.startswith("val_act")}
            for r in read_metrics(Path(run) / "metrics.jsonl") if "val_loss" in r]


def test_exact_resume_with_returns_plot_and_rollout_gifs(tmp_path, capsys):
    args = [*SMALL, f"--out_dir={tmp_path}", "--name=ref", "--train.max_steps=8", "--train.checkpoint_interval=4",
            "--train.eval_interval=4", "--train.log_interval=1", "--gato.eval_episodes=2", "--gato.gif_frames=6"]
    ref = train(load_config(CONFIG, args))
    ref_dir = Path(ref["run_dir"])
    for name in ("returns.png", "rollout_cartpole.gif", "rollout_gridmaze.png", "episodes.npz", "baselines.json"):
        assert (ref_dir / name).is_file(), name
    base = json.loads((ref_dir / "baselines.json").read_text())
    assert base["cartpole"]["expert"] == 200.0 and base["cartpole"]["random"] < 50
    assert len(evals(ref_dir)) == 2 and "val_return_cartpole" in evals(ref_dir)[0]
    run = tmp_path / "resumed"
    shutil.copytree(ref_dir, run)
    for ckpt in list_checkpoints(run / "checkpoints"):
        if int(ckpt.name.split("_")[1]) > 4:
            shutil.rmtree(ckpt)
    resumed = train(resume=run)
    assert resumed["step"] == 8
    assert losses(run) == losses(ref_dir) and len(losses(run)) == 8
    assert evals(run) == evals(ref_dir)
    from axon.agents.gato.compare import main as compare

    assert compare([str(ref_dir), str(run), "--plot", str(tmp_path / "cmp.png")]) == 0
    table = capsys.readouterr().out
    assert "| cartpole | 2" in table and (tmp_path / "cmp.png").is_file()  # random ~20, expert 200


def test_bad_settings_end_in_one_line(tmp_path, capsys):
    common = ["train", "--config", CONFIG, f"--out_dir={tmp_path}", "--train.max_steps=1"]
    assert main([*common, "--gato.envs=[pong]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "gato.envs: unknown environment 'pong'" in err and len(err.splitlines()) == 1
    assert main([*common, "--gato.envs=[gridmaze]", "--gato.episodes=1", "--gato.val_episodes=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "gato.episodes: the gridmaze episodes hold" in err and len(err.splitlines()) == 1
    assert main(["train", "--task=gato", "--model.family=rnn", f"--out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not do 'gato'" in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="gato.text_share"):
        load_config(CONFIG, ["--gato.text_share=1.5"])
    assert not any(tmp_path.iterdir())  # refused before anything was written

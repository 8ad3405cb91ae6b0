"""World Models on gymnasium's CarRacing-v3 (axon.agents.worldmodels.carracing; skipped without
Box2D): the batched adapter's shapes, its action map and area-averaged frames, and that it is a
pure function of its seed and actions; tiny V -> M -> C runs on CarRacing through the CLI; a bad
``world_model.env`` and a mismatched action size end in one line."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("Box2D")

from axon.agents.worldmodels.carracing import CarRacing, collect, downsample, to_env_action  # noqa: E402
from axon.cli import main  # noqa: E402
from axon.train.logging import read_metrics  # noqa: E402

COMMON = ["--log.progress=false", "--train.threads=1", "--train.log_interval=1", "--train.sample_tokens=0"]
WORLD = ["--world_model.env=carracing", "--world_model.frame_size=32", "--world_model.episodes=3",
         "--world_model.val_episodes=1", "--world_model.horizon=12"]


def test_the_action_map_is_the_papers():
    a = np.array([[-1.0, -1.0, -1.0], [0.5, 0.0, 0.5], [1.0, 1.0, 1.0], [3.0, 0.2, -0.3]])
    want = np.array([[-1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [1.0, 0.6, 0.0]], dtype=np.float32)
    assert np.allclose(to_env_action(a), want)


def test_frames_are_area_averaged():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    by_hand = frames.reshape(2, 32, 3, 32, 3, 3).astype(np.float64).mean((2, 4))  # 3 x 3 blocks
    got = downsample(frames, 32)
    assert got.shape == (2, 32, 32, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(np.float64) - by_hand).max() <= 0.5 + 1e-6
    assert downsample(frames, 64).shape == (2, 64, 64, 3)


def test_the_adapter_is_a_pure_function_of_seed_and_actions():
    acts = np.random.default_rng(1).uniform(-1, 1, (6, 2, 3))
    rollouts = []
    for _ in range(2):
        env = CarRacing(2, 32, horizon=6)
        frames, rewards, dones = [env.reset(7)], [], []
        for t in range(6):
            f, r, done = env.step(acts[t])
            frames.append(f)
            rewards.append(r)
            dones.append(done)
        rollouts.append((np.stack(frames), np.stack(rewards)))
        assert dones == [False] * 5 + [True]
    (fa, ra), (fb, rb) = rollouts
    assert fa.shape == (7, 2, 32, 32, 3) and fa.dtype == np.uint8 and ra.shape == (6, 2) and ra.dtype == np.float32
    assert np.array_equal(fa, fb) and np.array_equal(ra, rb)
    assert not np.array_equal(fa[0, 0], fa[0, 1])  # two tracks from one seed, not one track twice
    assert not np.array_equal(fa[1:], fa[:-1])  # the car moves
    assert not np.array_equal(CarRacing(2, 32, 6).reset(8), fa[0])
    assert fa[0, :, :, :, 1].mean() > fa[0, :, :, :, 0].mean()  # grass: green dominates the first frame


def test_random_rollouts_are_seeded():
    a, b = collect(2, 32, 5, seed=3), collect(2, 32, 5, seed=3)
    assert a["frames"].shape == (2, 6, 32, 32, 3) and a["actions"].shape == (2, 5, 3) and a["rewards"].shape == (2, 5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.abs(a["actions"]).max() <= 1 and not np.array_equal(a["frames"], collect(2, 32, 5, seed=4)["frames"])


def test_v_m_c_on_carracing_through_the_cli(tmp_path):
    out = [f"--out_dir={tmp_path}", *COMMON, *WORLD, "--model.preset=tiny"]
    assert main(["train", "--config", "configs/agents/wm_carracing_vae.yaml", *out, "--name=v",
                 "--model.frame_size=32", "--train.max_steps=4", "--train.eval_interval=4",
                 "--train.checkpoint_interval=4", "--train.batch_size=8", "--train.eval_batches=1"]) == 0
    assert main(["train", "--config", "configs/agents/wm_carracing_mdn.yaml", *out, "--name=m",
                 "--model.action_dim=3", "--model.block_size=8", f"--world_model.vae_run={tmp_path / 'v'}",
                 "--train.max_steps=4", "--train.eval_interval=4", "--train.checkpoint_interval=4",
                 "--train.batch_size=4", "--train.eval_batches=1"]) == 0
    assert main(["train", "--config", "configs/agents/wm_carracing_controller.yaml", *out, "--name=c",
                 "--model.action_dim=3", f"--world_model.mdn_run={tmp_path / 'm'}", "--world_model.rollouts=1",
                 "--world_model.eval_episodes=2", "--train.max_steps=3", "--train.eval_interval=3",
                 "--train.checkpoint_interval=3", "--train.batch_size=4"]) == 0
    with np.load(tmp_path / "v" / "rollouts.npz", allow_pickle=False) as f:
        assert f["frames"].shape == (3, 13, 32, 32, 3) and f["actions"].shape == (3, 12, 3)
        assert f["val_frames"].shape == (1, 13, 32, 32, 3)
    with np.load(tmp_path / "m" / "latents.npz", allow_pickle=False) as f:
        assert f["mu"].shape == (3, 13, 8)
    c = json.loads((tmp_path / "c" / "result.json").read_text())
    for key in ("val_real_return", "val_dream_return", "val_random_real_return", "val_random_dream_return"):
        assert np.isfinite(c[key]), (key, c[key])
    # CarRacing pays -0.1 a step plus ~3.3 per new tile: 12 steps give at least -1.2 (no car leaves the field)
    assert c["val_real_return"] >= -1.2 - 1e-4 and c["val_random_real_return"] >= -1.2 - 1e-4
    records = [r for r in read_metrics(tmp_path / "c" / "metrics.jsonl") if "return_mean" in r]
    assert [r["step"] for r in records] == [1, 2, 3] and all(r["real_env_steps"] == 0 for r in records)
    assert (tmp_path / "c" / "strip.png").is_file() and (tmp_path / "c" / "returns.png").is_file()
    assert (tmp_path / "v" / "strip.png").is_file()


def test_bad_env_settings_end_in_one_line(tmp_path, capsys):
    out = [f"--out_dir={tmp_path}", *COMMON, "--model.preset=tiny", "--train.max_steps=1"]
    cases = [
        (["--config", "configs/agents/wm_carracing_vae.yaml", "--name=bad1", "--world_model.env=doom"],
         "world_model.env"),
        (["--config", "configs/agents/wm_carracing_mdn.yaml", "--name=bad2", "--world_model.vae_run=/nonexistent"],
         "model.action_dim=1, but world_model.env=carracing has 3-dim actions"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["train", *args, *out]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not list(Path(tmp_path).glob("bad*/checkpoints"))


def test_the_carracing_presets_have_the_parameter_counts_they_state():
    from axon.model_configs.wm import CONTROLLER_PRESETS, MDNRNN_PRESETS, VAE_PRESETS, ControllerConfig, MDNRNNConfig, WMVAEConfig
    from axon.models.wm import ConvVAE, LinearController, MDNRNN

    for presets, config, model in ((VAE_PRESETS, WMVAEConfig, ConvVAE), (MDNRNN_PRESETS, MDNRNNConfig, MDNRNN),
                                   (CONTROLLER_PRESETS, ControllerConfig, LinearController)):
        p = presets["carracing"]
        m = model(config(**p["config"]))
        assert f"{sum(t.numel() for t in m.parameters()):,}" == p["params"]

"""World Models end to end through the CLI, at tiny sizes: a wm_vae run collects its rollouts
(rollouts.npz, no pickle) and trains V; a wm_mdn run encodes them with that V (latents.npz) and
trains M; a wm_controller run searches C by CMA-ES in M's dream and reports its returns in the
dream and the real environment beside a random policy's, with returns.png and a frame strip. The
M and C runs resume bit for bit from a checkpoint (C's whole CMA-ES state is in the model's
buffers); bad settings end in one line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from axon.cli import main
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics

COMMON = ["--log.progress=false", "--train.threads=1", "--train.log_interval=1", "--train.sample_tokens=0"]
WORLD = ["--world_model.episodes=12", "--world_model.val_episodes=3", "--world_model.horizon=24"]


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wm")
    out = [f"--out_dir={root}", *COMMON]
    assert main(["train", "--config", "configs/agents/wm_vae.yaml", *out, *WORLD, "--name=v", "--model.preset=tiny",
                 "--train.max_steps=20", "--train.eval_interval=10", "--train.checkpoint_interval=10",
                 "--train.batch_size=16", "--train.eval_batches=2"]) == 0
    assert main(["train", "--config", "configs/agents/wm_mdn.yaml", *out, *WORLD, "--name=m", "--model.preset=tiny",
                 f"--world_model.vae_run={root / 'v'}", "--train.max_steps=12", "--train.eval_interval=6",
                 "--train.checkpoint_interval=6", "--train.batch_size=8", "--train.eval_batches=2"]) == 0
    assert main(["train", "--config", "configs/agents/wm_controller.yaml", *out, *WORLD, "--name=c",
                 "--model.preset=tiny", f"--world_model.mdn_run={root / 'm'}", "--world_model.rollouts=2",
                 "--world_model.eval_episodes=4", "--train.max_steps=6", "--train.eval_interval=3",
                 "--train.checkpoint_interval=3", "--train.batch_size=8"]) == 0
    return root


def test_the_three_runs_write_what_they_promise(runs):
    with np.load(runs / "v" / "rollouts.npz", allow_pickle=False) as f:
        assert f["frames"].shape == (12, 25, 32, 32, 3) and f["frames"].dtype == np.uint8
        assert f["actions"].shape == f["rewards"].shape == (12, 24) and f["val_frames"].shape[0] == 3
    with np.load(runs / "m" / "latents.npz", allow_pickle=False) as f:
        assert f["mu"].shape == (12, 25, 8) and f["val_logvar"].shape == (3, 25, 8)
    assert (runs / "v" / "strip.png").is_file() and (runs / "c" / "strip.png").is_file()
    assert (runs / "c" / "returns.png").is_file()
    v = json.loads((runs / "v" / "result.json").read_text())
    assert v["val_recon_mse"] > 0 and v["val_mean_frame_mse"] > 0
    c = json.loads((runs / "c" / "result.json").read_text())
    for key in ("val_real_return", "val_dream_return", "val_random_real_return", "val_random_dream_return"):
        assert 0 <= c[key] <= 24, (key, c[key])  # rewards are in [0, 1] per step, 24 steps
    records = [r for r in read_metrics(runs / "c" / "metrics.jsonl") if "return_mean" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["return_best"] >= r["return_mean"] for r in records) and all(r["real_env_steps"] == 0 for r in records)
    weights = load_file(str(list_checkpoints(runs / "c" / "checkpoints")[0] / "model.safetensors"))
    assert int(weights["es.generation"]) == 6
    assert np.allclose(weights["weight"].double().flatten().numpy(), weights["es.mean"][:-1].numpy(), atol=1e-6)


@pytest.mark.parametrize("name", ["c", "m"])
def test_a_run_resumes_exactly(runs, name):
    copy = runs / f"{name}-resumed"
    shutil.copytree(runs / name, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    shutil.rmtree(newest)
    (copy / "result.json").unlink()
    assert main(["train", "--resume", str(copy), *COMMON]) == 0
    assert losses(copy) == losses(runs / name)
    a = json.loads((runs / name / "result.json").read_text())
    b = json.loads((copy / "result.json").read_text())
    assert a["val_loss"] == b["val_loss"]
    wa = load_file(str(list_checkpoints(runs / name / "checkpoints")[0] / "model.safetensors"))
    wb = load_file(str(list_checkpoints(copy / "checkpoints")[0] / "model.safetensors"))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def test_bad_settings_end_in_one_line(runs, capsys):
    out = [f"--out_dir={runs}", *COMMON, *WORLD, "--model.preset=tiny", "--train.max_steps=1"]
    cases = [
        (["--config", "configs/agents/wm_controller.yaml", "--name=bad1", "--world_model.mdn_run=/nonexistent"],
         "world_model.mdn_run: /nonexistent is not a run directory"),
        (["--config", "configs/agents/wm_controller.yaml", "--name=bad2", f"--world_model.mdn_run={runs / 'v'}"],
         "is not a wm_mdnrnn run"),
        (["--config", "configs/agents/wm_controller.yaml", "--name=bad3", f"--world_model.mdn_run={runs / 'm'}",
          "--train.grad_accum=2"], "train.grad_accum: one step is one CMA-ES generation"),
        (["--config", "configs/agents/wm_mdn.yaml", "--name=bad4", "--world_model.temperature=0"],
         "world_model.temperature: must be > 0"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["train", *args, *out]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err

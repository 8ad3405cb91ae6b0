"""The diffusion task end to end at tiny size: batches a pure function of (seed, step, micro_step);
a tiny MLP denoiser learns a 2-D Gaussian mixture (its samples' sliced Wasserstein distance to
held-out points falls far below an untrained one's); a tiny conditional U-Net on the digits run
writes its sample grids, quality figures and quality.png, `axon eval` gives the same figures, and
`axon sample` writes a class's grid, the raw tensor and a denoising strip; a run killed after a
checkpoint and resumed logs the same losses and ends with the same weights and EMA; guidance at
scale 1 is the conditional prediction; bad input ends in one line."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from axon.cli import main
from axon.config import load_config
from axon.diffusion import importance_probs
from axon.errors import ConfigError
from axon.tasks import build_task
from axon.tasks.diffusion import NoisedExamples, denoiser, draw_samples
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

QUIET = ["--log.progress=false", "--train.threads=1"]
POINTS = ["--model.family=mlp_denoiser", "--model.preset=tiny", "--model.n_embd=64", "--diffusion.data=gaussians",
          "--diffusion.points=2000", "--diffusion.timesteps=100", "--diffusion.sample_steps=20",
          "--diffusion.eval_samples=500", "--diffusion.bpd_examples=16", "--optim.name=adamw", "--optim.lr=3e-3",
          "--schedule.warmup_steps=10", "--train.batch_size=128", "--train.eval_interval=100", *QUIET]
DIGITS = ["--model.family=unet", "--model.preset=tiny", "--model.num_classes=10", "--model.ema_decay=0.99",
          "--diffusion.data=digits", "--diffusion.timesteps=50", "--diffusion.sample_steps=5",
          "--diffusion.eval_samples=40", "--diffusion.bpd_examples=4", "--diffusion.guidance=2",
          "--optim.name=adamw", "--optim.lr=2e-3", "--train.batch_size=16", "--train.eval_interval=5",
          "--train.checkpoint_interval=5", "--train.log_interval=1", *QUIET]


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("diffusion")


@pytest.fixture(scope="module")
def digits_run(root, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "digits-classifier-cache"  # the session's one classifier (eval tests)
    assert main(["train", *DIGITS, "--train.max_steps=10", f"--data.cache_dir={cache}", f"--out_dir={root}",
                 "--name=digits"]) == 0
    return root / "digits"


def test_batches_are_a_pure_function_of_seed_step_and_micro_step():
    x, y = torch.randn(50, 1, 8, 8), torch.arange(50) % 10
    data = NoisedExamples(x, y, timesteps=100, null=10, cond_drop=0.5)
    a, b = data.get_batch(3, 16, 1, seed=7, micro_step=1), data.get_batch(3, 16, 1, seed=7, micro_step=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = data.get_batch(3, 16, 1, seed=7, micro_step=0)
    assert not torch.equal(a[3], c[3])
    x0, yb, t, noise, u = a
    assert x0.shape == noise.shape == (16, 1, 8, 8) and t.min() >= 0 and t.max() < 100
    assert u.shape == (16,) and u.dtype == torch.float64 and 0 <= u.min() and u.max() < 1
    assert ((yb == 10) | (yb == y[[int((x == r).all(dim=(1, 2, 3)).nonzero()[0]) for r in x0]])).all()
    assert (yb == 10).any() and (yb != 10).any()  # half the classes dropped to the null class, here both kinds
    val = list(NoisedExamples(x, y, 100, 10, 0.0).iter_eval_batches(16, 1))
    assert sum(len(b[0]) for b in val) == 50 and not any((b[1] == 10).any() for b in val)  # no dropping in eval
    again = list(NoisedExamples(x, y, 100, 10, 0.0).iter_eval_batches(16, 1))
    assert all(torch.equal(u, v) for b1, b2 in zip(val, again) for u, v in zip(b1, b2))


def test_a_tiny_denoiser_learns_a_gaussian_mixture(root):
    cache = root / "cache"
    run = train(load_config(None, [*POINTS, "--train.max_steps=300", f"--data.cache_dir={cache}",
                                   f"--out_dir={root}", "--name=points"]))
    cfg, _, _ = load_run(run["run_dir"], "cpu")
    task = build_task(cfg, torch.device("cpu"))
    untrained = train(load_config(None, [*POINTS, "--train.max_steps=1", "--optim.lr=1e-12",
                                         f"--data.cache_dir={cache}", f"--out_dir={root}", "--name=points0"]))
    # Measured: sliced Wasserstein ~0.04 after 300 steps, ~0.75 untrained (the start's samples spread wide).
    assert run["val_sliced_wasserstein"] < 0.35 * untrained["val_sliced_wasserstein"], (run, untrained)
    assert run["val_mmd"] < untrained["val_mmd"]
    assert run["val_loss"] < untrained["val_loss"]
    assert run["val_bits_per_dim"] < untrained["val_bits_per_dim"]  # the bound of a density: any sign
    assert (Path(run["run_dir"]) / "samples" / "step_0000300.png").stat().st_size > 5000
    assert (Path(run["run_dir"]) / "quality.png").stat().st_size > 5000
    assert task.eval_fn is not None


def test_a_digits_run_writes_its_grids_figures_and_plot(digits_run, capsys):
    result = json.loads((digits_run / "result.json").read_text())
    for key in ("val_frechet_distance", "val_frechet_lo", "val_frechet_hi", "val_accuracy",
                "val_entropy_of_mean_prediction", "val_bits_per_dim"):
        assert key in result and result[key] == result[key], key  # present, not NaN
    assert result["val_n_gen"] == 40 and result["val_frechet_lo"] <= result["val_frechet_hi"]
    assert result["val_bits_per_dim"] > 0  # discrete data: a probability, so positive bits
    records = read_metrics(digits_run / "metrics.jsonl")
    assert [r["step"] for r in records if "val_frechet_distance" in r] == [5, 10]  # each evaluation, the final one
    assert sorted(p.name for p in (digits_run / "samples").iterdir()) == ["step_0000005.png", "step_0000010.png"]
    assert (digits_run / "quality.png").stat().st_size > 5000
    assert main(["eval", str(digits_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("frechet_distance", "accuracy", "bits_per_dim"):  # the same figures, the same draws
        assert out[key] == pytest.approx(result[f"val_{key}"], rel=1e-6), key


def test_axon_sample_writes_a_class_grid_the_tensor_and_a_strip(digits_run, tmp_path, capsys):
    out = tmp_path / "sevens.png"
    assert main(["sample", str(digits_run), "--num-samples", "6", "--class", "7", "--steps", "4", "--guidance", "3",
                 "--out", str(out), "--strip", str(tmp_path / "strip.png"), "--no-stream"]) == 0
    assert "guidance 3" in capsys.readouterr().out
    raw = load_file(str(tmp_path / "sevens.safetensors"))
    assert raw["samples"].shape == (6, 1, 8, 8) and raw["classes"].tolist() == [7] * 6
    assert raw["samples"].abs().max() <= 1.0  # x0 clipped to the data's range
    assert out.stat().st_size > 200 and (tmp_path / "strip.png").stat().st_size > 200
    again = tmp_path / "again.png"
    assert main(["sample", str(digits_run), "--num-samples", "6", "--class", "7", "--steps", "4", "--guidance", "3",
                 "--out", str(again), "--no-stream"]) == 0
    assert torch.equal(load_file(str(tmp_path / "again.safetensors"))["samples"], raw["samples"])  # seeded
    for bad, message in ((["--class", "10"], "--class: must be in [0, 10)"), (["--out", "x.jpg"], "--out:"),
                         (["--sampler", "ddpm", "--steps", "5"], "--steps: ddpm takes all")):
        args = ["sample", str(digits_run), "--out", str(tmp_path / "x.png"), *bad]
        assert main(args) != 0
        assert message in capsys.readouterr().err


def test_guidance_at_scale_one_is_the_conditional_prediction(digits_run):
    cfg, model, _ = load_run(digits_run, "cpu")
    model.eval()
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([3, 10, 20, 40]), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        cond = model(x, t, y)
        assert torch.allclose(denoiser(model, y, 1.0 + 1e-12, 10)(x, t), cond, atol=1e-5)  # the guided path
        assert torch.equal(denoiser(model, y, 1.0, 10)(x, t), cond)
        uncond = model(x, t, None)
        assert torch.allclose(denoiser(model, y, 0.0, 10)(x, t), uncond, atol=1e-5)
        assert not torch.allclose(cond, uncond)  # the classes matter
    a, _ = draw_samples(model, cfg, 4, classes=y, seed=1, guidance=1.0)
    b, _ = draw_samples(model, cfg, 4, classes=y, seed=1, guidance=1.0 + 1e-12)
    assert torch.allclose(a, b, atol=1e-4)


def test_a_killed_run_resumes_to_the_same_losses_weights_and_ema(root, digits_run):
    copy = root / "resume-copy"
    shutil.copytree(digits_run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000010"
    shutil.rmtree(newest)  # what a SIGKILL between the step-5 and step-10 checkpoints leaves
    for f in ("result.json",):
        (copy / f).unlink()
    resumed = train(resume=copy)
    assert resumed["step"] == 10 and losses(copy) == losses(digits_run)
    a = load_file(str(list_checkpoints(digits_run / "checkpoints")[0] / "model.safetensors"))
    b = load_file(str(list_checkpoints(copy / "checkpoints")[0] / "model.safetensors"))
    assert any(k.startswith("ema.shadow.") for k in a) and int(a["ema.steps"]) == 10
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_importance_sampled_learned_variances_resume_exactly(root):
    """Nichol & Dhariwal's L_vlb with learned variances and importance-sampled t: the loss history
    is the objective's state, carried by the checkpoints, so a killed run resumes to the same
    losses -- here steps drawn from a history that the checkpoint had to carry."""
    args = [*POINTS, "--model.learn_sigma=true", "--diffusion.variance=learned_range", "--diffusion.weighting=vlb",
            "--diffusion.timestep_sampling=importance", "--diffusion.timesteps=25", "--diffusion.eval_samples=100",
            "--train.batch_size=32", "--train.max_steps=30",
            "--train.checkpoint_interval=10", "--train.log_interval=1", f"--data.cache_dir={root / 'cache'}",
            f"--out_dir={root}"]
    run = train(load_config(None, [*args, "--name=importance"]))
    first = Path(run["run_dir"])
    assert math.isfinite(run["val_loss"]) and math.isfinite(run["val_bits_per_dim"])
    mid = load_file(str(first / "checkpoints" / "step_00000020" / "optimizer.safetensors"))
    end = load_file(str(first / "checkpoints" / "step_00000030" / "optimizer.safetensors"))
    assert mid["extra.history"].shape == (25, 10)
    # every t seen 10 times by step 20 (640 draws): steps 21-30 drew t from the history, not uniformly
    assert bool((mid["extra.counts"] == 10).all())
    probs = importance_probs(mid["extra.history"], mid["extra.counts"])
    assert probs.max() > 5 * probs.min()  # far from uniform: the bound's terms span orders of magnitude
    copy = root / "importance-copy"
    shutil.copytree(first, copy)
    shutil.rmtree(copy / "checkpoints" / "step_00000030")  # killed between the step-20 and step-30 checkpoints
    (copy / "result.json").unlink()
    assert train(resume=copy)["step"] == 30 and losses(copy) == losses(first)
    a = load_file(str(first / "checkpoints" / "step_00000030" / "model.safetensors"))
    b = load_file(str(copy / "checkpoints" / "step_00000030" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(str(copy / "checkpoints" / "step_00000030" / "optimizer.safetensors"))
    assert torch.equal(c["extra.history"], end["extra.history"]) and torch.equal(c["extra.counts"], end["extra.counts"])


def test_bad_inputs_end_in_one_line(root, tmp_path, capsys):
    folder = tmp_path / "imgs" / "cats"
    folder.mkdir(parents=True)
    (folder / "broken.png").write_bytes(b"not a png")
    cases = [
        (["--model.family=unet", "--model.preset=tiny", f"--diffusion.data={tmp_path / 'imgs'}"], "broken.png"),
        (["--model.family=unet", "--model.preset=tiny", "--diffusion.data=moons"], "mlp_denoiser"),
        (["--model.family=mlp_denoiser", "--model.preset=tiny", "--diffusion.data=digits"], "use model.family=unet"),
        (["--model.family=unet", "--model.preset=tiny", "--model.num_classes=3"], "the data has 10 classes"),
        (["--model.family=unet", "--model.preset=tiny", "--model.learn_sigma=true"], "model.learn_sigma"),
        (["--model.family=unet", "--model.preset=tiny", "--diffusion.variance=learned_range"],
         "set model.learn_sigma=true"),
        (["--model.family=unet", "--model.preset=tiny", "--diffusion.target=score"], "diffusion.target"),
        (["--model.family=unet", "--model.preset=tiny", f"--diffusion.data={tmp_path / 'nowhere'}"], "neither digits"),
    ]
    for args, message in cases:
        code = main(["train", *args, "--train.max_steps=1", *QUIET, f"--out_dir={tmp_path / 'runs'}"])
        err = capsys.readouterr().err
        assert code != 0 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    with pytest.raises(ConfigError, match="model.image_size"):
        build_task(load_config(None, ["--model.family=unet", "--model.preset=cifar10"]), torch.device("cpu"))


def test_importance_sampling_is_refused_under_several_processes(monkeypatch, root):
    cfg = load_config(None, [*POINTS, "--diffusion.timestep_sampling=importance", f"--data.cache_dir={root / 'cache'}"])
    assert build_task(cfg, torch.device("cpu")).objective.sampler is not None
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    with pytest.raises(ConfigError, match="one process's loss history"):
        build_task(cfg, torch.device("cpu"))


def test_the_same_weights_are_sampled_once_for_their_figures(monkeypatch, root, tmp_path):
    """A run's end asks for the figures twice (the final evaluation, then the result's metrics)."""
    import axon.tasks.diffusion as task_module
    from axon.models import build_model

    cfg = load_config(None, [*POINTS, "--diffusion.eval_samples=50", "--diffusion.bpd_examples=0",
                             f"--data.cache_dir={root / 'cache'}"])
    task = build_task(cfg, torch.device("cpu"))
    model = build_model(cfg.model)
    calls = []
    real = task_module.draw_samples
    monkeypatch.setattr(task_module, "draw_samples", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = task.eval_fn(model, 1, tmp_path)
    assert task.model_metrics(model, "val") == first and len(calls) == 1
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    assert task.model_metrics(model, "val") != first and len(calls) == 2

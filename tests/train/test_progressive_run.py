"""The progressive model in the trainer: growth mid-run, optimizer state kept across the rebuild,
exact resume from checkpoints before, at and after a growth step, and loading a grown run."""

import shutil
from pathlib import Path

import pytest
import torch

from axon.cli import main
from axon.config import load_config
from axon.errors import ConfigError
from axon.models import build_model
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train
from axon.tasks import build_task
from axon.train.trainer import Trainer

TINY = [
    "--model.family=progressive", "--model.preset=tiny", "--model.block_size=32", "--model.grow_at=[12]",
    "--train.batch_size=4", "--train.log_interval=1", "--train.eval_interval=100", "--train.eval_batches=2",
    "--train.checkpoint_interval=6", "--train.keep_checkpoints=10", "--train.sample_tokens=4",
    "--train.threads=1", "--schedule.warmup_steps=4", "--log.progress=false",
]


def args(tmp_path, cache_dir, name, *extra):
    return [*TINY, f"--out_dir={tmp_path}", f"--name={name}", f"--data.cache_dir={cache_dir}", *extra]


def losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


@pytest.mark.parametrize("diverge, optim", [("lora", "muon"), ("unfreeze", "adamw")])
def test_exact_resume_across_growth(tmp_path, cache_dir, diverge, optim):
    """Uninterrupted run (growth before step 13) vs. the same run resumed from the checkpoint at
    step 6 (before growth), 12 (the growth step: still the small model) and 18 (after growth):
    every training loss and the final validation loss are equal bit for bit."""
    extra = ("--train.max_steps=24", f"--model.diverge={diverge}", f"--optim.name={optim}")
    ref = train(load_config(None, args(tmp_path, cache_dir, "ref", *extra)))
    ref_dir = Path(ref["run_dir"])
    ref_losses = losses(ref_dir)
    assert sorted(ref_losses) == list(range(1, 25))
    _, model, _ = load_run(ref_dir, device="cpu")
    assert model.depth == 2  # tiny starts at 1 layer; it grew once
    for stop in (6, 12, 18):
        run = tmp_path / f"from{stop}"
        shutil.copytree(ref_dir, run)
        for ckpt in list_checkpoints(run / "checkpoints"):
            if int(ckpt.name.split("_")[1]) > stop:
                shutil.rmtree(ckpt)
        resumed = train(resume=run)
        assert losses(run) == ref_losses, stop
        assert resumed["val_loss"] == ref["val_loss"]


def test_growth_keeps_existing_optimizer_state(tmp_path, cache_dir):
    cfg = load_config(None, args(tmp_path, cache_dir, "opt", "--train.max_steps=24", "--optim.name=adamw"))
    task = build_task(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    trainer = Trainer(cfg, model, task.objective, task.train_data, task.val_data, tmp_path / "opt",
                      torch.device("cpu"), flops_per_token=model.flops_per_token())
    for step in range(3):
        trainer._set_lr(step, 0.0)
        trainer._train_step(step)
    old_params = list(model.parameters())
    moments = {id(p): {k: v.clone() for k, v in trainer.optimizers[0].state[p].items()} for p in old_params}
    flops0 = trainer.flops_per_token
    assert model.grow_for_step(12)
    trainer._rebuild_optimizers()
    opt = trainer.optimizers[0]
    new = [p for p in model.parameters() if id(p) not in moments]
    assert new and all(p not in opt.state for p in new)  # fresh state, made at their first step
    for p in old_params:
        for k, v in moments[id(p)].items():
            assert torch.equal(opt.state[p][k], v)  # Adam moments and step count carried over
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    assert len(trainer.params) == len(old_params) + len(new)
    assert trainer.flops_per_token == model.flops_per_token() > flops0
    trainer._set_lr(12, 0.0)
    trainer._train_step(12)
    assert all(p in opt.state for p in new) and int(opt.state[old_params[0]]["step"]) == 4


def test_grown_run_samples_and_evaluates(tmp_path, cache_dir, capsys):
    result = train(load_config(None, args(tmp_path, cache_dir, "g", "--train.max_steps=30",
                                          "--model.grow_at=[8, 16]", "--optim.name=adamw", "--optim.lr=1e-2")))
    run = Path(result["run_dir"])
    found = losses(run)
    assert sum(found[s] for s in range(26, 31)) / 5 < sum(found[s] for s in range(1, 6)) / 5 - 0.3  # it learns
    _, model, _ = load_run(run, device="cpu")
    assert model.depth == 4 and model.num_params() == result["params"]
    assert main(["sample", str(run), "--max-new-tokens", "12", "--no-stream", "--device", "cpu"]) in (0, None)
    assert main(["eval", str(run), "--json", "--device", "cpu", "--max-batches", "2"]) in (0, None)
    assert '"loss"' in capsys.readouterr().out


def test_growth_step_beyond_the_run_is_an_error(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match=r"model.grow_at: step 12 is not before the run's last step 10"):
        train(load_config(None, args(tmp_path, cache_dir, "late", "--train.max_steps=10")))
    assert main([ "train", *args(tmp_path, cache_dir, "late2", "--train.max_steps=10")]) == 2

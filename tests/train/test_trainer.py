"""Trainer behaviour: run directory contents, exact resume after SIGKILL, damaged checkpoints,
non-finite losses, stop conditions."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from numerics import assert_close_orders

from axon.config import load_config
from axon.errors import AxonError, CheckpointError
from axon.models import build_model
from axon.train.checkpoint import list_checkpoints, load_latest
from axon.train.logging import read_metrics
from axon.train.run import train

TINY = [
    "--model.preset=tiny", "--model.block_size=32", "--model.dropout=0.1",
    "--train.batch_size=4", "--train.log_interval=1", "--train.eval_interval=20", "--train.eval_batches=2",
    "--train.checkpoint_interval=10", "--train.sample_tokens=8", "--train.threads=1",
    "--schedule.warmup_steps=5", "--log.progress=false",
]


def args(tmp_path, cache_dir, name, *extra):
    return [*TINY, f"--out_dir={tmp_path}", f"--name={name}", f"--data.cache_dir={cache_dir}", *extra]


def losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


def test_run_directory_contents(tmp_path, cache_dir):
    result = train(load_config(None, args(tmp_path, cache_dir, "r", "--train.max_steps=25")))
    run = Path(result["run_dir"])
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "samples.txt", "tokenizer.json"):
        assert (run / name).is_file(), name
    ckpt = list_checkpoints(run / "checkpoints")[0]
    assert ckpt.name == "step_00000025"
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "optimizer.safetensors", "state.json", "manifest.json"}
    records = read_metrics(run / "metrics.jsonl")
    keys = set().union(*records)
    assert {"step", "tokens", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "mfu"} <= keys
    assert records[-1]["val_full"] and records[-1]["step"] == 25
    assert result["val_loss"] == records[-1]["val_loss"]
    assert records[-2]["tokens"] == 25 * 4 * 32
    # The loss went down and the weights on disk are the trained ones.
    assert losses(run)[25] < losses(run)[1]
    cfg = load_config(run / "config.yaml")
    model = build_model(cfg.model)
    load_latest(run / "checkpoints", model)
    assert "--- step 20 ---" in (run / "samples.txt").read_text()


def test_exact_resume_after_sigkill(tmp_path, cache_dir):
    """Kill a training subprocess mid-run, resume it, and compare every loss bit for bit."""
    steps = "--train.max_steps=150"
    reference = train(load_config(None, args(tmp_path, cache_dir, "ref", steps)))
    ref = losses(reference["run_dir"])
    assert len(ref) == 150

    cmd = [sys.executable, "-m", "axon", "train", *args(tmp_path, cache_dir, "killed", steps)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = tmp_path / "killed"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(losses(run)) >= 45:  # past the checkpoints at steps 10..40
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(losses(run))
    assert killed_at < 150

    result = train(resume=run)
    resumed = losses(run)
    assert sorted(resumed) == list(range(1, 151))
    assert resumed == ref  # bit for bit: JSON keeps every digit of a float
    assert result["val_loss"] == reference["val_loss"]


def test_damaged_latest_checkpoint_falls_back(tmp_path, cache_dir):
    result = train(load_config(None, args(tmp_path, cache_dir, "d", "--train.max_steps=30")))
    ckpts = list_checkpoints(Path(result["run_dir"]) / "checkpoints")
    assert [c.name for c in ckpts] == ["step_00000030", "step_00000020"]  # keep_checkpoints=2
    weights = ckpts[0] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    model = build_model(load_config(Path(result["run_dir"]) / "config.yaml").model)
    with pytest.warns(UserWarning, match="checksum mismatch"):
        path, state = load_latest(ckpts[0].parent, model)
    assert path == ckpts[1] and state["step"] == 20
    # A checkpoint left half-written (no state.json) is skipped as well.
    (ckpts[1] / "state.json").unlink()
    with pytest.raises(CheckpointError, match="every checkpoint"), pytest.warns(UserWarning):
        load_latest(ckpts[0].parent, model)


def test_resume_continues_and_extends(tmp_path, cache_dir):
    result = train(load_config(None, args(tmp_path, cache_dir, "e", "--train.max_steps=20")))
    more = train(resume=result["run_dir"], overrides=["--train.max_steps=30"])
    assert more["step"] == 30
    assert sorted(losses(result["run_dir"])) == list(range(1, 31))


def test_nonfinite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path, cache_dir):
    bad = ["--optim.name=sgd", "--optim.lr=1e12", "--optim.grad_clip=0", "--schedule.warmup_steps=0",
           "--schedule.name=constant", "--train.max_steps=40", "--model.dropout=0"]
    with pytest.raises(AxonError, match=r"non-finite loss at step \d+ .*on_nonfinite=skip"):
        train(load_config(None, args(tmp_path, cache_dir, "nan", *bad)))
    assert not list_checkpoints(tmp_path / "nan" / "checkpoints")  # nothing after the blow-up was saved


def test_nonfinite_steps_can_be_skipped(tmp_path, cache_dir):
    """A batch whose loss is NaN is skipped (no update, counted) and training goes on."""
    from axon.data.loader import TokenDataset
    from axon.objectives import CausalLM
    from axon.data.cache import resolve_data_dir
    from axon.train.trainer import Trainer

    cfg = load_config(None, args(tmp_path, cache_dir, "skip", "--train.max_steps=12", "--train.on_nonfinite=skip",
                                 "--train.sample_tokens=0"))
    data_dir = resolve_data_dir(cfg.data)
    cfg.model.vocab_size = 65
    model = build_model(cfg.model)
    calls = []

    def poisoned(model, batch):
        loss, parts = CausalLM()(model, batch)
        calls.append(1)
        return (loss * float("nan"), parts) if len(calls) in (3, 7) else (loss, parts)

    run = tmp_path / "skip"
    run.mkdir()
    trainer = Trainer(cfg, model, poisoned, TokenDataset.from_dir(data_dir, "train"), TokenDataset.from_dir(data_dir, "val"),
                      run, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = trainer.fit()
    assert result["skipped_steps"] == 2 and result["step"] == 12
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert read_metrics(run / "metrics.jsonl")[-2]["skipped_steps"] == 2


def test_stop_by_tokens_and_by_time(tmp_path, cache_dir):
    result = train(load_config(None, args(tmp_path, cache_dir, "tok", "--train.max_tokens=1000")))
    assert result["step"] == 8  # ceil(1000 / (4 * 32))
    t = time.time()
    result = train(load_config(None, args(tmp_path, cache_dir, "time", "--train.max_steps=1000000", "--train.max_seconds=2")))
    assert result["step"] < 1000000 and time.time() - t < 30


def test_existing_run_directory_is_not_overwritten(tmp_path, cache_dir):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep")
    with pytest.raises(AxonError, match="already exists"):
        train(load_config(None, args(tmp_path, cache_dir, "x", "--train.max_steps=2")))


def test_tensorboard_logging(tmp_path, cache_dir):
    pytest.importorskip("tensorboard")
    result = train(load_config(None, args(tmp_path, cache_dir, "tb", "--train.max_steps=3", "--log.tensorboard=true")))
    assert any((Path(result["run_dir"]) / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.numerics
def test_gradient_accumulation_averages_micro_batches(tmp_path, cache_dir):
    """One step with grad_accum=2 moves the weights by the mean of the two micro-batch gradients."""
    from axon.data.loader import TokenDataset
    from axon.objectives import CausalLM
    from axon.data.cache import resolve_data_dir
    from axon.train.trainer import Trainer

    cfg = load_config(None, args(tmp_path, cache_dir, "acc", "--train.max_steps=1", "--train.grad_accum=2",
                                 "--optim.name=sgd", "--optim.momentum=0", "--optim.weight_decay=0",
                                 "--optim.grad_clip=0", "--optim.lr=0.1", "--schedule.warmup_steps=0",
                                 "--model.dropout=0", "--train.sample_tokens=0"))
    data_dir = resolve_data_dir(cfg.data)
    cfg.model.vocab_size = 65
    model = build_model(cfg.model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_data = TokenDataset.from_dir(data_dir, "train")
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for micro in range(2):
        x, y = train_data.get_batch(0, 4, 32, cfg.train.seed, micro_step=micro)
        loss, _ = CausalLM()(model, (x, y))
        model.zero_grad()
        loss.backward()
        for n, p in model.named_parameters():
            grads[n] += p.grad / 2
    model.zero_grad()
    run = tmp_path / "acc"
    run.mkdir()
    Trainer(cfg, model, CausalLM(), train_data, TokenDataset.from_dir(data_dir, "val"), run, torch.device("cpu")).fit()
    # The same gradients (grad_accum's 1/2 is a power of two: exact); the update p - lr g rounds
    # once in SGD's fused add and twice here, so the two may differ by a rounding of one product.
    for n, p in model.named_parameters():
        assert_close_orders(p.detach(), start[n] - 0.1 * grads[n], n=1, msg=n)


@pytest.mark.compile
def test_compiled_model_trains(tmp_path, cache_dir):
    result = train(load_config(None, args(tmp_path, cache_dir, "compiled", "--train.max_steps=3", "--train.compile=true",
                                          "--model.dropout=0")))
    assert result["step"] == 3 and result["val_loss"] < 6


def test_auto_threads_leaves_busy_cores_alone(monkeypatch):
    from axon.train import run as R

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(R.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(R, "busy_cores", lambda: 0.3)
    assert R.auto_threads() == (2, None)  # a quiet machine: every core
    monkeypatch.setattr(R, "busy_cores", lambda: 1.1)  # another process keeps a core busy
    threads, why = R.auto_threads()
    assert threads == 1 and "1 of 2" in why and "1.1 of 2" in why and "--train.threads=2" in why
    monkeypatch.setattr(R, "busy_cores", lambda: 2.0)
    assert R.auto_threads()[0] == 1  # never fewer than one
    monkeypatch.setattr(R, "busy_cores", lambda: None)  # no /proc/stat
    assert R.auto_threads() == (2, None)


def test_busy_cores_sees_a_busy_process():
    import subprocess
    import sys

    from axon.train import run as R

    if R.busy_cores(0.05) is None:
        pytest.skip("no /proc/stat here")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)  # let it start spinning
        assert R.busy_cores(0.5) > 0.6  # one whole core, give or take the test's own work
    finally:
        hog.kill()
        hog.wait()

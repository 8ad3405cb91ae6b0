"""Data-parallel training through torchrun on CPU (gloo, 2 processes): DDP and FSDP2 against one
process with the same global batch, kills and resumes on another number of processes, and the
pieces (batch slicing, activation checkpointing, gathered checkpoints) on their own.

The runs train in float64 (``--train.dtype=fp64``): an all-reduce sums a gradient in another
order than one process does, and over 20 steps Adam's normalised updates amplify float32's
rounding differences to ~1e-5 -- a figure that changes with the CPU's kernels (1.2e-5 on an Intel
AMX machine, under 1e-5 on an AMD one). In float64 the same trajectories agree to ~1e-13 on any
CPU, so the bound below (tests/numerics.py, kind 3) is ~1e-11: a million times tighter than the
float32 one was. A run resumed on the *same* number of processes repeats the same arithmetic and is
compared bit for bit. AdamW throughout: Muon's orthogonalisation (bf16 where that is fast) would
round away the differences being measured.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from numerics import order_tol
from train_processes import axon_train, descendants, kill_at_checkpoint

from axon.config import load_config
from axon.errors import ConfigError
from axon.models import build_model
from axon.train import distributed as D
from axon.train.checkpoint import list_checkpoints, save_checkpoint
from axon.train.logging import read_metrics
from axon.train.optim import build_optimizers
from axon.train.run import load_run, train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not sys.platform.startswith("linux"),
                                reason="needs torch.distributed with gloo (Linux)")

# Constant lr after a short warmup: a killed run given a longer max_steps follows the same schedule.
BASE = [
    "--model.preset=tiny", "--model.block_size=32", "--model.dropout=0.0",
    "--optim.name=adamw", "--optim.lr=3e-3", "--schedule.name=constant", "--schedule.warmup_steps=3",
    "--train.log_interval=1", "--train.eval_interval=10", "--train.eval_batches=2",
    "--train.checkpoint_interval=5", "--train.sample_tokens=8", "--train.threads=1", "--log.progress=false",
    "--train.dtype=fp64",
]
GLOBAL_BATCH = 8
STEPS = 20


def opts(tmp_path, cache_dir, name, *extra):
    return [*BASE, f"--out_dir={tmp_path}", f"--name={name}", f"--data.cache_dir={cache_dir}", *extra]


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


def finish(proc, timeout=240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, batch 8: the run every distributed run below must reproduce."""
    tmp = tmp_path_factory.mktemp("ref")
    cache_dir = tmp_path_factory.getbasetemp() / "axon-cache"  # conftest's cache_dir, which is per test
    result = train(load_config(None, opts(tmp, cache_dir, "single", f"--train.batch_size={GLOBAL_BATCH}",
                                          f"--train.max_steps={STEPS}")))
    assert sorted(losses(result["run_dir"])) == list(range(1, STEPS + 1))
    return result


def trajectory_tol(steps: int, scale: float, blocks: int = 2) -> float:
    """How far an fp64 run whose sums are split over processes may drift from one process: the
    longest sum in a step is 256 long (a weight's gradient over 8 x 32 positions; the 256-wide MLP),
    and the error passes through steps x (forward + backward) x (blocks + head) reductions."""
    return order_tol(torch.float64, n=GLOBAL_BATCH * 32, depth=steps * 2 * (blocks + 1), scale=scale)


def assert_matches(run_dir, reference, steps=STEPS, blocks=2):
    got, ref = losses(run_dir), losses(reference["run_dir"])
    assert sorted(got) == list(range(1, steps + 1))
    worst = max(abs(got[s] - ref[s]) for s in got)
    tol = trajectory_tol(steps, max(ref.values()), blocks)
    assert worst <= tol, f"largest per-step loss difference {worst:.2e} > {tol:.2e}"


def assert_val_matches(result, reference):
    """The full validation split, shared out over ranks and summed: one more reduction at the end."""
    tol = trajectory_tol(STEPS + 1, reference["val_loss"])
    assert abs(result["val_loss"] - reference["val_loss"]) <= tol


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Two processes, 4 sequences each, STEPS steps, run once per strategy: (run directory, output)."""
    runs = {}

    def get(parallel):
        if parallel not in runs:
            tmp = tmp_path_factory.mktemp(f"two-{parallel}")
            cache_dir = tmp_path_factory.getbasetemp() / "axon-cache"
            out = finish(axon_train(opts(tmp, cache_dir, parallel, f"--train.batch_size={GLOBAL_BATCH // 2}",
                                         f"--train.max_steps={STEPS}", f"--train.parallel={parallel}"), nproc=2))
            runs[parallel] = (tmp / parallel, out)
        return runs[parallel]

    return get


@pytest.mark.numerics
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one_with_the_same_global_batch(reference, uninterrupted, parallel):
    run, out = uninterrupted(parallel)
    assert_matches(run, reference)
    result = json.loads((run / "result.json").read_text())
    assert result["world_size"] == 2 and result["step"] == STEPS
    assert_val_matches(result, reference)
    # Rank 0 alone writes: each step logged once, counting the global batch's tokens; one summary line.
    records = read_metrics(run / "metrics.jsonl")
    steps = [r["step"] for r in records if "train_loss" in r]
    assert steps == sorted(set(steps))
    assert records[-2]["tokens"] == STEPS * GLOBAL_BATCH * 32
    assert out.count("run: ") == 1
    samples = (run / "samples.txt").read_text()  # FSDP: rank 0 samples from the gathered weights
    assert samples.count("--- step ") == 2
    # The checkpoint is the single-process format: same tensors, loadable by one process.
    single = list_checkpoints(Path(reference["run_dir"]) / "checkpoints")[0]
    ours = list_checkpoints(run / "checkpoints")[0]
    from safetensors import safe_open

    def names(path):
        with safe_open(str(path), "pt") as f:
            return set(f.keys())

    assert names(ours / "model.safetensors") == names(single / "model.safetensors")
    assert names(ours / "optimizer.safetensors") == names(single / "optimizer.safetensors") | {"rank1.rng.torch"}
    from safetensors.torch import load_file

    mine, theirs = load_file(ours / "model.safetensors"), load_file(single / "model.safetensors")
    for name, w in theirs.items():  # the fp64 weights after the last step: as close as the trajectories
        assert mine[name].dtype == w.dtype == torch.float64, name
        assert (mine[name] - w).abs().max().item() <= trajectory_tol(STEPS, max(1.0, w.abs().max().item())), name
    assert load_run(run, "cpu")[1] is not None  # and one process loads it


@pytest.mark.numerics
@pytest.mark.compile
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_activation_checkpointing_and_compile_compose_with_both(tmp_path, cache_dir, reference, parallel):
    """Each block checkpointed and compiled, then wrapped: the same losses (compiled kernels may round differently)."""
    steps = 6
    finish(axon_train(opts(tmp_path, cache_dir, "ac", f"--train.batch_size={GLOBAL_BATCH // 2}",
                           f"--train.max_steps={steps}", f"--train.parallel={parallel}", "--train.activation_checkpointing=true",
                           "--train.compile=true", "--train.eval_interval=100", "--train.sample_tokens=0"), nproc=2), timeout=400)
    got, ref = losses(tmp_path / "ac"), losses(reference["run_dir"])
    assert sorted(got) == list(range(1, steps + 1))
    assert max(abs(got[s] - ref[s]) for s in got) <= trajectory_tol(steps, max(ref.values()))


@pytest.mark.numerics
def test_a_model_that_grows_mid_run_under_ddp(tmp_path, cache_dir):
    """Progressive growth adds parameters at step 10: DDP is rebuilt over them, so the copies'
    gradients are averaged too and the run still matches one process (FSDP refuses such a model).

    Five steps after the growth: later on, Adam's normalised steps on the copies' near-zero
    gradients (their gates start at 0) magnify 1e-7 rounding differences to ~1e-4 here, with or
    without DDP. A copy left out of DDP's all-reduce shows at once (1e-3 and more)."""
    recipe = Path(__file__).parents[2] / "configs" / "progressive_tiny.yaml"
    extra = ["--model.grow_at=[10]", "--train.max_steps=15", "--train.eval_interval=100", "--train.sample_tokens=0"]
    single = train(load_config(recipe, opts(tmp_path, cache_dir, "grow1", *extra, f"--train.batch_size={GLOBAL_BATCH}")))
    finish(axon_train(["--config", str(recipe), *opts(tmp_path, cache_dir, "grow2", *extra, "--train.batch_size=4")], nproc=2))
    assert_matches(tmp_path / "grow2", single, steps=15, blocks=4)  # 2 blocks, 4 after the growth
    assert len(D.repeated_blocks(load_run(tmp_path / "grow2", "cpu")[1])) == 4  # grown from 2
    out = axon_train(["--config", str(recipe), *opts(tmp_path, cache_dir, "grow3", *extra, "--train.parallel=fsdp")], nproc=2)
    text, _ = out.communicate(timeout=120)
    # every rank refuses; torchrun names whichever exited first
    assert out.returncode == 2 and "a growing model cannot be sharded" in text
    assert re.search(r"process [01] of 2 failed \(exit code 2\)", text), text[-2000:]


@pytest.mark.numerics
@pytest.mark.parametrize("before, after", [(("ddp", 2), ("ddp", 1)), (("ddp", 1), ("fsdp", 2))],
                         ids=["2-processes-then-1", "1-process-then-2-fsdp"])
def test_killed_run_resumes_on_another_number_of_processes(tmp_path, cache_dir, reference, before, after):
    (parallel, n), (parallel2, n2) = before, after
    run = tmp_path / "killed"
    proc = axon_train(opts(tmp_path, cache_dir, "killed", f"--train.batch_size={GLOBAL_BATCH // n}",
                           "--train.max_steps=100000", f"--train.parallel={parallel}"), nproc=n)
    kill_at_checkpoint(proc, run, 5)
    saved = max(int(p.name.split("_")[1]) for p in list_checkpoints(run / "checkpoints"))
    assert saved < STEPS and not (run / "result.json").exists()

    out = finish(axon_train(["--resume", str(run), f"--train.max_steps={STEPS}", f"--train.parallel={parallel2}"], nproc=n2))
    if n2 != n:  # the per-process batch follows the number of processes; the global batch does not change
        assert f"train.batch_size {GLOBAL_BATCH // n2} per process keeps {GLOBAL_BATCH} sequences" in out
    assert f"(step {saved})" in out
    assert_matches(run, reference)  # the steps before the kill and after the resume
    result = json.loads((run / "result.json").read_text())
    assert result["step"] == STEPS and result["world_size"] == n2
    assert_val_matches(result, reference)


@pytest.mark.numerics
@pytest.mark.parametrize("how", ["ctrl-c", "agent-killed"])
def test_stopped_run_checkpoints_at_an_agreed_step_and_resumes(tmp_path, cache_dir, reference, uninterrupted, how):
    """Ctrl-C reaches torchrun's agent (this `axon train --nproc` process), which passes it on; a
    killed agent (kill -9, a lost node) makes the kernel send its workers SIGTERM. Either way the
    workers agree on a step, checkpoint it without the final evaluation, and stop; the run resumes."""
    run = tmp_path / "stopped"
    proc = axon_train(opts(tmp_path, cache_dir, "stopped", f"--train.batch_size={GLOBAL_BATCH // 2}", "--train.max_steps=100000"),
                      nproc=2, start_new_session=True)
    deadline = time.time() + 180
    while not (run / "checkpoints" / "step_00000005").is_dir():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:] if proc.poll() is not None else "timeout"
        time.sleep(0.005)
    workers = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)  # the workers are in their own group
    out, _ = proc.communicate(timeout=180)
    if how == "ctrl-c":
        assert proc.returncode == 130 and "continue the run with axon train --resume" in out, out[-3000:]
    for pid in workers:  # stopped by themselves
        while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]:
            assert time.time() < deadline, "workers kept running"
            time.sleep(0.05)
    saved = max(int(p.name.split("_")[1]) for p in list_checkpoints(run / "checkpoints"))
    # The stop may fall on step 5 itself (the signal can arrive before the next step starts): the
    # stop's own message names the step the workers agreed on, and that is the newest checkpoint.
    assert f"interrupted: saving a checkpoint at step {saved}\n" in out, out[-3000:]
    assert saved >= 5 and not (run / "result.json").exists()
    assert all(r["step"] <= saved for r in read_metrics(run / "metrics.jsonl"))  # no final evaluation was logged
    if saved < STEPS:
        finish(axon_train(["--resume", str(run), f"--train.max_steps={STEPS}"], nproc=2))
        assert losses(run) == losses(uninterrupted("ddp")[0])  # the same 2 processes: bit for bit
        assert_matches(run, reference)


def test_a_refusal_on_rank_0_ends_every_rank(tmp_path, cache_dir):
    """Only rank 0 makes (or locks) the run directory; when it cannot, the other ranks hear so and
    end too, instead of waiting for rank 0 at the next collective forever."""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory\n")
    proc = axon_train(opts(blocked, cache_dir, "r", "--train.max_steps=2"), nproc=2)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "out_dir: cannot create the run directory" in out, out[-3000:]
    assert "Traceback" not in out


def test_sharded_muon_equals_muon_on_the_whole_matrices():
    """torch's Muon on FSDP's DTensor shards is 3e-3 off after 3 steps here (its Newton-Schulz
    products then sum bf16 partial results across ranks); axon's Muon gathers and is exact, in
    either orthogonalisation dtype."""
    script = Path(__file__).with_name("sharded_muon_check.py")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
                         capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "torch.bfloat16: largest difference 0.000e+00" in out.stdout
    assert "torch.float32: largest difference 0.000e+00" in out.stdout


# ----------------------------------------------------------------------------------------------
# The pieces, in one process


class _Rows:
    """A dataset without rank support: row i of a micro-step's batch is (seed, step, micro, i)."""

    def get_batch(self, step, batch_size, block_size, seed, micro_step=0):
        rows = torch.arange(batch_size)
        return (torch.stack([torch.full_like(rows, step), torch.full_like(rows, micro_step), rows], 1),)


def test_rank_batches_are_disjoint_slices_of_one_draw(cache_dir):
    from axon.data.loader import TokenDataset
    from axon.data.cache import resolve_data_dir

    cfg = load_config(None, [f"--data.cache_dir={cache_dir}"])
    data = TokenDataset.from_dir(resolve_data_dir(cfg.data), "train")
    whole = data.get_batch(7, 6, 16, 1337, micro_step=1)
    parts = [D.rank_batch(data, D.Dist(rank=r, world_size=3), 7, 2, 16, 1337, 1) for r in range(3)]
    for k in range(2):
        assert torch.equal(torch.cat([p[k] for p in parts]), whole[k])
    rows = [D.rank_batch(_Rows(), D.Dist(rank=r, world_size=2), 3, 2, 16, 0, 1)[0] for r in range(2)]
    assert rows[0][:, 2].tolist() == [0, 1] and rows[1][:, 2].tolist() == [2, 3]  # sliced from one batch of 4


def test_repeated_blocks_of_each_family():
    from axon.config import build_model_config

    for family in ("decoder", "mamba", "bert", "conv_attention"):
        cfg = build_model_config({"family": family, "preset": "tiny", "vocab_size": 50})
        n = cfg.n_pre_layer + cfg.n_inner_layer + cfg.n_post_layer if family == "conv_attention" else cfg.n_layer
        blocks = D.repeated_blocks(build_model(cfg))
        assert len(blocks) == n and len({id(b) for b in blocks}) == n, family


def test_activation_checkpointing_stores_less_and_changes_nothing():
    from axon.config import build_model_config

    cfg = build_model_config({"preset": "tiny", "vocab_size": 50, "block_size": 32, "dropout": 0.0})
    torch.manual_seed(0)
    plain = build_model(cfg)
    ckpt = build_model(cfg)
    ckpt.load_state_dict(plain.state_dict())
    assert D.apply_activation_checkpointing(ckpt) == 2
    x = torch.randint(0, 50, (2, 32))

    def run(model):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = model(x).float().logsumexp(-1).mean()
        loss.backward()
        return loss, sum(saved), {n: p.grad for n, p in model.named_parameters()}

    loss_a, stored_a, grads_a = run(plain)
    loss_b, stored_b, grads_b = run(ckpt)
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)  # the recomputed forward is the same arithmetic
    assert stored_b < stored_a / 2  # the blocks keep only their inputs
    with torch.no_grad():  # generation and evaluation run the plain forward
        assert torch.equal(plain(x), ckpt(x))


def test_checkpoint_keys_do_not_change_with_the_new_writer(tmp_path):
    """Tied weights are stored once, under safetensors' own choice of name."""
    from safetensors.torch import save_model
    from safetensors import safe_open

    from axon.config import build_model_config

    model = build_model(build_model_config({"preset": "tiny", "vocab_size": 50}))
    path = save_checkpoint(tmp_path, 1, model, build_optimizers(model, load_config().optim), {"step": 1})
    save_model(model, str(tmp_path / "reference.safetensors"))
    with safe_open(str(path / "model.safetensors"), "pt") as a, safe_open(str(tmp_path / "reference.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())
        assert b.metadata().items() <= a.metadata().items()  # the tied names; ours also says format: pt


def test_resume_on_a_world_size_that_cannot_split_the_batch(tmp_path, cache_dir):
    from axon.train.run import _keep_global_batch

    result = train(load_config(None, opts(tmp_path, cache_dir, "odd", "--train.batch_size=3", "--train.max_steps=5",
                                          "--train.sample_tokens=0")))
    cfg = load_config(Path(result["run_dir"]) / "config.yaml")
    with pytest.raises(ConfigError, match="draws 3 sequences per micro-step .* 2 processes cannot split"):
        _keep_global_batch(cfg, Path(result["run_dir"]), D.Dist(rank=0, world_size=2), [])
    _keep_global_batch(cfg, Path(result["run_dir"]), D.Dist(rank=0, world_size=3), [])
    assert cfg.train.batch_size == 1
    cfg = load_config(Path(result["run_dir"]) / "config.yaml", ["--train.batch_size=5"])
    _keep_global_batch(cfg, Path(result["run_dir"]), D.Dist(rank=0, world_size=2), ["--train.batch_size=5"])
    assert cfg.train.batch_size == 5  # asked for explicitly: the global batch changes


def test_nproc_errors():
    from axon.cli import main

    assert main(["train", "--nproc", "0"]) == 2


def test_an_moe_decoder_keeps_its_auxiliary_losses_under_ddp():
    """DDP forwards calls, not methods: the objective must reach the model's aux_losses through
    the wrapper (axon.models.base.unwrap), or the balance and z-losses are silently dropped."""
    script = Path(__file__).with_name("moe_ddp_check.py")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
                         capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.count("parts ['ce', 'moe_balance', 'moe_z']") == 2


@pytest.mark.numerics
def test_a_reward_model_with_labeller_noise_matches_one_process(tmp_path):
    """The reward task under DDP and FSDP: batch rows (prompts) shared out, the flip-rate logits
    trained at their own lr -- FSDP replaces each Parameter by a shard, and the model's mark
    (_lr_scale) must come with it -- and gathered on every rank for their eps metrics."""
    from axon.data.labellers import LABELLERS, TRUSTED, planted_comparisons

    rows = planted_comparisons(200, LABELLERS, TRUSTED, seed=4)
    for i, r in enumerate(rows):  # one comparison per prompt: each rank averages as many pairs as the other
        r["prompt"] = f"{i}:{r['prompt']}"
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps = 10
    argv = ["--model.family=reward", "--model.preset=tiny", "--model.labeller_noise=true", f"--data.train_file={data}",
            "--optim.name=adamw", "--optim.lr=3e-3", "--schedule.warmup_steps=2", f"--train.max_steps={steps}",
            "--train.log_interval=1", f"--train.eval_interval={steps}", f"--train.checkpoint_interval={steps}",
            "--train.sample_tokens=0", "--train.threads=1", "--log.progress=false", "--train.dtype=fp64", f"--out_dir={tmp_path}"]
    train(load_config(None, [*argv, "--name=one", "--train.batch_size=8"]))
    procs = {p: axon_train([*argv, f"--name={p}", "--train.batch_size=4", f"--train.parallel={p}"], nproc=2) for p in ("ddp", "fsdp")}
    ref = read_metrics(tmp_path / "one" / "metrics.jsonl")
    for parallel, proc in procs.items():
        finish(proc)
        got = read_metrics(tmp_path / parallel / "metrics.jsonl")
        assert [r["step"] for r in got] == [r["step"] for r in ref]
        # fp64; the longest sum: a weight's gradient over 8 prompts x 2 texts x up to 64 positions
        tol = order_tol(torch.float64, n=8 * 2 * 64, depth=steps * 2 * 3, scale=1.0)
        for a, b in zip(got, ref):
            for key in ("train_loss", "eps/A", "eps/B", "eps/C"):
                if key in b:
                    assert abs(a[key] - b[key]) <= tol, (parallel, a["step"], key, a[key], b[key])

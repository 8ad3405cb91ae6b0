"""GPU check of the data-parallel path: NCCL process groups, DDP and FSDP2 on CUDA, gathered checkpoints.

The CPU suite tests DDP and FSDP with gloo (``tests/train/test_distributed.py``); this script runs
the same trainer on GPUs, where the backend is NCCL, DDP takes ``device_ids``, FSDP2 shards over a
CUDA mesh with bf16 all-gathers and fp32 reduce-scatters, and the collectives of
``axon.train.distributed.Dist`` (metrics, the run directory's name, RNG states) go through NCCL.

Two modes, chosen by the GPU count:

* **one GPU** (``--mode world1``, the default there). NCCL refuses two ranks on one GPU, so the
  script starts a one-process NCCL group and runs ``axon.train.run.train`` with a ``Dist`` that
  *acts* distributed at world size 1: the model is DDP-wrapped or ``fully_shard``ed over a mesh of
  one, every collective runs through NCCL, checkpoints are gathered from DTensors. It prints, per
  step's training loss, the largest difference from the plain run of: a second plain run (the
  GPU's own run-to-run noise: atomics in backward kernels), DDP (one rank: the all-reduce averages
  one gradient, so with ``--deterministic`` it must be bitwise equal), FSDP (its mixed-precision
  policy holds parameters, and so embeddings and the residual stream, in bf16, where the plain
  run autocasts matmuls over fp32 weights: it differs by design); and whether a run stopped at
  its midpoint checkpoint and resumed reproduces the uninterrupted run's losses (bitwise with
  ``--deterministic``). Prints tokens/s of each.
* **several GPUs** (``--mode torchrun``): ``axon train --nproc N`` (real ranks) with DDP and FSDP
  against one process with the same global batch; prints the largest loss difference and tokens/s.

    python benchmarks/gpu_distributed.py                       # picks the mode from the GPU count
    python benchmarks/gpu_distributed.py --steps 200 --json
    python benchmarks/gpu_distributed.py --deterministic       # exact comparisons: no GPU atomics
    python benchmarks/gpu_distributed.py --device cpu --steps 6 --layers 1 --width 64 --block 64 --batch 16   # smoke check

Run by hand on a GPU machine, never in CI. Model: the ``tiny``-shaped GPT (``--layers``, ``--width``)
on the bundled Shakespeare characters, bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def losses(run_dir) -> dict[int, float]:
    from axon.train.logging import read_metrics

    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


def tokens_per_s(run_dir) -> float:
    from axon.train.logging import read_metrics

    rates = [r["tokens_per_s"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r.get("tokens_per_s")]
    rates = rates[len(rates) // 2:]  # the second half: compilation and warm-up are behind
    return sorted(rates)[len(rates) // 2] if rates else float("nan")


def base_overrides(args, out: str, name: str) -> list[str]:
    return [
        "--model.preset=tiny", f"--model.n_layer={args.layers}", f"--model.n_embd={args.width}", f"--model.n_head={args.width // 64}",
        f"--model.block_size={args.block}", "--model.dropout=0.0",
        "--optim.name=adamw", "--optim.lr=1e-3", "--schedule.name=constant", "--schedule.warmup_steps=10",
        f"--train.batch_size={args.batch}", f"--train.max_steps={args.steps}", f"--train.device={args.device}",
        "--train.log_interval=1", f"--train.eval_interval={args.steps}", "--train.eval_batches=4",
        f"--train.checkpoint_interval={args.steps // 2}", "--train.sample_tokens=16", "--log.progress=false",
        f"--out_dir={out}", f"--name={name}", f"--data.cache_dir={out}/cache",
    ]


def world1(args) -> dict:
    """One process, one GPU, an NCCL group of one, a Dist that wraps and gathers as if W > 1."""
    import torch.distributed as tdist

    from axon.config import RunConfig, load_config
    from axon.train import distributed as D
    from axon.train import run as R

    class ActsDistributed(D.Dist):
        enabled = property(lambda self: True)

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    cuda = args.device == "cuda"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        tdist.init_process_group("nccl", rank=0, world_size=1, device_id=device)
        print(f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}, backend {tdist.get_backend()}, world 1", flush=True)
    else:  # the script's own check (tests run it): the same steps over gloo
        tdist.init_process_group("gloo", rank=0, world_size=1)

    real_init = D.init_distributed  # train() imports it from axon.train.distributed at call time
    out = tempfile.mkdtemp(prefix="axon-gpu-dist-")
    report: dict = {"mode": "world1", "steps": args.steps}

    def run(name, parallel, overrides, resume=None):
        def fake_init(device_name, par):
            if parallel is None:
                return D.Dist(device=device, parallel=par)
            return ActsDistributed(rank=0, world_size=1, device=device, parallel=par)

        D.init_distributed = fake_init
        try:
            if resume is not None:
                return R.train(resume=resume, overrides=overrides)
            cfg = load_config(None, overrides) if overrides else RunConfig()
            return R.train(cfg)
        finally:
            D.init_distributed = real_init

    results = {}
    for strategy in (None, "again", "ddp", "fsdp"):  # "again": a second plain run, the GPU's own run-to-run noise
        label = strategy or "plain"
        strategy = None if strategy == "again" else strategy
        ov = base_overrides(args, out, label) + ([f"--train.parallel={strategy}"] if strategy else [])
        t = time.perf_counter()
        res = run(label, strategy, ov)
        wall = time.perf_counter() - t
        results[label] = res
        report[label] = {"wall_s": wall, "tokens_per_s": tokens_per_s(res["run_dir"]), "val_loss": res["val_loss"]}
        print(f"{label}: {args.steps} steps in {wall:.1f} s | median tokens/s (2nd half) {report[label]['tokens_per_s']:,.0f} | "
              f"val {res['val_loss']:.4f}", flush=True)
    ref = losses(results["plain"]["run_dir"])
    for label in ("again", "ddp", "fsdp"):
        got = losses(results[label]["run_dir"])
        diff = max(abs(got[s] - ref[s]) for s in ref)
        same = all(got[s] == ref[s] for s in ref)
        report[label]["max_loss_diff_vs_plain"] = diff
        report[label]["bitwise_equal_to_plain"] = same
        print(f"{label} vs plain: largest per-step loss difference {diff:.3e} over {len(ref)} steps (bitwise equal: {same})", flush=True)

    # killed at the midpoint checkpoint, resumed: must match the uninterrupted run exactly
    half = args.steps // 2
    for strategy in ("ddp", "fsdp"):
        name = f"{strategy}-resume"
        ov = base_overrides(args, out, name) + [f"--train.parallel={strategy}", f"--train.max_steps={half}"]
        first = run(name, strategy, ov)
        run(name, strategy, [f"--train.max_steps={args.steps}"], resume=first["run_dir"])
        got, ref_s = losses(first["run_dir"]), losses(results[strategy]["run_dir"])
        same = all(got.get(s) == ref_s[s] for s in ref_s)
        diff = max(abs(got.get(s, math.inf) - ref_s[s]) for s in ref_s)
        report[strategy]["resume_bitwise_equal"] = same
        print(f"{strategy}: stopped at {half}, resumed to {args.steps}: losses equal to the uninterrupted run: {same} "
              f"(largest difference {diff:.3e})", flush=True)
    tdist.destroy_process_group()
    return report


def multi(args, n: int) -> dict:
    """Real ranks through ``axon train --nproc n`` against one process with the same global batch."""
    out = tempfile.mkdtemp(prefix="axon-gpu-torchrun-")
    report: dict = {"mode": "torchrun", "nproc": n, "steps": args.steps}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def axon(name, nproc, extra, batch):
        args_b = argparse.Namespace(**{**vars(args), "batch": batch})
        cmd = [sys.executable, "-m", "axon", "train", *(["--nproc", str(nproc)] if nproc > 1 else []),
               *base_overrides(args_b, out, name), *extra]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
            raise SystemExit(f"{name} failed ({p.returncode})")
        return Path(out) / name, time.perf_counter() - t

    one, wall1 = axon("one", 1, [], args.batch * n)
    ref = losses(one)
    report["one"] = {"wall_s": wall1, "tokens_per_s": tokens_per_s(one)}
    print(f"one process, batch {args.batch * n}: {wall1:.1f} s, tokens/s {report['one']['tokens_per_s']:,.0f}", flush=True)
    for strategy in ("ddp", "fsdp"):
        rd, wall = axon(strategy, n, [f"--train.parallel={strategy}"], args.batch)
        got = losses(rd)
        diff = max(abs(got[s] - ref[s]) for s in ref)
        report[strategy] = {"wall_s": wall, "tokens_per_s": tokens_per_s(rd), "max_loss_diff_vs_one": diff}
        print(f"{strategy} x{n}: {wall:.1f} s, tokens/s {report[strategy]['tokens_per_s']:,.0f}, largest loss difference "
              f"against one process {diff:.3e}", flush=True)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["auto", "world1", "torchrun"], default="auto")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--batch", type=int, default=32, help="sequences per process and step")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: the one-process checks over gloo, a smoke check of this script (the tests run it)")
    p.add_argument("--port", type=int, default=29561, help="MASTER_PORT of the one-process group")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms(True) (and cuBLAS's fixed workspace): GPU atomics otherwise make "
                        "two identical runs differ")
    args = p.parse_args(argv)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (--device cpu runs the script's own smoke check)", file=sys.stderr)
        return 2
    n = torch.cuda.device_count() if args.device == "cuda" else 1
    mode = args.mode if args.mode != "auto" else ("torchrun" if n > 1 else "world1")
    if mode == "torchrun" and args.device == "cpu":
        print("error: --mode torchrun is for several GPUs (the CPU suite tests torchrun over gloo)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"{name} x{n} | torch {torch.__version__} | mode {mode}", flush=True)
    report = world1(args) if mode == "world1" else multi(args, n)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

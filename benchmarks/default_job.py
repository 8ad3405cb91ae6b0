"""The default job against nanoGPT's CPU recipe, on the same machine, one after the other.

nanoGPT's published Shakespeare-character CPU recipe (4 layers, 4 heads, 128 wide, block 64,
batch 12, 2,000 iterations, its own train.py) and `axon train` with no arguments are each run as a
subprocess; the script prints both wall-clock times, both final validation losses and the ratio of
the walls. The bar (issue 14): Axon's default job reaches <= 1.60 in <= 1.0x nanoGPT's wall; the aim
is <= 1.55 in <= 0.7x. Ratios, on purpose: absolute times differ 3x between the CPUs this runs on.

    python benchmarks/default_job.py --nanogpt DIR               # DIR: a nanoGPT checkout (MIT)
    python benchmarks/default_job.py --nanogpt DIR --json        # one JSON line at the end

nanoGPT's checkout is copied to a temporary directory with the bundled corpus as its input.txt
(its prepare.py runs offline then). Its validation loss is its own estimate (the mean of 20 random
batches at the last step, `--eval_iters=20` as in its README's CPU command); Axon's is the whole
validation split. Do not run anything else meanwhile: with 2 cores, one busy core slows a step
many times over. Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NANOGPT_RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
                  "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                  "--lr_decay_iters=2000", "--dropout=0.0"]
BAR_LOSS, BAR_RATIO = 1.60, 1.0
AIM_LOSS, AIM_RATIO = 1.55, 0.7


def die(msg: str):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def run_nanogpt(src: Path, work: Path, corpus: Path) -> dict:
    repo = work / "nanogpt"
    shutil.copytree(src, repo)
    data = repo / "data" / "shakespeare_char"
    shutil.copy(corpus, data / "input.txt")
    subprocess.run([sys.executable, str(data / "prepare.py")], cwd=data, check=True, capture_output=True)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "train.py", *NANOGPT_RECIPE, f"--out_dir={work / 'nanogpt-out'}"], cwd=repo,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        die(f"nanoGPT's train.py failed ({p.returncode}): {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''}")
    evals = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", p.stdout)
    if not evals:
        die("nanoGPT printed no evaluation line")
    step, _, val = evals[-1]
    return {"wall_s": wall, "val_loss": float(val), "step": int(step)}


def run_axon(work: Path) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "axon", "train", f"--out_dir={work / 'axon-runs'}", "--name=default",
                        "--log.progress=false", f"--data.cache_dir={work / 'axon-cache'}"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        die(f"axon train failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    result = json.loads((work / "axon-runs" / "default" / "result.json").read_text())
    muon = [line for line in p.stdout.splitlines() if line.startswith("muon:")]
    return {"wall_s": wall, "val_loss": result["val_loss"], "step": result["step"], "train_s": result.get("elapsed"),
            "muon": muon[0] if muon else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nanogpt", required=True, help="a nanoGPT checkout (its train.py, model.py and data/shakespeare_char)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    src = Path(args.nanogpt)
    if not (src / "train.py").is_file() or not (src / "data" / "shakespeare_char" / "prepare.py").is_file():
        die(f"{src} is not a nanoGPT checkout (no train.py or data/shakespeare_char/prepare.py)")
    from axon.data.corpus import __file__ as corpus_init

    corpus = Path(corpus_init).with_name("tinyshakespeare.txt")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="axon-default-job-") as tmp:
        work = Path(tmp)
        print(f"machine: {cpu_name()} | {os.cpu_count()} cores | native bf16: {'yes' if native_bf16() else 'no'} | "
              f"load before: {load:.2f}", flush=True)
        nano = run_nanogpt(src, work, corpus)
        print(f"nanoGPT (train.py, CPU recipe): val loss {nano['val_loss']:.4f} at iter {nano['step']} in {nano['wall_s']:.1f} s",
              flush=True)
        axon = run_axon(work)
        print(f"axon train (default job):       val loss {axon['val_loss']:.4f} at step {axon['step']} in {axon['wall_s']:.1f} s"
              + (f" | {axon['muon']}" if axon["muon"] else ""), flush=True)
    ratio = axon["wall_s"] / nano["wall_s"]
    bar = axon["val_loss"] <= BAR_LOSS and ratio <= BAR_RATIO
    aim = axon["val_loss"] <= AIM_LOSS and ratio <= AIM_RATIO
    print(f"wall ratio axon / nanoGPT: {ratio:.2f}x | bar (<= {BAR_LOSS} in <= {BAR_RATIO:.1f}x): {'PASS' if bar else 'FAIL'} | "
          f"aim (<= {AIM_LOSS} in <= {AIM_RATIO:.1f}x): {'met' if aim else 'not met'}")
    if os.getloadavg()[0] > (os.cpu_count() or 2) * 0.75 + 1:
        print("warning: the machine was busy during the runs; the walls are not comparable to a quiet run", file=sys.stderr)
    if args.json:
        print(json.dumps({"cpu": cpu_name(), "native_bf16": native_bf16(), "nanogpt": nano, "axon": axon, "ratio": ratio,
                          "bar_passed": bar, "aim_met": aim}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

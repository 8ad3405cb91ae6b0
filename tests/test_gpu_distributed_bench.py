"""The GPU data-parallel check script (benchmarks/gpu_distributed.py) on the CPU: its one-process
mode over gloo must find DDP and FSDP at world size 1 bitwise equal to the plain run in fp32, and
its stop-and-resume runs equal to the uninterrupted ones. On a GPU the same script uses NCCL."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_distributed.py"


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed")
def test_cpu_smoke_finds_ddp_fsdp_and_resume_exact(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--steps", "6", "--layers", "1", "--width", "64",
           "--block", "64", "--batch", "16", "--port", "29573", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["mode"] == "world1" and report["steps"] == 6
    for label in ("again", "ddp", "fsdp"):  # fp32 on one CPU process: the same arithmetic
        assert report[label]["bitwise_equal_to_plain"], report[label]
    for label in ("ddp", "fsdp"):
        assert report[label]["resume_bitwise_equal"], report[label]
        assert report[label]["tokens_per_s"] > 0


def test_refuses_cuda_without_a_gpu_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    p = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1

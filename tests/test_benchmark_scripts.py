"""The CPU benchmark scripts run end to end on a toy size and refuse bad input in one line.

Behaviour only: their figures are measured by hand on a quiet machine (benchmarks/README.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args, timeout=240):
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_throughput_smoke_reports_both_models():
    p = run("train_throughput.py", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "2",
            "--steps", "2", "--rounds", "2", "--warmup", "1", "--threads", "1", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert [row["name"] for row in r["results"]] == ["axon", "hf-sdpa"] and r["ratio"] > 0
    assert r["ratio_nanogpt"] is None and r["first_losses_max_gap"] < 1e-3  # the same model trains the same way


def test_train_throughput_refuses_a_directory_without_nanogpt(tmp_path):
    p = run("train_throughput.py", "--nanogpt", str(tmp_path), "--steps", "1", "--rounds", "1", "--warmup", "1",
            "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--batch-size", "2")
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1] == f"error: --nanogpt {tmp_path}: no model.py there (a nanoGPT checkout is expected)"


def test_default_job_refuses_a_directory_without_nanogpt(tmp_path):
    p = run("default_job.py", "--nanogpt", str(tmp_path))
    assert p.returncode == 2 and p.stderr.strip() == f"error: {tmp_path} is not a nanoGPT checkout (no train.py or data/shakespeare_char/prepare.py)"

"""`axon scaling`: a tiny real IsoFLOP sweep on the bundled corpus, resumed, fitted, predicted."""

import json
import math

import pytest

from axon.cli import main
from axon.lab.scaling import parse_sizes, plan_sweep, read_csv

# 2 budgets x 3 widths of the tiny preset (2 layers, 16-wide heads), 16 to ~140 steps each;
# the 48-wide model at the small budget falls under --min-steps and is left out: 5 runs.
RECIPE = ["--model.preset=tiny", "--model.block_size=32", "--train.batch_size=4", "--train.eval_batches=2",
          "--train.log_interval=10"]
SWEEP = ["--budgets", "4e8,1.2e9", "--sizes", "16,32,48", "--bootstrap", "30", "--no-progress"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    cache = f"--data.cache_dir={root / 'cache'}"
    out = root / "sweep"
    assert main(["scaling", "run", *SWEEP, "--out", str(out), "--flops", "1e12", *RECIPE, cache]) == 0
    return out, cache


def test_sweep_writes_its_files_and_a_finite_fit(sweep, capsys):
    out, _ = sweep
    for name in ("sweep.csv", "fits.json", "scaling.png", "report.html", "plan.json"):
        assert (out / name).is_file(), name
    rows = read_csv(out)
    assert len(rows) == 5 and {r["name"] for r in rows} >= {"C4e8-L2-d16", "C1.2e9-L2-d48"}
    for r in rows:  # each run trained about its budget's FLOPs (whole steps round it)
        assert r["C"] == pytest.approx(r["budget"], rel=0.2)
        assert 1.0 < r["loss"] < 5.0
    fits = json.loads((out / "fits.json").read_text())
    for key in ("E", "A", "B", "alpha", "beta"):
        assert math.isfinite(fits["chinchilla"][key]) and len(fits["chinchilla"][key + "_ci"]) == 2
    assert len(fits["chinchilla"]["samples"]) == 30
    assert "kaplan_N" in fits and fits["flops_per_param"] > 6  # attention and head FLOPs on top of 6N
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "C1.2e9-L2-d32" in html


def test_rerun_trains_nothing_and_predict_is_finite(sweep, capsys):
    out, cache = sweep
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    assert len(stamps) == 5
    assert main(["scaling", "run", *SWEEP, "--out", str(out), *RECIPE, cache]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")} == stamps
    capsys.readouterr()
    assert main(["scaling", "predict", str(out), "--flops", "1e11,1e12", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert [p["flops"] for p in preds] == [1e11, 1e12]
    for p in preds:
        for key in ("N", "D", "loss"):
            assert math.isfinite(p[key]) and p[key] > 0
            lo, hi = p[key + "_ci"]
            assert 0 < lo <= hi
        assert p["N"] * p["D"] * p["flops_per_param"] == pytest.approx(p["flops"])
    assert preds[1]["N"] > preds[0]["N"] and preds[1]["D"] > preds[0]["D"]  # more compute: bigger and longer


def test_fit_a_users_csv(tmp_path, capsys):
    csv = tmp_path / "mine.csv"
    rows = ["N,D,loss"] + [f"{n},{d},{1.7 + 400 / n ** 0.34 + 410 / d ** 0.28:.6f}"
                           for n in (1e7, 1e8, 1e9) for d in (1e9, 1e10, 1e11)]
    csv.write_text("\n".join(rows) + "\n")
    assert main(["scaling", "fit", str(csv), "--out", str(tmp_path / "fit"), "--bootstrap", "20", "--flops", "1e21"]) == 0
    text = capsys.readouterr().out
    assert "Chinchilla L(N, D)" in text and "N_opt" in text and "(C = 6 N D)" in text
    fits = json.loads((tmp_path / "fit" / "fits.json").read_text())
    assert fits["chinchilla"]["alpha"] == pytest.approx(0.34, abs=0.01) and "isoflop" not in fits
    assert (tmp_path / "fit" / "scaling.png").stat().st_size > 10_000


def test_plan_sizes_and_user_errors(tmp_path, capsys):
    from axon.models.decoder import DecoderConfig

    base = DecoderConfig(n_layer=4, n_embd=128, n_head=4)
    assert [(s.n_layer, s.n_embd, s.n_head) for s in parse_sizes("32,64,2x96", base)] == [(4, 32, 1), (4, 64, 2), (2, 96, 3)]
    cache = f"--data.cache_dir={tmp_path / 'cache'}"
    runs, notes = plan_sweep(None, [*RECIPE, cache], "16,32", tokens="4096,8192")
    assert [r.D for r in runs] == [4096, 4096, 8192, 8192] and not notes and runs[0].budget is None
    bad = tmp_path / "bad.csv"
    bad.write_text("N,loss\n1,2\n")
    cases = [
        ["scaling", "run", "--budgets", "1e9", "--sizes", "32", *RECIPE],  # no --out
        ["scaling", "plan", "--budgets", "1e9", "--tokens", "1e4", "--sizes", "32"],
        ["scaling", "plan", "--budgets", "lots", "--sizes", "32"],
        ["scaling", "plan", "--budgets", "1e9", "--sizes", "3x"],
        ["scaling", "fit", str(bad)],
        ["scaling", "predict", str(tmp_path), "--flops", "1e15"],
        ["scaling", "fit", str(bad), "--train.max_steps=3"],
    ]
    for argv in cases:
        assert main(argv + ([cache] if argv[1] != "fit" and argv[1] != "predict" else [])) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("axon scaling: error:"), err
        assert len(err.splitlines()) == 1, err

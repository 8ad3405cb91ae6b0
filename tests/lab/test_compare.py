"""axon compare: variants, matched budgets, statistics, the report, and a tiny end-to-end run."""

import base64
import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from lab_data import tiny_args, tiny_data_dir
from numerics import order_tol
from scipy import stats

from axon.cli import main
from axon.errors import ConfigError
from axon.lab.compare import (
    make_variants,
    match_steps,
    mean_std,
    parse_seeds,
    parse_variant,
    plan,
    welch,
    write_report,
)
from axon.models.flops import flops_per_token


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data_dir(tmp_path_factory.mktemp("compare-data"))


# -- variants and seeds --------------------------------------------------------------------------


def test_variant_syntax():
    assert parse_variant("llama: --model.pos=rope --model.norm=rmsnorm") == ("llama", ["--model.pos=rope", "--model.norm=rmsnorm"])
    assert parse_variant("base:") == ("base", [])
    assert parse_variant("q: --train.sample_prompt='a b'") == ("q", ["--train.sample_prompt=a b"])
    for bad in ("no colon --a=1", "bad name: --a=1", "x: model.pos=rope"):
        with pytest.raises(ConfigError):
            parse_variant(bad)
    vs = make_variants(["configs/a.yaml"], ["a:", "b: --config configs/b.yaml --model.n_layer=2"])
    assert [(v.name, v.recipe, v.overrides) for v in vs] == [("a", "configs/a.yaml", []), ("b", "configs/b.yaml", ["--model.n_layer=2"])]
    assert [v.name for v in make_variants(["x/gpt2.yaml", "y/gpt2.yaml", "llama.yaml"], [])] == ["gpt2", "gpt2-2", "llama"]
    with pytest.raises(ConfigError, match="not both"):
        make_variants(["a.yaml", "b.yaml"], ["c:"])
    with pytest.raises(ConfigError, match="at least two"):
        make_variants(["a.yaml"], [])
    with pytest.raises(ConfigError, match="unique"):
        make_variants([], ["a:", "a: --model.n_layer=1"])
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,5,7") == [0, 5, 7]
    for bad in ("0", "x", "1,1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


# -- budgets -------------------------------------------------------------------------------------


def test_match_steps_arithmetic():
    # Equal FLOPs: steps inversely proportional to FLOPs per token (and to tokens per step).
    C = 600 * 4096 * 1.0e6
    assert match_steps("flops", C, 4096, 1.0e6) == 600
    assert match_steps("flops", C, 4096, 2.0e6) == 300
    assert match_steps("flops", C, 4096, 3.0e6) == 200
    assert match_steps("flops", C, 2048, 1.0e6) == 1200
    assert match_steps("flops", C, 4096, 1.5e6) == 400
    assert match_steps("tokens", 600 * 4096, 8192, 1.0) == 300  # equal tokens: a doubled batch halves the steps
    assert match_steps("steps", 250, 123, 4.0) == 250
    assert match_steps("flops", 1.0, 4096, 1.0e6) == 1  # never zero steps


def test_plan_matches_the_baseline_budget(data):
    from axon.lab.compare import Variant

    common = [f"--data.dir={data}", "--model.preset=tiny", "--train.max_steps=100", "--train.batch_size=8"]
    variants = [Variant("small", None, ["--model.n_layer=1"]), Variant("big", None, ["--model.n_layer=3"]),
                Variant("wide_batch", None, ["--model.n_layer=1", "--train.batch_size=16"])]
    plans, C = plan(variants, common, "flops", None, "small")
    small, big, wide = plans
    assert small.cfg.model.vocab_size is not None  # filled from the tokenizer, as training does
    tps = 8 * 64  # batch x block_size of the tiny preset
    assert small.tokens_per_step == tps and wide.tokens_per_step == 2 * tps
    assert C == 100 * tps * flops_per_token(small.cfg.model)
    assert small.steps == 100
    assert big.steps == round(C / (tps * big.flops_per_token)) < 100  # a deeper model gets fewer steps
    assert wide.steps == 50
    for p in plans:
        assert abs(p.train_flops - C) <= tps * 2 * p.flops_per_token  # within a step of the budget
        assert p.budget_args == [f"--train.max_steps={p.steps}", "--train.max_tokens=null"]
    plans, D = plan(variants, common, "tokens", None, "small")
    assert D == 100 * tps and [p.steps for p in plans] == [100, 100, 50]
    plans, S = plan(variants, common, "steps", 40, "big")
    assert S == 40 and [p.steps for p in plans] == [40, 40, 40]
    plans, T = plan(variants, common, "time", 12.5, "small")
    assert T == 12.5 and plans[0].budget_args == ["--train.max_seconds=12.5"]
    with pytest.raises(ConfigError, match="max_seconds"):
        plan(variants, common, "time", None, "small")


# -- statistics ----------------------------------------------------------------------------------


def test_mean_std_and_welch_against_scipy_and_hand_count():
    a, b = [3.1, 3.3, 3.2], [3.0, 3.05, 3.1]
    m, s = mean_std(a)
    assert m == pytest.approx(3.2) and s == pytest.approx(statistics.stdev(a))
    w = welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert w["diff"] == pytest.approx(0.15)
    assert w["p"] == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (w["low"], w["high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # By hand: s_a^2 = 0.01, s_b^2 = 0.0025; se^2 = 0.01/3 + 0.0025/3; Welch-Satterthwaite df.
    va, vb = 0.01 / 3, 0.0025 / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert w["df"] == pytest.approx(df) == pytest.approx(2.9411764705)
    assert w["high"] - w["diff"] == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(va + vb))
    one = welch([3.0], b)
    assert math.isnan(one["p"]) and math.isnan(one["low"]) and one["diff"] == pytest.approx(-0.05)


# -- report --------------------------------------------------------------------------------------


def fake_rows(tmp_path):
    rows = []
    for variant, base in (("base", 2.0), ("new", 1.9)):
        for seed in range(3):
            run = tmp_path / f"{variant}-{seed}"
            run.mkdir()
            with open(run / "metrics.jsonl", "w") as f:
                f.writelines(json.dumps({"step": step, "tokens": 100 * step, "train_loss": base + 1 / step + 0.01 * seed}) + "\n" for step in range(1, 6))
                f.write(json.dumps({"step": 5, "tokens": 500, "val_loss": base + 0.01 * seed, "val_full": True}) + "\n")
            rows.append({"variant": variant, "seed": seed, "run_dir": str(run), "params": 1000, "flops_per_token": 6000.0,
                         "n_head": 2, "n_embd": 16, "micro_batch": 4, "grad_accum": 1, "context": 25, "steps": 5,
                         "tokens": 500, "train_flops": 3e6, "train_seconds": 1.0, "ms_per_step": 200.0,
                         "final_train_loss": base + 0.2 + 0.01 * seed, "test_batches": 7, "inference_ms_per_batch": 3.0,
                         "test_loss": base + 0.01 * seed})
    return rows


def test_report_files(tmp_path):
    rows = fake_rows(tmp_path)
    report = write_report(tmp_path, rows, "base", "axon compare x y")
    md = (tmp_path / "results.md").read_text()
    assert "| base (n=3) |" in md and "(baseline)" in md and "p (Welch t)" in md
    assert "-0.1000 [" in md  # new - base = -0.1 exactly (same spread per seed)
    new = report["summary"][1]
    assert new["test_loss"] == pytest.approx(1.91) and new["test_loss_std"] == pytest.approx(0.01)
    assert new["vs_baseline"]["p"] < 1e-3
    with open(tmp_path / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 6 and {r["variant"] for r in csv_rows} == {"base", "new"}
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html and "axon compare x y" in html
    payload = html.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n"  # the plot itself, embedded
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_report_tolerates_a_torn_last_metrics_line(tmp_path):
    """A run killed mid-write leaves half a JSON line at the end of metrics.jsonl; the report reads
    the records before it (train.logging.read_metrics), as the trainer does on resume."""
    rows = fake_rows(tmp_path)
    with open(rows[0]["run_dir"] + "/metrics.jsonl", "a") as f:
        f.write('{"step": 6, "tokens": 600, "train_l')
    write_report(tmp_path, rows, "base", "axon compare x y")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    from axon.lab.compare import read_metrics

    assert [r["step"] for r in read_metrics(Path(rows[0]["run_dir"]))] == [1, 2, 3, 4, 5, 5]


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.numerics
def test_compare_end_to_end_and_resume(data, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--variant", "llama:", "--variant", "gpt2: --model.pos=learned --model.norm=layernorm --model.mlp=gelu",
            "--seeds", "2", "--budget", "flops", "--workers", "2", "--out", str(out), "--no-progress", *tiny_args(data)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| llama (n=2) |" in printed and "| gpt2 (n=2) |" in printed and "report.html" in printed
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["gpt2-s0", "gpt2-s1", "llama-s0", "llama-s1"]
    results = {r: json.loads((out / "runs" / r / "result.json").read_text()) for r in runs}
    assert results["llama-s0"]["val_loss"] != results["llama-s1"]["val_loss"]  # seeds differ
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for r in rows:
        assert r["test_loss"] == str(results[f"{r['variant']}-s{r['seed']}"]["val_loss"])
        assert int(r["test_batches"]) > 0 and float(r["inference_ms_per_batch"]) > 0
    timed = json.loads((out / "runs" / "gpt2-s0" / "inference.json").read_text())
    # The same test split through another process and thread count (other matmul blockings): the
    # tiny_args model is 1 block, width 32, MLP 128, so the summation-order bound of a logit, 2 deep.
    loss = results["gpt2-s0"]["val_loss"]
    assert timed["test_loss_timed"] == pytest.approx(loss, abs=order_tol(torch.float32, n=128, depth=2, scale=loss))
    plan = json.loads((out / "plan.json").read_text())
    by = {v["name"]: v for v in plan["variants"]}
    assert by["llama"]["train_flops"] == plan["budget_value"]
    assert by["gpt2"]["steps"] == round(plan["budget_value"] / (by["gpt2"]["tokens_per_step"] * by["gpt2"]["flops_per_token"]))
    stamps = {r: (out / "runs" / r / "result.json").stat().st_mtime_ns for r in runs}
    # The same command again, now with --eval-tasks: nothing is retrained, each finished run is scored
    # on the prompted tasks (as axon eval --tasks scores it) and the report gains their columns.
    tasks = write_eval_tasks(tmp_path / "tasks")
    assert main([*argv, "--eval-tasks", ",".join(map(str, tasks)), "--eval-shots", "1"]) == 0
    assert {r: (out / "runs" / r / "result.json").stat().st_mtime_ns for r in runs} == stamps
    printed = capsys.readouterr().out
    assert "| gpt2 (n=2) |" in printed
    assert "| mc acc (1-shot) | mc acc_norm (1-shot) | ll perplexity (1-shot) | ll acc (1-shot) |" in printed
    with open(out / "results.csv") as f:
        rows = {(r["variant"], r["seed"]): r for r in csv.DictReader(f)}
    from axon.eval.prompting import LMScorer, evaluate_tasks

    ours = evaluate_tasks(LMScorer.from_run(out / "runs" / "gpt2-s1"), tasks, shots=1, progress=False)
    assert ours["mc"]["shots"] == 1 and ours["ll"]["n"] == 3
    for task, name in (("mc", "acc"), ("mc", "acc_norm"), ("ll", "perplexity"), ("ll", "acc")):
        assert float(rows["gpt2", "1"][f"{task}/{name}"]) == pytest.approx(ours[task]["metrics"][name], rel=1e-9)
    assert json.loads((out / "plan.json").read_text())["eval_tasks"] == ["mc", "ll"]
    assert all((out / "runs" / r / "eval_tasks.json").is_file() for r in runs)  # a rerun reuses them
    # A user error is one line, exit status 2.
    assert main(["compare", "configs/x.yaml", "--out", str(out)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main([*argv, "--eval-shots", "2"]) == 2
    assert capsys.readouterr().err.strip().endswith("--eval-shots needs --eval-tasks: the prompted tasks the runs are "
                                                    "scored on")


def write_eval_tasks(folder: Path) -> list[Path]:
    """Two prompted tasks in words of the tiny corpus (its character tokenizer has no digits)."""
    import yaml

    folder.mkdir()
    lines = [("First Citizen", "speak"), ("All", "Speak"), ("Second Citizen", "word")]
    mc = [{"q": f"{who}:", "choices": [f" {a}", " me", " you"], "gold": i % 3} for i, (who, a) in enumerate(lines)]
    ll = [{"q": f"{who}:", "a": a} for who, a in lines]
    common = {"dataset_path": "json", "test_split": "test", "fewshot_split": "test",
              "fewshot_config": {"sampler": "first_n"}}
    specs = {"mc": {"output_type": "multiple_choice", "doc_to_text": "{{q}}", "doc_to_choice": "choices",
                    "doc_to_target": "gold", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]},
             "ll": {"output_type": "loglikelihood", "doc_to_text": "{{q}}", "doc_to_target": " {{a}}",
                    "target_delimiter": ""}}
    paths = []
    for name, records in (("mc", mc), ("ll", ll)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        spec = {"task": name, **common, "dataset_kwargs": {"data_files": {"test": f"{name}.jsonl"}}, **specs[name]}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        paths.append(folder / f"{name}.yaml")
    return paths


# -- --metric ------------------------------------------------------------------------------------


def test_metric_syntax_and_direction():
    from axon.lab.compare import Metric, parse_metric

    assert parse_metric("loss") == Metric("loss", False)
    assert parse_metric("greedy_gold") == Metric("greedy_gold", True)
    assert parse_metric("val_gold") == Metric("gold", True)  # result.json's prefix is optional
    assert parse_metric("perplexity") == Metric("perplexity", False)
    assert parse_metric("kl:min") == Metric("kl", False) and parse_metric("kl:max") == Metric("kl", True)
    for bad in ("gold:up", "a b", "", "gold:"):
        with pytest.raises(ConfigError, match="--metric"):
            parse_metric(bad)


def test_report_ranks_by_a_metric_higher_is_better(tmp_path):
    """--metric gold: Welch's test and the rank read each run's gold, not its loss: the variant with
    the worse loss but the better gold ranks first."""
    from axon.lab.compare import Metric, metric_value

    rows = fake_rows(tmp_path)
    for r in rows:  # "new" has the lower loss, "base" the higher gold
        r["metric"] = (0.8 if r["variant"] == "base" else 0.6) + 0.01 * r["seed"]
    report = write_report(tmp_path, rows, "base", "axon compare x y --metric gold", metric=Metric("gold", True))
    base, new = report["summary"]
    assert (base["rank"], new["rank"]) == (1, 2)
    assert new["vs_baseline"]["diff"] == pytest.approx(-0.2)
    ref = stats.ttest_ind([0.6, 0.61, 0.62], [0.8, 0.81, 0.82], equal_var=False)
    assert new["vs_baseline"]["p"] == pytest.approx(ref.pvalue)
    md = (tmp_path / "results.md").read_text()
    assert "gold (higher is better)" in md and "Δ gold vs baseline" in md and "-0.2000 [" in md
    assert "| rank |" in md and "Ranked by gold" in md
    assert (tmp_path / "metric.png").read_bytes()[:4] == b"\x89PNG"  # the bars with intervals
    low = write_report(tmp_path, rows, "base", "c", metric=Metric("gold", False))["summary"]
    assert [s["rank"] for s in low] == [2, 1]
    # A run that did not log the metric: one line naming the run and what it did log.
    with pytest.raises(ConfigError, match=r"did not log val_greedy_gold .*: gold, loss\)"):
        metric_value(Metric("greedy_gold", True), {"val_loss": 1.0, "val_gold": 0.5, "step": 3}, tmp_path)
    assert metric_value(Metric("loss", False), {"val_loss": 1.5}, tmp_path) == 1.5

"""`axon compare`: train variants x seeds under one matched budget, then tabulate and test.

    variants    several recipes (`axon compare a.yaml b.yaml`), or one recipe and named override
                lists (`--variant "llama: --model.pos=rope --model.norm=rmsnorm"`); the first is
                the baseline unless --baseline NAME. Overrides after the options apply to all.
    seeds       --seeds 3 (seeds 0, 1, 2) or --seeds 0,5,7: train.seed of each run
    budget      steps | tokens | flops | time, of --budget-value (default: the baseline recipe's
                own). Equal FLOPs: budget C = the baseline's steps x tokens/step x FLOPs/token;
                variant v trains round(C / (tokens/step_v x FLOPs/token_v)) steps. Equal tokens:
                round(D / tokens/step_v) steps. Time: train.max_seconds for all (the lr schedule
                then follows the clock, see the trainer); runs in parallel share the cores, so a
                time budget is only fair when every run gets the same cores.
    runs        one `axon train` subprocess per (variant, seed) through axon.lab.runner, in
                <out>/runs/<variant>-s<seed>; running the same command again after a kill redoes
                no finished run (and no finished inference timing).
    inference   after training, each run's model evaluates the test split (= the validation split
                the trainer's final full evaluation used) and the pass is timed: ms per test batch
                (batches built before the clock starts), on the run's device with the run's
                threads, one run at a time.
    report      <out>/results.md, results.csv (one row per run), report.html (the table and the
                loss curves as PNG, embedded as base64: readable offline), curves.png; with
                --metric NAME, metric.png (each seed and the mean's 95% interval), embedded instead.

    eval tasks  --eval-tasks NAME[,NAME] [--eval-shots K]: after training, each run's newest
                checkpoint is scored on those prompted tasks (axon.eval.prompting: bundled names,
                task YAML files or folders; K shots, default each task's num_fewshot; seed 1234)
                on its device with its threads, cached in <run>/eval_tasks.json; each task's
                metrics become columns "TASK/METRIC" of results.csv and "TASK METRIC (K-shot)"
                (mean +- std over seeds) of results.md and report.html.

    metric      --metric NAME[:max|:min] (default loss, lower is better): what the statistics and
                the report rank by. ``loss`` is the test loss; another NAME is the final
                evaluation's ``val_NAME`` in each run's result.json (e.g. ``greedy_gold``, the
                greedy exact-match accuracy the sft and grpo tasks both report on their validation
                prompts). Direction: :max (higher is better) or :min; without one, names ending in
                loss or perplexity are lower-is-better, any other higher-is-better. A run that did
                not log it is a one-line error naming the run and the figures it did log.

Statistics (per variant against the baseline, on the metric of each seed): the difference of
means with a 95% confidence interval and the p-value of Welch's unequal-variances t-test (Welch
1947; scipy.stats.ttest_ind(equal_var=False)); the interval uses the Welch-Satterthwaite degrees
of freedom, diff +- t_{0.975, df} * sqrt(s_v^2/n_v + s_b^2/n_b). It needs >= 2 seeds per variant.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from axon.atomic import atomic_write_json
from axon.errors import ConfigError, OptionError, check_output_dir, is_real

BUDGETS = ("steps", "tokens", "flops", "time")
GOALS = {"max": True, "min": False}  # --metric NAME:GOAL -> higher is better
NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


# ----------------------------------------------------------------------------------------------
# Variants and budgets


@dataclass
class Variant:
    name: str
    recipe: str | None  # YAML path (None: the defaults, as `axon train` with no --config)
    overrides: list[str] = field(default_factory=list)  # this variant's own --section.key=value


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """``"NAME: --a.b=1 --c.d=x"`` -> (NAME, [overrides]); the overrides are split as a shell would."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not sep or not NAME.match(name):
        raise ConfigError(f"--variant {spec!r}: write it as \"NAME: --section.key=value ...\" "
                          "(NAME of letters, digits, _ . + -)")
    try:
        args = shlex.split(rest)
    except ValueError as e:
        raise ConfigError(f"--variant {name}: cannot split its overrides ({e})") from None
    if args and not args[0].startswith("--"):  # the rest is checked as `axon train` checks overrides
        raise ConfigError(f"--variant {name}: {args[0]!r} is not an override; write --section.key=value")
    return name, args


def make_variants(recipes: list[str], specs: list[str]) -> list[Variant]:
    """Recipes alone: one variant per recipe (named by its file stem). One recipe (or none) with
    --variant specs: the recipe plus each spec's overrides (a spec may name its own --config)."""
    if specs and len(recipes) > 1:
        raise ConfigError("give several recipes OR one recipe with --variant override lists, not both")
    variants: list[Variant] = []
    if specs:
        for spec in specs:
            name, args = parse_variant(spec)
            recipe = recipes[0] if recipes else None
            own: list[str] = []
            it = iter(args)
            for a in it:
                if a == "--config":
                    recipe = next(it, None)
                elif a.startswith("--config="):
                    recipe = a.split("=", 1)[1]
                else:
                    own.append(a)
            variants.append(Variant(name, recipe, own))
    else:
        for path in recipes:
            stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(path).stem)
            name, i = stem, 2
            while any(v.name == name for v in variants):
                name, i = f"{stem}-{i}", i + 1
            variants.append(Variant(name, path))
    if len(variants) < 2:
        raise ConfigError("compare needs at least two variants: give two recipes or two --variant specs")
    names = [v.name for v in variants]
    dup = [n for n in names if names.count(n) > 1]
    if dup:
        raise ConfigError(f"variant names must be unique; {dup[0]!r} appears twice")
    return variants


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"0,5,7"`` -> [0, 5, 7]."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (3 = seeds 0, 1, 2) or a list (0,5,7)") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"--seeds {text!r}: seeds must be distinct")
    return seeds


@dataclass
class Plan:
    """What one variant's runs are: resolved numbers and the overrides that set the budget."""
    variant: Variant
    cfg: object  # RunConfig with vocab_size resolved
    tokens_per_step: int
    flops_per_token: float
    params: int
    steps: int  # optimizer steps each run trains (time budget: the schedule's length)
    budget_args: list[str]

    @property
    def train_flops(self) -> float:
        return float(self.steps) * self.tokens_per_step * self.flops_per_token


def recipe_steps(cfg) -> int:
    """The trainer's step count of a config: the smaller of max_steps and ceil(max_tokens / tokens per step)."""
    tc = cfg.train
    per_step = tc.batch_size * cfg.model.block_size * tc.grad_accum
    return min(s for s in (tc.max_steps, tc.max_tokens and math.ceil(tc.max_tokens / per_step)) if s)


def match_steps(budget: str, value: float, tokens_per_step: int, flops_per_token: float) -> int:
    """Steps that spend ``value`` of the budget: steps, tokens (value / tokens per step) or FLOPs
    (value / (tokens per step x FLOPs per token)), rounded to the nearest step (at least 1)."""
    if budget == "steps":
        per_step = 1.0
    elif budget == "tokens":
        per_step = float(tokens_per_step)
    elif budget == "flops":
        per_step = float(tokens_per_step) * flops_per_token
    else:
        raise ValueError(budget)
    return max(1, round(value / per_step))


def plan(variants: list[Variant], common: list[str], budget: str, budget_value: float | None,
         baseline: str) -> tuple[list[Plan], float]:
    """Resolve every variant's config and the steps that match the budget; returns (plans, value)."""
    from axon.config import load_config
    from axon.models.flops import count_params, flops_per_token
    from axon.tasks import resolve_vocab

    if budget not in BUDGETS:
        raise ConfigError(f"--budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    if budget_value is not None and not (is_real(budget_value) and math.isfinite(budget_value) and budget_value > 0):
        raise OptionError("budget_value", "must be a positive finite number", budget_value)
    resolved = []
    for v in variants:
        cfg = resolve_vocab(load_config(v.recipe, [*common, *v.overrides]))
        tps = cfg.train.batch_size * cfg.model.block_size * cfg.train.grad_accum
        resolved.append((v, cfg, tps, flops_per_token(cfg.model, cfg.model.block_size), count_params(cfg.model)))
    base = next(r for r in resolved if r[0].name == baseline)
    _, bcfg, btps, bfpt, _ = base
    if budget_value is None:  # the baseline recipe's own budget
        if budget == "time":
            if bcfg.train.max_seconds is None:
                raise ConfigError("--budget time: give --budget-value SECONDS (the baseline recipe sets no train.max_seconds)")
            budget_value = bcfg.train.max_seconds
        else:
            budget_value = float(match_steps("steps", recipe_steps(bcfg), btps, bfpt)) * {
                "steps": 1.0, "tokens": btps, "flops": btps * bfpt}[budget]
    plans = []
    for v, cfg, tps, fpt, params in resolved:
        if budget == "time":
            steps = recipe_steps(cfg)
            args = [f"--train.max_seconds={budget_value:g}"]
        else:
            steps = match_steps(budget, budget_value, tps, fpt)
            args = [f"--train.max_steps={steps}", "--train.max_tokens=null"]
        plans.append(Plan(v, cfg, tps, fpt, params, steps, args))
    return plans, float(budget_value)


# ----------------------------------------------------------------------------------------------
# The metric


@dataclass(frozen=True)
class Metric:
    name: str  # "loss" (the test loss) or the NAME of a run's final val_NAME figure
    higher: bool  # higher is better

    @property
    def label(self) -> str:
        return "test loss" if self.name == "loss" else f"{self.name} ({'higher' if self.higher else 'lower'} is better)"


def parse_metric(text: str) -> Metric:
    """``"loss"`` -> Metric("loss", False); ``"gold"`` / ``"gold:max"`` -> higher is better;
    ``"x:min"`` lower; without a goal, names ending in loss or perplexity are lower-is-better."""
    name, sep, goal = text.partition(":")
    name = name.strip().removeprefix("val_")
    if not re.match(r"^[A-Za-z0-9_]+$", name) or (sep and goal not in GOALS):
        raise ConfigError(f"--metric {text!r}: write NAME, NAME:max or NAME:min (NAME a figure of the runs' "
                          "result.json, e.g. loss or greedy_gold)")
    if sep:
        return Metric(name, GOALS[goal])
    return Metric(name, not name.endswith(("loss", "perplexity")))


def metric_value(metric: Metric, result: dict, run_dir: Path) -> float:
    """The run's final figure of ``metric``: its test loss, or val_NAME of its result.json."""
    if metric.name == "loss":
        return float(result["val_loss"])
    value = result.get(f"val_{metric.name}")
    if not is_real(value):
        logged = sorted(k.removeprefix("val_") for k, v in result.items() if k.startswith("val_") and is_real(v))
        raise ConfigError(f"--metric {metric.name}: run {run_dir} did not log val_{metric.name} (its final figures: "
                          f"{', '.join(logged) or 'none'})")
    return float(value)


# ----------------------------------------------------------------------------------------------
# Statistics


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; nan for one value)."""
    n = len(xs)
    m = sum(xs) / n
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return m, s


def welch(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """mean(a) - mean(b), its ``level`` confidence interval (Welch-Satterthwaite df) and the
    two-sided p-value of Welch's t-test. NaNs when either side has fewer than 2 values."""
    from scipy import stats

    diff = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "low": float("nan"), "high": float("nan"), "p": float("nan"), "df": float("nan")}
    va, vb = mean_std(a)[1] ** 2 / len(a), mean_std(b)[1] ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # identical constant samples: no spread to test against
        p = 1.0 if diff == 0 else 0.0
        return {"diff": diff, "low": diff, "high": diff, "p": p, "df": float("nan")}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return {"diff": diff, "low": diff - half, "high": diff + half, "p": p, "df": df}


# ----------------------------------------------------------------------------------------------
# Inference timing


def time_inference(run_dir: Path, threads: int) -> dict:
    """Evaluate the run's model on the whole test (= validation) split, timed; cached in
    <run_dir>/inference.json so that a resumed compare does not redo it."""
    import torch

    from axon.train.run import evaluate_run

    path = run_dir / "inference.json"
    if path.is_file():
        return json.loads(path.read_text())
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # the whole split in batches of the run's own size, on the device it trained on
        metrics = evaluate_run(run_dir, "val", device=cfg_device(run_dir), task_metrics=False, timed=True)
    finally:
        torch.set_num_threads(before)
    out = {"test_batches": metrics["batches"], "inference_ms_per_batch": 1000 * metrics["seconds"] / metrics["batches"],
           "test_loss_timed": metrics["loss"], "threads": threads}
    atomic_write_json(path, out, indent=2)
    return out


def cfg_device(run_dir: Path) -> str:
    """The device the run trained on (its train.device), for timing its inference there too."""
    from axon.config import load_config

    return load_config(run_dir / "config.yaml").train.device


# ----------------------------------------------------------------------------------------------
# Prompted tasks (--eval-tasks)

EVAL_SEED = 1234  # of the shots' draw: axon eval --tasks's default


def check_eval_tasks(tasks: str | None, shots: int | None, plans: list[Plan]) -> list | None:
    """The TaskSpecs of --eval-tasks, every task file read and checked (and every variant a causal
    language model) before anything trains; None without --eval-tasks."""
    from axon.eval.prompting import resolve_tasks
    from axon.eval.prompting.harness import check_harness_options
    from axon.eval.prompting.scorer import is_causal_lm

    if tasks is None:
        if shots is not None:
            raise ConfigError("--eval-shots needs --eval-tasks: the prompted tasks the runs are scored on")
        return None
    check_harness_options(shots, None, EVAL_SEED)
    specs = resolve_tasks(tasks)
    for spec in specs:
        if spec.output_type == "loglikelihood_rolling" and shots:
            raise OptionError("eval_shots", f"must be 0 for task {spec.name}, whose documents are scored whole", shots)
    for p in plans:
        if not is_causal_lm(p.cfg.model.family):
            raise ConfigError(f"--eval-tasks: variant {p.variant.name} trains a {p.cfg.model.family} model, not a "
                              "causal language model: prompted tasks need one (decoder, mamba, rnn, ...)")
    return specs



def _fingerprint(specs: list, shots: int | None) -> str:
    """What a cached eval_tasks.json was computed from: the tasks' files (YAML and records) and the shots."""
    import hashlib

    h = hashlib.sha256(json.dumps({"shots": shots, "seed": EVAL_SEED}).encode())
    for spec in specs:
        h.update(spec.name.encode() + b"\0" + spec.path.read_bytes())
        h.update(json.dumps([spec.test_docs, spec.fewshot_docs], sort_keys=True).encode())
    return h.hexdigest()


def eval_tasks_of(run_dir: Path, specs: list, shots: int | None, threads: int) -> dict:
    """axon eval --tasks of the run (axon.eval.prompting.evaluate_tasks): {task: results}; cached in
    <run_dir>/eval_tasks.json, reused while the task files and shots are the same."""
    import torch

    from axon.eval.prompting import LMScorer, evaluate_tasks

    path, key = run_dir / "eval_tasks.json", _fingerprint(specs, shots)
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("fingerprint") == key:
            return cached["results"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        scorer = LMScorer.from_run(run_dir, cfg_device(run_dir), seed=EVAL_SEED)
        results = evaluate_tasks(scorer, specs, shots=shots, seed=EVAL_SEED, progress=False)
    finally:
        torch.set_num_threads(before)
    atomic_write_json(path, {"fingerprint": key, "shots": shots, "results": results}, indent=2)
    return results


def eval_columns(results: dict) -> dict[str, float]:
    """One run's --eval-tasks figures as row entries: "TASK/METRIC" -> value."""
    return {f"{task}/{name}": value for task, r in results.items() for name, value in r["metrics"].items()}


def eval_labels(results: dict) -> list[tuple[str, str]]:
    """(row key, table header) of each --eval-tasks figure: "TASK/METRIC", "TASK METRIC (K-shot)"."""
    return [(f"{task}/{name}", f"{task} {name} ({r['shots']}-shot)") for task, r in results.items()
            for name in r["metrics"]]


# ----------------------------------------------------------------------------------------------
# Rows, tables, plots


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl records, read as the trainer reads them on resume: a torn last
    line (a run killed mid-write) is left out rather than failing the report."""
    from axon.train.logging import read_metrics as read_jsonl

    return read_jsonl(run_dir / "metrics.jsonl")


def run_row(p: Plan, seed: int, result: dict, inference: dict, metric: Metric = Metric("loss", False)) -> dict:
    """One run's figures (a row of results.csv); ``metric``: the figure ranked by."""
    cfg, run_dir = p.cfg, Path(result["run_dir"])
    train_losses = [r["train_loss"] for r in read_metrics(run_dir) if "train_loss" in r]
    steps = int(result["step"])
    return {
        "variant": p.variant.name, "seed": seed, "run_dir": str(run_dir),
        "params": int(result.get("params", p.params)), "flops_per_token": p.flops_per_token,
        "n_head": getattr(cfg.model, "n_head", None), "n_embd": getattr(cfg.model, "n_embd", None),
        "micro_batch": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum, "context": cfg.model.block_size,
        "steps": steps, "tokens": int(result["tokens"]),
        "train_flops": float(result["tokens"]) * p.flops_per_token,
        "train_seconds": float(result["elapsed"]),
        "ms_per_step": 1000 * float(result["elapsed"]) / max(steps, 1),
        "final_train_loss": train_losses[-1] if train_losses else float("nan"),
        "test_batches": inference["test_batches"], "inference_ms_per_batch": inference["inference_ms_per_batch"],
        "test_loss": float(result["val_loss"]),
        "metric": metric_value(metric, result, run_dir),
    }


def summarize(rows: list[dict], baseline: str, metric: Metric = Metric("loss", False),
              evals: list[tuple[str, str]] = ()) -> list[dict]:
    """One summary per variant (means +- std over seeds) with Welch's test of the metric against the
    baseline, and its rank (1: the best mean in the metric's direction). A row without ``metric``
    ranks by its test loss. ``evals``: the --eval-tasks columns (row key, header), averaged too."""
    key = "metric" if all("metric" in r for r in rows) else "test_loss"
    order = list(dict.fromkeys(r["variant"] for r in rows))
    base = [float(r[key]) for r in rows if r["variant"] == baseline]
    out = []
    for name in order:
        mine = [r for r in rows if r["variant"] == name]
        s = {k: mine[0][k] for k in ("variant", "params", "flops_per_token", "n_head", "n_embd", "micro_batch",
                                      "grad_accum", "context", "test_batches")}
        s["seeds"] = len(mine)
        for k in ("steps", "tokens", "train_flops", "ms_per_step", "final_train_loss", "inference_ms_per_batch",
                  "test_loss", *(key for key, _ in evals)):
            s[k], s[k + "_std"] = mean_std([float(r[k]) for r in mine])
        s["metric"], s["metric_std"] = mean_std([float(r[key]) for r in mine])
        s["metric_name"], s["higher_is_better"] = metric.name, metric.higher
        s["vs_baseline"] = None if name == baseline else welch([float(r[key]) for r in mine], base)
        out.append(s)
    ranked = sorted(out, key=lambda s: -s["metric"] if metric.higher else s["metric"])
    for i, s in enumerate(ranked):
        s["rank"] = i + 1
    return out


def _pm(m: float, s: float, fmt: str) -> str:
    return format(m, fmt) if not math.isfinite(s) else f"{format(m, fmt)} ± {format(s, fmt)}"


def _si(x: float) -> str:
    for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


COLUMNS = ["model", "params", "FLOPs/token", "heads", "embedding", "micro batch", "context", "training batches",
           "training FLOPs", "time/batch (ms)", "final train loss", "test batches", "inference (ms/batch)",
           "test loss", "Δ test loss vs baseline [95% CI]", "p (Welch t)"]


def columns(metric: Metric, evals: list[tuple[str, str]] = ()) -> list[str]:
    """The table's header: COLUMNS, and with another metric than the loss its column, its Δ and a
    rank; then one column per --eval-tasks figure."""
    extra = [label for _, label in evals]
    if metric.name == "loss":
        return [*COLUMNS, *extra]
    return [*COLUMNS[:-2], metric.label, f"Δ {metric.name} vs baseline [95% CI]", "p (Welch t)", "rank", *extra]


def table_rows(summary: list[dict], baseline: str, evals: list[tuple[str, str]] = ()) -> list[list[str]]:
    rows = []
    by_loss = all(s.get("metric_name", "loss") == "loss" for s in summary)
    for s in summary:
        steps = _pm(s["steps"], s["steps_std"], ".0f") if s["steps_std"] else f"{s['steps']:.0f}"
        if s["vs_baseline"] is None:
            delta, p = "(baseline)", ""
        else:
            w = s["vs_baseline"]
            ci = f" [{w['low']:+.4f}, {w['high']:+.4f}]" if math.isfinite(w["low"]) else " (CI needs >= 2 seeds)"
            delta, p = f"{w['diff']:+.4f}{ci}", (f"{w['p']:.3g}" if math.isfinite(w["p"]) else "")
        micro = f"{s['micro_batch']}" + (f" x{s['grad_accum']}" if s["grad_accum"] > 1 else "")
        rows.append([
            f"{s['variant']} (n={s['seeds']})", f"{s['params']:,}", _si(s["flops_per_token"]),
            "-" if s["n_head"] is None else str(s["n_head"]), "-" if s["n_embd"] is None else str(s["n_embd"]),
            micro, str(s["context"]), steps, _si(s["train_flops"]),
            _pm(s["ms_per_step"], s["ms_per_step_std"], ".1f"), _pm(s["final_train_loss"], s["final_train_loss_std"], ".4f"),
            str(s["test_batches"]), _pm(s["inference_ms_per_batch"], s["inference_ms_per_batch_std"], ".1f"),
            _pm(s["test_loss"], s["test_loss_std"], ".4f"),
            *([] if by_loss else [_pm(s["metric"], s["metric_std"], ".4f")]), delta, p,
            *([] if by_loss else [str(s["rank"])]),
            *(_pm(s[key], s[key + "_std"], ".4f") for key, _ in evals),
        ])
    return rows


def markdown_table(summary: list[dict], baseline: str, metric: Metric = Metric("loss", False),
                   evals: list[tuple[str, str]] = ()) -> str:
    header = columns(metric, evals)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary, baseline, evals)]
    return "\n".join(lines)


def plot_curves(rows: list[dict], path: Path, x_axis: str = "flops") -> Path:
    """Training and validation loss against training FLOPs (or tokens): one colour per variant,
    each seed a thin line, the mean over seeds a thick one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    order = list(dict.fromkeys(r["variant"] for r in rows))
    for i, name in enumerate(order):
        colour = colours[i % len(colours)]
        mine = [r for r in rows if r["variant"] == name]
        for ax, key in zip(axes, ("train_loss", "val_loss")):
            curves = []
            for r in mine:
                scale = r["flops_per_token"] if x_axis == "flops" else 1.0
                pts = [(m["tokens"] * scale, m[key]) for m in read_metrics(Path(r["run_dir"]))
                       if key in m and m[key] is not None and math.isfinite(m[key])]
                if pts:
                    ax.plot(*zip(*pts), color=colour, lw=0.7, alpha=0.35)
                    curves.append(pts)
            n = min(len(c) for c in curves) if curves else 0
            if n and len(curves) > 1:  # seeds of one variant log at the same steps
                xs = [curves[0][j][0] for j in range(n)]
                ys = [sum(c[j][1] for c in curves) / len(curves) for j in range(n)]
                ax.plot(xs, ys, color=colour, lw=2, label=f"{name} (mean of {len(curves)})")
            elif curves:
                ax.plot(*zip(*curves[0]), color=colour, lw=2, label=name)
    for ax, title in zip(axes, ("training loss", "validation loss (eval_batches; last point: the full split)")):
        ax.set_title(title)
        ax.set_xlabel("training FLOPs" if x_axis == "flops" else "training tokens")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metric(rows: list[dict], metric: Metric, path: Path) -> Path:
    """The metric per variant: each seed a dot, the mean a bar with its 95% t-interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    order = list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(order), 3.6))
    for i, name in enumerate(order):
        xs = [float(r["metric"]) for r in rows if r["variant"] == name]
        m, sd = mean_std(xs)
        half = stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs)) if len(xs) > 1 else 0.0
        ax.bar(i, m, color="#9ecae1", yerr=half, capsize=6, width=0.6)
        ax.plot([i] * len(xs), xs, "o", color="#08519c", ms=4)
        ax.text(i, m, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(order)), order, fontsize=8)
    ax.set_ylabel(metric.name)
    ax.set_title(f"{metric.name}: mean, 95% t-interval, seeds as dots", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def html_report(title: str, command: str, summary: list[dict], rows: list[dict], baseline: str, png: Path, notes: str,
                metric: Metric = Metric("loss", False), evals: list[tuple[str, str]] = ()) -> str:
    from html import escape

    def table(header, body):
        h = "".join(f"<th>{escape(c)}</th>" for c in header)
        b = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in body)
        return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"

    per_run_cols = ["variant", "seed", "params", "steps", "tokens", "train_flops", "ms_per_step", "final_train_loss",
                    "test_batches", "inference_ms_per_batch", "test_loss"]
    per_run_cols += ([] if metric.name == "loss" else ["metric"]) + [key for key, _ in evals]
    per_run = [[_fmt(r[c]) for c in per_run_cols] for r in rows]
    image = base64.b64encode(png.read_bytes()).decode()
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
             "td:first-child{text-align:left}code{background:#f6f6f6;padding:2px 4px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{style}</style></head><body>"
            f"<h1>{escape(title)}</h1><p><code>{escape(command)}</code></p>"
            f"<h2>Results (mean ± std over seeds)</h2>"
            f"{table(columns(metric, evals), table_rows(summary, baseline, evals))}"
            f"<p>{escape(notes)}</p>"
            f"<h2>{'Loss curves' if metric.name == 'loss' else escape(metric.name)}</h2>"
            f"<img alt='figure' src='data:image/png;base64,{image}'>"
            f"<h2>Every run</h2>{table(per_run_cols, per_run)}</body></html>\n")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


NOTES = ("Test loss: the trainer's final evaluation over the whole validation split (nats/token). "
         "Δ: mean test loss of the variant minus the baseline's, with a 95% confidence interval "
         "(Welch-Satterthwaite df) and the two-sided p-value of Welch's unequal-variances t-test. "
         "FLOPs per token: 6N + 12 · layers · context · d_attn (Kaplan et al. 2020; axon.models.flops). "
         "time/batch: training wall-clock per optimizer step, runs sharing the machine in parallel. "
         "Inference: one timed pass over the test batches per run, one run at a time.")


EVAL_NOTES = (" Prompted tasks (--eval-tasks): each run's newest checkpoint scored by axon eval --tasks "
              "(docs/prompting.md), mean ± std over seeds of each task's figure.")


def metric_notes(metric: Metric) -> str:
    if metric.name == "loss":
        return NOTES
    return (NOTES.replace("Δ: mean test loss", f"Δ: mean {metric.name}") +
            f" Ranked by {metric.name}: the final evaluation's val_{metric.name} of each run (result.json), "
            f"{'higher' if metric.higher else 'lower'} is better; rank 1 has the best mean.")


def write_report(out: Path, rows: list[dict], baseline: str, command: str, x_axis: str = "flops",
                 metric: Metric = Metric("loss", False), evals: list[tuple[str, str]] = ()) -> dict:
    """results.md, results.csv, report.html, the figures and summary.json; ``evals``: the
    --eval-tasks columns (row key, header) the rows carry."""
    summary = summarize(rows, baseline, metric, evals)
    md = markdown_table(summary, baseline, metric, evals)
    notes = metric_notes(metric) + (EVAL_NOTES if evals else "")
    (out / "results.md").write_text(f"# axon compare\n\n`{command}`\n\n{md}\n\n{notes}\n")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    png = plot_curves(rows, out / "curves.png", x_axis)
    if metric.name != "loss":  # the figure ranked by, beside the loss curves
        png = plot_metric(rows, metric, out / "metric.png")
    (out / "report.html").write_text(html_report("axon compare", command, summary, rows, baseline, png, notes, metric,
                                                 evals))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return {"markdown": md, "summary": summary}


# ----------------------------------------------------------------------------------------------
# The command


def compare(recipes: list[str], variant_specs: list[str], common: list[str], out: str | Path,
            seeds: str = "1", budget: str = "steps", budget_value: float | None = None, baseline: str | None = None,
            workers: int | None = None, threads_per_run: int = 1, progress: bool = True, command: str = "",
            metric: str = "loss", eval_tasks: str | None = None, eval_shots: int | None = None) -> dict:
    """Plan, run (resumably), time inference, score the runs on ``eval_tasks`` (prompted tasks, with
    ``eval_shots``), and write the report; returns the report's summary."""
    from axon.lab.runner import Job, check_parallelism, run_jobs

    check_parallelism(workers, threads_per_run, "threads_per_run")  # before anything is planned or written
    check_output_dir("out", out)
    goal = parse_metric(metric)
    out = Path(out)
    variants = make_variants(recipes, variant_specs)
    names = [v.name for v in variants]
    baseline = baseline or names[0]
    if baseline not in names:
        raise ConfigError(f"--baseline {baseline!r}: not a variant; the variants are {', '.join(names)}")
    seed_list = parse_seeds(seeds)
    plans, value = plan(variants, common, budget, budget_value, baseline)
    specs = check_eval_tasks(eval_tasks, eval_shots, plans)
    jobs, index = [], []
    for p in plans:
        for seed in seed_list:
            args = ([f"--config={p.variant.recipe}"] if p.variant.recipe else []) + [*common, *p.variant.overrides,
                                                                                     *p.budget_args, f"--train.seed={seed}"]
            jobs.append(Job(f"{p.variant.name}-s{seed}", args))
            index.append((p, seed))
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps({
        "command": command, "budget": budget, "budget_value": value, "baseline": baseline, "seeds": seed_list,
        "metric": goal.name, "higher_is_better": goal.higher,
        "eval_tasks": None if specs is None else [spec.name for spec in specs], "eval_shots": eval_shots,
        "variants": [{"name": p.variant.name, "recipe": p.variant.recipe, "overrides": p.variant.overrides,
                      "steps": p.steps, "tokens_per_step": p.tokens_per_step, "flops_per_token": p.flops_per_token,
                      "params": p.params, "train_flops": p.train_flops} for p in plans],
    }, indent=2) + "\n")
    results = run_jobs(jobs, out, workers=workers, threads_per_job=threads_per_run, progress=progress)
    rows = []
    for job, (p, seed) in zip(jobs, index):
        run_dir = out / "runs" / job.name
        metric_value(goal, results[job.name], run_dir)  # a missing figure is an error before any timing
    evals: list[tuple[str, str]] = []
    for job, (p, seed) in zip(jobs, index):
        run_dir = out / "runs" / job.name
        rows.append(run_row(p, seed, results[job.name], time_inference(run_dir, threads_per_run), goal))
        if specs is not None:
            scores = eval_tasks_of(run_dir, specs, eval_shots, threads_per_run)
            rows[-1].update(eval_columns(scores))
            evals = eval_labels(scores)
    x_axis = "flops" if all(r["flops_per_token"] for r in rows) else "tokens"
    report = write_report(out, rows, baseline, command, x_axis, goal, evals)
    report.update(rows=rows, out=str(out), budget_value=value)
    return report


__all__ = [
    "compare",
    "make_variants",
    "match_steps",
    "mean_std",
    "parse_metric",
    "parse_seeds",
    "parse_variant",
    "plan",
    "summarize",
    "welch",
    "write_report",
]

"""GPT-3's few-shot claim at toy scale (Brown et al. 2020, Figs. 1.2 and 3.x): accuracy against the
number of shots for decoders of several sizes, all trained on one corpus where in-context patterns
are learnable.

The two claims tested: (1) accuracy rises with the number of shots; (2) the gap between few-shot
(the most shots, 8 by default) and zero-shot grows with the model's size.

    bundled.in_context_corpus(--chars, --corpus-seed) --> OUT/data/cC-sS/corpus.txt --prepare (char)--> shards
        (the char tokenizer also covers every bundled task's characters: the corpus lacks "/ + * =")
    each size x seed: axon train on those shards (the same batches, block and steps for every size)
        --> OUT/runs/SIZE-sSEED      (axon.lab.runner: subprocesses of one thread, --workers at a time;
                                      a finished run is kept, a killed one resumed from its checkpoint)
    each run: Axon's harness (axon.eval.prompting) on --tasks at each of --shots, the first --limit
        examples --> OUT/evals/SIZE-sSEED.json   (each example's 0/1 at each shots; kept while the settings match)
    --> OUT/fewshot_scaling.json  every (size, seed, task, shots) -> metric and stderr; the curves; the claims
        OUT/fewshot_scaling.png   a panel per task: accuracy against shots, a line per size, 95% intervals;
                                  a last panel: the gap (most shots - zero) against parameters

Intervals are 95% (+-1.96 standard errors). A point's standard error is its examples' binomial one,
sqrt(p (1 - p) / (n - 1)) (the harness's). With several seeds the point is the seeds' mean, and its
standard error adds the spread across seeds: sqrt(se_examples^2 + sd_seeds^2 / S), where se_examples
is the seeds' mean binomial error (every seed is scored on the same examples, so that error does not
shrink with S).

Claim 1, per size and task: the least-squares slope of accuracy on log2(1 + shots), and the gap
acc(most shots) - acc(0). Each is a mean over examples of a per-example contrast of that example's
0/1 scores (the same examples at every number of shots: a paired design), so its standard error is
the contrasts' standard deviation / sqrt(n), seeds as above, but never below the error of a single
example that differs (half the contrast's range / n: 1/n for the gap): a contrast that is 0 on
every example (nothing right at any shots) would otherwise get an interval of zero width, and a gap
of 4 examples in 300 would look wholly above it. "rises" when the slope's interval lies
above 0, "falls" when below, "flat" otherwise.
Claim 2, per task: the gap of each size; "reproduced" when the largest size's gap interval lies
wholly above the smallest size's, "reversed" when wholly below, "not reproduced" when the two
overlap. The difference of the two gaps, with its interval (independent runs: the errors add in
quadrature), and whether the gaps rise monotonically are printed beside the verdict.

A char-level model reads at most block_size characters: prompts longer than that are cut on the
left (the harness does what lm-eval does), so shots beyond what fits are not seen. The JSON gives,
for each task and shots, the share of examples whose prompt was cut ("truncated"), and the script
warns. 8 two-digit arithmetic shots need about 290 characters, 8 random-insertion shots about 250
(the default --block-size 320 holds both); one cloze passage alone is 200-400, so the cloze's shots
mostly fall outside the context (the cloze is not among the default tasks for that reason).

    python benchmarks/fewshot_scaling.py --out fewshot                  # the study (about an hour on 2 cores)
    python benchmarks/fewshot_scaling.py --out fewshot --seeds 0,1,2 --sizes 1x32,2x64,4x128
    python benchmarks/fewshot_scaling.py --out /tmp/fs --smoke          # the whole pipeline in seconds

Run by hand, never in CI (tests/test_benchmark_scripts.py runs --smoke).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

SIZES = "1x32,2x64,3x96,4x128"
TASKS = "random_insertion,arithmetic_2da,arithmetic_2ds"
SHOTS = "0,1,2,4,8"
HEAD_WIDTH = 32  # n_head = n_embd / 32 (at least one)
Z = 1.96  # 95% intervals
#: The corpus's held-out share: each run's final validation covers all of it, and it is a side figure here
VAL_FRACTION = 0.02
# The real study's settings (the defaults) and the smoke run's: the whole pipeline at toy size.
STUDY = dict(sizes=SIZES, steps=2200, seeds="0,1", limit=None, chars=8_000_000, block_size=320, batch_size=12)
SMOKE = dict(sizes="1x16,1x32", steps=30, seeds="0", limit=10, chars=100_000, block_size=320, batch_size=4)
#: Metrics that are figures of the whole corpus, not means over examples (no per-example 0/1)
CORPUS_METRICS = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"}
INVALID = "[invalid]"  # what lm-eval's regex filter gives when it finds nothing (its default fallback)


# ---------------------------------------------------------------------------------------------
# Settings


def parse_list(text: str, what: str, kind=int) -> list:
    try:
        values = [kind(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected a comma-separated list, got {text!r}") from None
    if not values:
        raise ValueError(f"{what}: give at least one value")
    return values


def parse_sizes(text: str) -> list[tuple[str, list[str]]]:
    """ "1x32,2x64,tiny" -> [(label, the model's overrides)]: LAYERSxWIDTH (heads HEAD_WIDTH wide,
    at least one, an even head width) or a decoder preset's name."""
    from axon.model_configs.decoder import PRESETS

    sizes = []
    for item in (s.strip() for s in str(text).split(",")):
        if item in PRESETS:
            sizes.append((item, [f"--model.preset={item}"]))
            continue
        m = re.fullmatch(r"([0-9]+)x([0-9]+)", item)
        if not m or int(m[1]) < 1 or int(m[2]) < 2 or int(m[2]) % 2:
            raise ValueError(f"--sizes: {item!r} is not LAYERSxWIDTH with an even width (e.g. 2x64) or a decoder "
                             f"preset ({', '.join(PRESETS)})")
        layers, width = int(m[1]), int(m[2])
        heads = max(1, width // HEAD_WIDTH)
        while width % heads or (width // heads) % 2:
            heads -= 1
        sizes.append((item, [f"--model.n_layer={layers}", f"--model.n_embd={width}", f"--model.n_head={heads}"]))
    if len({label for label, _ in sizes}) != len(sizes):
        raise ValueError(f"--sizes: each size once, got {text!r}")
    return sizes


# ---------------------------------------------------------------------------------------------
# The corpus and the runs


def task_text(spec) -> str:
    """Every character a task's prompts and answers can hold: each record written as a shot, and
    its choices."""
    parts = []
    for docs, wheres in ((spec.test_docs, spec.test_where), (spec.fewshot_docs or [], spec.fewshot_where or [])):
        for doc, where in zip(docs, wheres):
            parts.append(spec.text(doc, where) + spec.target_delimiter + spec.target_text(doc, where))
            if spec.output_type == "multiple_choice":
                parts += spec.choices(doc, where)
    return spec.fewshot_delimiter.join(parts)


def prepare_corpus(out: Path, chars: int, seed: int, specs: list) -> Path:
    """OUT/data/cCHARS-sSEED/shards: the in-context corpus (bundled.py) tokenised with a char tokenizer
    (axon prepare), kept when already there. The tokenizer has the corpus's characters and those of
    every bundled task and of ``specs`` (a character a model never trained on is still encoded, so any
    bundled task scores these runs; the corpus alone lacks "/", "+", "*", "="). The settings are in
    the path, so a run's recorded arguments (``--data.dir``) change with them and the runner never
    reuses a run for other data. A task with a character outside a kept tokenizer is refused here,
    before anything trains."""
    from axon.atomic import atomic_write_text
    from axon.data.prepare import load_meta, prepare
    from axon.data.tokenizers import CharTokenizer, load_tokenizer
    from axon.errors import DataError
    from axon.eval.prompting import load_task
    from axon.eval.prompting.bundled import bundled_tasks, in_context_corpus

    data = out / "data" / f"c{chars}-s{seed}"
    if load_meta(data / "shards") is None:
        data.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        text = in_context_corpus(chars, seed)
        atomic_write_text(data / "corpus.txt", text)
        tasks = [load_task(path) for path in bundled_tasks().values()] + list(specs)
        CharTokenizer.from_text([text, *(task_text(spec) for spec in tasks)]).save(data / "tokenizer.json")
        shutil.rmtree(data / "shards", ignore_errors=True)  # a partial one, from a run stopped while preparing
        meta = prepare([data / "corpus.txt"], data / "shards", tokenizer=str(data / "tokenizer.json"),
                       val_fraction=VAL_FRACTION, progress=False)
        print(f"corpus: {data / 'corpus.txt'}, {len(text):,} characters (seed {seed}); prepared: vocab "
              f"{meta['vocab_size']} (the corpus's {len(set(text))} and the tasks'), "
              f"{meta['splits']['train']['num_tokens']:,} training tokens ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    tokenizer = load_tokenizer(data / "shards" / "tokenizer.json")
    for spec in specs:
        try:
            tokenizer.encode(task_text(spec))
        except DataError as e:
            raise DataError(f"task {spec.name}: {e}; the runs' tokenizer ({data / 'shards'}) was built without it: "
                            "use another --out") from None
    return data / "shards"


def train_args(data: Path, model_args: list[str], seed: int, steps: int, block_size: int, batch_size: int) -> list[str]:
    """``axon train`` overrides of one run: the same batches for every size at one seed."""
    return [f"--data.dir={data}", *model_args, f"--model.block_size={block_size}", f"--train.batch_size={batch_size}",
            f"--train.max_steps={steps}", "--train.max_tokens=null", "--train.max_seconds=null", f"--train.seed={seed}",
            f"--schedule.warmup_steps={min(100, steps // 5)}", f"--train.eval_interval={steps}",
            f"--train.checkpoint_interval={min(250, steps)}", "--train.sample_tokens=0"]


def train_runs(jobs, out: Path, workers: int, progress: bool) -> dict[str, dict]:
    """Train ``jobs`` (axon.lab.runner.Job) into OUT/runs, one thread each, ``workers`` at a time."""
    from axon.lab.runner import read_result, run_jobs

    kept = sum(read_result(out / "runs" / job.name) is not None for job in jobs)
    t0 = time.perf_counter()
    results = run_jobs(jobs, out, workers=workers, threads_per_job=1, progress=progress)
    print(f"trained {len(jobs) - kept} runs, kept {kept} finished ones, in {out / 'runs'} "
          f"({time.perf_counter() - t0:.0f} s; logs in {out / 'logs'})", flush=True)
    return results


# ---------------------------------------------------------------------------------------------
# Evaluation: each example's score at each number of shots


def example_metric(spec) -> str:
    """The per-example metric a task is judged by: its first that is a mean over examples."""
    from axon.eval.prompting.metrics import metric_names

    names = [n for n in metric_names(spec) if n.split(",")[0] not in CORPUS_METRICS]
    if not names:
        raise ValueError(f"--tasks: {spec.name} reports no per-example metric (only corpus figures)")
    return names[0]


def _truncated(scorer, sample: dict) -> bool:
    """Was this example's prompt cut on the left to fit the model's context?"""
    if scorer.max_length is None:
        return False
    context, second = sample["requests"][0]
    if isinstance(second, dict):  # generate_until: the context keeps max_length - max_gen_toks tokens
        room = scorer.max_length - second.get("max_gen_toks", 256)
        return len(scorer.tokenizer.encode(context)) > room
    return len(scorer.tokenizer.encode(context + second)) - 1 > scorer.max_length


def evaluate_run(run_dir, tasks: list[str], shots: list[int], limit: int | None, seed: int,
                 batch_size: int = 8, keep: int = 0) -> dict:
    """Axon's harness on ``run_dir``: task -> {"metric", "output_type", "shots": {k: {"values": each
    example's score, "truncated": share of prompts cut to the context, "samples": the first ``keep``
    (prompt's end, response) pairs, and for generate_until "answered": the share whose filters found
    an answer}}}. One thread."""
    import torch

    torch.set_num_threads(1)
    from axon.eval.prompting import LMScorer, evaluate_tasks, resolve_tasks

    scorer = LMScorer.from_run(run_dir, "cpu", batch_size=batch_size, seed=seed)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in resolve_tasks(tasks):
            metric, per = example_metric(spec), {}
            for k in shots:
                log = Path(tmp) / f"{spec.name}-{k}.jsonl"
                evaluate_tasks(scorer, [spec], shots=k, limit=limit, seed=seed, log_samples=log, progress=False)
                samples = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
                per[str(k)] = {"values": [float(s["metrics"][metric]) for s in samples],
                               "truncated": sum(_truncated(scorer, s) for s in samples) / len(samples),
                               "samples": [{"prompt_end": s["prompt"][-120:], "response": s["responses"][0]}
                                           for s in samples[:keep]]}
                if spec.output_type == "generate_until":  # the share whose filters found an answer
                    answers = [next((v for m, v in s["metrics"].items() if m.split(",")[0] == "answer"), None)
                               for s in samples]
                    per[str(k)]["answered"] = sum(a not in (None, INVALID) for a in answers) / len(samples)
            out[spec.name] = {"metric": metric, "output_type": spec.output_type, "shots": per}
    return out


def _evaluate_job(job: tuple) -> tuple[str, dict]:
    name, path, settings = job
    os.environ["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    result = evaluate_run(settings["run_dir"], settings["tasks"], settings["shots"], settings["limit"],
                          settings["seed"], keep=settings.get("keep", 0))
    from axon.atomic import atomic_write_json

    atomic_write_json(path, {"settings": settings, "elapsed": time.perf_counter() - t0, "results": result})
    return name, result


def evaluate_runs(runs: dict[str, Path], out: Path, tasks: list[str], shots: list[int], limit: int | None,
                  seed: int, workers: int, keep: int = 0) -> dict[str, dict]:
    """:func:`evaluate_run` of each run, ``workers`` processes at a time (spawned, one thread each);
    OUT/evals/NAME.json is kept and reused while its settings (and the run's result.json) are the same."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    (out / "evals").mkdir(parents=True, exist_ok=True)
    done, todo = {}, []
    for name, run_dir in runs.items():
        settings = {"run_dir": str(run_dir), "tasks": tasks, "shots": shots, "limit": limit, "seed": seed, "keep": keep,
                    "trained": os.path.getmtime(Path(run_dir) / "result.json")}
        path = out / "evals" / f"{name}.json"
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("settings") == settings:
                done[name] = saved["results"]
                continue
        todo.append((name, path, settings))
    if todo:
        t0 = time.perf_counter()
        os.environ["OMP_NUM_THREADS"] = "1"  # the spawned workers inherit it
        if workers == 1 or len(todo) == 1:
            results = [_evaluate_job(job) for job in todo]
        else:
            with ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
                results = list(pool.map(_evaluate_job, todo))
        done.update(results)
        print(f"evaluated {len(todo)} runs on {', '.join(Path(t).stem for t in tasks)} at shots "
              f"{', '.join(map(str, shots))} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {name: done[name] for name in runs}


# ---------------------------------------------------------------------------------------------
# Statistics


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n); 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def pool_seeds(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(mean, stderr) of one figure from each seed's (value, stderr over the same examples):
    sqrt(mean stderr^2 + sd across seeds^2 / S), the module docstring's rule."""
    values = [v for v, _ in points]
    mean, se_seeds = mean_se(values)
    se_examples = sum(s for _, s in points) / len(points)
    return mean, math.sqrt(se_examples**2 + se_seeds**2)


def contrast(per_shots: dict[int, list[float]], weights: dict[int, float]) -> tuple[float, float]:
    """Mean and stderr over examples of sum_k weights[k] * score(example, k) (paired: the same examples).

    The stderr is never below what one example alone would give, half the contrast's range / n (for
    the gap, 1/n): the module docstring's floor. Without it, a contrast that is 0 on every example
    gets an interval of zero width, and any other one looks wholly above it."""
    n = len(next(iter(per_shots.values())))
    per_example = [sum(w * per_shots[k][i] for k, w in weights.items()) for i in range(n)]
    mean, se = mean_se(per_example)
    return mean, max(se, sum(abs(w) for w in weights.values()) / 2 / n)


def slope_weights(shots: list[int]) -> dict[int, float]:
    """Weights whose contrast is the least-squares slope of accuracy on log2(1 + shots)."""
    x = {k: math.log2(1 + k) for k in shots}
    mx = sum(x.values()) / len(x)
    sxx = sum((v - mx) ** 2 for v in x.values())
    return {k: (x[k] - mx) / sxx for k in shots}


def interval(value: float, se: float) -> list[float]:
    return [value - Z * se, value + Z * se]


def summarise(sizes: list[tuple[str, list[str]]], seeds: list[int], shots: list[int], tasks: list[str],
              runs: dict[str, dict], evals: dict[str, dict]) -> dict:
    """The JSON: every (size, seed, task, shots) point, the curves (seeds pooled) and the two claims."""
    labels = [label for label, _ in sizes]
    name = {(label, seed): f"{label}-s{seed}" for label in labels for seed in seeds}
    params = {label: runs[name[label, seeds[0]]]["params"] for label in labels}
    points, curves = [], []
    rise: dict[str, dict] = {}
    grow: dict[str, dict] = {}
    k0, kmax = min(shots), max(shots)
    for task in tasks:
        rise[task] = {}
        for label in labels:
            per_seed = {seed: evals[name[label, seed]][task] for seed in seeds}
            metric = per_seed[seeds[0]]["metric"]
            for k in shots:
                seed_points = []
                for seed, ev in per_seed.items():
                    entry = ev["shots"][str(k)]
                    value, se = mean_se(entry["values"])
                    seed_points.append((value, se))
                    points.append({"size": label, "params": params[label], "seed": seed, "task": task, "shots": k,
                                   "metric": metric, "value": value, "stderr": se, "n": len(entry["values"]),
                                   "truncated": entry["truncated"]})
                value, se = pool_seeds(seed_points)
                curves.append({"size": label, "params": params[label], "task": task, "shots": k, "metric": metric,
                               "value": value, "stderr": se, "interval": interval(value, se), "seeds": len(seeds)})
            figures = {}
            for what, weights in (("slope", slope_weights(shots)), ("gap", {kmax: 1.0, k0: -1.0})):
                seed_points = [contrast({k: ev["shots"][str(k)]["values"] for k in shots}, weights)
                               for ev in per_seed.values()]
                value, se = pool_seeds(seed_points)
                figures[what] = {"value": value, "stderr": se, "interval": interval(value, se)}
            lo, hi = figures["slope"]["interval"]
            figures["verdict"] = "rises" if lo > 0 else "falls" if hi < 0 else "flat"
            rise[task][label] = figures
        gaps = {label: rise[task][label]["gap"] for label in labels}
        small, large = gaps[labels[0]], gaps[labels[-1]]
        if large["interval"][0] > small["interval"][1]:
            verdict = "reproduced"
        elif large["interval"][1] < small["interval"][0]:
            verdict = "reversed"
        else:
            verdict = "not reproduced (the intervals overlap)"
        diff = large["value"] - small["value"]
        diff_se = math.hypot(large["stderr"], small["stderr"])
        values = [gaps[label]["value"] for label in labels]
        grow[task] = {"gaps": gaps, "smallest": labels[0], "largest": labels[-1], "verdict": verdict,
                      "difference": {"value": diff, "stderr": diff_se, "interval": interval(diff, diff_se)},
                      "monotone": all(a < b for a, b in zip(values, values[1:]))}
        if len(labels) < 2:
            grow[task]["verdict"] = "not tested (one size)"
    truncated = {task: {str(k): max(p["truncated"] for p in points if p["task"] == task and p["shots"] == k)
                        for k in shots} for task in tasks}
    return {"points": points, "curves": curves, "truncated": truncated,
            "claims": {"accuracy_rises_with_shots": rise, "gap_grows_with_size": grow}}


def _ci(f: dict) -> str:
    lo, hi = f["interval"]
    return f"{f['value']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def verdict_lines(summary: dict, labels: list[str], shots: list[int]) -> list[str]:
    claims = summary["claims"]
    k0, kmax = min(shots), max(shots)
    lines = [f"Claim 1: accuracy rises with shots (slope of accuracy on log2(1 + shots), and acc({kmax}) - "
             f"acc({k0}); 95% intervals)"]
    for task, by_size in claims["accuracy_rises_with_shots"].items():
        rising = [label for label in labels if by_size[label]["verdict"] == "rises"]
        lines.append(f"  {task}: rises for {len(rising)} of {len(labels)} sizes")
        for label in labels:
            f = by_size[label]
            lines.append(f"    {label:>8}: slope {_ci(f['slope'])}  gap {_ci(f['gap'])}  -> {f['verdict']}")
    lines.append(f"Claim 2: the gap acc({kmax}) - acc({k0}) grows with size ({labels[0]} -> {labels[-1]})")
    for task, g in claims["gap_grows_with_size"].items():
        gaps = ", ".join(f"{label} {_ci(g['gaps'][label])}" for label in labels)
        if len(labels) > 1:
            lines.append(f"  {task}: {g['verdict']}; largest - smallest {_ci(g['difference'])}; "
                         f"monotone: {'yes' if g['monotone'] else 'no'}")
        else:
            lines.append(f"  {task}: {g['verdict']}")
        lines.append(f"    gaps: {gaps}")
    for task, by_k in summary["truncated"].items():
        cut = [f"{k} shots {share:.0%}" for k, share in by_k.items() if share > 0]
        if cut:
            lines.append(f"  warning: {task}: prompts cut to the model's context (the first shots unseen): "
                         + ", ".join(cut))
    return lines


# ---------------------------------------------------------------------------------------------
# The plot


def plot(summary: dict, labels: list[str], tasks: list[str], shots: list[int], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(tasks) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.6), squeeze=False)
    colours = plt.get_cmap("viridis")
    xs = [math.log2(1 + k) for k in shots]
    for ax, task in zip(axes[0], tasks):
        for i, label in enumerate(labels):
            pts = sorted((c for c in summary["curves"] if c["task"] == task and c["size"] == label),
                         key=lambda c: c["shots"])
            ys = [c["value"] for c in pts]
            err = [Z * c["stderr"] for c in pts]
            params = pts[0]["params"]
            ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, color=colours(i / max(1, len(labels) - 1)),
                        label=f"{label} ({params / 1e3:.0f}k)")
        metric = next(c["metric"] for c in summary["curves"] if c["task"] == task)
        ax.set_xticks(xs, [str(k) for k in shots])
        ax.set_xlabel("shots (examples in the prompt)")
        ax.set_ylabel(metric.split(",")[0])
        ax.set_title(task, fontsize=10)
        ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=7, title="size (parameters)", title_fontsize=7)
    ax = axes[0][-1]
    k0, kmax = min(shots), max(shots)
    for j, task in enumerate(tasks):
        gaps = summary["claims"]["gap_grows_with_size"][task]["gaps"]
        params = [next(c["params"] for c in summary["curves"] if c["size"] == label) for label in labels]
        ax.errorbar(params, [gaps[label]["value"] for label in labels],
                    yerr=[Z * gaps[label]["stderr"] for label in labels], fmt="o-", capsize=3, label=task,
                    color=plt.get_cmap("tab10")(j))
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(params, [f"{label}\n{p / 1e3:.0f}k" for label, p in zip(labels, params)], fontsize=7)
    ax.set_xlabel("size (parameters)")
    ax.set_ylabel(f"acc({kmax} shots) - acc({k0})")
    ax.set_title("few-shot minus zero-shot", fontsize=10)
    ax.legend(fontsize=7)
    fig.suptitle("Accuracy against shots, 95% intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# The command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder of the corpus, runs, evaluations and results")
    ap.add_argument("--sizes", help=f"LAYERSxWIDTH or decoder presets, smallest first (default {STUDY['sizes']})")
    ap.add_argument("--steps", type=int, help=f"training steps of every run (default {STUDY['steps']})")
    ap.add_argument("--seeds", help=f"training seeds, comma-separated (default {STUDY['seeds']})")
    ap.add_argument("--tasks", default=TASKS, help="bundled task names or task YAML files (default %(default)s)")
    ap.add_argument("--shots", default=SHOTS, help="numbers of shots (default %(default)s)")
    ap.add_argument("--limit", type=int, help="the first N examples of each task (default: all)")
    ap.add_argument("--chars", type=int, help=f"characters of the in-context corpus (default {STUDY['chars']:,})")
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--block-size", type=int, help=f"the models' context (default {STUDY['block_size']})")
    ap.add_argument("--batch-size", type=int, help=f"sequences per step (default {STUDY['batch_size']})")
    ap.add_argument("--eval-seed", type=int, default=1234, help="of the shots' draw (default %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="runs trained or evaluated at once (default %(default)s)")
    ap.add_argument("--smoke", action="store_true", help="the whole pipeline at toy size: " + ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in SMOKE.items()))
    args = ap.parse_args(argv)
    base = SMOKE if args.smoke else STUDY
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        sizes = parse_sizes(args.sizes)
        seeds = parse_list(args.seeds, "--seeds")
        shots = sorted(set(parse_list(args.shots, "--shots")))
        tasks = parse_list(args.tasks, "--tasks", str)
    except ValueError as e:
        ap.error(str(e))
    for flag, value, least in (("--steps", args.steps, 1), ("--chars", args.chars, 1000),
                               ("--workers", args.workers, 1),
                               ("--block-size", args.block_size, 8), ("--batch-size", args.batch_size, 1),
                               ("--limit", args.limit, 2), ("--corpus-seed", args.corpus_seed, 0)):
        if value is not None and value < least:
            ap.error(f"{flag}: must be at least {least}, got {value}")
    if min(shots) < 0 or len(shots) < 2:
        ap.error(f"--shots: two or more numbers >= 0, got {args.shots!r}")
    from axon.errors import AxonError, OptionError
    from axon.eval.prompting import build_example, resolve_tasks
    from axon.lab.runner import Job

    try:
        specs = resolve_tasks(tasks)  # every task file read and checked before anything trains
        for spec in specs:  # a task without a per-example metric, or with too few records for the shots
            example_metric(spec)
            build_example(spec, 0, max(shots), args.eval_seed)
        names = [spec.name for spec in specs]
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        data = prepare_corpus(out, args.chars, args.corpus_seed, specs)
        # the largest first: the longest runs start first
        shape = (args.steps, args.block_size, args.batch_size)
        jobs = [Job(f"{label}-s{seed}", train_args(data, model_args, seed, *shape))
                for label, model_args in reversed(sizes) for seed in seeds]
        results = train_runs(jobs, out, args.workers, progress=sys.stderr.isatty())
        runs = {job.name: out / "runs" / job.name for job in reversed(jobs)}
        evals = evaluate_runs(runs, out, [str(spec.path) for spec in specs], shots, args.limit, args.eval_seed,
                              1 if args.smoke else args.workers)  # smoke: starting a pool costs more than the work
    except OptionError as e:
        ap.error(e.message_for(f"--{e.field.replace('_', '-')}"))
    except (AxonError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = summarise(sizes, seeds, shots, names, results, evals)
    labels = [label for label, _ in sizes]
    settings = {k: getattr(args, k) for k in ("steps", "limit", "chars", "corpus_seed", "block_size", "batch_size",
                                              "eval_seed", "smoke")}
    settings.update(sizes=labels, seeds=seeds, shots=shots, tasks=names,
                    tokens_per_run=args.steps * args.batch_size * args.block_size)
    runs_info = {name: {k: results[name].get(k) for k in ("params", "val_loss", "elapsed", "tokens", "step")}
                 for name in runs}
    report = {"settings": settings, "runs": runs_info, **summary}
    (out / "fewshot_scaling.json").write_text(json.dumps(report, indent=1) + "\n")
    png = plot(summary, labels, names, shots, out / "fewshot_scaling.png")
    print("runs: " + ", ".join(f"{n} ({r['params']:,} params, val loss {r['val_loss']:.3f}, {r['elapsed']:.0f} s)"
                                for n, r in runs_info.items()))
    for line in verdict_lines(summary, labels, shots):
        print(line)
    print(f"wrote {out / 'fewshot_scaling.json'}, {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluating a language model on prompted tasks: the loop behind ``axon eval RUN --tasks``.

    --tasks NAME,PATH --resolve_tasks--> [TaskSpec]       (a bundled name, a YAML file, a folder of them)
    each task: examples 0..n-1 --build_example (k shots, seed)--> prompts and requests
               all requests of the task --scorer.<output_type's method>--> responses (one tqdm bar)
               responses --example_metrics--> per example --aggregate--> value, stderr per metric
    --> {task: {output_type, shots, n, metrics: {name: value}, stderr: {name: value or None}}}
        and, with log_samples, one JSON line per example (doc, prompt, requests, responses, metrics)

The scorer is any object with lm-eval's three request methods (``axon.eval.prompting.scorer.LMScorer``
for an Axon model); each is called once per task with every request of that task, so it can sort
and batch them all.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from axon.errors import OptionError, check_count, check_new_file, is_int, writing
from axon.eval.prompting.metrics import aggregate, example_metrics
from axon.eval.prompting.tasks_spec import TaskSpec, build_example, load_task

METHODS = {"loglikelihood": "loglikelihood", "multiple_choice": "loglikelihood",
           "generate_until": "generate_until", "loglikelihood_rolling": "loglikelihood_rolling"}


def resolve_tasks(tasks) -> list[TaskSpec]:
    """TaskSpecs of ``tasks``: a comma-separated string or a list of names, paths and TaskSpecs; a
    name is a bundled task (``axon.eval.prompting.bundled``), else a YAML file or a folder of them."""
    from axon.eval.prompting.bundled import bundled_tasks

    items = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    if not items or any(t == "" for t in items):
        raise OptionError("tasks", "must name tasks, separated by commas", tasks)
    bundled, specs = None, []
    for item in items:
        if isinstance(item, TaskSpec):
            specs.append(item)
            continue
        if bundled is None:
            bundled = bundled_tasks()
        path = bundled.get(str(item)) or Path(item)
        if path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not files:
                raise OptionError("tasks", "must name a bundled task, a task YAML file or a folder of them", str(item),
                                  f"; {item} holds no .yaml file")
            specs += [load_task(f) for f in files]
        elif path.is_file():
            specs.append(load_task(path))
        else:
            known = f" ({', '.join(sorted(bundled))})" if bundled else " (none is bundled)"
            raise OptionError("tasks", f"must name a bundled task{known}, a task YAML file or a folder of them",
                              str(item))
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise OptionError("tasks", "must name each task once", spec.name, f" (again in {spec.path})")
        seen.add(spec.name)
    return specs


def check_harness_options(shots, limit, seed) -> None:
    """``shots`` (None: each task's num_fewshot), ``limit`` (None: every example) and ``seed`` of
    :func:`evaluate_tasks`: an OptionError (worded with the flag at the command line) otherwise."""
    check_count("shots", shots, 0, optional=True)
    check_count("limit", limit, 1, optional=True)
    if not is_int(seed):
        raise OptionError("seed", "must be an integer", seed)


def evaluate_tasks(scorer, tasks, shots: int | None = None, limit: int | None = None, seed: int = 1234,
                   log_samples: str | Path | None = None, *, progress: bool = True) -> dict:
    """Scores of ``scorer`` on ``tasks`` (see :func:`resolve_tasks`), each with ``shots`` examples
    in its prompts (None: the task's num_fewshot) on its first ``limit`` test records (None: all),
    shots drawn with ``seed``; ``log_samples``: a JSON-lines file of every example. Returns
    {task name: {"output_type", "shots", "n", "metrics": {name: value}, "stderr": {name: value or None}}}."""
    from tqdm import tqdm

    check_harness_options(shots, limit, seed)
    if log_samples is not None:
        check_new_file("log_samples", log_samples)
    specs = resolve_tasks(tasks)
    for spec in specs:  # every refusal before the first forward
        if spec.output_type == "loglikelihood_rolling" and shots:
            raise OptionError("shots", f"must be 0 for task {spec.name}, whose documents are scored whole", shots)
    results, samples = {}, []
    for spec in specs:
        k = spec.num_fewshot if shots is None else shots
        n = len(spec) if limit is None else min(limit, len(spec))
        examples = [build_example(spec, i, k, seed) for i in range(n)]
        requests = [r for e in examples for r in e.requests]
        method = getattr(scorer, METHODS[spec.output_type])
        with tqdm(total=len(requests), desc=f"{spec.name} {k}-shot", unit="request", disable=not progress,
                  dynamic_ncols=True, leave=False) as bar:
            responses = method(requests, progress=bar.update)
        per_example, at = [], 0
        for e in examples:
            mine = responses[at : at + len(e.requests)]
            at += len(e.requests)
            figures = example_metrics(spec, e, mine)
            per_example.append(figures)
            if log_samples is not None:
                samples.append(_sample(spec, e, k, mine, figures))
        figures = aggregate(spec, per_example)
        results[spec.name] = {"output_type": spec.output_type, "shots": k, "n": n,
                              "metrics": {name: v for name, (v, _) in figures.items()},
                              "stderr": {name: s for name, (_, s) in figures.items()}}
    if log_samples is not None:
        with writing(log_samples, "sample log"), open(log_samples, "w", encoding="utf-8") as f:
            for sample in samples:
                f.write(json.dumps(sample, ensure_ascii=False) + "\n")
    return results


def _sample(spec: TaskSpec, e, k: int, responses: list, figures: dict) -> dict:
    """One line of the sample log."""
    return {"task": spec.name, "index": e.index, "source": e.where, "shots": k, "shot_indices": e.shots,
            "doc": e.doc, "prompt": e.prompt, "target": e.gold, "choices": e.choices,
            "requests": [list(r) if isinstance(r, tuple) else r for r in e.requests],
            "responses": [list(r) if isinstance(r, tuple) else r for r in responses],
            "metrics": figures}


def results_table(results: dict) -> str:
    """The results of :func:`evaluate_tasks` as a table: task, shots, metric, value +- stderr, n."""
    rows = [("task", "shots", "metric", "value", "", "stderr", "n")]
    for name, r in results.items():
        for metric, value in r["metrics"].items():
            stderr = r["stderr"][metric]
            rows.append((name, str(r["shots"]), metric, _number(value), "" if stderr is None else "±",
                         "" if stderr is None else _number(stderr), str(r["n"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1, 3, 5, 6}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     .rstrip() for row in rows)


def _number(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"


__all__ = ["evaluate_tasks", "resolve_tasks", "results_table", "check_harness_options"]

"""Run a set of training jobs as parallel subprocesses, resumably.

Each job is one ``axon train`` invocation in its own process (its own torch threads, its own
crash), its run directory ``<out_dir>/runs/<name>`` and its log ``<out_dir>/logs/<name>.log``.
A job's state is read from its run directory alone, so the set can be killed and restarted at any
time:

    result.json present          done: skipped, its result returned
    a checkpoint, no result.json continued: ``axon train --resume <run_dir>`` (exact resume)
    anything else                (re)started from scratch, its partial directory removed first

The arguments of every job are recorded in ``<out_dir>/jobs/<name>.json``; a job of the same name
with different arguments is refused, so a finished run is never silently reused for another job.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from axon.errors import AxonError, ConfigError, DataError, check_count, reading


@dataclass
class Job:
    name: str  # unique; the run directory is <out_dir>/runs/<name>
    args: list[str]  # `axon train` arguments: --config X and --section.key=value overrides


def job_steps(job: Job) -> int:
    """Optimizer steps the job will run (the trainer's rule: the smaller of max_steps and max_tokens)."""
    from axon.config import load_config

    config, overrides = None, []
    it = iter(job.args)
    for arg in it:
        if arg == "--config":
            config = next(it, None)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    cfg = load_config(config, overrides)
    tc = cfg.train
    per_step = tc.batch_size * cfg.model.block_size * tc.grad_accum
    steps = [s for s in (tc.max_steps, tc.max_tokens and math.ceil(tc.max_tokens / per_step)) if s]
    return min(steps)


def steps_done(run_dir: Path) -> int:
    """The last step logged in ``metrics.jsonl`` (0 if none yet)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    step = 0
    with open(path) as f:
        for line in f:
            try:
                step = max(step, int(json.loads(line).get("step", 0)))
            except (ValueError, AttributeError):  # a line being written right now
                continue
    return step


def check_parallelism(workers, threads, threads_field: str = "threads_per_job") -> None:
    """``workers`` (None: cores / threads) and ``threads`` per job (called ``threads_field`` by the
    caller): integers >= 1, an OptionError otherwise -- for the sweeps to check before they write
    anything, as :func:`run_jobs` does."""
    check_count("workers", workers, 1, optional=True, meaning="(unset: cores / threads per run)")
    check_count(threads_field, threads, 1)


def read_result(run_dir: Path) -> dict | None:
    """The result.json of a finished run (None while it has none). A damaged one is a DataError
    naming it: the run's figures would be made up, and the run is not re-trained behind the
    user's back (removing the file makes the next run of the command continue the run)."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    hint = "; remove it, and the command resumes that run from its last checkpoint"
    try:
        with reading(path, "the run result"):
            result = json.loads(path.read_text(encoding="utf-8"))
    except DataError as e:
        raise DataError(f"{e}{hint}") from None
    if not isinstance(result, dict) or not {"step", "tokens", "elapsed", "val_loss"} <= result.keys():
        raise DataError(f"the run result {path}: not a result.json of axon train (step, tokens, elapsed, val_loss){hint}")
    return result


def _has_checkpoint(run_dir: Path) -> bool:
    from axon.train.checkpoint import list_checkpoints

    return bool(list_checkpoints(run_dir / "checkpoints"))


def _check_jobs(jobs: list[Job], out_dir: Path) -> None:
    names = [j.name for j in jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"job names must be unique; {dup[0]!r} appears more than once")
    for job in jobs:
        if not job.name or "/" in job.name or job.name.startswith("."):
            raise ConfigError(f"job name {job.name!r}: use a plain directory name")
        record = out_dir / "jobs" / f"{job.name}.json"
        if record.is_file():
            with reading(record, "the job record"):
                before = json.loads(record.read_text(encoding="utf-8"))
            before = before.get("args") if isinstance(before, dict) else None
            if not (isinstance(before, list) and all(isinstance(a, str) for a in before)):
                raise DataError(f"the job record {record}: not a job record (no list of args)")
            if before != list(job.args):
                raise ConfigError(f"job {job.name!r} in {out_dir} was run with other arguments ({' '.join(before)}); "
                                  f"use another output directory or remove {out_dir / 'runs' / job.name}")


def _command(job: Job, out_dir: Path, threads: int) -> list[str]:
    run_dir = out_dir / "runs" / job.name
    common = [f"--train.threads={threads}", "--log.progress=false"]
    if (run_dir / "config.yaml").is_file() and _has_checkpoint(run_dir):
        return [sys.executable, "-m", "axon", "train", "--resume", str(run_dir), *common]
    shutil.rmtree(run_dir, ignore_errors=True)  # a partial run with nothing to continue from
    return [sys.executable, "-m", "axon", "train", *job.args, f"--out_dir={out_dir / 'runs'}", f"--name={job.name}", *common]


def run_jobs(jobs: list[Job], out_dir: Path, workers: int | None = None, threads_per_job: int = 1,
             progress: bool = True) -> dict[str, dict]:
    """Run every job as a subprocess ``python -m axon train <args> --out_dir=<out_dir>/runs
    --name=<name> --train.threads=<threads_per_job> --log.progress=false``, up to ``workers`` at
    once (default: ``max(1, os.cpu_count() // threads_per_job)``); stdout/stderr go to
    ``<out_dir>/logs/<name>.log``.

    Resumable (see the module docstring). One tqdm bar for the whole set: steps done over total
    steps, read from each run's metrics.jsonl. Returns ``{name: result dict from result.json}``.
    A job that fails raises AxonError naming the job and its log file, after the running ones
    finish (no new job starts once one has failed).
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    check_parallelism(workers, threads_per_job)
    workers = workers or max(1, (os.cpu_count() or 1) // threads_per_job)
    _check_jobs(jobs, out_dir)
    for sub in ("runs", "logs", "jobs"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)

    totals = {job.name: job_steps(job) for job in jobs}  # also checks every config before anything runs
    results: dict[str, dict] = {}
    pending: list[Job] = []
    for job in jobs:
        done = read_result(out_dir / "runs" / job.name)
        if done is not None:
            results[job.name] = done
        else:
            pending.append(job)

    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_job), MKL_NUM_THREADS=str(threads_per_job))
    running: dict[str, tuple[subprocess.Popen, object]] = {}
    failed: list[str] = []
    bar = tqdm(total=sum(totals.values()), disable=not progress, unit="step", desc=f"{len(jobs)} runs", dynamic_ncols=True)

    shown: list = [None]

    def refresh() -> None:
        done = sum(totals[n] if n in results else min(totals[n], steps_done(out_dir / "runs" / n)) for n in totals)
        state = (done, len(results), len(running))
        if state != shown[0]:  # redraw on change only (logs of a non-interactive run stay short)
            shown[0] = state
            bar.n = done
            bar.set_postfix_str(f"{len(results)}/{len(jobs)} done, {len(running)} running", refresh=False)
            bar.refresh()

    try:
        while pending or running:
            while pending and len(running) < workers and not failed:
                job = pending.pop(0)
                (out_dir / "jobs" / f"{job.name}.json").write_text(json.dumps({"name": job.name, "args": list(job.args)}) + "\n")
                log = open(out_dir / "logs" / f"{job.name}.log", "a")
                log.write(f"$ {' '.join(cmd := _command(job, out_dir, threads_per_job))}\n")
                log.flush()
                running[job.name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            if failed and not running:
                break
            time.sleep(0.5)
            for name, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                result = read_result(out_dir / "runs" / name) if proc.returncode == 0 else None
                if result is None:
                    failed.append(name)
                else:
                    results[name] = result
            refresh()
    finally:
        for name, (proc, log) in running.items():  # interrupted (Ctrl-C): stop the children too
            proc.terminate()
            proc.wait()
            log.close()
        refresh()
        bar.close()
    if failed:
        name = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise AxonError(f"job {name!r} failed{more}; see {out_dir / 'logs' / (name + '.log')}")
    return {job.name: results[job.name] for job in jobs}


__all__ = ["Job", "job_steps", "read_result", "run_jobs", "steps_done"]

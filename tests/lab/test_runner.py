"""axon.lab.runner: parallel `axon train` subprocesses, resumable from the run directories."""

import json

import pytest
from lab_data import tiny_args, tiny_data_dir

from axon.errors import AxonError, ConfigError
from axon.lab.runner import Job, job_steps, run_jobs, steps_done


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data_dir(tmp_path_factory.mktemp("runner-data"))


def launches(out, name):
    """How many times the runner started a process for this job (one `$ ...` line each)."""
    return [line for line in (out / "logs" / f"{name}.log").read_text().splitlines() if line.startswith("$ ")]


def test_runs_in_parallel_skips_finished_and_resumes_partial(data, tmp_path):
    out = tmp_path / "set"
    jobs = [Job("a", tiny_args(data) + ["--train.seed=0"]), Job("b", tiny_args(data) + ["--train.seed=1"])]
    results = run_jobs(jobs, out, workers=2, progress=False)
    assert set(results) == {"a", "b"}
    for name in ("a", "b"):
        run = out / "runs" / name
        assert results[name]["step"] == 6 and results[name]["run_dir"] == str(run)
        assert json.loads((run / "result.json").read_text())["val_loss"] == results[name]["val_loss"]
        assert steps_done(run) == 6
    assert results["a"]["val_loss"] != results["b"]["val_loss"]  # the seeds differ
    mtimes = {n: (out / "runs" / n / "result.json").stat().st_mtime_ns for n in ("a", "b")}

    # "Kill" b mid-way: drop its result and its last checkpoint, so the step-3 checkpoint is the newest.
    b = out / "runs" / "b"
    (b / "result.json").unlink()
    import shutil

    shutil.rmtree(b / "checkpoints" / "step_00000006")
    # c: a partial directory with nothing to continue from; d: a fresh job added to the set.
    c = out / "runs" / "c"
    c.mkdir()
    (c / "config.yaml").write_text("garbage: true\n")
    jobs += [Job("c", tiny_args(data) + ["--train.seed=2"]), Job("d", tiny_args(data, steps=4))]
    again = run_jobs(jobs, out, workers=2, progress=False)

    assert (out / "runs" / "a" / "result.json").stat().st_mtime_ns == mtimes["a"]  # finished: not re-run
    assert len(launches(out, "a")) == 1
    assert again["a"] == results["a"]
    assert len(launches(out, "b")) == 2 and "--resume" in launches(out, "b")[1]
    assert "resumed from" in (out / "logs" / "b.log").read_text()
    assert again["b"]["step"] == 6
    # Exact resume: the continued run ends where the uninterrupted one did (CPU is deterministic).
    assert again["b"]["val_loss"] == results["b"]["val_loss"]
    assert again["c"]["step"] == 6 and again["d"]["step"] == 4
    assert job_steps(jobs[3]) == 4


def test_failing_job_names_its_log_and_changed_args_are_refused(data, tmp_path):
    out = tmp_path / "set"
    jobs = [Job("ok", tiny_args(data, steps=2)), Job("bad", tiny_args(data, steps=2) + ["--optim.lr=-1"])]
    with pytest.raises(ConfigError, match="lr"):  # configs are checked before anything starts
        run_jobs(jobs, out, workers=2, progress=False)
    jobs[1] = Job("bad", tiny_args(data, steps=2) + [f"--data.dir={tmp_path / 'missing'}"])  # fails in the child
    with pytest.raises(AxonError, match=r"job 'bad' failed; see .*bad\.log"):
        run_jobs(jobs, out, workers=2, progress=False)
    assert (out / "runs" / "ok" / "result.json").is_file()  # the running job was allowed to finish
    assert "not a prepared data directory" in (out / "logs" / "bad.log").read_text()
    with pytest.raises(ConfigError, match="other arguments"):
        run_jobs([Job("ok", tiny_args(data, steps=3))], out, progress=False)
    with pytest.raises(ConfigError, match="unique"):
        run_jobs([Job("x", []), Job("x", [])], tmp_path / "dup", progress=False)


def test_damaged_records_and_bad_parallelism_are_refused_before_anything_runs(tmp_path):
    """A finished run's damaged result.json, a damaged job record, workers or threads below 1: each
    a one-line error naming the file or the keyword (issue 16), and no job is started."""
    from axon.errors import DataError, OptionError
    from axon.lab.runner import read_result

    run = tmp_path / "set" / "runs" / "a"
    run.mkdir(parents=True)
    (run / "result.json").write_text('{"step": 6, ')
    with pytest.raises(DataError, match=r"the run result .*a/result.json: malformed JSON at line 1.*; remove it, and the "
                                        "command resumes that run from its last checkpoint"):
        read_result(run)
    (run / "result.json").write_text('{"step": 6}')
    with pytest.raises(DataError, match="not a result.json of axon train"):
        read_result(run)
    with pytest.raises(OptionError, match=r"^workers must be an integer >= 1 \(unset: cores / threads per run\), got 0$"):
        run_jobs([Job("a", [])], tmp_path / "set", workers=0, progress=False)
    with pytest.raises(OptionError, match=r"^threads_per_job must be an integer >= 1, got -1$"):
        run_jobs([Job("a", [])], tmp_path / "set", threads_per_job=-1, progress=False)
    (tmp_path / "set" / "jobs").mkdir()
    (tmp_path / "set" / "jobs" / "a.json").write_text("{")
    with pytest.raises(DataError, match=r"the job record .*a.json: malformed JSON"):
        run_jobs([Job("a", [])], tmp_path / "set", progress=False)
    assert not (tmp_path / "set" / "logs").exists()  # nothing started

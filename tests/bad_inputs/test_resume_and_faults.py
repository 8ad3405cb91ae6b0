"""Resuming damaged or busy runs, and a disk that fills up mid-run (issue 16).

Each case ends as a user error should (one line, exit 2) or, where the run can go on, goes on
and says what it skipped: a damaged metrics line or checkpoint record does not stop a resume.
"""

import errno
import json
import os
import shutil
import subprocess

import pytest
from conftest import TINY
from harness import Case, assert_user_error, run_all

from axon.cli import main
from axon.train.checkpoint import list_checkpoints, verify_checkpoint
from axon.train.lock import RunLock


def damage_state_files(tmp, run):
    """Both checkpoints' state.json lose their "files": nothing left to resume from."""
    for ckpt in list_checkpoints(run / "checkpoints"):
        record = json.loads((ckpt / "state.json").read_text())
        del record["files"]
        (ckpt / "state.json").write_text(json.dumps(record))


CASES = [
    Case("resume-new-architecture", ["train", "--resume", "{run}", "--model.n_layer=8"],
         "--resume: a resumed run keeps its architecture, and the overrides change it: model.n_layer=8 (the run has 2)"),
    Case("resume-new-preset", ["train", "--resume", "{run}", "--model.preset=nanogpt-cpu"], "a resumed run keeps its architecture"),
    Case("resume-lora-rank", ["train", "--resume", "{run}", "--lora.rank=4"], "lora.rank=4 (the run has 8)"),
    Case("resume-every-state-damaged", ["train", "--resume", "{run}", "--train.max_steps=30"], "is damaged",
         setup=damage_state_files, fresh_run=True),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_run, axon_cache):
    return run_all(CASES, tmp_path_factory.mktemp("resume-cases"), tiny_run, axon_cache)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_resume_refusals_are_one_line(case, results):
    assert_user_error(results[case.id], case.expect, "train")


def test_the_architecture_is_named_and_a_shape_free_change_is_allowed(tmp_path, tiny_run, capsys):
    """Dropout and the attention kernel change how the same weights compute: allowed on resume."""
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    assert main(["train", "--resume", str(run), "--train.max_steps=22", "--model.dropout=0.1",
                 "--model.attn_impl=reference"]) == 0


def test_a_damaged_state_json_falls_back_to_the_previous_checkpoint(tmp_path, tiny_run, capsys):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    newest = list_checkpoints(run / "checkpoints")[0]
    record = json.loads((newest / "state.json").read_text())
    del record["files"]
    (newest / "state.json").write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="state.json: damaged \\(files missing or malformed\\)"):
        assert main(["train", "--resume", str(run), "--train.max_steps=22"]) == 0
    out, err = capsys.readouterr()
    assert "step_00000010 (step 10)" in out + err


def test_a_metrics_line_that_is_no_record_is_skipped_with_a_warning(tmp_path, tiny_run):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "[1, 2, 3]", '"text"', *lines[1:]]) + "\n")
    with pytest.warns(UserWarning, match="metrics.jsonl: skipped line 2 and 1 more: not a metrics record"):
        assert main(["train", "--resume", str(run), "--train.max_steps=22"]) == 0
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 22  # the resumed run rewrote a clean file


def test_a_second_process_on_the_same_run_is_refused(tmp_path, tiny_run, capsys):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    with RunLock(run):  # another process holds the run (flock locks conflict across open files)
        assert main(["train", "--resume", str(run), "--train.max_steps=22"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"run {run} is in use by process {os.getpid()}" in err
        before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing written meanwhile
    # released: the lock file stays behind, holds nothing, and the next run takes it
    assert (run / ".lock").exists()
    assert main(["train", "--resume", str(run), "--train.max_steps=22"]) == 0


def test_a_lock_left_by_a_killed_process_is_not_stale(tmp_path, tiny_run):
    """The kernel drops a flock when its holder dies, even by SIGKILL."""
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    code = f"import os, sys; from axon.train.lock import RunLock; RunLock({str(run)!r}); os.kill(os.getpid(), 9)"
    from harness import env

    assert subprocess.run(["python", "-c", code], env=env()).returncode == -9
    assert "process" in (run / ".lock").read_text()
    with RunLock(run):
        pass


def _full_disk_at(step, monkeypatch):
    """save_file fails as a full disk does, for the checkpoint of ``step``, after writing part of it."""
    import axon.train.checkpoint as ckpt

    real = ckpt.save_file

    def save_file(tensors, filename, metadata=None):
        if f"step_{step:08d}" in filename and filename.endswith("optimizer.safetensors"):
            with open(filename, "wb") as f:
                f.write(b"\0" * 1000)  # part of it got out
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", save_file)


def test_a_full_disk_during_a_checkpoint_ends_in_one_line_and_resume_recovers(tmp_path, axon_cache, monkeypatch, capsys):
    out = tmp_path / "runs"
    argv = ["train", *TINY, f"--out_dir={out}", "--name=full", f"--data.cache_dir={axon_cache}"]
    _full_disk_at(20, monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("axon train: error: could not write the checkpoint of step 20: ")
    assert "No space left on device" in lines[0] and "the previous checkpoint (step_00000010) is intact" in lines[0]
    assert f"--resume {out / 'full'}" in lines[0]
    run = out / "full"
    ckpts = list_checkpoints(run / "checkpoints")
    assert [c.name for c in ckpts] == ["step_00000010"] and verify_checkpoint(ckpts[0])["step"] == 10
    assert not list((run / "checkpoints").glob(".tmp-*"))  # nothing half-written left
    monkeypatch.undo()  # space is back
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "result.json").read_text())["step"] == 20


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_real_full_disk_on_a_small_tmpfs(tmp_path, axon_cache, capsys):
    """The same on a filesystem that really fills: a tmpfs with room for the run and one checkpoint
    (~0.9 MB each: the second, written aside before the first is let go, does not fit)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1400k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        argv = ["train", *TINY, f"--out_dir={mnt}", "--name=full", f"--data.cache_dir={axon_cache}",
                "--train.max_steps=40", "--train.keep_checkpoints=5"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "No space left on device" in err
        run = mnt / "full"
        ckpts = list_checkpoints(run / "checkpoints")
        assert ckpts, err
        for c in ckpts:
            verify_checkpoint(c)  # every checkpoint that exists is whole
        assert subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)]).returncode == 0  # space is back
        assert main(["train", "--resume", str(run)]) == 0
        assert json.loads((run / "result.json").read_text())["step"] == 40
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_axons_warnings_are_one_line_on_the_console(tmp_path, tiny_run, axon_cache):
    """Through the console script, a skipped metrics line is one "axon train: warning:" line."""
    from harness import run_axon

    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "[1]", *lines[1:]]) + "\n")
    result = run_axon(["train", "--resume", str(run), "--train.max_steps=21"], tmp_path, axon_cache)
    assert result["rc"] == 0, result["err"]
    warning = [ln for ln in result["err"].splitlines() if "warning" in ln]
    assert warning == [f"axon train: warning: {metrics}: skipped line 2: not a metrics record (a JSON object with a step)"]

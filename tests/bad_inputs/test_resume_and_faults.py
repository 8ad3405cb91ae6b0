"""Resuming damaged or busy runs, a disk that fills up mid-run, signals (issues 16 and 28).

Each case ends as a user error should (one line, exit 2) or, where the run can go on, goes on
and says what it skipped: a damaged metrics line or checkpoint record does not stop a resume.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY
from harness import Case, assert_user_error, run_all

from axon.cli import main
from safetensors.torch import load_file

from axon.train.checkpoint import MANIFEST, list_checkpoints, verify_checkpoint
from axon.train.lock import RunLock
from axon.train.logging import read_metrics


def edit_state(ckpt, change, *, reseal=False):
    """Rewrite a checkpoint's state.json with ``change(record)``; ``reseal``: and its manifest's
    checksum, as a writer with a bug would (the damage is then for the reader to find)."""
    record = json.loads((ckpt / "state.json").read_text())
    change(record)
    (ckpt / "state.json").write_text(json.dumps(record))
    if reseal:
        manifest = json.loads((ckpt / MANIFEST).read_text())
        manifest["sha256"]["state.json"] = hashlib.sha256((ckpt / "state.json").read_bytes()).hexdigest()
        (ckpt / MANIFEST).write_text(json.dumps(manifest))


def damage_state_files(tmp, run):
    """Both checkpoints' state.json edited (step + 1): nothing left to resume from."""
    for ckpt in list_checkpoints(run / "checkpoints"):
        edit_state(ckpt, lambda r: r.update(step=r["step"] + 1))


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


def _resealed(change):
    return lambda ckpt: edit_state(ckpt, change, reseal=True)


def _not_utf8(ckpt):
    (ckpt / "state.json").write_bytes((ckpt / "state.json").read_bytes().replace(b'"step"', b'"st\xffp"', 1))


def _v1_without_checksums(ckpt):
    """A checkpoint of format 1 (no manifest), its state.json without the tensor files' checksums."""
    (ckpt / MANIFEST).unlink()
    edit_state(ckpt, lambda r: r.update(format_version=1))


# How the newest checkpoint (step 20) is damaged -> what the warning that skips it says.
DAMAGE = {
    "step-edited": (lambda c: edit_state(c, lambda r: r.update(step=21)), "state.json: checksum mismatch"),
    "not-utf8": (_not_utf8, "state.json: checksum mismatch"),
    "manifest-missing": (lambda c: (c / MANIFEST).unlink(), "manifest.json is missing (incomplete checkpoint)"),
    "manifest-not-json": (lambda c: (c / MANIFEST).write_text("{"), "manifest.json: not valid JSON"),
    "step-mistyped": (_resealed(lambda r: r.update(step="20")), "state.json: damaged (step missing or malformed)"),
    "step-of-another-checkpoint": (_resealed(lambda r: r.update(step=21)), "damaged (step 21 in a checkpoint of step 20)"),
    "optimizer-setting-renamed": (_resealed(lambda r: [g.update(wd=g.pop("weight_decay")) for o in r["optimizers"]
                                                       for g in o["param_groups"]]),
                                  "damaged (optimizer 0's settings lack weight_decay)"),
    "optimizer-setting-mistyped": (_resealed(lambda r: r["optimizers"][0].update(param_groups=7)),
                                   "its optimizer state does not load"),
    "v1-without-checksums": (_v1_without_checksums, "state.json: damaged (files missing or malformed)"),
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_state_json_falls_back_and_the_run_ends_exact(tmp_path, tiny_run, capsys, how):
    """The previous checkpoint (step 10) is used, with one warning naming the file and the reason,
    and the 10 steps trained again end on the same weights as the uninterrupted run."""
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    newest = list_checkpoints(run / "checkpoints")[0]
    damage, reason = DAMAGE[how]
    damage(newest)
    with pytest.warns(UserWarning, match=re.escape(reason)) as caught:
        assert main(["train", "--resume", str(run), "--train.max_steps=20"]) == 0
    assert len([w for w in caught if "skipping damaged checkpoint" in str(w.message)]) == 1
    out, err = capsys.readouterr()
    assert "step_00000010 (step 10)" in out + err
    again = load_file(str(list_checkpoints(run / "checkpoints")[0] / "model.safetensors"))
    first = load_file(str(list_checkpoints(tiny_run / "checkpoints")[0] / "model.safetensors"))
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)


def test_a_checkpoint_of_format_1_still_loads(tmp_path, tiny_run, capsys):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    for ckpt in list_checkpoints(run / "checkpoints"):  # as format 1 wrote them
        (ckpt / MANIFEST).unlink()
        files = {n: hashlib.sha256((ckpt / n).read_bytes()).hexdigest() for n in ("model.safetensors", "optimizer.safetensors")}
        edit_state(ckpt, lambda r: r.update(format_version=1, files=files))
    assert verify_checkpoint(list_checkpoints(run / "checkpoints")[0])["step"] == 20
    assert main(["train", "--resume", str(run), "--train.max_steps=22"]) == 0
    assert "(step 20)" in "".join(capsys.readouterr())


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
    assert "No space left on device (" in lines[0] and " free); the previous checkpoint (step_00000010) is intact: " in lines[0]
    assert lines[0].endswith(f"make room, then continue with axon train --resume {out / 'full'}")
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


# ----------------------------------------------------------------------------------------------
# Faults that would lose work (issue 28): two writers, a full disk mid-run, a kill before the
# first checkpoint, signals


def _same_weights(run, reference) -> bool:
    got = load_file(str(list_checkpoints(run / "checkpoints")[0] / "model.safetensors"))
    want = load_file(str(list_checkpoints(reference / "checkpoints")[0] / "model.safetensors"))
    return got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def _train_steps(run) -> list[int]:
    return [r["step"] for r in read_metrics(run / "metrics.jsonl") if "train_loss" in r]


def _axon(argv, cwd, cache):
    from harness import env

    code = "import sys; from axon.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *argv], cwd=cwd, env=env(cache), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_resumes_started_together_one_trains_the_other_is_refused(tmp_path, tiny_run, axon_cache):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    argv = ["train", "--resume", str(run), "--train.max_steps=120"]
    procs = [_axon(argv, tmp_path, axon_cache) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 2)
    assert "Traceback" not in refused and f"run {run} is in use by process " in refused
    steps = _train_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == 120  # each step once


def test_a_run_killed_before_its_first_checkpoint_goes_on_from_step_0(tmp_path, tiny_run, capsys):
    """What a kill before the first checkpoint leaves: config, tokenizer, some metrics, no
    checkpoint. --resume starts it again from step 0 and ends where the uninterrupted run did."""
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "checkpoints")
    (run / "result.json").unlink()
    metrics = run / "metrics.jsonl"
    metrics.write_text("".join(ln + "\n" for ln in metrics.read_text().splitlines()[:5]))
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"{run} has no checkpoint yet (it stopped before its first): starting it from step 0" in out
    assert _train_steps(run) == _train_steps(tiny_run)  # the killed attempt's records were dropped, not repeated
    assert _same_weights(run, tiny_run)


def _full_disk_for_metrics_at(step, monkeypatch):
    """The metrics file's writes fail as on a full disk from the record of ``step`` on."""
    import axon.train.logging as logging

    real_init = logging.MetricsLogger.__init__

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            if json.loads(text)["step"] >= step:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(text)

        def close(self):
            self.f.close()

    def init(self, *a, **k):
        real_init(self, *a, **k)
        self.file = Full(self.file)

    monkeypatch.setattr(logging.MetricsLogger, "__init__", init)


def test_a_full_disk_while_logging_ends_in_one_line_and_resume_is_exact(tmp_path, tiny_run, axon_cache,
                                                                      monkeypatch, capsys):
    out = tmp_path / "runs"
    argv = ["train", *TINY, f"--out_dir={out}", "--name=full", f"--data.cache_dir={axon_cache}"]
    _full_disk_for_metrics_at(15, monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err
    run = out / "full"
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"axon train: error: could not write the metrics file {run / 'metrics.jsonl'}: "
                               "No space left on device (")
    assert lines[0].endswith(f" free); the checkpoints are intact: make room, then continue with axon train --resume {run}")
    assert [c.name for c in list_checkpoints(run / "checkpoints")] == ["step_00000010"]
    monkeypatch.undo()  # space is back
    assert main(["train", "--resume", str(run)]) == 0
    assert _train_steps(run) == _train_steps(tiny_run)
    assert _same_weights(run, tiny_run)


def _wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timeout"
        time.sleep(0.02)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_and_exits_128_plus_its_number(tmp_path, axon_cache, sig, code):
    """A stopped run is not a finished one: a job script or a scheduler (SLURM requeue) tells them
    apart by the exit status; the step saved and the command that continues it are printed."""
    run = tmp_path / "runs" / "stopped"
    proc = _axon(["train", *TINY, "--train.max_steps=100000", f"--out_dir={tmp_path / 'runs'}", "--name=stopped"],
                 tmp_path, axon_cache)
    _wait_for(run / "checkpoints" / "step_00000010", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    saved = list_checkpoints(run / "checkpoints")[0]
    step = verify_checkpoint(saved)["step"]
    assert step >= 10 and not (run / "result.json").exists()
    assert err.strip().splitlines()[-1] == (f"axon train: stopped by {sig.name} at step {step}, which is saved; "
                                            f"continue the run with axon train --resume {run}")


def test_a_signal_before_training_ends_in_one_line(tmp_path, axon_cache):
    proc = _axon(["train", *TINY, f"--out_dir={tmp_path / 'runs'}", "--name=early"], tmp_path, axon_cache)
    time.sleep(0.3)  # importing torch, preparing the run: no training step yet
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert "axon train: stopped by SIGTERM" in err.strip().splitlines()[-1]


def test_a_file_size_limit_at_the_first_checkpoint_leaves_nothing_and_says_so(tmp_path, axon_cache):
    """ulimit -f: the write fails with EFBIG (Python ignores SIGXFSZ); the new run has nothing to
    resume, so it is removed and the same command is what to run again."""
    import resource

    def limit():  # 300 kB: the tiny model's weights (445 kB) do not fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    from harness import env

    code = "import sys; from axon.cli import main; sys.exit(main())"
    p = subprocess.run([sys.executable, "-c", code, "train", *TINY, f"--out_dir={tmp_path / 'runs'}", "--name=big"],
                       cwd=tmp_path, env=env(axon_cache), capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("axon train: error: could not write the checkpoint of step 10: ") and "File too large" in line
    assert line.endswith("the run has no checkpoint yet: make room, then run the same command again")
    assert not (tmp_path / "runs" / "big").exists()


def test_a_signal_stops_a_finetune_run_the_same_way(tmp_path, tiny_run, axon_cache):
    """axon finetune used to format the missing validation loss of a stopped run (TypeError)."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(f'{{"prompt": "{w}", "response": "{w[::-1]}"}}\n' for w in ("abc", "dog", "hat", "sun")))
    run = tmp_path / "runs" / "sft"
    proc = _axon(["finetune", str(tiny_run), "--task=sft", f"--data.train_file={data}", f"--data.val_file={data}",
                  "--train.max_steps=100000", "--train.checkpoint_interval=10", "--train.eval_interval=100000",
                  "--train.sample_tokens=0", f"--out_dir={tmp_path / 'runs'}", "--name=sft"], tmp_path, axon_cache)
    _wait_for(run / "checkpoints" / "step_00000010", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    step = verify_checkpoint(list_checkpoints(run / "checkpoints")[0])["step"]
    assert err.strip().splitlines()[-1] == (f"axon finetune: stopped by SIGTERM at step {step}, which is saved; "
                                            f"continue the run with axon train --resume {run}")

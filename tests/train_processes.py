"""`axon train` as a subprocess, and killing it the way a crash does: the helpers the resume tests
share (tests/train/test_distributed.py, tests/tasks/test_image_classify.py, test_detect.py,
test_vq.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def axon_train(argv, nproc=1, **popen) -> subprocess.Popen:
    """`python -m axon train ARGV` (through torchrun with ``nproc`` > 1), stdout and stderr together."""
    cmd = [sys.executable, "-m", "axon", "train", *(["--nproc", str(nproc)] if nproc > 1 else []), *argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), parents before their children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_at_checkpoint(proc: subprocess.Popen, run_dir: Path, step: int) -> None:
    """SIGKILL the whole job (workers first, so none gets to checkpoint) once ``step``'s checkpoint
    is on disk; the run must not end on its own before that."""
    deadline = time.time() + 180
    target = Path(run_dir) / "checkpoints" / f"step_{step:08d}"
    while not target.is_dir():
        assert proc.poll() is None, f"run ended before it could be killed:\n{proc.stdout.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    for pid in reversed(descendants(proc.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

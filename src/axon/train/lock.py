"""One process at a time per run directory.

Two processes training the same run (a second ``--resume`` while the first still runs, or two
jobs started with the same ``--name``) would write over each other's checkpoints and metrics. A
run takes an exclusive lock on ``<run_dir>/.lock`` for as long as it trains; a second process is
refused at start-up with the holder's pid. The lock is ``flock``'s: the kernel drops it when the
holder exits, however it exits (a crash, ``kill -9``, a power cut), so a lock is never stale -- a
``.lock`` file left behind by a dead process holds nothing and the next run takes it. Only the
process that writes (rank 0 of a distributed run) locks. Where ``fcntl`` does not exist
(Windows) runs are not locked.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from axon.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class RunLock:
    """Held from construction to :meth:`release` (or the end of a ``with`` block, or the process)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.file = None
        if fcntl is None:
            return
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ConfigError(f"run {self.path.parent} is in use by {holder}; two processes would write over "
                              "each other's checkpoints -- wait for it to end, or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self.file = f

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

"""The bad-input table's machinery: run cases through `axon` subprocesses and check each ends as a
user error should -- exit 2, no traceback, one line "axon <command>: error: ..." naming the field
or file (issue 16). Add a row to a table in this directory for every new subcommand and flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DRIVER = Path(__file__).with_name("driver.py")


@dataclass
class Case:
    """``argv`` (``{tmp}`` and ``{run}`` are filled in: the case's own directory and a copy of the
    tiny run in it); ``expect``: text the error line must contain; ``setup(tmp, run)``: damages
    files before the command runs."""

    id: str
    argv: list[str]
    expect: str
    setup: Callable[[Path, Path], None] | None = None
    fresh_run: bool = field(default=False)  # a private copy of the tiny run (for cases that damage it)


def env(cache: Path | None = None) -> dict:
    e = dict(os.environ)
    if cache is not None:
        e["AXON_CACHE"] = str(cache)  # prepared data for the cases that train; never ~/.cache
    e["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), e.get("PYTHONPATH", "")])
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def prepare(cases: list[Case], root: Path, tiny_run: Path) -> list[dict]:
    import shutil

    jobs = []
    for c in cases:
        tmp = root / c.id
        tmp.mkdir(parents=True)
        run = tiny_run
        if c.fresh_run:
            run = tmp / "runs" / "tiny"
            shutil.copytree(tiny_run, run)
        if c.setup:
            c.setup(tmp, run)
        argv = [a.replace("{tmp}", str(tmp)).replace("{run}", str(run)) for a in c.argv]
        jobs.append({"id": c.id, "argv": argv, "cwd": str(tmp)})
    return jobs


def run_all(cases: list[Case], root: Path, tiny_run: Path, cache: Path) -> dict[str, dict]:
    """Every case in one driver subprocess; {id: {"rc", "err", "out"}}."""
    jobs = prepare(cases, root, tiny_run)
    p = subprocess.run([sys.executable, str(DRIVER)], input=json.dumps(jobs), capture_output=True, text=True,
                       env=env(cache), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_axon(argv: list[str], cwd: Path, cache: Path | None = None) -> dict:
    """One real `axon` process (the console script's entry point, as a user starts it)."""
    code = "import sys; from axon.cli import main; sys.exit(main())"
    p = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True, env=env(cache),
                       timeout=300)
    return {"rc": p.returncode, "err": p.stderr, "out": p.stdout}


def assert_user_error(result: dict, expect: str, command: str | None = None) -> None:
    err = result["err"]
    assert "Traceback" not in err, err
    assert result["rc"] == 2, (result["rc"], err)
    lines = [ln for ln in err.splitlines() if ": error" in ln]
    assert len(lines) == 1, err
    if command:
        assert lines[0].startswith(f"axon {command}: error"), lines[0]
    assert expect in lines[0], (expect, lines[0])

"""Runs ``axon`` command lines one after another in this process, as the console script would run
each: ``axon.cli.main(argv)``, its exit code, and its stderr -- with the traceback an uncaught
exception would print. Reads a JSON list of {"id", "argv", "cwd"} on stdin, writes one JSON object
{id: {"rc", "err", "out"}} on stdout. One process for a whole table of bad inputs, because each
`axon` start pays for importing torch; tests/bad_inputs/harness.py also runs a few cases as real
`axon` processes, which checks that the console script behaves as this loop does.
"""

import contextlib
import io
import json
import os
import sys
import traceback


def run(argv: list[str], cwd: str) -> dict:
    from axon.cli import main

    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own errors exit 2
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # what the interpreter would print for an uncaught exception
            traceback.print_exc()
            rc = 1
    return {"rc": rc, "err": err.getvalue(), "out": out.getvalue()}


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    results = {c["id"]: run(c["argv"], c["cwd"]) for c in cases}
    sys.stdout.write("\n" + json.dumps(results) + "\n")

"""The driver loop reports what the console script would: checked against real `axon` processes."""

from harness import Case, assert_user_error, run_all, run_axon


def test_the_driver_and_the_console_script_agree(tmp_path, tiny_run, axon_cache):
    cases = [Case("unknown-key", ["train", "--train.max_stepz=3"], "unknown key train.max_stepz"),
             Case("not-a-run", ["eval", "{tmp}/nope"], "is not a run directory")]
    looped = run_all(cases, tmp_path / "loop", tiny_run, axon_cache)
    for c in cases:
        real = run_axon([a.replace("{tmp}", str(tmp_path)) for a in c.argv], tmp_path, axon_cache)
        assert_user_error(real, c.expect, c.argv[0])
        assert_user_error(looped[c.id], c.expect, c.argv[0])
        assert real["rc"] == looped[c.id]["rc"]


def test_a_traceback_is_reported_as_one(tmp_path, tiny_run, axon_cache):
    """The harness itself can fail: an exception that escapes main() shows as a traceback, rc 1."""
    import json

    import harness

    jobs = [{"id": "boom", "argv": ["eval", str(tiny_run), "--batch-size", "1"], "cwd": str(tmp_path)}]
    code = ("import json, sys, driver, axon.cli\n"
            "def boom(*a, **k): raise RuntimeError('programming error')\n"
            "axon.cli.cmd_eval = boom\n"
            "print(json.dumps(driver.run(json.load(sys.stdin)[0]['argv'], sys.argv[1])))")
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], input=json.dumps(jobs), capture_output=True, text=True,
                       env=harness.env(axon_cache), cwd=harness.DRIVER.parent)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["rc"] == 1 and "Traceback" in result["err"] and "programming error" in result["err"]

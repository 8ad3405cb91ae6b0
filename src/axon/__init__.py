"""Axon: an open research lab for language models."""

__version__ = "0.1.0"

# The oldest PyTorch the code runs on: torch.optim.Muon (subclassed at import by axon.train.optim)
# first shipped in 2.9. tests/test_requirements.py holds the table of version-gated APIs behind it
# and checks that this, pyproject.toml's pin and the table agree.
TORCH_FLOOR = (2, 9)


def _torch_problem() -> str | None:
    """One line if the installed torch is missing or older than TORCH_FLOOR (read from the package
    metadata: no torch import, so `import axon` stays cheap)."""
    import re
    from importlib import metadata

    need = ".".join(map(str, TORCH_FLOOR))
    try:
        found = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return f"axon needs torch>={need}, and no torch is installed (CPU-only: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
    m = re.match(r"(\d+)\.(\d+)", found)
    if m and (int(m.group(1)), int(m.group(2))) < TORCH_FLOOR:
        return f"axon needs torch>={need}, found torch {found}: upgrade it (pip install 'torch>={need}')"
    return None


def _check_torch() -> None:
    import os
    import sys

    problem = _torch_problem()
    if problem is None:
        return
    if os.path.basename(sys.argv[0]) in ("axon", "axon.exe", "-m"):  # the command line: one line, exit status 2
        print(f"axon: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    raise ImportError(problem)


_check_torch()

from axon.errors import AxonError, CheckpointError, ConfigError, DataError  # noqa: E402

__all__ = ["AxonError", "ConfigError", "DataError", "CheckpointError", "from_hf", "to_hf", "__version__"]


def __getattr__(name: str):
    # axon.from_hf / axon.to_hf without importing torch and the interop package on `import axon`
    if name in ("from_hf", "to_hf"):
        from axon import interop

        return getattr(interop, name)
    raise AttributeError(f"module 'axon' has no attribute {name!r}")

"""The declared floors are the true ones: every version-gated PyTorch API the code uses is listed
here with the release that first shipped it, pyproject.toml's torch pin and axon.TORCH_FLOOR are at
least the newest of them, and an older torch is refused in one line, not with a traceback."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import axon

ROOT = Path(__file__).resolve().parents[1]


def _sdpa_has_enable_gqa() -> bool:
    return "enable_gqa" in (torch.nn.functional.scaled_dot_product_attention.__doc__ or "")


def _distribute_tensor_has_src_data_rank() -> bool:
    from torch.distributed.tensor import distribute_tensor

    return "src_data_rank" in inspect.signature(distribute_tensor).parameters


def _fsdp2_public() -> bool:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # noqa: F401

    return True


def _muon() -> bool:
    from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz  # noqa: F401  (axon.train.optim.Muon)

    return issubclass(torch.optim.Muon, torch.optim.Optimizer)


def _sdpa_kernel() -> bool:
    from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401

    return True


# (what the code uses, where, the first torch release with it, a check that the installed torch has it)
GATED = [
    ("torch.optim.Muon and torch.optim._muon helpers", "axon.train.optim", (2, 9), _muon),
    ("torch.distributed.fsdp.fully_shard / MixedPrecisionPolicy (public FSDP2)", "axon.train.distributed", (2, 6), _fsdp2_public),
    ("distribute_tensor(..., src_data_rank=None)", "axon.train.distributed.shard_like", (2, 7), _distribute_tensor_has_src_data_rank),
    ("scaled_dot_product_attention(enable_gqa=)", "axon.nn.attention", (2, 5), _sdpa_has_enable_gqa),
    ("torch.nn.attention.sdpa_kernel", "benchmarks/gpu_gpt2.py", (2, 3), _sdpa_kernel),
]


PYPROJECT = (ROOT / "pyproject.toml").read_text()  # read with re: tomllib is Python 3.11+, the floor is 3.10


def _pin() -> tuple[int, int]:
    pins = re.findall(r'^\s*"torch>=(\d+)\.(\d+)"', PYPROJECT, flags=re.M)
    assert len(pins) == 1, f"expected one plain \"torch>=X.Y\" dependency, found {pins}"
    return int(pins[0][0]), int(pins[0][1])


def test_the_declared_floor_covers_every_gated_api():
    newest = max(v for _, _, v, _ in GATED)
    assert axon.TORCH_FLOOR == _pin(), "pyproject.toml's torch pin and axon.TORCH_FLOOR disagree"
    assert axon.TORCH_FLOOR >= newest, f"an API needs torch {newest}, the floor says {axon.TORCH_FLOOR}"


@pytest.mark.parametrize("what, where, since, present", GATED, ids=[g[0] for g in GATED])
def test_the_installed_torch_has_each_gated_api(what, where, since, present):
    assert present(), f"{what} (used in {where}) missing from torch {torch.__version__}"


def test_the_declared_python_floor_parses_the_code():
    import ast

    major, minor = map(int, re.search(r'^requires-python = ">=(\d+)\.(\d+)"', PYPROJECT, flags=re.M).groups())
    for path in (ROOT / "src" / "axon").rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(major, minor))


def _import_with_torch_version(version: str, argv0: str):
    code = ("import sys, importlib.metadata as m\n"
            "real = m.version\n"
            f"m.version = lambda name: {version!r} if name == 'torch' else real(name)\n"
            f"sys.argv = [{argv0!r}]\n"
            "import axon\n"
            "print('imported')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_an_older_torch_is_one_line_at_the_command_line():
    p = _import_with_torch_version("2.5.1+cpu", "axon")
    assert p.returncode == 2 and "imported" not in p.stdout
    assert p.stderr.strip() == "axon: error: axon needs torch>=2.9, found torch 2.5.1+cpu: upgrade it (pip install 'torch>=2.9')"


def test_an_older_torch_is_an_import_error_in_python_and_a_new_one_imports():
    p = _import_with_torch_version("2.8.0", "-c")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == (
        "ImportError: axon needs torch>=2.9, found torch 2.8.0: upgrade it (pip install 'torch>=2.9')")
    assert _import_with_torch_version("2.10.0a0+git123", "-c").stdout.strip() == "imported"

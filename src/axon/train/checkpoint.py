"""Checkpoints: safetensors and JSON only, written atomically, verified on load.

A checkpoint is a directory ``checkpoints/step_00001000/`` holding

    model.safetensors      the model's parameters (tied tensors stored once)
    optimizer.safetensors  every tensor of every optimizer's state, plus the RNG states
    state.json             trainer state, optimizer hyper-parameters and scalars, and the
                           SHA-256 of both tensor files

It is written into a hidden temporary directory, fsynced, and renamed into place, so a kill at
any moment leaves either the complete checkpoint or none. ``state.json`` is written last and
carries the checksums, so a damaged or half-copied checkpoint is detected and skipped in favour
of the previous one. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from axon.errors import CheckpointError

FORMAT_VERSION = 1
PREFIX = "step_"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flatten_optimizers(optimizers: list[torch.optim.Optimizer]) -> tuple[dict, list]:
    """Optimizer state dicts -> (tensors for safetensors, JSON-safe remainder)."""
    tensors, meta = {}, []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars: dict[str, dict] = {}
        for pid, st in sd["state"].items():
            for key, value in st.items():
                if torch.is_tensor(value):
                    tensors[f"opt{i}.{pid}.{key}"] = value.detach().contiguous().cpu()
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        meta.append({"param_groups": sd["param_groups"], "scalars": scalars})
    return tensors, meta


def _unflatten_optimizer(i: int, tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    prefix = f"opt{i}."
    for name, value in tensors.items():
        if name.startswith(prefix):
            pid, key = name[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for pid, st in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, newest (highest step) first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]), reverse=True)


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizers: list, state: dict, keep: int = 2) -> Path:
    """Write the checkpoint for ``step`` atomically; keep the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizers(optimizers)
    save_file({**opt_tensors, **rng_state()}, str(tmp / "optimizer.safetensors"))
    files = {name: _sha256(tmp / name) for name in ("model.safetensors", "optimizer.safetensors")}
    record = {"format_version": FORMAT_VERSION, "step": step, "files": files, "optimizers": opt_meta, "trainer": state}
    (tmp / "state.json").write_text(json.dumps(record, indent=1))
    for name in (*files, "state.json"):
        _fsync(tmp / name)
    if final.exists():  # the same step saved again (e.g. right after a resume): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(root)
    for old in list_checkpoints(root)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed mid-save
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def verify_checkpoint(path: Path) -> dict:
    """Read and check ``state.json`` and the checksums; return the record or raise CheckpointError."""
    state_file = path / "state.json"
    try:
        record = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: state.json is missing (incomplete checkpoint)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{state_file}: not valid JSON") from None
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{state_file}: unknown checkpoint format {record.get('format_version')!r}")
    for name, digest in record["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"{file}: checksum mismatch (damaged or partly written)")
    return record


def load_checkpoint(path: Path, model: nn.Module, optimizers: list | None = None) -> dict:
    """Load a verified checkpoint into ``model`` (and ``optimizers`` and the RNG when given).

    Returns the trainer state recorded with it.
    """
    record = verify_checkpoint(path)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    except (SafetensorError, RuntimeError) as e:
        raise CheckpointError(f"{path / 'model.safetensors'}: does not fit this model ({str(e).splitlines()[0]})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path / 'model.safetensors'}: does not fit this model (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    if optimizers is not None:
        tensors = load_file(str(path / "optimizer.safetensors"))
        if len(record["optimizers"]) != len(optimizers):
            raise CheckpointError(f"{path}: saved with {len(record['optimizers'])} optimizers, this run has {len(optimizers)}")
        for i, opt in enumerate(optimizers):
            opt.load_state_dict(_unflatten_optimizer(i, tensors, record["optimizers"][i]))
        set_rng_state(tensors)
    return record["trainer"]


def latest_step(root: Path) -> int | None:
    """The step of the newest checkpoint that verifies (the one load_latest loads), or None."""
    for path in list_checkpoints(root):
        try:
            return verify_checkpoint(path)["step"]
        except CheckpointError:
            continue
    return None


def load_latest(root: Path, model: nn.Module, optimizers: list | None = None) -> tuple[Path, dict]:
    """Load the newest checkpoint that verifies; warn about each damaged one skipped."""
    candidates = list_checkpoints(root)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {root}")
    for path in candidates:
        try:
            return path, load_checkpoint(path, model, optimizers)
        except CheckpointError as e:
            warnings.warn(f"skipping damaged checkpoint: {e}", stacklevel=2)
    raise CheckpointError(f"every checkpoint in {root} is damaged; see the warnings above")

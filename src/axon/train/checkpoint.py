"""Checkpoints: safetensors and JSON only, written atomically, verified on load.

A checkpoint is a directory ``checkpoints/step_00001000/`` holding

    model.safetensors      the model's parameters (tied tensors stored once)
    optimizer.safetensors  every tensor of every optimizer's state, plus the RNG states
    state.json             trainer state, optimizer hyper-parameters and scalars, and the
                           SHA-256 of both tensor files

The format does not depend on how the run was parallelised: a distributed run gathers its
shards and rank 0 writes exactly these files (``axon.train.distributed``), so any checkpoint
resumes on any number of processes, and ``model.safetensors`` is the whole model in one file.

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
from safetensors.torch import _remove_duplicate_names, load_file, load_model, save_file
from torch import nn

from axon.atomic import atomic_directory
from axon.errors import CheckpointError, CheckpointMismatch, os_error_line

FORMAT_VERSION = 1
PREFIX = "step_"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _flatten_optimizers(optimizers: list[torch.optim.Optimizer], keep: bool = True) -> tuple[dict, list]:
    """Optimizer state dicts -> (tensors for safetensors, JSON-safe remainder).

    Sharded (FSDP) states are gathered whole, in one fixed order on every rank; ``keep=False``
    (a rank that does not write) takes part in the gathering and returns nothing.
    """
    from axon.train.distributed import gather_full

    tensors, meta = {}, []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars: dict[str, dict] = {}
        for pid in sorted(sd["state"]):
            for key in sorted(sd["state"][pid]):
                value = sd["state"][pid][key]
                if torch.is_tensor(value):
                    value = gather_full(value)
                    if keep:
                        tensors[f"opt{i}.{pid}.{key}"] = value.detach().contiguous().cpu()
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        meta.append({"param_groups": sd["param_groups"], "scalars": scalars})
    return tensors, meta


def tied_names(state: dict) -> dict[str, str]:
    """Names of tensors stored under another name -> that name (the alphabetically first of each
    group of tied tensors, safetensors' own choice)."""
    from axon.train.distributed import is_sharded

    if not any(is_sharded(t) for t in state.values()):
        return {r: kept for kept, removed in _remove_duplicate_names(state).items() for r in removed}
    groups: dict[int, list[str]] = {}
    for name, t in state.items():  # a sharded model's tied parameters are one DTensor object
        groups.setdefault(id(t), []).append(name)
    return {r: min(names) for names in groups.values() for r in names if r != min(names)}


def model_tensors(model: nn.Module, keep: bool = True) -> tuple[dict, dict]:
    """(tensors, metadata) of ``model.safetensors``: whole tensors (sharded ones gathered), each
    tied group stored once; the metadata maps each dropped name to the name it is stored under,
    as safetensors' ``save_model`` writes it."""
    from axon.train.distributed import gather_full

    state = model.state_dict(keep_vars=True)
    tied = tied_names(state)
    tensors = {}
    for name, t in state.items():
        if name in tied:
            continue
        t = gather_full(t.detach())
        if keep:
            tensors[name] = t.contiguous().cpu()
    return tensors, dict(tied)


def _unflatten_optimizer(i: int, tensors: dict, meta: dict, params: list | None = None) -> dict:
    """One optimizer's state dict from the checkpoint; with ``params`` (the optimizer's, in
    state-dict order), states shaped like a sharded parameter become this rank's shard of them."""
    from axon.train.distributed import shard_like

    state: dict[int, dict] = {}
    prefix = f"opt{i}."
    for name, value in tensors.items():
        if name.startswith(prefix):
            pid, key = name[len(prefix) :].split(".", 1)
            if params is not None and int(pid) < len(params) and value.shape == params[int(pid)].shape:
                value = shard_like(value, params[int(pid)])
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


def set_rng_state(tensors: dict[str, torch.Tensor], rank: int = 0) -> None:
    """Restore the RNG: a single process (or rank 0) from ``rng.*``; rank r > 0 of a distributed
    run from its own ``rank{r}.rng.*``, or, when the checkpoint has none (it was written by fewer
    processes), from a seed derived from rank 0's state and r."""
    if rank > 0:
        own = tensors.get(f"rank{rank}.rng.torch")
        if own is None:
            digest = hashlib.sha256(tensors["rng.torch"].numpy().tobytes() + rank.to_bytes(4, "little")).digest()
            torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            return
        torch.set_rng_state(own)
        if f"rank{rank}.rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[f"rank{rank}.rng.cuda"])
        return
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


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizers: list, state: dict, keep: int = 2,
                    *, write: bool = True, rng: dict | None = None) -> Path | None:
    """Write the checkpoint for ``step`` atomically; keep the newest ``keep`` checkpoints.

    In a distributed run every rank calls this (sharded tensors are gathered collectively) and
    only the rank with ``write=True`` writes; ``rng`` replaces this process's RNG states (a
    distributed run passes every rank's).
    """
    weights, tied = model_tensors(model, keep=write)
    opt_tensors, opt_meta = _flatten_optimizers(optimizers, keep=write)
    if not write:
        return None
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    # Written aside, every file fsynced, renamed into place, the directory entry fsynced; the same
    # step saved again (e.g. right after a resume) replaces the old one.
    try:
        with atomic_directory(final, temp=tmp, replace=True, fsync=True):
            save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt", **tied})
            save_file({**opt_tensors, **(rng if rng is not None else rng_state())}, str(tmp / "optimizer.safetensors"))
            files = {name: _sha256(tmp / name) for name in ("model.safetensors", "optimizer.safetensors")}
            record = {"format_version": FORMAT_VERSION, "step": step, "files": files, "optimizers": opt_meta, "trainer": state}
            (tmp / "state.json").write_text(json.dumps(record, indent=1))
    except (OSError, SafetensorError) as e:  # a full disk, a quota, a vanished directory: nothing half-written stays
        shutil.rmtree(tmp, ignore_errors=True)
        reason = os_error_line(e) if isinstance(e, OSError) else str(e)
        previous = next((p.name for p in list_checkpoints(root) if p != final), None)
        kept = f"the previous checkpoint ({previous}) is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write the checkpoint of step {step}: {reason}; {kept}. "
                              f"Free space, then continue with --resume {root.parent}") from None
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
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        version = record.get("format_version") if isinstance(record, dict) else None
        raise CheckpointError(f"{state_file}: unknown checkpoint format {version!r}")
    kinds = {"step": int, "files": dict, "optimizers": list, "trainer": dict}
    wrong = [key for key, kind in kinds.items() if not isinstance(record.get(key), kind)]
    if wrong:
        raise CheckpointError(f"{state_file}: damaged ({', '.join(wrong)} missing or malformed)")
    for name, digest in record["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"{file}: checksum mismatch (damaged or partly written)")
    return record


def _load_sharded(path: Path, model: nn.Module) -> None:
    """Load whole tensors into a sharded (FSDP) model: each rank keeps its own shard."""
    from axon.train.distributed import shard_like

    tensors = load_file(str(path))
    target = model.state_dict(keep_vars=True)
    tied = tied_names(target)
    missing = [n for n in target if n not in tensors and tied.get(n) not in tensors]
    unexpected = [n for n in tensors if n not in target]
    if missing or unexpected:
        raise CheckpointMismatch(f"{path}: does not fit this model (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    try:
        model.load_state_dict({n: shard_like(tensors[n if n in tensors else tied[n]], t) for n, t in target.items()})
    except RuntimeError as e:
        raise CheckpointMismatch(f"{path}: does not fit this model ({str(e).splitlines()[0]})") from None


def load_checkpoint(path: Path, model: nn.Module, optimizers: list | None = None, rank: int = 0) -> dict:
    """Load a verified checkpoint into ``model`` (and ``optimizers`` and the RNG when given).

    The model may be sharded (FSDP): each rank then takes its shard of every tensor. ``rank``
    picks the RNG state a distributed process restores. Returns the trainer state recorded.
    """
    from axon.train.distributed import is_sharded

    record = verify_checkpoint(path)
    if any(is_sharded(p) for p in model.parameters()):
        _load_sharded(path / "model.safetensors", model)
    else:
        try:
            missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
        except SafetensorError as e:
            raise CheckpointError(f"{path / 'model.safetensors'}: unreadable ({str(e).splitlines()[0]})") from None
        except RuntimeError as e:  # size mismatches: a sound file of another model
            raise CheckpointMismatch(f"{path / 'model.safetensors'}: does not fit this model ({str(e).splitlines()[0]})") from None
        if missing or unexpected:
            raise CheckpointMismatch(
                f"{path / 'model.safetensors'}: does not fit this model (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
            )
    if optimizers is not None:
        tensors = load_file(str(path / "optimizer.safetensors"))
        if len(record["optimizers"]) != len(optimizers):
            raise CheckpointMismatch(f"{path}: saved with {len(record['optimizers'])} optimizers, this run has {len(optimizers)}")
        for i, opt in enumerate(optimizers):
            params = [p for g in opt.param_groups for p in g["params"]]
            opt.load_state_dict(_unflatten_optimizer(i, tensors, record["optimizers"][i], params))
        set_rng_state(tensors, rank)
    return record["trainer"]


def latest_record(root: Path) -> dict | None:
    """``state.json`` of the newest checkpoint that verifies (the one load_latest loads), or None."""
    for path in list_checkpoints(root):
        try:
            return verify_checkpoint(path)
        except CheckpointError:
            continue
    return None


def latest_step(root: Path) -> int | None:
    """The step of the newest checkpoint that verifies (the one load_latest loads), or None."""
    record = latest_record(root)
    return None if record is None else record["step"]


def load_latest(root: Path, model: nn.Module, optimizers: list | None = None, rank: int = 0) -> tuple[Path, dict]:
    """Load the newest checkpoint that verifies; warn about each damaged one skipped."""
    candidates = list_checkpoints(root)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {root}")
    for path in candidates:
        try:
            return path, load_checkpoint(path, model, optimizers, rank)
        except CheckpointMismatch:  # an older checkpoint of the same run would not fit either
            raise
        except CheckpointError as e:
            warnings.warn(f"skipping damaged checkpoint: {e}", stacklevel=2)
    raise CheckpointError(f"every checkpoint in {root} is damaged; see the warnings above")

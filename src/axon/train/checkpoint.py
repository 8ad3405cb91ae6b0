"""Checkpoints: safetensors and JSON only, written atomically, verified on load.

A checkpoint is a directory ``checkpoints/step_00001000/`` holding

    model.safetensors      the model's parameters (tied tensors stored once)
    optimizer.safetensors  every tensor of every optimizer's state, plus the RNG states and the
                           objective's own state (``extra.*``, e.g. a loss history; :func:`load_extra`)
    state.json             trainer state, optimizer hyper-parameters and scalars
    manifest.json          the SHA-256 of each of the three files above, written last

The format does not depend on how the run was parallelised: a distributed run gathers its
shards and rank 0 writes exactly these files (``axon.train.distributed``), so any checkpoint
resumes on any number of processes, and ``model.safetensors`` is the whole model in one file.

It is written into a hidden temporary directory, fsynced, and renamed into place, so a kill at
any moment leaves either the complete checkpoint or none. ``manifest.json`` is written last and
covers every file, ``state.json`` included, so a damaged, edited or half-copied checkpoint is
detected; so is one that reads but cannot be interpreted (a missing or mistyped key, a state that
the optimizer refuses). Each such checkpoint is skipped with one warning naming the file and the
reason, in favour of the previous one. Checkpoints of format 1 (before the manifest: state.json
carried the tensor files' checksums, and was itself unchecked) still load. Nothing is ever
unpickled.
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
from axon.errors import CheckpointError, CheckpointMismatch, free_space, os_error_line

FORMAT_VERSION = 2
PREFIX = "step_"
MANIFEST = "manifest.json"
FILES = ("model.safetensors", "optimizer.safetensors", "state.json")


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
                    *, write: bool = True, rng: dict | None = None, extra: dict | None = None) -> Path | None:
    """Write the checkpoint for ``step`` atomically; keep the newest ``keep`` checkpoints.

    In a distributed run every rank calls this (sharded tensors are gathered collectively) and
    only the rank with ``write=True`` writes; ``rng`` replaces this process's RNG states (a
    distributed run passes every rank's). ``extra``: named tensors of the objective's own state,
    stored as ``extra.<name>`` and read back by :func:`load_extra`.
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
            extras = {f"extra.{k}": v.detach().contiguous().cpu() for k, v in (extra or {}).items()}
            save_file({**opt_tensors, **(rng if rng is not None else rng_state()), **extras},
                      str(tmp / "optimizer.safetensors"))
            record = {"format_version": FORMAT_VERSION, "step": step, "optimizers": opt_meta, "trainer": state}
            (tmp / "state.json").write_text(json.dumps(record, indent=1))
            manifest = {"format_version": FORMAT_VERSION, "sha256": {name: _sha256(tmp / name) for name in FILES}}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    except (OSError, SafetensorError) as e:  # a full disk, a quota, a vanished directory: nothing half-written stays
        shutil.rmtree(tmp, ignore_errors=True)
        reason = os_error_line(e) if isinstance(e, OSError) else str(e)
        previous = next((p.name for p in list_checkpoints(root) if p != final), None)
        then = (f"the previous checkpoint ({previous}) is intact: make room, then continue with axon train --resume "
                f"{root.parent}" if previous else "the run has no checkpoint yet: make room, then run the same command again")
        raise CheckpointError(f"could not write the checkpoint of step {step}: {reason} ({free_space(root)}); {then}") from None
    for old in list_checkpoints(root)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed mid-save
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def _read_json(file: Path, missing: str) -> object:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file.parent}: {file.name} is missing ({missing})") from None
    except OSError as e:
        raise CheckpointError(f"{file}: unreadable ({os_error_line(e)})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{file}: not valid JSON") from None


def _check_sums(path: Path, sums: dict) -> None:
    for name, digest in sums.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"{file}: checksum mismatch (damaged, edited or partly written)")


def verify_checkpoint(path: Path) -> dict:
    """Check every file against ``manifest.json``, then read ``state.json``; return its record or
    raise CheckpointError naming the file and what is wrong."""
    state_file, manifest_file = path / "state.json", path / MANIFEST
    if manifest_file.exists():
        manifest = _read_json(manifest_file, "incomplete checkpoint")
        sums = manifest.get("sha256") if isinstance(manifest, dict) else None
        if not isinstance(sums, dict) or set(sums) != set(FILES) or not all(isinstance(v, str) for v in sums.values()):
            raise CheckpointError(f"{manifest_file}: damaged (no checksum for each of {', '.join(FILES)})")
        _check_sums(path, sums)
        record = _read_json(state_file, "incomplete checkpoint")
        version = record.get("format_version") if isinstance(record, dict) else None
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{state_file}: unknown checkpoint format {version!r}")
    else:  # format 1: state.json, written last, holds the tensor files' checksums
        record = _read_json(state_file, "incomplete checkpoint")
        version = record.get("format_version") if isinstance(record, dict) else None
        if version == FORMAT_VERSION:
            raise CheckpointError(f"{path}: {MANIFEST} is missing (incomplete checkpoint)")
        if version != 1:
            raise CheckpointError(f"{state_file}: unknown checkpoint format {version!r}")
        if not isinstance(record.get("files"), dict):
            raise CheckpointError(f"{state_file}: damaged (files missing or malformed)")
        _check_sums(path, record["files"])
    kinds = {"step": int, "optimizers": list, "trainer": dict}
    wrong = [key for key, kind in kinds.items() if not isinstance(record.get(key), kind)]
    if wrong:
        raise CheckpointError(f"{state_file}: damaged ({', '.join(wrong)} missing or malformed)")
    named = path.name[len(PREFIX):]
    if path.name.startswith(PREFIX) and named.isdigit() and int(named) != record["step"]:
        raise CheckpointError(f"{state_file}: damaged (step {record['step']} in a checkpoint of step {int(named)})")
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
        if len(record["optimizers"]) != len(optimizers):
            raise CheckpointMismatch(f"{path}: saved with {len(record['optimizers'])} optimizers, this run has {len(optimizers)}")
        groups = [[dict(g) for g in opt.param_groups] for opt in optimizers]  # the settings this run built
        try:
            tensors = load_file(str(path / "optimizer.safetensors"))
            for i, opt in enumerate(optimizers):
                params = [p for g in opt.param_groups for p in g["params"]]
                opt.load_state_dict(_unflatten_optimizer(i, tensors, record["optimizers"][i], params))
                # torch takes the saved settings as they are and fills only the keys it added since
                # (its __setstate__); one lost would end in a KeyError at the first step
                lost = sorted({k for g, built in zip(opt.param_groups, groups[i]) for k in set(built) - set(g)})
                if lost:
                    raise CheckpointError(f"{path / 'state.json'}: damaged (optimizer {i}'s settings lack {', '.join(lost)})")
            set_rng_state(tensors, rank)
        except (CheckpointError, SafetensorError, KeyError, ValueError, TypeError, IndexError, AttributeError,
                RuntimeError) as e:
            for opt, built in zip(optimizers, groups):  # as built, for the previous checkpoint to load into
                for g, b in zip(opt.param_groups, built):
                    g.clear()
                    g.update(b)
            if isinstance(e, CheckpointError):
                raise
            # read, but not an optimizer state this run's optimizers take (or an RNG state): damaged
            raise CheckpointError(f"{path}: its optimizer state does not load ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
        missing = [k for k in ("step", "tokens") if k not in record["trainer"]]
        if missing:
            raise CheckpointError(f"{path / 'state.json'}: damaged (trainer state without {', '.join(missing)})")
    return record["trainer"]


def load_extra(path: Path) -> dict[str, torch.Tensor]:
    """The ``extra`` tensors a checkpoint was saved with (:func:`save_checkpoint`), names without
    the prefix; {} when it has none. Read from a checkpoint already verified (:func:`load_checkpoint`)."""
    try:
        tensors = load_file(str(Path(path) / "optimizer.safetensors"))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{Path(path) / 'optimizer.safetensors'}: unreadable ({str(e).splitlines()[0]})") from None
    return {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}


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

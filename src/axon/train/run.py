"""Wiring of a training run: config -> data -> model -> objective -> Trainer -> run directory.

A run directory holds everything about one run:

    config.yaml       the resolved config (defaults < recipe < overrides)
    tokenizer.json    the tokenizer of the training data
    metrics.jsonl     one record per logged step (loss, lr, grad norm, tokens/s, MFU, val loss)
    loss.png          loss curves
    samples.txt       text sampled at each evaluation
    checkpoints/      step_XXXXXXXX/{model,optimizer}.safetensors + state.json + manifest.json (see checkpoint.py)
    result.json       the summary train() returns (val loss, steps, tokens, ...), written at the end
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

import torch

from axon.atomic import atomic_write_json
from axon.config import RunConfig, dump_config, load_config, run_config_file, to_dict
from axon.errors import AxonError, ConfigError, OptionError, os_error_line, writing
from axon.models import build_model
from axon.train.distributed import resolve_device
from axon.train.lock import RunLock


def new_run_dir(cfg: RunConfig) -> tuple[Path, bool]:
    """The new run's directory, made (or an empty one taken), and whether this call made it. A
    directory that cannot be made is one line naming out_dir, before any data is prepared."""
    name = cfg.name or time.strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.out_dir) / name
    existed = path.exists()
    if existed and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"run directory {path} already exists; pick another name or continue it with --resume {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"out_dir: cannot create the run directory {path}: {e.strerror or e}") from None
    return path, not existed


def _discard_unstarted(run_dir: Path, made: bool) -> None:
    """A new run that failed before its first checkpoint leaves nothing behind: nothing in it can
    be resumed, and its name would be taken. (An empty directory the user made stays, empty.)"""
    from axon.train.checkpoint import list_checkpoints

    if list_checkpoints(run_dir / "checkpoints"):
        return
    if made:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for entry in run_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _is_converted(run_dir: Path) -> bool:
    """Is the newest checkpoint one written by ``axon convert`` (weights, no training state)?"""
    from axon.train.checkpoint import list_checkpoints

    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        return False
    try:  # damage is for the loader to report (it verifies the checksums); here it just means "no"
        record = json.loads((found[0] / "state.json").read_text(encoding="utf-8"))
        return "converted_from" in record.get("trainer", {})
    except (OSError, ValueError, AttributeError, TypeError):  # ValueError: bad JSON or not UTF-8
        return False


def busy_cores(interval: float = 0.1) -> float | None:
    """How many cores other processes keep busy now: the non-idle share of all CPU time over
    ``interval`` seconds (Linux's /proc/stat; this process sleeps meanwhile), in cores. None where
    /proc/stat is not there."""

    def snapshot():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user nice system idle iowait irq softirq steal (guest is inside user)

    try:
        total0, idle0 = snapshot()
        time.sleep(interval)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def auto_threads() -> tuple[int, str | None]:
    """``train.threads`` unset: torch's default (one per core), less one for each core other
    processes keep busy right now (:func:`busy_cores`, rounded), at least 1; and why, when that is
    fewer than torch's default.

    Measured on a 2-core machine, the default job's step: 261 ms on 2 threads and 436 ms on 1 when
    the machine is quiet, but 862 ms on 2 threads and 446 ms on 1 while another process keeps one
    core busy: OpenMP's threads wait on each other at every parallel region, and one of them
    shares its core. (A load average would lag: it still counts a run that ended a minute ago.)
    """
    default = torch.get_num_threads()
    busy = busy_cores()
    if busy is None:
        return default, None
    cores = os.cpu_count() or default
    threads = max(1, min(default, cores - round(busy)))
    if threads < default:
        return threads, (f"{threads} of {default} (other processes keep {busy:.1f} of {cores} cores busy; "
                         f"--train.threads={default} to use them all anyway)")
    return threads, None


def train(cfg: RunConfig | None = None, resume: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Train a run (or continue ``resume``); returns a summary with the run directory.

    Under torchrun every process calls this; they share one run directory, which rank 0 writes
    (see ``axon.train.distributed``).
    """
    from axon.train.distributed import init_distributed, launched_by_torchrun, shutdown

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume: {run_dir} is not a run directory (no config.yaml)")
        cfg = load_config(run_dir / "config.yaml", overrides)
        _refuse_new_architecture(run_dir, cfg)
        if _is_converted(run_dir):
            raise ConfigError(f"--resume: {run_dir} holds converted weights, not a training run to continue; "
                              f"to fine-tune converted weights use --train.init_from {run_dir}")
    else:
        cfg = cfg or RunConfig()
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    else:
        threads, why = auto_threads()
        if why:
            print(f"threads: {why}", flush=True)
        torch.set_num_threads(threads)
    owns_group = launched_by_torchrun() and not torch.distributed.is_initialized()
    d = init_distributed(tc.device, tc.parallel)
    try:
        return _train(cfg, d, resume, overrides)
    finally:
        if owns_group:
            shutdown(d)


# Model settings that change how the same weights compute, not which weights exist: a resumed run may change them.
SHAPE_FREE = {"dropout", "attn_impl", "scan_impl"}


def _refuse_new_architecture(run_dir: Path, cfg: RunConfig) -> None:
    """A resumed run keeps its model: an override that changes its architecture (or its LoRA
    adapters' shape) is refused here, naming the setting, instead of every checkpoint later
    failing to load as if damaged."""
    saved = load_config(run_dir / "config.yaml")
    was, now = to_dict(saved.model), to_dict(cfg.model)
    changed = [(f"model.{k}", now.get(k), was.get(k)) for k in sorted(set(was) | set(now))
               if k not in SHAPE_FREE and was.get(k) != now.get(k)]
    changed += [(f"lora.{k}", getattr(cfg.lora, k), getattr(saved.lora, k)) for k in ("targets", "rank")
                if getattr(cfg.lora, k) != getattr(saved.lora, k)]
    if changed:
        what = "; ".join(f"{key}={new!r} (the run has {old!r})" for key, new, old in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"--resume: a resumed run keeps its architecture, and the overrides change it: {what}{more}. "
                          f"To train a changed model from these weights, start a new run with --train.init_from {run_dir}")


def _train(cfg: RunConfig, d, resume, overrides) -> dict:
    if d.device.type == "cpu" and cfg.train.dtype == "bf16":
        raise ConfigError("train.dtype: bf16 on CPU is ~400x slower than fp32 here; use fp32 (or auto)")
    with ExitStack() as held:  # the run directory's lock (axon.train.lock), released however this ends
        if resume is not None:
            def lock() -> str:  # before anything reads the run's state
                held.enter_context(RunLock(resume))
                return str(resume)

            _main_decides(d, lock)
            _keep_global_batch(cfg, Path(resume), d, overrides)
        return _train_locked(cfg, d, resume, overrides, held)


def _main_decides(d, step) -> str:
    """Run ``step`` (returning a string) on rank 0 only and give its result to every rank. When
    rank 0 refuses (an unwritable out_dir, a run in use), every rank ends with that refusal
    instead of the others waiting for rank 0 at the next collective, forever."""
    said, refusal = "", None
    if d.is_main:
        try:
            said = "ok:" + step()
        except AxonError as e:
            refusal, said = e, "refused:" + str(e)
    said = d.broadcast_text(said)
    if refusal is not None:
        raise refusal
    if said.startswith("refused:"):
        raise ConfigError(f"rank 0 refused the run: {said[len('refused:'):]}")
    return said[len("ok:"):]


def _train_locked(cfg: RunConfig, d, resume, overrides, held: ExitStack) -> dict:
    from axon.tasks import build_task
    from axon.train.trainer import Trainer

    from axon.train.checkpoint import list_checkpoints

    tc, device = cfg.train, d.device
    made = False
    # A run killed before its first checkpoint goes on from step 0, with its saved config: what the
    # first attempt did (initial weights, init_from) is done again, and the same steps follow.
    restart = resume is not None and not list_checkpoints(Path(resume) / "checkpoints")
    if restart and d.is_main:
        print(f"{resume} has no checkpoint yet (it stopped before its first): starting it from step 0 "
              "with its saved config", flush=True)
    if resume is not None:
        run_dir = Path(resume)
    else:  # made first: a taken name or an unwritable out_dir is said before the data is prepared
        def make() -> str:
            nonlocal made
            path, made = new_run_dir(cfg)
            held.enter_context(RunLock(path))  # a second process started with the same name is refused
            return str(path)

        run_dir = Path(_main_decides(d, make))  # one directory, named by rank 0

    try:
        with d.main_first():  # rank 0 prepares the data cache, the others then read it
            task = build_task(cfg, device)
        if resume is None and d.is_main:
            (run_dir / "config.yaml").write_text(dump_config(cfg))
            if task.tokenizer is not None:
                task.tokenizer.save(run_dir / "tokenizer.json")
            for name, write in task.extra_files.items():
                write(run_dir / name)
        torch.manual_seed(tc.seed)
        model = build_model(cfg.model)
        if resume is None or restart:  # submodules started from other runs (a routed model's experts)
            for name, (source, what) in model.init_sources().items():
                check_same_tokenizer(task.tokenizer, source, what)
                init_submodule(model.get_submodule(name), source, what, getattr(cfg.model, "vocab_size", None))
        if tc.init_from and (resume is None or restart):
            report = (task.init_weights or init_weights)(model, tc.init_from)
            fresh = report.get("initialised", []) if isinstance(report, dict) else []
            if cfg.lora.targets and fresh:  # a new head stays trainable; recorded so resume agrees
                cfg.lora.train_also = [*cfg.lora.train_also, *(n for n in fresh if n not in cfg.lora.train_also)]
                if d.is_main:
                    (run_dir / "config.yaml").write_text(dump_config(cfg))
        if cfg.lora.targets:
            from axon.train.lora import setup_lora

            lora_info = setup_lora(model, cfg.lora, log=d.is_main)
        d.seed(tc.seed)  # the same initial weights on every rank, but each its own dropout masks from here on
        model = model.to(device, dtype=torch.float64) if tc.dtype == "fp64" else model.to(device)
        flops = model.flops_per_token()
        trainer = Trainer(cfg, model, task.objective, task.train_data, task.val_data, run_dir, device,
                          sample_fn=task.sample_fn, eval_fn=task.eval_fn, flops_per_token=flops, config_dict=to_dict(cfg),
                          dist=d, plain_model=lambda: _plain_model(cfg))
        result = trainer.fit(resume=resume is not None and not restart, restart=restart)
    except BaseException:  # refused or failed before the first checkpoint: leave no half-made run behind
        if resume is None and d.is_main:
            _discard_unstarted(run_dir, made)
        raise
    result.update(run_dir=str(run_dir), params=sum(p.numel() for p in model.parameters()), world_size=d.world_size)
    result["active_params"] = model.active_params()  # a mixture of experts uses fewer per token than it has
    # LoRA adapters and model metrics (e.g. BLEU) need the whole model: FSDP gathers it on rank 0
    needs_model = bool(cfg.lora.targets) or (task.model_metrics is not None and result["val_loss"] is not None)
    final_model = trainer.plain_model() if needs_model else model
    if not d.is_main:
        return result
    for name, draw in task.plots.items():
        try:
            draw(run_dir)
        except OSError as e:  # a full disk: the run's weights and metrics are kept, only the figure is missing
            warnings.warn(f"{name} not written: {os_error_line(e)}", stacklevel=2)
    if cfg.lora.targets:
        from axon.train.lora import ADAPTERS_FILE, write_adapters

        path = write_adapters(final_model, cfg, run_dir / ADAPTERS_FILE)
        result.update(trainable_params=lora_info["trainable"], adapters=str(path), adapter_bytes=path.stat().st_size)
    if result["val_loss"] is not None:  # the trainer's final evaluation of the whole split, as axon eval reports it
        from axon.eval import split_metrics

        with final_model.averaged():  # an EMA's weights, where the model keeps one
            result.update({f"val_{k}": v for k, v in split_metrics(task, final_model, result["val_loss"], "val").items()})
    if not result.get("interrupted"):  # an interrupted run is continued with --resume, not finished
        write_result(run_dir, result)
    return result


def _plain_model(cfg: RunConfig) -> torch.nn.Module:
    """An unsharded model of the run's shape (weights to be loaded), built without touching the
    global RNG, which the training run's dropout draws from."""
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model)
    if cfg.lora.targets:
        from axon.train.lora import setup_lora

        setup_lora(model, cfg.lora, log=False)
    return model


def _keep_global_batch(cfg: RunConfig, run_dir: Path, d, overrides: list[str] | None) -> None:
    """Resuming on another number of processes: rescale ``train.batch_size`` (per process) so each
    micro-step still draws the same batch_size x world_size windows, i.e. the same data in the
    same order and the same global batch. An explicit ``--train.batch_size`` wins."""
    from axon.config import parse_overrides
    from axon.train.checkpoint import latest_record

    record = latest_record(run_dir / "checkpoints")
    if record is None or "batch_size" in parse_overrides(overrides or []).get("train", {}):
        return
    saved_world = record["trainer"].get("world_size", 1)
    rows = (record["trainer"].get("batch_size") or cfg.train.batch_size) * saved_world
    if saved_world == d.world_size and rows == cfg.train.batch_size * d.world_size:
        return
    if rows % d.world_size:
        raise ConfigError(f"--resume: the run draws {rows} sequences per micro-step ({saved_world} process(es)), which "
                          f"{d.world_size} processes cannot split evenly; resume on a divisor of {rows}, or set "
                          f"--train.batch_size to change the global batch")
    cfg.train.batch_size = rows // d.world_size
    if d.is_main:
        print(f"resuming on {d.world_size} process(es) (checkpoint written by {saved_world}): train.batch_size "
              f"{cfg.train.batch_size} per process keeps {rows} sequences per micro-step")


def write_result(run_dir: Path, result: dict) -> Path:
    """``<run_dir>/result.json``: the finished run's summary, for other processes (axon.lab).
    Written to a temporary file and renamed, so a reader never sees half a file."""
    from axon.train.logging import resume_hint

    with writing(Path(run_dir) / "result.json", "the run's result", resume_hint(run_dir)):
        return atomic_write_json(Path(run_dir) / "result.json", result, indent=2, default=float)


def init_weights(model: torch.nn.Module, source: str | Path, what: str = "train.init_from") -> Path:
    """Load model weights (no optimizer state) from a run directory's newest valid checkpoint or
    from one ``step_*`` checkpoint directory: fine-tuning, e.g. of a converted Hugging Face model.
    ``what``: the setting that named ``source``, for the error."""
    from axon.train.checkpoint import load_checkpoint, load_latest

    path = Path(source)
    if (path / "checkpoints").is_dir():
        return load_latest(path / "checkpoints", model)[0]
    if (path / "state.json").is_file():
        load_checkpoint(path, model)
        return path
    raise ConfigError(f"{what}: {path} is neither a run directory nor a checkpoint directory")


def init_submodule(module: torch.nn.Module, source: str | Path, what: str, vocab_size: int | None) -> Path:
    """Start a submodule (a routed model's expert) from the newest valid checkpoint of a run.
    Strict, with one allowance: a source trained without this run's extra tokens -- the pad, BOS
    and EOS ids a task such as rag appends after the tokenizer's (``axon.data.pairs.SpecialIds``)
    -- fills the first rows of each matrix that has ``vocab_size`` rows (the embedding, the output
    layer), the extra rows keeping their initialisation. ``what``: the setting, for the error."""
    from axon.tasks.finetune import read_checkpoint_state

    path = Path(source)
    if not (path / "checkpoints").is_dir() and not (path / "state.json").is_file():
        raise ConfigError(f"{what}: {path} is neither a run directory nor a checkpoint directory")
    ckpt, state = read_checkpoint_state(path, what)
    own = module.state_dict()
    load, grown = {}, []
    for k, t in own.items():
        if k not in state:
            raise ConfigError(f"{what}: {ckpt} has no tensor {k}; is it a run of this expert's architecture?")
        theirs = state[k]
        if theirs.shape == t.shape:
            load[k] = theirs
        elif t.size(0) == vocab_size and theirs.dim() == t.dim() and theirs.shape[1:] == t.shape[1:] and theirs.size(0) < vocab_size:
            load[k] = torch.cat([theirs.to(t.dtype), t[theirs.size(0):]])  # the source's vocabulary, then this run's extra ids
            grown.append(k)
        else:
            raise ConfigError(f"{what}: {ckpt}: {k} has shape {tuple(theirs.shape)}, this expert needs {tuple(t.shape)}; "
                              "is it a run of this expert's architecture?")
    stray = sorted(k for k in state if k not in own)
    if stray:
        raise ConfigError(f"{what}: {ckpt}: tensor {stray[0]} has no place in this expert; is it a run of its architecture?")
    module.load_state_dict(load)
    if grown:
        print(f"{what}: {ckpt}: {', '.join(grown)} extended by this run's {vocab_size - state[grown[0]].size(0)} extra "
              "token ids (initialised here)", file=sys.stderr)
    return ckpt


def check_same_tokenizer(tokenizer, source: str | Path, what: str) -> None:
    """A submodule started from another run (a routed model's expert) reads this run's token ids:
    the source run's ``tokenizer.json``, where it has one, must be this run's tokenizer."""
    import tempfile

    theirs = Path(source) / "tokenizer.json"
    if tokenizer is None or not theirs.is_file():
        return
    with tempfile.TemporaryDirectory() as d:
        mine = tokenizer.save(Path(d) / "tokenizer.json").read_text(encoding="utf-8")
    if json.loads(mine) != json.loads(theirs.read_text(encoding="utf-8")):
        raise ConfigError(f"{what}: {source} was trained with another tokenizer than this run's; its weights read "
                          f"other token ids (set data.tokenizer={theirs} to use its tokenizer)")


def load_run(run_dir: str | Path, device: str = "auto"):
    """(config, model with the newest valid checkpoint's weights, tokenizer or None) of a run directory."""
    from axon.data.tokenizers import load_tokenizer
    from axon.train.checkpoint import load_latest

    run_dir = Path(run_dir)
    cfg = load_config(run_config_file(run_dir))
    # A run converted from a Hugging Face directory without tokenizer.json has none.
    tokenizer = load_tokenizer(run_dir / "tokenizer.json") if (run_dir / "tokenizer.json").is_file() else None
    dev = resolve_device(device)
    model = build_model(cfg.model)
    callbacks = model.callbacks()
    if callbacks:  # e.g. a model that grew in training: the checkpoint's depth first
        from axon.train.checkpoint import latest_step

        step = latest_step(run_dir / "checkpoints") or 0
        for callback in callbacks:
            callback.at_resume(step)
    if cfg.lora.targets:  # the same LoRA layers as in training, before the checkpoint is loaded
        from axon.train.lora import setup_lora

        setup_lora(model, cfg.lora, log=False)
    load_latest(run_dir / "checkpoints", model)
    return cfg, model.to(dev).eval(), tokenizer


def evaluate_run(run_dir: str | Path, split: str = "val", *, batch_size: int | None = None,
                 max_batches: int | None = None, device: str = "auto", data_dir: str | Path | None = None,
                 task_metrics: bool = True, timed: bool = False) -> dict:
    """Metrics of the run in ``run_dir`` on ``split`` of its own task's data (``data_dir``: a
    prepared data directory instead of the run's data.dir): the run's newest checkpoint and task,
    then ``axon.eval.evaluate_split`` (which has the other arguments and what it returns)."""
    from axon.eval import check_eval_options, evaluate_split
    from axon.tasks import build_task

    if split not in ("train", "val"):
        raise ConfigError(f"split must be train or val, got {split!r}")
    check_eval_options(batch_size, max_batches)  # before the run is loaded
    if data_dir is not None and not (Path(data_dir) / "meta.json").is_file():
        raise OptionError("data_dir", "must be a prepared data directory (with meta.json: see axon prepare)", str(data_dir))
    cfg, model, _ = load_run(run_dir, device)
    if data_dir:
        cfg.data.dir = str(data_dir)
    task = build_task(cfg, next(model.parameters()).device)  # the run's own task: its data, objective and metrics
    return evaluate_split(model, task, cfg, split, batch_size=batch_size, max_batches=max_batches,
                          task_metrics=task_metrics, timed=timed)


__all__ = ["train", "evaluate_run", "init_weights", "load_run", "resolve_device"]

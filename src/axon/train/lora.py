"""LoRA in runs: set a model up for adapter training from the ``lora:`` config section, write the
adapters alone, and turn a LoRA run into a plain one (``axon lora merge|export|apply``).

A LoRA run is an ordinary run directory whose config has ``lora.targets``; its checkpoints hold
the full state (base weights, adapters, optimizer state of the trainable tensors only), so resume
is exact and ``load_run`` rebuilds the same LoRA layers before loading. At the end of training
the run also writes ``adapters.safetensors``: the adapters plus every other trainable tensor
(``lora.train_also``, e.g. a new classification head), with the lora config in its metadata.

Trainable parameters: lora_A/lora_B, ``lora.train_also`` matches, and any parameter that
``train.init_from`` did not provide (``axon finetune``'s new head, reported by the task's
``init_weights``). Those names are appended to ``lora.train_also`` in the run's config.yaml, so
resume makes the same tensors trainable without reading the pretrained run again.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from axon.config import LoRAConfig, dump_config, load_config, run_config_file
from axon.errors import ConfigError, DataError, check_new_file, check_output_dir
from axon.nn.lora import (
    apply_lora,
    count_parameters,
    is_lora_param,
    load_adapters,
    lora_layers,
    mark_only_lora_trainable,
    merge_and_unload,
    read_adapters,
    save_adapters,
)

ADAPTERS_FILE = "adapters.safetensors"


def setup_lora(model: nn.Module, lora_cfg, log: bool = True) -> dict:
    """Apply ``lora_cfg`` to ``model`` (no-op when targets is empty) and freeze the rest.
    Returns {"layers", "trainable", "total"}."""
    if not lora_cfg.targets:
        return {}
    if any(cb.changes_parameters for cb in model.callbacks()):  # adapters made now would not follow new layers
        raise ConfigError("lora.targets: a model that grows in training (model.family=progressive) gives its copies "
                          "their own adapters (model.diverge=lora); leave the lora: section empty")
    layers = apply_lora(model, lora_cfg.targets, lora_cfg.rank, lora_cfg.alpha, lora_cfg.dropout)
    mark_only_lora_trainable(model, also=lora_cfg.train_also)
    trainable, total = count_parameters(model)
    if log:
        print(f"lora: rank {lora_cfg.rank} on {len(layers)} linear layers; trainable {trainable:,} of "
              f"{total:,} parameters ({100 * trainable / total:.2f}%)", file=sys.stderr)
    return {"layers": layers, "trainable": trainable, "total": total}


def adapter_metadata(cfg) -> dict[str, str]:
    return {"format": "axon-lora", "family": cfg.model.family,
            "lora": json.dumps({"targets": list(cfg.lora.targets), "rank": cfg.lora.rank, "alpha": cfg.lora.alpha,
                                "dropout": cfg.lora.dropout, "train_also": list(cfg.lora.train_also)})}


def trainable_extra(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable tensors that are not adapters (lora.train_also): they belong with the adapters."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad and not is_lora_param(n)}


def write_adapters(model: nn.Module, cfg, path: str | Path) -> Path:
    return save_adapters(model, path, extra=trainable_extra(model), metadata=adapter_metadata(cfg))


def _require_lora_run(run_dir: Path):
    cfg = load_config(run_config_file(run_dir))
    if not cfg.lora.targets:
        raise ConfigError(f"{run_dir} is not a LoRA run (its config has no lora.targets)")
    return cfg


def export_adapters(run_dir: str | Path, out: str | Path) -> dict:
    """Write the adapters of a LoRA run's newest checkpoint to ``out``."""
    from axon.train.run import load_run

    run_dir = Path(run_dir)
    check_new_file("out", out, make_parents=True)
    _require_lora_run(run_dir)
    cfg, model, _ = load_run(run_dir, device="cpu")
    path = write_adapters(model, cfg, out)
    return {"path": str(path), "bytes": path.stat().st_size}


def _new_run_dir(out: Path) -> None:
    check_output_dir("out", out, empty=True)
    out.mkdir(parents=True, exist_ok=True)


def adapter_config(path: str | Path, meta: dict[str, str]) -> LoRAConfig:
    """The lora config an adapter file's metadata records (``adapter_metadata``), checked as the
    config's lora section is: a DataError naming the file when it is missing, not JSON, or holds
    values no LoRA run could have written."""
    if meta.get("format") != "axon-lora" or "lora" not in meta:
        raise DataError(f"{path}: not an axon adapter file (no lora config in its metadata)")
    try:
        lora = json.loads(meta["lora"])
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: its lora metadata is not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(lora, dict) or not {"targets", "rank", "alpha"} <= lora.keys():
        raise DataError(f"{path}: its lora metadata lacks targets, rank or alpha (got {meta['lora'][:80]!r})")
    try:
        return LoRAConfig(targets=lora["targets"], rank=lora["rank"], alpha=lora["alpha"])
    except ConfigError as e:
        raise DataError(f"{path}: its lora metadata: {e}") from None


def _write_plain_run(cfg, model: nn.Module, src_run: Path, out: Path, note: str) -> dict:
    """``model`` (LoRA layers present) merged and unloaded, written as a plain run at ``out``."""
    from axon.models import build_model
    from axon.train.checkpoint import latest_step, save_checkpoint
    from axon.train.lock import LOCK_FILE

    # A base weight shared with another parameter (a head tied to the embedding) cannot hold its
    # merged value without changing the other; the merged run unties it where the family allows.
    shared = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        shared.setdefault(id(p), []).append(name)
    tied = [n for _, m in lora_layers(model) for ns in [shared[id(m.weight)]] if len(ns) > 1 for n in ns]
    merge_and_unload(model)
    cfg.lora.targets, cfg.lora.train_also = [], []
    if tied:
        if not hasattr(cfg.model, "tie_embeddings"):
            raise ConfigError(f"cannot merge: the adapted weight is shared ({', '.join(tied)}) and "
                              f"model family {cfg.model.family} has no tie_embeddings switch to untie it")
        cfg.model.tie_embeddings = False
        print(f"lora merge: {', '.join(tied)} shared one weight; the merged run unties them "
              f"(model.tie_embeddings=false)", file=sys.stderr)
    plain = build_model(cfg.model)
    plain.load_state_dict(model.state_dict())
    _new_run_dir(out)
    cfg.out_dir, cfg.name = str(out.parent), out.name
    (out / "config.yaml").write_text(dump_config(cfg))
    skip = {"config.yaml", ADAPTERS_FILE, "metrics.jsonl", "samples.txt", "loss.png", LOCK_FILE}
    for f in src_run.iterdir():  # tokenizer.json and the task's files (labels, ...)
        if f.is_file() and f.name not in skip:
            shutil.copy2(f, out / f.name)
    step = latest_step(src_run / "checkpoints") or 0  # the checkpoint load_run loaded
    save_checkpoint(out / "checkpoints", step, plain, [], {"step": step, "converted_from": note})
    return {"run_dir": str(out), "params": sum(p.numel() for p in plain.parameters()), "step": step}


def merge_run(run_dir: str | Path, out: str | Path) -> dict:
    """A LoRA run -> a plain run at ``out`` with W0 + (alpha/r) B A in every adapted layer."""
    from axon.train.run import load_run

    run_dir = Path(run_dir)
    check_output_dir("out", out, empty=True)
    _require_lora_run(run_dir)
    cfg, model, _ = load_run(run_dir, device="cpu")
    return _write_plain_run(cfg, model, run_dir, Path(out), f"{run_dir} (LoRA merged)")


def apply_adapters(base_run: str | Path, adapters: str | Path, out: str | Path) -> dict:
    """A base run + an adapter file (from a LoRA run on that base) -> a merged plain run at ``out``."""
    from axon.train.run import load_run

    base_run = Path(base_run)
    check_output_dir("out", out, empty=True)
    _tensors, meta = read_adapters(adapters)
    lora = adapter_config(adapters, meta)  # before the base run is loaded
    cfg, model, _ = load_run(base_run, device="cpu")
    if cfg.lora.targets:
        raise ConfigError(f"{base_run} is itself a LoRA run; apply adapters to a plain run (axon lora merge it first)")
    if meta.get("family") != cfg.model.family:
        raise ConfigError(f"{adapters}: adapters of a {meta.get('family')} model, {base_run} is a {cfg.model.family} run")
    cfg.lora.targets, cfg.lora.rank, cfg.lora.alpha = lora.targets, lora.rank, lora.alpha
    apply_lora(model, cfg.lora.targets, cfg.lora.rank, cfg.lora.alpha)
    load_adapters(model, adapters)
    return _write_plain_run(cfg, model.eval(), base_run, Path(out), f"{base_run} + {adapters} (LoRA merged)")


__all__ = ["ADAPTERS_FILE", "apply_adapters", "export_adapters", "merge_run", "setup_lora", "write_adapters"]

"""Evaluating a saved run on a split of its own task's data: the one path behind `axon eval`, the
inference timing of `axon compare` and the final metrics of `axon train`.

    run directory --load_run--> (config, model with the newest checkpoint)
                  --build_task (axon.tasks' registry)--> data, objective, metrics
    split batches --evaluate--> loss [, accuracy], targets
                  --split_metrics--> perplexity, bits per char/byte, BLEU, ... (whatever the task adds)

This module imports no task: the run's task comes from the registry, by the name in its config.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def split_metrics(task, model, loss: float, split: str) -> dict:
    """The metrics a task adds to a split's mean loss: ``task.summarize(loss, split)`` (e.g.
    perplexity and bits per character), then ``task.model_metrics(model, split)`` when the task
    has them (e.g. BLEU of decoded translations, which needs the model itself)."""
    out = dict(task.summarize(loss, split))
    if task.model_metrics is not None:
        out.update(task.model_metrics(model, split))
    return out


def evaluate_run(run_dir: str | Path, split: str = "val", *, batch_size: int | None = None,
                 max_batches: int | None = None, device: str = "auto", data_dir: str | Path | None = None,
                 task_metrics: bool = True, timed: bool = False) -> dict:
    """Metrics of the run in ``run_dir`` on ``split`` ("train" or "val") of its task's data.

    ``batch_size``: sequences per evaluation batch (default: the run's train.batch_size);
    ``max_batches``: at most this many (default: the whole split); ``data_dir``: a prepared data
    directory instead of the run's own (data.dir).

    Returns ``loss`` (mean per target), ``accuracy`` when the objective counts correct
    predictions, the task's :func:`split_metrics` (unless ``task_metrics=False``), ``split`` and
    ``tokens`` (targets seen). ``timed=True`` builds every batch on the device first, then times
    the evaluation pass alone under inference mode (synchronising CUDA), and adds ``batches`` and
    ``seconds``.
    """
    from axon.errors import ConfigError
    from axon.eval import evaluate
    from axon.train.run import load_run
    from axon.tasks import build_task

    if split not in ("train", "val"):
        raise ConfigError(f"split must be train or val, got {split!r}")
    cfg, model, _ = load_run(run_dir, device)
    if data_dir:
        cfg.data.dir = str(data_dir)
    device = next(model.parameters()).device
    task = build_task(cfg, device)  # the run's own task: its data, objective and metrics
    data = task.val_data if split == "val" else task.train_data
    batches = (tuple(t.to(device) for t in b)
               for b in data.iter_eval_batches(batch_size or cfg.train.batch_size, cfg.model.block_size, max_batches))
    if timed:
        batches = list(batches)  # made before the clock starts: the model's time only
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        with torch.inference_mode():
            sync()
            start = time.perf_counter()
            result = evaluate(model, task.objective, iter(batches))
            sync()
            seconds = time.perf_counter() - start
    else:
        result = evaluate(model, task.objective, batches)
    metrics = {"loss": result["loss"]}
    if "accuracy" in result:
        metrics["accuracy"] = result["accuracy"]
    if task_metrics:
        metrics.update(split_metrics(task, model, result["loss"], split))
    metrics.update(split=split, tokens=result["count"])
    if timed:
        metrics.update(batches=len(batches), seconds=seconds)
    return metrics

"""Evaluating a model on a split of its task's data: the one path behind `axon eval`, the inference
timing of `axon compare` and the final metrics of `axon train`.

    run directory --axon.train.run.evaluate_run: load_run, build_task--> (config, model, task)
    split batches --evaluate--> loss [, accuracy], targets
                  --split_metrics--> perplexity, bits per char/byte, BLEU, ... (whatever the task adds)

This module imports no task and no trainer (tests/test_layering.py): it receives the task's
``TaskSetup``; loading a run directory and building its task is ``axon.train.run.evaluate_run``.
"""

from __future__ import annotations

import time

import torch

from axon.errors import check_count


def check_eval_options(batch_size, max_batches) -> None:
    """``batch_size`` and ``max_batches`` of :func:`evaluate_split`: None (the run's train.batch_size;
    the whole split) or integers >= 1 -- an OptionError otherwise, which `axon eval` words with
    its flags (``--batch-size must be an integer >= 1, got 0``) before it loads the run."""
    check_count("batch_size", batch_size, 1, optional=True)
    check_count("max_batches", max_batches, 1, optional=True)


def split_metrics(task, model, loss: float, split: str) -> dict:
    """The metrics a task adds to a split's mean loss: ``task.summarize(loss, split)`` (e.g.
    perplexity and bits per character), then ``task.model_metrics(model, split)`` when the task
    has them (e.g. BLEU of decoded translations, which needs the model itself)."""
    out = dict(task.summarize(loss, split))
    if task.model_metrics is not None:
        out.update(task.model_metrics(model, split))
    return out


def evaluate_split(model, task, cfg, split: str = "val", *, batch_size: int | None = None,
                   max_batches: int | None = None, task_metrics: bool = True, timed: bool = False) -> dict:
    """Metrics of ``model`` on ``split`` ("train" or "val") of ``task``'s data (a ``TaskSetup``
    built from the run's config ``cfg``).

    ``batch_size``: sequences per evaluation batch (default: the run's train.batch_size);
    ``max_batches``: at most this many (default: the whole split).

    Returns ``loss`` (mean per target), ``accuracy`` when the objective counts correct
    predictions, the task's :func:`split_metrics` (unless ``task_metrics=False``), ``split`` and
    ``tokens`` (targets seen). ``timed=True`` builds every batch on the device first, then times
    the evaluation pass alone under inference mode (synchronising CUDA), and adds ``batches`` and
    ``seconds``.
    """
    from axon.errors import ConfigError

    if split not in ("train", "val"):
        raise ConfigError(f"split must be train or val, got {split!r}")
    check_eval_options(batch_size, max_batches)
    with model.averaged():  # a model that keeps an EMA of its weights is evaluated with it (axon.nn.ema)
        return _evaluate_split(model, task, cfg, split, batch_size, max_batches, task_metrics, timed)


def _evaluate_split(model, task, cfg, split, batch_size, max_batches, task_metrics, timed) -> dict:
    from axon.eval import evaluate

    device = next(model.parameters()).device
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

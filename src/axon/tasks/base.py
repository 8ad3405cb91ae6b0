"""What a task hands the trainer (``TaskSetup``), and helpers the task modules share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from axon.errors import ConfigError


@dataclass
class TaskSetup:
    train_data: Any  # get_batch(step, batch_size, block_size, seed, micro_step=) -> tuple of tensors
    val_data: Any  # iter_eval_batches(batch_size, block_size, max_batches) -> iterator of batches
    objective: Callable  # (model, batch) -> (loss, parts)
    tokenizer: Any = None  # saved as tokenizer.json in the run directory (None: the task has none)
    sample_fn: Callable | None = None  # (model, step) -> text for samples.txt
    summarize: Callable[[float, str], dict] = field(default=lambda loss, split: {})  # (mean loss, split) -> extra metrics
    extra_files: dict[str, Any] = field(default_factory=dict)  # name -> callable(path) writing a file into the run
    # (trained model, split) -> metrics that need the model itself, e.g. BLEU of decoded translations;
    # added to the final result of a run and to `axon eval`
    model_metrics: Callable[[Any, str], dict] | None = None
    # (model, train.init_from) -> loads the starting weights itself, e.g. a pretrained encoder under a new
    # classification head (axon.tasks.finetune); None: train.run.init_weights, which loads strictly
    init_weights: Callable[[Any, Any], Any] | None = None
    # (model, step, run_dir) -> {name: value}: called on the main process at every evaluation, the final one
    # included, with the weights to sample with (model.averaged()); logged as val_<name> in the evaluation's
    # record; e.g. the diffusion task's sample grids and their Fréchet distance
    eval_fn: Callable[[Any, int, Any], dict] | None = None
    # name -> callable(run_dir) drawing a figure from the run's metrics.jsonl when training returns
    # (finished or interrupted), beside the trainer's loss.png; e.g. the dpo task's rewards.png
    plots: dict[str, Callable[[Any], Any]] = field(default_factory=dict)


TaskBuilder = Callable[[Any, torch.device], TaskSetup]  # (RunConfig, device) -> TaskSetup; may fill cfg.model fields


def set_vocab_size(cfg, vocab_size: int) -> None:
    """Fill ``model.vocab_size`` from the tokenizer, or check that the configured one is enough."""
    if getattr(cfg.model, "vocab_size", 0) is None:
        cfg.model.vocab_size = vocab_size
    elif cfg.model.vocab_size < vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's {vocab_size}")

"""Tasks: what a run trains on and how it is scored.

A task turns a config into the pieces the trainer needs, for any model family:

    data (corpus, labelled file, sentence pairs, ...) --> train / val datasets of batches
    tokenizer                                          --> saved into the run directory
    objective                                          --> (model, batch) -> (loss, parts)
    sample_fn, summarize                               --> samples.txt, extra result metrics

A config names its task (``task: lm``); without one, the model family's own task is used
(``Family.task``). New tasks register here with ``register_task``.
"""

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
    # classification head (axon.data.classify); None: train.run.init_weights, which loads strictly
    init_weights: Callable[[Any, Any], Any] | None = None


TaskBuilder = Callable[[Any, torch.device], TaskSetup]  # (RunConfig, device) -> TaskSetup; may fill cfg.model fields
TASKS: dict[str, TaskBuilder] = {}
# Modules that register more tasks (``@register_task``) when imported; one line per module.
TASK_MODULES: tuple[str, ...] = (
    "axon.data.seq2seq",  # seq2seq: sentence pairs for encoder-decoder models
    "axon.data.mlm",  # mlm: BERT's masked-LM pretraining on a token stream
    "axon.data.classify",  # classify: one label per text (JSONL / TSV), for every classifier family
    "axon.data.word2vec",  # word2vec: skip-gram / CBOW examples with negatives from any text
)


def register_task(name: str) -> Callable[[TaskBuilder], TaskBuilder]:
    def add(builder: TaskBuilder) -> TaskBuilder:
        TASKS[name] = builder
        return builder

    return add


def task_name(cfg) -> str:
    from axon.models import FAMILIES

    return cfg.task or FAMILIES[cfg.model.family].task


def build_task(cfg, device: torch.device) -> TaskSetup:
    import importlib

    for module in TASK_MODULES:
        importlib.import_module(module)
    name = task_name(cfg)
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    from axon.models import FAMILIES

    family = FAMILIES[cfg.model.family]
    served = (family.task, *family.other_tasks)
    if name not in served:
        doers = [f for f, fam in FAMILIES.items() if name in (fam.task, *fam.other_tasks)]
        raise ConfigError(f"task: a {cfg.model.family} model does not do {name!r} (it does {', '.join(served)}); "
                          f"for {name} set " + " or ".join(f"model.family={f}" for f in doers))
    return TASKS[name](cfg, device)


# ----------------------------------------------------------------------------------------------
# lm: next-token prediction on a token stream (the bundled corpus or a prepared directory)


@register_task("lm")
def lm_task(cfg, device: torch.device) -> TaskSetup:
    from axon.data.cache import resolve_data_dir, split_ratios
    from axon.data.loader import TokenDataset
    from axon.data.tokenizers import load_tokenizer
    from axon.objectives import CausalLM
    from axon.train.run import make_sampler

    data_dir = resolve_data_dir(cfg.data)
    tokenizer = load_tokenizer(data_dir)
    set_vocab_size(cfg, tokenizer.vocab_size)

    def summarize(loss: float, split: str) -> dict:  # perplexity, bits per token / char / byte
        from axon.eval import language_model_metrics

        return {k: v for k, v in language_model_metrics(loss, *split_ratios(data_dir, split)).items() if k != "loss"}

    return TaskSetup(
        train_data=TokenDataset.from_dir(data_dir, "train"), val_data=TokenDataset.from_dir(data_dir, "val"),
        objective=CausalLM(z_loss=cfg.train.z_loss), tokenizer=tokenizer,
        sample_fn=make_sampler(tokenizer, cfg, device), summarize=summarize,
    )


def set_vocab_size(cfg, vocab_size: int) -> None:
    """Fill ``model.vocab_size`` from the tokenizer, or check that the configured one is enough."""
    if getattr(cfg.model, "vocab_size", 0) is None:
        cfg.model.vocab_size = vocab_size
    elif cfg.model.vocab_size < vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's {vocab_size}")

"""EleutherAI's lm-evaluation-harness (0.4.13, pinned: this module uses its internals) running Axon
models: ``AxonLM``, registered as the harness's model ``axon``.

    task YAML --lm-eval (TaskManager, samplers, filters, metrics)--> Instances
    Instance.args --AxonLM--> LMScorer.loglikelihood / loglikelihood_rolling / generate_until
                  <--------- (ll, greedy) / ll / text, one per Instance, in order

lm-eval organises the requests and computes the metrics; every number comes from Axon's own
scorer (``axon.eval.prompting.scorer.LMScorer``), so ``axon eval --tasks`` and the harness give the
same log-likelihoods, greedy flags and generations by construction. From Python::

    lm_eval.simple_evaluate(model=AxonLM(run="runs/X"), tasks=["my_task"],
                            task_manager=task_manager("my_tasks/"))

From the shell (lm-eval 0.4.13 has no plugin entry point, so ``lm_eval`` itself cannot find
``axon``): ``axon lm-eval ARGS`` imports this module, which registers ``axon``, and hands ARGS to
lm-eval's own command line (:func:`cli`).

Task files' ``data_files``: Axon reads them relative to the task file's folder; lm-eval hands them
to ``datasets.load_dataset``, which reads them relative to the working directory. Through this
module's TaskManager (:func:`task_manager`, and ``axon lm-eval``) a relative path is the task
file's folder's when the file is there, else left as it is (lm-eval's rule), so one YAML gives the
same records to both harnesses wherever they are run from.

lm-eval is an optional dependency (``pip install 'axon-lab[eval]'``): only this module imports it.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.tasks import TaskManager
from lm_eval.tasks._factory import TaskFactory
from tqdm import tqdm

from axon.errors import ConfigError, OptionError, check_count, is_int
from axon.eval.prompting.scorer import LMScorer

log = logging.getLogger(__name__)

# lm-eval's own models (hf, vllm, ...) first: its get_model() imports them only while its registry is
# empty, so once `axon` is registered, `--model hf` would no longer be found.
importlib.import_module("lm_eval.models")

#: keyword arguments of AxonLM, i.e. what ``--model_args`` may set
MODEL_ARGS = ("run", "batch_size", "device", "max_length", "rolling_context", "seed", "max_batch_size")


@register_model("axon")
class AxonLM(LM):
    """An Axon run (or an :class:`LMScorer`) as an lm-eval ``LM``.

    ``run``: a run directory (its newest checkpoint and tokenizer; any causal LM family);
    ``scorer``: an LMScorer instead (a copy of it with ``batch_size``, when given; its own
    max_length, rolling_context and seed). ``batch_size``: requests per forward (default 8;
    ``auto`` is refused: the numbers do not depend on it, only the speed); ``device``: "auto",
    "cpu", "cuda", ... (a CUDA device without a GPU is the CPU, as lm-eval's own hf model takes
    it: its command line passes cuda:0 unless told otherwise); ``max_length``,
    ``rolling_context``, ``seed``: the scorer's. ``max_batch_size`` (which lm-eval always passes)
    is ignored.
    """

    def __init__(self, run: str | os.PathLike | None = None, batch_size: int | str | None = None,
                 device: str | None = "auto", max_length: int | None = None, rolling_context: int = 1,
                 seed: int = 1234, *, scorer: LMScorer | None = None, max_batch_size=None):
        super().__init__()
        if (run is None) == (scorer is None):
            raise ConfigError("AxonLM needs exactly one of run=RUN_DIR or scorer=LMScorer(...)")
        if isinstance(batch_size, str):  # from the command line: --batch_size 4, or model_args batch_size=4
            if not batch_size.strip().isdigit():
                raise OptionError("batch_size", "must be an integer >= 1 (AxonLM has no 'auto': its numbers do not "
                                                "depend on the batch size)", batch_size)
            batch_size = int(batch_size)
        check_count("batch_size", batch_size, 1, optional=True)
        if isinstance(device, str) and device.startswith("cuda") and not _cuda_available():
            log.info("AxonLM: device %s without a GPU: the run is loaded on the CPU", device)
            device = "cpu"  # lm-eval's command line passes cuda:0 unless told; its hf model does the same
        if scorer is None:
            kwargs = {"max_length": max_length, "rolling_context": rolling_context, "seed": seed}
            if batch_size is not None:
                kwargs["batch_size"] = batch_size
            scorer = LMScorer.from_run(run, device or "auto", **kwargs)
        elif batch_size is not None:
            scorer = copy.copy(scorer)  # the caller's scorer keeps its own batch size
            scorer.batch_size = batch_size
        self.scorer, self.run = scorer, None if run is None else str(run)
        self._device = scorer.device

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> AxonLM:
        """``--model_args run=runs/X,batch_size=4``; what lm-eval adds (``batch_size``, ``device``
        from its own flags) fills in only what model_args leaves unset."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> AxonLM:
        unknown = [k for k in arg_dict if k not in MODEL_ARGS]
        if unknown:
            raise ConfigError(f"--model_args {unknown[0]}: not an argument of the axon model; it takes "
                              f"{', '.join(MODEL_ARGS[:-1])}")
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k in MODEL_ARGS}
        return cls(**{**extra, **arg_dict})

    @property
    def tokenizer_name(self) -> str:
        return f"axon:{self.run or type(self.scorer.tokenizer).__name__}"

    # --- lm-eval's three request types: Instance.args in, Axon's scorer, results in order ----------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        args = [_args(r, 2, "loglikelihood") for r in requests]
        with self._bar(len(args), "loglikelihood", disable_tqdm) as bar:
            out = self.scorer.loglikelihood(args, progress=bar.update)
        for a, result in zip(args, out):
            self.cache_hook.add_partial("loglikelihood", a, result)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        docs = [_args(r, 1, "loglikelihood_rolling")[0] for r in requests]
        with self._bar(len(docs), "loglikelihood_rolling", disable_tqdm) as bar:
            out = self.scorer.loglikelihood_rolling(docs, progress=bar.update)
        for doc, result in zip(docs, out):
            self.cache_hook.add_partial("loglikelihood_rolling", (doc,), result)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        args = [_args(r, 2, "generate_until") for r in requests]
        with self._bar(len(args), "generate_until", disable_tqdm) as bar:
            out = self.scorer.generate_until([(ctx, dict(kwargs)) for ctx, kwargs in args], progress=bar.update)
        for a, result in zip(args, out):
            self.cache_hook.add_partial("generate_until", a, result)
        return out

    def _bar(self, total: int, what: str, disable: bool):
        return tqdm(total=total, desc=f"axon {what}", unit="request", disable=disable or self.rank != 0,
                    dynamic_ncols=True, leave=False)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _args(request, n: int, what: str) -> tuple:
    """An Instance's arguments (a bare tuple is taken as they are), checked to be ``n`` of them."""
    args = getattr(request, "args", request)
    if not isinstance(args, tuple) or len(args) != n:
        raise ConfigError(f"AxonLM.{what}: a request has the arguments {args!r}; {what} takes {n} "
                          "(the axon model reads text only: no images or audio)")
    return args


# --- task files: data_files relative to the YAML's folder ------------------------------------------


def resolve_data_files(cfg: dict, folder: str | os.PathLike) -> dict:
    """``cfg`` (a task config) with each relative path of ``dataset_kwargs.data_files`` that names a
    file in ``folder`` made absolute; any other path (absolute, a URL, a glob, a file that is
    not there) is left as it is, for ``datasets`` to read from the working directory."""
    kwargs = cfg.get("dataset_kwargs")
    if not isinstance(kwargs, dict) or "data_files" not in kwargs:
        return cfg
    folder = Path(folder)

    def fix(path):
        if isinstance(path, str) and path and not os.path.isabs(path) and "://" not in path \
                and (folder / path).is_file():
            return str((folder / path).resolve())
        return path

    def fix_all(value):
        return [fix(p) for p in value] if isinstance(value, (list, tuple)) else fix(value)

    files = kwargs["data_files"]
    files = {split: fix_all(v) for split, v in files.items()} if isinstance(files, dict) else fix_all(files)
    return {**cfg, "dataset_kwargs": {**kwargs, "data_files": files}}


class AxonTaskFactory(TaskFactory):
    """lm-eval's TaskFactory, with ``data_files`` read relative to each task file's folder."""

    def _load_full_config(self, entry, overrides=None) -> dict:
        cfg = super()._load_full_config(entry, overrides)
        if entry.yaml_path:
            cfg = resolve_data_files(cfg, Path(entry.yaml_path).parent)
        return cfg


class AxonTaskManager(TaskManager):
    """lm-eval's TaskManager building tasks with :class:`AxonTaskFactory`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._factory = AxonTaskFactory(meta=self.metadata)


def task_manager(include_path=None, include_defaults: bool = False, metadata: dict | None = None) -> AxonTaskManager:
    """A TaskManager over ``include_path`` (a folder of task YAMLs, or a list of them) whose tasks
    read their data files relative to their YAML files. ``include_defaults``: also index lm-eval's
    own ~15,000 tasks (some seconds)."""
    return AxonTaskManager(include_path=include_path, include_defaults=include_defaults, metadata=metadata)


@contextmanager
def _axon_task_files():
    """While lm-eval's command line runs: its TaskManager is :class:`AxonTaskManager`, and a task
    YAML it reads itself (``--tasks FILE.yaml`` or ``--tasks DIR``) has its data_files resolved."""
    import lm_eval.tasks
    import lm_eval.tasks._yaml_loader as loader

    load_yaml = loader.load_yaml

    def load_yaml_resolved(path, *args, **kwargs):
        cfg = load_yaml(path, *args, **kwargs)
        cfg = resolve_data_files(cfg, Path(path).expanduser().resolve().parent)
        return cfg

    saved = lm_eval.tasks.TaskManager
    lm_eval.tasks.TaskManager, loader.load_yaml = AxonTaskManager, load_yaml_resolved
    try:
        yield
    finally:
        lm_eval.tasks.TaskManager, loader.load_yaml = saved, load_yaml


def cli(argv: list[str]) -> int:
    """``axon lm-eval ARGS``: lm-eval's command line (``lm_eval.__main__.cli_evaluate``, which
    reads ``sys.argv``) on ARGS unchanged, with ``axon`` registered and task files' data_files
    resolved as above. Returns the exit status."""
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        with _axon_task_files():
            cli_evaluate()
    except SystemExit as e:  # argparse: --help, a bad flag
        return e.code if is_int(e.code) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return 0


__all__ = ["AxonLM", "AxonTaskFactory", "AxonTaskManager", "MODEL_ARGS", "cli", "resolve_data_files", "task_manager"]

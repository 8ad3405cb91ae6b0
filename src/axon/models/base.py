"""The model contract: everything the trainer, the objectives and the lab may ask of a model.

Every family's module subclasses :class:`Model` and overrides what it has; the defaults say "none
of that here". Callers never probe a model with ``hasattr``: they call the contract on the
*unwrapped* module (:func:`unwrap`), because the wrappers a run adds -- DDP, ``torch.compile`` --
forward ``__call__`` but not methods (``DistributedDataParallel`` has no ``aux_losses``), which is
how a probe once silently dropped an MoE's balance loss under DDP.

    forward(batch inputs) -> outputs     the family's own signature; the task's objective calls it
    flops_per_token(seq_len) -> float    training FLOPs per token (forward + backward), for MFU
    active_params() -> int               parameters one token uses (an MoE: fewer than it has)
    aux_losses() -> {name: scalar}       losses of the last forward the objective adds (MoE balance)
    metrics() -> {name: float}           figures logged with each training record (MoE expert loads)
    callbacks() -> [TrainerCallback]     hooks into the training loop (progressive growth, an EMA)
    averaged() -> context manager        the weights to evaluate and sample with: an EMA's where the
                                         model keeps one (:func:`keep_ema`), else its own
    init_sources() -> {submodule: (run, field)}  run directories whose weights start submodules of a run
                                         (a routed model's experts)
    tag_crf() -> CRF or None             a tagger's CRF over its per-token scores, which the tag task
                                         trains (forward algorithm) and decodes (Viterbi) with

Modelled on torchtitan's ``ModelProtocol`` (a written contract instead of duck typing), with a
trainer-callback list in place of model-specific branches in the loop.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from axon.nn.ema import ParameterEMA


class TrainerCallback:
    """A hook a model hands the trainer through :meth:`Model.callbacks`.

    The growth of ``axon.models.progressive`` is one: before some steps it adds layers, so the
    trainer must rebuild its optimizers, a resumed run must first reach the checkpoint's shape,
    and neither FSDP (whose units are fixed at the start) nor LoRA (whose adapters would not
    follow) can take such a model.
    """

    changes_parameters: bool = False  # adds or replaces parameters during training
    shardable: bool = True  # works on FSDP's sharded parameters (an EMA of whole tensors does not)

    def check(self, max_steps: int) -> None:
        """Refuse (ConfigError) a run of ``max_steps`` steps this hook cannot serve."""

    def before_step(self, step: int) -> bool:
        """Called before optimizer step ``step`` (= steps completed). True: the parameters changed."""
        return False

    def at_resume(self, step: int) -> bool:
        """Bring the model to the shape it had in a checkpoint written after ``step`` steps, before
        that checkpoint is loaded. True: the parameters changed."""
        return False

    def final_shape(self) -> None:
        """Bring the model to the shape it has at the end of training (counting FLOPs, parameters)."""

    def after_step(self, step: int) -> None:
        """Called after optimizer step ``step`` (= steps completed, this one included) when its
        update was applied (not after a step skipped for a non-finite loss)."""


class Model(nn.Module):
    """Base class of every family's module: the contract's defaults."""

    def flops_per_token(self, seq_len: int | None = None) -> float | None:
        """Training FLOPs per token at context ``seq_len``; None: not counted (no MFU is logged)."""
        return None

    def active_params(self) -> int:
        """Parameters one token uses (shared tensors once)."""
        return sum({id(p): p.numel() for p in self.parameters()}.values())

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """Scalar losses of the last forward that the objective adds to its own (none by default)."""
        return {}

    def metrics(self) -> dict[str, float]:
        """Figures about training the trainer logs with each record (none by default)."""
        return {}

    def init_sources(self) -> dict[str, tuple[str, str]]:
        """Submodule name -> (run directory, the config field that names it): the run's newest
        checkpoint initialises that submodule when a run starts (not when it resumes: the run's own
        checkpoint has it); none by default."""
        return {}

    def tag_crf(self) -> nn.Module | None:
        """A tagger's linear-chain CRF (``axon.nn.crf.CRF``) over its emissions; None: tags are
        scored and predicted token by token (the default)."""
        return None

    def callbacks(self) -> list[TrainerCallback]:
        """Hooks into the training loop: an EMA's update when the model keeps one (:func:`keep_ema`)."""
        ema = self._modules.get("ema")
        return [EMAUpdate(self)] if isinstance(ema, ParameterEMA) else []

    def averaged(self):
        """A context in which the parameters are the ones to evaluate and sample with: the EMA's
        averages where the model keeps one (:func:`keep_ema`), restored after; else nothing changes."""
        ema = self._modules.get("ema")
        if not isinstance(ema, ParameterEMA):
            return contextlib.nullcontext()
        return ema.swapped_in(dict(self.named_parameters()))


def keep_ema(model: Model, decay: float | None) -> None:
    """Give ``model`` an EMA of its trainable parameters (``axon.nn.ema``) as ``model.ema``, when
    ``decay`` is set: its shadows are buffers, so checkpoints carry them and resume continues the
    same average; the trainer updates it after each step (:meth:`Model.callbacks`) and evaluation
    and sampling read it (:meth:`Model.averaged`). Call it last in a family's ``__init__``."""
    if decay:
        model.ema = ParameterEMA({n: p for n, p in model.named_parameters() if p.requires_grad}, decay)


class EMAUpdate(TrainerCallback):
    """The trainer's call into a model's EMA after each applied step."""

    shardable = False  # the shadows are whole tensors; FSDP's parameters are shards

    def __init__(self, model: Model):
        self.model = model

    def after_step(self, step: int) -> None:
        self.model.ema.update(dict(self.model.named_parameters()))


def unwrap(module: nn.Module) -> Model:
    """The model under the wrappers a run may add: ``torch.compile``'s ``OptimizedModule``
    (``_orig_mod``) and ``DistributedDataParallel`` (``module``). FSDP2 keeps the class."""
    while True:
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            break
    if not isinstance(module, Model):
        raise TypeError(f"{type(module).__name__} is not an axon model (subclass axon.models.base.Model)")
    return module

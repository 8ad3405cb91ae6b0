"""Data parallelism on PyTorch's own engine: torchrun, DDP and FSDP2, and the options that compose with them.

A run started by ``torchrun --nproc_per_node=N -m axon train ...`` (or ``axon train --nproc N``,
which launches exactly that) has ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in its environment;
:func:`init_distributed` turns them into a process group (gloo on CPU, NCCL on GPU, one GPU per
process) and a :class:`Dist` the trainer asks everything distributed of. Without them it returns a
single-process ``Dist`` and nothing else changes.

How a step is split (``train.batch_size`` = B sequences per process and micro-step, ``grad_accum``
= A, world size W)::

    global batch = B x A x W sequences
    micro-step m draws B x W windows from one generator seeded (seed, step, m); rank r takes
    rows [r B, (r + 1) B)  -- so the ranks read disjoint slices of exactly the batch one process
    with batch_size B x W would read, and a run can resume on another W (B is rescaled to keep
    B x W: see ``axon.train.run``)

``train.parallel`` picks how the model is replicated:

* ``ddp``: ``DistributedDataParallel``; every rank holds the whole model and optimizer; gradients
  are averaged by all-reduce during backward. Checkpoints are written by rank 0 alone.
* ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``): every repeated block (the elements of
  the model's top-level ``nn.ModuleList``s) is one sharding unit, the rest is the root unit;
  parameters, gradients and optimizer states are ``DTensor`` shards (dim 0 split over ranks),
  all-gathered for each unit's forward and backward and reduce-scattered after.

A task whose objective shares work out over the ranks itself (PPO samples each rollout's rows on
their ranks, then gathers them: ``Dist.gather_rows``) gets this process's Dist from
:func:`process_dist`; the trainer's own Dist and it describe the same group.

Checkpoints are *gathered*: every tensor is assembled whole (``DTensor.full_tensor``) and rank 0
writes the same safetensors checkpoint a single process writes (see ``axon.train.checkpoint``).
So any run resumes on any number of processes with either strategy, and ``model.safetensors`` is
already the one-file export for ``axon sample``, ``axon export`` and interop. The price is that
rank 0 must hold the whole model and optimizer state in CPU memory while it writes; beyond a few
billion parameters, sharded ``torch.distributed.checkpoint`` files would be the tool (not done).

``train.activation_checkpointing`` recomputes each block's activations in backward
(``torch.utils.checkpoint``, non-reentrant) and ``train.compile`` compiles each block's forward
before the DDP / FSDP wrapping, as torchtitan does: names of parameters and modules never change,
so checkpoints do not depend on these switches.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from axon.errors import ConfigError


@dataclass
class Dist:
    """Where this process stands: rank among world_size processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    parallel: str = "ddp"  # ddp | fsdp; only meaningful when world_size > 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def fsdp(self) -> bool:
        return self.enabled and self.parallel == "fsdp"

    # -- collectives (no-ops on one process) --------------------------------------------------

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (e.g. prepares the data cache), the others after it."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def all_reduce(self, values, op: str = "sum") -> torch.Tensor:
        """A float64 tensor of ``values`` reduced over ranks (``sum``, ``mean`` or ``max``).

        gloo has no AVG: ``mean`` is a sum divided by the world size.
        """
        t = torch.as_tensor(values, dtype=torch.float64).detach().clone()
        if not self.enabled:
            return t
        comm = t.to(self._comm_device)
        dist.all_reduce(comm, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        t = comm.cpu()
        return t / self.world_size if op == "mean" else t

    def broadcast_text(self, text: str | None) -> str:
        """Rank 0's string on every rank (e.g. the run directory name)."""
        if not self.enabled:
            return text
        data = (text or "").encode() if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=self._comm_device)
        dist.broadcast(size, 0)
        buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=self._comm_device)
        if self.is_main:
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buf, 0)
        return bytes(buf.cpu().tolist()).decode()

    def all_gather_tensor(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-shaped tensor (e.g. the RNG states), on the CPU."""
        if not self.enabled:
            return [t]
        comm = t.to(self._comm_device)
        out = [torch.empty_like(comm) for _ in range(self.world_size)]
        dist.all_gather(out, comm)
        return [o.cpu() for o in out]

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t`` concatenated along dim 0 in rank order: the rows one process would
        hold had it computed them all (``t`` itself on one process). Each rank gives the same
        number of rows; the other dims may differ (e.g. the longest answer of each rank's share)
        and are zero-padded at the end to the largest. On this rank's device."""
        if not self.enabled:
            return t
        rows = t.size(0)
        shape = [int(n) for n in self.all_reduce([*t.shape, -rows], "max").tolist()]
        if shape[0] != rows or -shape[-1] != rows:
            raise ValueError(f"gather_rows: every rank must give the same number of rows (this one: {rows})")
        padded = t.new_zeros(shape[:-1])
        padded[tuple(slice(0, n) for n in t.shape)] = t
        return torch.cat(self.all_gather_tensor(padded)).to(t.device)

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    # -- the decisions a training loop needs, each the identity on one process --------------

    def seed(self, seed: int) -> None:
        """Every rank starts from the same weights (seeded alike before the model is built); from
        here on each draws its own dropout masks."""
        if self.rank > 0:
            torch.manual_seed(seed + 1_000_003 * self.rank)

    def agree_to_stop(self, stop: bool, elapsed: float) -> tuple[bool, float]:
        """Every rank stops at the same step and follows one clock (the slowest): (any rank asked
        to stop, the largest elapsed time)."""
        if not self.enabled:
            return stop, elapsed
        flag, elapsed = self.all_reduce([float(stop), elapsed], "max").tolist()
        return flag > 0, elapsed

    def mean(self, metrics: dict[str, float]) -> dict[str, float]:
        """Each figure averaged over ranks (e.g. an MoE's expert loads)."""
        if not self.enabled or not metrics:
            return metrics
        keys = sorted(metrics)
        return dict(zip(keys, self.all_reduce([metrics[k] for k in keys], "mean").tolist()))

    def no_sync(self, wrapped: nn.Module, last_micro_step: bool):
        """A context for one micro-step's backward: gradients are all-reduced on the last only."""
        return no_grad_sync(wrapped, last_micro_step)

    def batch(self, dataset, step: int, batch_size: int, block_size: int, seed: int, micro_step: int) -> tuple:
        """This rank's rows of one micro-step (:func:`rank_batch`)."""
        return rank_batch(dataset, self, step, batch_size, block_size, seed, micro_step)

    def grad_norm(self, params, clip: float) -> torch.Tensor:
        """Clip the gradients to a global norm of ``clip``; the norm before clipping. DDP's
        gradients are averaged over ranks by now and FSDP's norm covers every shard: both global."""
        return gather_full(torch.nn.utils.clip_grad_norm_(params, clip))

    def agree_on_dtype(self, optimizers) -> None:
        """Every rank's Muon orthogonalises in one dtype: each probes its own CPU
        (optim.muon_dtype auto), and replicas that rounded their updates differently would drift
        apart. If any rank chose float32, all take it."""
        from axon.train.optim import Muon

        for opt in optimizers:
            if isinstance(opt, Muon) and self.enabled:
                if self.all_reduce([float(opt.ns_dtype == torch.float32)], "max").item() and opt.ns_dtype != torch.float32:
                    opt.ns_dtype, opt.ns_dtype_reason = torch.float32, opt.ns_dtype_reason + "; float32 because another rank chose it"

    def evaluate(self, model: nn.Module, objective, batches, autocast=None) -> dict[str, float]:
        """The metrics of ``batches`` (on this device already) as one process computes them.

        Batch i goes to rank i mod world_size and the sums are reduced, so every rank gets the
        figure one process would compute. FSDP ranks all run ceil(n / world_size) forward passes
        (each gathers the shards collectively), the short ones on a spare batch.
        """
        from axon.eval import evaluate, evaluation_sums, summarize_sums

        if not self.enabled:
            return evaluate(model, objective, batches, autocast)
        seen: dict = {"n": 0, "spare": None}

        def mine():
            for i, batch in enumerate(batches):
                seen["n"], seen["spare"] = i + 1, seen["spare"] if seen["spare"] is not None else batch
                if i % self.world_size == self.rank:
                    yield batch

        total, count, correct = evaluation_sums(model, objective, mine(), autocast)
        if self.fsdp:
            spare = split_evenly(seen["n"], self) - len(range(self.rank, seen["n"], self.world_size))
            evaluation_sums(model, objective, (seen["spare"] for _ in range(spare)), autocast)
        total, count, correct, has_correct = self.all_reduce([total, count, correct or 0, correct is not None], "sum").tolist()
        return summarize_sums(total, int(count), int(correct) if has_correct else None)

    def gather_model(self, model: nn.Module, plain) -> nn.Module | None:
        """The trained model as one unsharded module: ``model`` itself, or (FSDP) ``plain()``, an
        unsharded copy rank 0 fills with the gathered weights (every rank must call this; the
        others get None)."""
        if not self.fsdp:
            return model
        from axon.errors import AxonError
        from axon.train.checkpoint import model_tensors, tied_names

        weights, _ = model_tensors(model, keep=self.is_main)
        if not self.is_main:
            return None
        plain = plain()
        missing, unexpected = plain.load_state_dict(weights, strict=False)
        tied = set(tied_names(plain.state_dict()))
        if unexpected or set(missing) - tied:
            raise AxonError(f"gathered weights do not fit the plain model (missing {sorted(missing)[:3]}, unexpected {unexpected[:3]})")
        return plain

    def rng_states(self) -> dict[str, torch.Tensor] | None:
        """For a checkpoint: every other rank's RNG states (``rank{r}.rng.torch`` / ``.cuda``) next
        to rank 0's own (None on one process: the checkpoint takes this process's states)."""
        if not self.enabled:
            return None
        from axon.train.checkpoint import rng_state

        rng = rng_state() if self.is_main else {}
        for r, t in enumerate(self.all_gather_tensor(torch.get_rng_state())):
            if r > 0:
                rng[f"rank{r}.rng.torch"] = t
        if self.device.type == "cuda":
            for r, t in enumerate(self.all_gather_tensor(torch.cuda.get_rng_state(self.device))):
                if r > 0:
                    rng[f"rank{r}.rng.cuda"] = t
        return rng


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device: ``auto`` is CUDA when there is one, else the CPU. Only
    the names the config allows (``axon.config.is_device_name``): torch's ``meta`` would train on
    tensors without data, and fail at the first ``.item()``."""
    from axon.config import DEVICE_CHOICES, is_device_name

    if not is_device_name(name):
        raise ConfigError(f"train.device: {name!r} is not a device to train on; {DEVICE_CHOICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available; use cpu or auto")
    return device


def process_dist(device: torch.device, parallel: str = "ddp") -> Dist:
    """The Dist of this process's group as :func:`init_distributed` made it (a single-process
    Dist when there is none): for code that the trainer does not hand one, such as a task's
    objective that shares work out over the ranks (PPO's rollouts)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)), device=device, parallel=parallel)
    return Dist(device=device, parallel=parallel)


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(device_name: str, parallel: str) -> Dist:
    """The process group of a torchrun launch (once per process), or a single-process Dist.

    ``device_name`` is ``train.device``: ``auto`` / ``cuda`` take GPU ``LOCAL_RANK`` when CUDA is
    there (NCCL), else the CPU (gloo).
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(device=resolve_device(device_name), parallel=parallel)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if torch.cuda.device_count() <= local:
            raise ConfigError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', '?')} processes on this node but it "
                              f"has {torch.cuda.device_count()} GPUs; use --nproc_per_node at most the GPU count")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    _stop_with_parent()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)
    return Dist(rank=rank, world_size=world, local_rank=local, device=device, parallel=parallel)


def _stop_with_parent() -> None:
    """Linux: have the kernel send this worker SIGTERM when its torchrun agent dies (killed, or
    its node lost), so it checkpoints and stops (Trainer's signal handler) instead of training on
    as an orphan. Elsewhere nothing happens."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the agent died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# This rank's share of a batch


def rank_batch(dataset, d: Dist, step: int, batch_size: int, block_size: int, seed: int, micro_step: int) -> tuple:
    """Rank ``d.rank``'s ``batch_size`` rows of the ``batch_size x world_size`` rows of one micro-step.

    A dataset whose ``get_batch`` takes ``rank`` / ``world_size`` (the token stream) draws only its
    own rows; any other dataset draws the whole micro-step and this slices it, which gives the
    same rows (padding, where a task pads, follows the longest row of the whole micro-step).
    """
    if not d.enabled:
        return dataset.get_batch(step, batch_size, block_size, seed, micro_step=micro_step)
    if _takes_rank(type(dataset)):
        return dataset.get_batch(step, batch_size, block_size, seed, micro_step=micro_step, rank=d.rank, world_size=d.world_size)
    full = dataset.get_batch(step, batch_size * d.world_size, block_size, seed, micro_step=micro_step)
    return tuple(t[d.rank * batch_size : (d.rank + 1) * batch_size] for t in full)


@functools.lru_cache(maxsize=None)
def _takes_rank(cls) -> bool:
    params = inspect.signature(cls.get_batch).parameters
    return "rank" in params and "world_size" in params


# ----------------------------------------------------------------------------------------------
# Wrapping the model: activation checkpointing, compile, DDP / FSDP


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's repeated layers: elements of its outermost ``nn.ModuleList``s (decoder blocks,
    BERT and Mamba layers, the conv-attention levels' blocks, ...), in module order."""
    blocks: list[nn.Module] = []
    taken: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(t + ".") for t in taken):
            continue
        if isinstance(module, nn.ModuleList):
            blocks.extend(module)
            taken.append(name)
    return blocks


def _checkpointed_forward(forward, *args, **kwargs):
    # Only where a backward will follow: generation and evaluation run the plain forward.
    if torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def apply_activation_checkpointing(model: nn.Module) -> int:
    """Recompute every repeated block's activations in backward instead of storing them.

    The block's ``forward`` is replaced on the instance (names and parameters are unchanged, so
    checkpoints and optimizers do not notice); applying it twice is harmless. Returns the count.
    """
    blocks = repeated_blocks(model)
    if not blocks:
        raise ConfigError("train.activation_checkpointing: this model has no repeated blocks (nn.ModuleList) to checkpoint")
    for block in blocks:
        if not getattr(block, "_axon_checkpointed", False):
            block.forward = functools.partial(_checkpointed_forward, block.forward)
            block._axon_checkpointed = True
    return len(blocks)


def compile_blocks(model: nn.Module) -> None:
    """``torch.compile`` each repeated block's forward (the rest runs eagerly). Only ``forward`` is
    compiled, so the hooks FSDP puts around each block's call stay outside the compiled graph;
    names and parameters do not change."""
    for block in repeated_blocks(model):
        block.forward = torch.compile(block.forward)


def wrap_model(model: nn.Module, d: Dist, bf16: bool) -> nn.Module:
    """The module the training step calls: ``model`` itself, or its DDP wrapper, or (FSDP) the
    same ``model`` sharded in place. Evaluation and sampling never go through a DDP wrapper."""
    if not d.enabled:
        return model
    if d.fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(d.device.type, (d.world_size,))
        # bf16 all-gathers and compute, fp32 master weights and gradient reduction (as torchtitan).
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
        # The marks a model puts on its parameters for the optimizer (_no_weight_decay, _lr_scale) are
        # attributes of the Parameter objects, which fully_shard replaces by DTensor shards: carried over.
        marks = {name: dict(vars(p)) for name, p in model.named_parameters() if vars(p)}
        for block in repeated_blocks(model):
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        for name, p in model.named_parameters():
            for key, value in marks.get(name, {}).items():
                if not hasattr(p, key):
                    setattr(p, key, value)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    # Our buffers are constants (rotary tables, masks) or kept equal on every rank by their module (the
    # VQ codebook's EMA statistics, all-reduced in axon.nn.vq): broadcasting them every forward is waste.
    # torch 2.13 renamed the switch (forward_sync_buffers) and deprecates the old name; older torch
    # (the GPU image had 2.11) knows only broadcast_buffers.
    device_ids = [d.device.index] if d.device.type == "cuda" else None
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters else "broadcast_buffers"
    return DDP(model, device_ids=device_ids, **{no_sync: False})


def parallelize(model: nn.Module, d: Dist, train_cfg, bf16: bool) -> tuple[nn.Module, nn.Module]:
    """``(forward_model, eval_model)``: the module a training step calls and the one evaluation
    calls, after activation checkpointing, compile, and DDP / FSDP as the run asks. Evaluation
    never goes through DDP's wrapper: it runs a different number of batches on each rank."""
    if train_cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    if not d.enabled:
        model = torch.compile(model) if train_cfg.compile else model
        return model, model
    if d.fsdp and any(cb.changes_parameters for cb in model.callbacks()):
        raise ConfigError("train.parallel: a growing model cannot be sharded (FSDP units are fixed at the start); use ddp")
    if d.fsdp and not all(cb.shardable for cb in model.callbacks()):
        raise ConfigError("train.parallel: this model keeps an EMA of whole parameters, which FSDP would shard; use ddp")
    if train_cfg.compile:
        compile_blocks(model)
    return wrap_model(model, d, bf16), model


def no_grad_sync(wrapped: nn.Module, last_micro_step: bool):
    """DDP: skip the gradient all-reduce on all micro-steps but the last (FSDP reduce-scatters
    each micro-step, which keeps its gradients sharded)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    if isinstance(wrapped, DDP) and not last_micro_step:
        return wrapped.no_sync()
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------
# Sharded <-> whole tensors (for gathered checkpoints)


def is_sharded(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def gather_full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor, gathered from every rank's shard (a collective: every rank
    must call it, on the same tensors in the same order), or ``t`` itself when it is not sharded."""
    return t.full_tensor() if is_sharded(t) else t


def shard_like(whole: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``whole`` laid out as ``ref`` (a DTensor parameter: this rank's shard of it, no
    communication since every rank holds ``whole``), or ``whole`` itself."""
    if not is_sharded(ref):
        return whole
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole.to(ref.device_mesh.device_type), ref.device_mesh, ref.placements, src_data_rank=None)


def split_evenly(n: int, d: Dist) -> int:
    """Forward passes every rank must run so FSDP ranks stay in step: ceil(n / world_size)."""
    return math.ceil(n / d.world_size)

"""The one trainer. It knows no model: it takes a module, an objective and datasets of batches.

A dataset gives ``get_batch(step, batch_size, block_size, seed, micro_step=)`` (a tuple of tensors,
a pure function of its arguments) and ``iter_eval_batches(batch_size, block_size, max_batches)``;
the objective maps ``(model, batch)`` to ``(loss, parts)`` (see ``axon.eval.evaluate``) and may
have ``metrics()``, figures of the training batches since the last record, logged with it. Which
datasets and objective a run uses is its task (``axon.tasks``).

Per step: ``grad_accum`` micro-batches of forward/backward, gradient clipping, a non-finite
check, the optimizer step with the scheduled lr. Around it: logging, periodic evaluation on a
fixed validation set, samples, atomic checkpoints, and stop by steps, tokens or wall-clock.

Exact resume: batches are a pure function of (seed, step) (see ``axon.data.loader``), the lr is
a function of the step, and the checkpoint holds model, optimizer and RNG states, so a run
resumed from step s computes bit for bit what the uninterrupted run computed (on CPU).

The model is asked only through its contract (``axon.models.base``): FLOPs per token, metrics
to log, and callbacks such as progressive growth, which may add parameters before a step.

Distributed: every rank runs this loop on its slice of each batch. Each decision that involves
the other processes -- this rank's rows, agreed stops, reduced losses and metrics, sharded
evaluation, the gathered model, every rank's RNG in a checkpoint -- is a call on ``self.dist``
(``axon.train.distributed.Dist``), the identity on one process; only the main process logs,
plots, samples and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from axon.errors import AxonError, CheckpointError, os_error_line, writing
from axon.train import distributed as D
from axon.train.checkpoint import (
    latest_step,
    list_checkpoints,
    load_extra,
    load_latest,
    save_checkpoint,
)
from axon.train.logging import MetricsLogger, plot_losses, resume_hint
from axon.train.optim import Muon, build_optimizers
from axon.train.schedule import lr_factor


class NonFiniteError(AxonError):
    pass


@dataclass
class TrainState:
    step: int = 0  # optimizer steps completed
    tokens: int = 0  # training tokens consumed
    elapsed: float = 0.0  # training wall-clock seconds, summed over resumes
    skipped_steps: int = 0  # non-finite steps skipped (on_nonfinite=skip)
    world_size: int = 1  # processes the checkpoint was written by
    batch_size: int | None = None  # their train.batch_size (sequences per process and micro-step)


class _NoLogger:
    """The metrics logger of a rank that writes nothing (every rank but 0)."""

    def log(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class Trainer:
    def __init__(self, cfg, model: nn.Module, objective, train_data, val_data, run_dir: Path, device: torch.device,
                 sample_fn=None, eval_fn=None, flops_per_token: float | None = None, config_dict: dict | None = None,
                 dist: D.Dist | None = None, plain_model=None):
        """``dist``: this process's place in a distributed run (default: one process).
        ``plain_model``: builds an unsharded copy of the model (FSDP: rank 0 gathers the weights
        into it to sample text)."""
        self.cfg, self.tc = cfg, cfg.train
        self.model, self.objective = model, objective
        self.train_data, self.val_data = train_data, val_data
        self.run_dir, self.device = run_dir, device
        self.sample_fn = sample_fn
        self.eval_fn = eval_fn  # the task's figures at each evaluation (TaskSetup.eval_fn)
        self.flops_per_token = flops_per_token
        self.config_dict = config_dict
        self.dist = dist or D.Dist(device=device)
        self.plain_factory, self._plain = plain_model, None
        self.block_size = cfg.model.block_size
        # global: every rank's micro-batches of this step
        self.tokens_per_step = self.tc.batch_size * self.block_size * self.tc.grad_accum * self.dist.world_size
        steps = [s for s in (self.tc.max_steps, self.tc.max_tokens and math.ceil(self.tc.max_tokens / self.tokens_per_step)) if s]
        self.max_steps = min(steps)
        self.callbacks = model.callbacks()  # the model's hooks into this loop (axon.models.base)
        for callback in self.callbacks:
            callback.check(self.max_steps)
        self.state = TrainState()
        self.ckpt_dir = run_dir / "checkpoints"
        self.use_bf16 = self.tc.dtype == "bf16" or (self.tc.dtype == "auto" and device.type == "cuda")
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if self.use_bf16 else None
        self._wrap()  # before the optimizers: FSDP replaces the parameters by their shards
        self.optimizers = build_optimizers(model, cfg.optim)
        self.dist.agree_on_dtype(self.optimizers)
        for opt in self.optimizers:
            if isinstance(opt, Muon):  # which dtype its orthogonalisation runs in, and why
                self.log(f"muon: Newton-Schulz in {str(opt.ns_dtype).removeprefix('torch.')} ({opt.ns_dtype_reason})")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._stop_requested = False
        self.interrupted = False  # stopped by Ctrl-C / SIGTERM before its budget ran out
        self.stop_signal = 0  # the signal that stopped it (on rank 0 of a distributed run: 0 if another rank got it)

    # ---------------------------------------------------------------------------------------

    def _wrap(self) -> None:
        """``forward_model``, the module a training step calls, and ``eval_model``, the one
        evaluation calls (axon.train.distributed.parallelize)."""
        self.forward_model, self.eval_model = D.parallelize(self.model, self.dist, self.tc, self.use_bf16)

    def log(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(message)

    def resume(self) -> None:
        # A model that grew during training has more tensors in later checkpoints: grow the fresh
        # model to the checkpoint's step first (axon.models.progressive.grow_to_step).
        step = latest_step(self.ckpt_dir) or 0
        if any([cb.at_resume(step) for cb in self.callbacks]):  # a list: every callback runs
            self._rebuild_optimizers()
        path, state = load_latest(self.ckpt_dir, self.model, self.optimizers, rank=self.dist.rank)
        if hasattr(self.objective, "load_checkpoint_tensors"):
            try:
                self.objective.load_checkpoint_tensors(load_extra(path))
            except ValueError as e:
                raise CheckpointError(f"{path}: the objective's state does not load ({e})") from None
        self.state = TrainState(**state)
        self.log(f"resumed from {path} (step {self.state.step})")

    def fit(self, resume: bool = False, restart: bool = False) -> dict:
        """Train to the budget: from a fresh model, from the newest checkpoint (``resume``), or from
        a fresh model in a run directory whose first attempt left no checkpoint (``restart``: its
        metrics are dropped)."""
        if resume:
            self.resume()
        main = self.dist.is_main
        logger = (MetricsLogger(self.run_dir, self.cfg.log, self.config_dict,
                                resume_step=self.state.step if resume or restart else None) if main else _NoLogger())
        old_handlers = self._install_signal_handlers()
        bar = tqdm(total=self.max_steps, initial=self.state.step, disable=not (self.cfg.log.progress and main),
                   dynamic_ncols=True, unit="step", desc="train")
        final: dict = {}
        try:
            final = self._loop(logger, bar)
        finally:
            bar.close()
            logger.close()
            self._restore_signal_handlers(old_handlers)
            if main:
                try:
                    plot_losses(self.run_dir)
                except OSError as e:  # e.g. the disk that just refused a checkpoint: keep that error, not this one
                    warnings.warn(f"loss.png not written: {os_error_line(e)}", stacklevel=2)
        return final

    def _loop(self, logger: MetricsLogger, bar) -> dict:
        tc, st = self.tc, self.state
        self.model.train()
        start = time.perf_counter() - st.elapsed
        window_t, window_tokens = time.perf_counter(), 0
        val_loss = None
        while st.step < self.max_steps:
            stop, now = self.dist.agree_to_stop(self._stop_requested, time.perf_counter() - start)
            if tc.max_seconds is not None and now >= tc.max_seconds:
                self.log(f"wall-clock budget of {tc.max_seconds:g} s reached at step {st.step}")
                break
            if stop:
                self.log(f"interrupted: saving a checkpoint at step {st.step}")
                self.interrupted = True
                break
            if any([cb.before_step(st.step) for cb in self.callbacks]):
                self._rebuild_optimizers()  # e.g. the model grew new parameters before this step
            lr_scale = self._set_lr(st.step, now)
            loss, grad_norm = self._train_step(st.step)
            applied = math.isfinite(loss) and math.isfinite(grad_norm)
            if not applied:
                self._handle_nonfinite(loss, grad_norm)  # raises, or skips the update
            st.step += 1
            if applied:
                for callback in self.callbacks:
                    callback.after_step(st.step)  # e.g. the model's EMA of its weights
            st.tokens += self.tokens_per_step
            window_tokens += self.tokens_per_step
            st.elapsed = time.perf_counter() - start

            done = st.step == self.max_steps
            evaluate = st.step % tc.eval_interval == 0 and not done  # the final eval is on the full set
            if st.step % tc.log_interval == 0 or evaluate:
                dt = time.perf_counter() - window_t
                tps = window_tokens / dt if dt > 0 else 0.0
                record = {"step": st.step, "tokens": st.tokens, "train_loss": loss, "lr_scale": lr_scale,
                          "lr": lr_scale * self.optimizers[0].param_groups[0]["base_lr"],
                          "grad_norm": grad_norm, "tokens_per_s": tps, "elapsed": st.elapsed}
                if self.flops_per_token and self.peak:
                    record["mfu"] = self.flops_per_token * tps / (self.peak * self.dist.world_size)
                if st.skipped_steps:
                    record["skipped_steps"] = st.skipped_steps
                record.update(self.dist.mean(self.model.metrics()))  # e.g. MoE expert loads since the last record
                if hasattr(self.objective, "metrics"):  # e.g. DPO's rewards of the training pairs since the last record
                    record.update(self.dist.mean(self.objective.metrics()))
                if evaluate:
                    val = self.evaluate(tc.eval_batches)
                    val_loss = record["val_loss"] = val["loss"]
                    record.update({f"val_{k}": v for k, v in val.items() if k not in ("loss", "count")})
                    self._sample(st.step, val_loss)
                    record.update(self._eval_figures(st.step, val_loss))
                logger.log(record)
                bar.set_postfix_str(f"loss {loss:.4f}" + (f" val {val_loss:.4f}" if val_loss is not None else "") + f" {tps:,.0f} tok/s")
                window_t, window_tokens = time.perf_counter(), 0
            bar.update(1)
            if st.step % tc.checkpoint_interval == 0 and not done:
                self.save()
        if self.interrupted:  # checkpoint now: the full evaluation and samples wait for the resumed run's end
            self.save()
            self.dist.barrier()
            return {"step": st.step, "tokens": st.tokens, "elapsed": st.elapsed, "val_loss": None,
                    "skipped_steps": st.skipped_steps, "interrupted": True, "signal": self.stop_signal or signal.SIGTERM}
        # Final evaluation over the whole validation split: the figure a run reports.
        val = self.evaluate(None)
        val_loss = val["loss"]
        extra = {f"val_{k}": v for k, v in val.items() if k not in ("loss", "count")}
        extra.update(self._eval_figures(st.step, val_loss))
        st.elapsed = time.perf_counter() - start
        logger.log({"step": st.step, "tokens": st.tokens, "val_loss": val_loss, **extra, "val_full": True, "elapsed": st.elapsed})
        self._sample(st.step, val_loss)
        self.save()
        self.dist.barrier()  # rank 0 has written the last checkpoint before any rank moves on
        return {"step": st.step, "tokens": st.tokens, "elapsed": st.elapsed, "val_loss": val_loss, **extra,
                "skipped_steps": st.skipped_steps, "interrupted": self.interrupted}

    # ---------------------------------------------------------------------------------------

    @property
    def peak(self) -> float | None:
        if not hasattr(self, "_peak"):
            from axon.models.flops import peak_flops

            self._peak = self.tc.peak_flops or peak_flops(self.device)
        return self._peak

    def _rebuild_optimizers(self) -> None:
        """After the model gained parameters: new optimizers over all of them, each existing
        parameter keeping its state (Adam moments, Muon momentum), the new ones starting fresh.
        FLOPs per token (hence MFU) follow the new depth."""
        old = {p: st for opt in self.optimizers for p, st in opt.state.items()}
        self.optimizers = build_optimizers(self.model, self.cfg.optim)
        self.dist.agree_on_dtype(self.optimizers)
        for opt in self.optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p in old:
                        opt.state[p] = old[p]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self._wrap()  # the new blocks: checkpointed and compiled; DDP registers the new parameters
        if self.flops_per_token is not None:
            self.flops_per_token = self.model.flops_per_token()

    def _set_lr(self, step: int, elapsed: float) -> float:
        """Scale every group's lr; a wall-clock budget moves the schedule as fast as time runs out."""
        tc, sc = self.tc, self.cfg.schedule
        position = float(step)
        if tc.max_seconds:
            position = max(position, elapsed / tc.max_seconds * self.max_steps)
        scale = lr_factor(position, self.max_steps, sc.name, sc.warmup_steps, sc.min_lr_ratio, sc.decay_fraction)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
        return scale

    def _train_step(self, step: int) -> tuple[float, float]:
        tc, d = self.tc, self.dist
        total = torch.zeros((), device=self.device, dtype=torch.float64)  # not rounded to fp32 in an fp64 run
        for micro in range(tc.grad_accum):
            batch = self._to_device(d.batch(self.train_data, step, tc.batch_size, self.block_size, tc.seed, micro))
            with d.no_sync(self.forward_model, micro == tc.grad_accum - 1):
                with self.autocast() if self.autocast else contextlib.nullcontext():
                    loss, _ = self.objective(self.forward_model, batch)
                (loss / tc.grad_accum).backward()
            total += loss.detach()
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = d.grad_norm(self.params, clip)  # over every rank's gradients
        loss_value, norm_value = float(d.all_reduce(total / tc.grad_accum, "mean")), grad_norm.item()
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            for opt in self.optimizers:
                opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return loss_value, norm_value

    def _handle_nonfinite(self, loss: float, grad_norm: float) -> None:
        st = self.state
        if self.tc.on_nonfinite == "skip":
            st.skipped_steps += 1
            self.log(f"step {st.step + 1}: non-finite loss {loss} / grad norm {grad_norm}; update skipped ({st.skipped_steps} so far)")
            return
        ckpts = list_checkpoints(self.ckpt_dir)
        kept = f"last good checkpoint: {ckpts[0]}" if ckpts else "no checkpoint was written yet"
        raise NonFiniteError(
            f"non-finite loss at step {st.step + 1} (loss={loss}, grad_norm={grad_norm}); run stopped, {kept}. "
            "Lower optim.lr, or set train.on_nonfinite=skip to skip such steps"
        )

    def _to_device(self, batch: tuple) -> tuple:
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def evaluate(self, max_batches: int | None) -> dict[str, float]:
        """Validation metrics: ``loss`` (and e.g. ``accuracy``), over ``max_batches`` or the whole split."""
        batches = self.val_data.iter_eval_batches(self.tc.batch_size, self.block_size, max_batches)
        with self.model.averaged():  # the EMA's weights, where the model keeps one
            return self.dist.evaluate(self.eval_model, self.objective, (self._to_device(b) for b in batches),
                                      self.autocast)

    def plain_model(self) -> nn.Module | None:
        """The trained model as one unsharded module (sharded runs gather it on the main process;
        every process must call this, the others get None)."""
        return self.dist.gather_model(self.model, self._plain_copy)

    def _plain_copy(self) -> nn.Module:
        if self._plain is None:
            self._plain = self.plain_factory().to(self.device)
        return self._plain

    def _sample(self, step: int, val_loss: float) -> None:
        # Weights that give a non-finite loss (a run skipping bad steps) give no distribution to sample.
        if self.sample_fn is not None and self.tc.sample_tokens > 0 and math.isfinite(val_loss):
            model = self.plain_model()
            if not self.dist.is_main:
                return
            with model.averaged():
                text = self.sample_fn(model, step)
            path = self.run_dir / "samples.txt"
            with writing(path, "the samples file", resume_hint(self.run_dir)), open(path, "a") as f:
                f.write(f"--- step {step} ---\n{text}\n")

    def _eval_figures(self, step: int, val_loss: float) -> dict:
        """The task's ``eval_fn`` figures of the weights now (every rank takes part in gathering
        them; the main process computes): {val_<name>: value}. None for weights whose loss is not
        finite (nothing to sample from)."""
        if self.eval_fn is None or not math.isfinite(val_loss):
            return {}
        model = self.plain_model()
        if not self.dist.is_main:
            return {}
        with model.averaged():
            return {f"val_{k}": v for k, v in self.eval_fn(model, step, self.run_dir).items()}

    def save(self) -> Path | None:
        """Checkpoint (every rank takes part; rank 0 writes, with every rank's RNG state)."""
        d = self.dist
        self.state.world_size, self.state.batch_size = d.world_size, self.tc.batch_size
        # an objective with state of its own (e.g. the diffusion task's loss history) hands it over
        extra = self.objective.checkpoint_tensors() if hasattr(self.objective, "checkpoint_tensors") else None
        return save_checkpoint(self.ckpt_dir, self.state.step, self.model, self.optimizers, vars(self.state),
                               self.tc.keep_checkpoints, write=d.is_main, rng=d.rng_states(), extra=extra)

    # ---------------------------------------------------------------------------------------

    def _install_signal_handlers(self):
        """First Ctrl-C / SIGTERM: finish the step, checkpoint, exit. A second Ctrl-C aborts."""

        def request_stop(signum, frame):
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True
            self.stop_signal = self.stop_signal or signum

        try:
            return {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread
            return {}

    @staticmethod
    def _restore_signal_handlers(old) -> None:
        for s, h in old.items():
            signal.signal(s, h)

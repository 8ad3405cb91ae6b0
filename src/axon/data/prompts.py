"""Prompts for reinforcement learning, and the index batches of PPO and GRPO: the data of the
``ppo`` and ``grpo`` tasks (``axon.tasks.ppo``, ``axon.tasks.grpo``).

A prompts file is JSONL, one object per line with a non-empty string ``"prompt"``; other keys
(``"response"`` of an SFT file, ``"type"`` and ``"params"`` of the bundled held-out file) are
ignored, so an SFT file serves as a prompts file. A bad line is a DataError naming the file and line.

PPO trains on answers the policy samples, so a batch cannot hold the data itself: the trainer's
batches here are indices, a pure function of their arguments (exact resume), and the task's
objective turns them into rollouts and minibatches. Every tensor holds its B rows along dim 0.

    training  (kind = 0, rollout k, row r)  (B,) int64 each, then, with PPO-ptx, (x, y) (B, T)
              windows of the pretraining text for the LM loss
    online    (kind = 0, step s, row r, prompt p)  (B,) int64 each: online DPO's (``PairBatches``)
    eval      (kind = 1, prompt set s, prompt index i)  (B,) int64 each

The schedule of one rollout period (``RolloutSchedule``): step s belongs to rollout
k = s // steps_per_rollout; its j = s % steps_per_rollout-th step is minibatch
i = j % per_epoch of epoch e = j // per_epoch, and micro-step m takes rows
perm[(i * grad_accum + m) * B : ... + B] of the permutation of the rollout's rows drawn from
(seed, k, e). Each epoch visits every row of the rollout once. The prompts of rollout k are the
(k * N)-th to (k * N + N - 1)-th of an endless walk through the prompts, each pass in the order of a
permutation drawn from (seed, pass), so every prompt is answered before any is answered twice.
With groups (GRPO: ``group_size`` G answers per prompt) rollout k walks P = N / G prompts the
same way, the (k * P)-th to (k * P + P - 1)-th, and row r answers the (r // G)-th of them: a
group's G rows are consecutive.

Online DPO (``PairBatches``) samples its pairs inside each step, so a step is its own rollout:
micro-step m of step s names rows m * B .. m * B + B - 1 of the step (B: the whole micro-step's
rows, every process's) and the prompts at walk positions (s * grad_accum + m) * B + row of the same
walk; the objective answers row r twice, from generators seeded with (seed, s, r).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from axon.errors import DataError, reading

TRAIN, EVAL = 0, 1  # batch[0]: which kind of batch this is
_PROMPTS, _MINIBATCH, _PTX = 1, 2, 3  # seed-sequence tags, so the draws never share a stream


def read_prompts(path: str | Path) -> list[tuple[str, int]]:
    """(prompt, line) of each line of a prompts file (module docstring)."""
    import json

    path = Path(path)
    with reading(path, "prompts file"):
        lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}"
        if not line.strip():
            raise DataError(f"{where}: empty line; every line must hold one {{\"prompt\": ...}} object")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or "prompt" not in obj:
            raise DataError(f"{where}: expected an object with a 'prompt' key")
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise DataError(f"{where}: prompt must be a non-empty string")
        out.append((obj["prompt"], n))
    if not out:
        raise DataError(f"{path}: no prompts; expected one {{\"prompt\": ...}} object per line")
    return out


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


class RolloutSchedule:
    """The training batches of PPO (module docstring): which rollout, which of its rows."""

    def __init__(self, n_prompts: int, rollout_batch: int, epochs: int, grad_accum: int,
                 ptx_tokens: np.ndarray | None = None, group_size: int = 1):
        if rollout_batch % group_size:
            raise ValueError(f"a rollout of {rollout_batch} rows does not hold groups of {group_size}")
        self.n_prompts, self.rollout_batch, self.epochs, self.grad_accum = n_prompts, rollout_batch, epochs, grad_accum
        self.ptx_tokens = ptx_tokens  # the pretraining text's ids, for PPO-ptx (None: off)
        self.group_size = group_size  # answers per prompt (GRPO's G; 1: PPO)

    def per_epoch(self, batch_size: int) -> int:
        """Optimizer steps per epoch over one rollout."""
        return self.rollout_batch // (batch_size * self.grad_accum)

    def steps_per_rollout(self, batch_size: int) -> int:
        return self.epochs * self.per_epoch(batch_size)

    def rollout_prompts(self, k: int, seed: int) -> list[int]:
        """Indices of the prompts rollout ``k`` answers, in row order (each group_size times running)."""
        n, per = self.n_prompts, self.rollout_batch // self.group_size
        out = []
        for walked in range(k * per, (k + 1) * per):
            epoch, i = divmod(walked, n)
            if not out or i == 0:
                order = _rng(seed, _PROMPTS, epoch).permutation(n)
            out.append(int(order[i]))
        return [i for i in out for _ in range(self.group_size)]

    def position(self, step: int, batch_size: int) -> tuple[int, int, int]:
        """(rollout, epoch, minibatch within the epoch) of optimizer step ``step``."""
        per_epoch = self.per_epoch(batch_size)
        k, j = divmod(step, self.epochs * per_epoch)
        e, i = divmod(j, per_epoch)
        return k, e, i

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        """(kind, rollout, row) (B,) int64 each, and PPO-ptx's (x, y) (B, block_size) when on; a
        pure function of the arguments."""
        k, e, i = self.position(step, batch_size)
        perm = _rng(seed, _MINIBATCH, k, e).permutation(self.rollout_batch)
        start = (i * self.grad_accum + micro_step) * batch_size
        rows = torch.from_numpy(perm[start : start + batch_size].astype(np.int64))
        batch = (torch.full_like(rows, TRAIN), torch.full_like(rows, k), rows)
        if self.ptx_tokens is None:
            return batch
        tokens = self.ptx_tokens
        if len(tokens) <= block_size:
            raise DataError(f"PPO-ptx: the pretraining text is {len(tokens)} tokens, fewer than block_size + 1")
        starts = _rng(seed, _PTX, step, micro_step).integers(0, len(tokens) - block_size, size=batch_size)
        windows = np.stack([tokens[s : s + block_size + 1] for s in starts]).astype(np.int64)
        return (*batch, torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy()))

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        """The training prompts, as evaluation batches (``axon eval --split train``)."""
        return prompt_batches(0, self.n_prompts, batch_size, max_batches)


def walk_prompts(positions: range, n_prompts: int, seed: int) -> list[int]:
    """The prompts at ``positions`` of the endless walk (module docstring): pass e = position // n
    visits the prompts in the order of the permutation drawn from (seed, e)."""
    out, orders = [], {}
    for walked in positions:
        epoch, i = divmod(walked, n_prompts)
        if epoch not in orders:
            orders[epoch] = _rng(seed, _PROMPTS, epoch).permutation(n_prompts)
        out.append(int(orders[epoch][i]))
    return out


class PairBatches:
    """The training batches of online DPO (module docstring): (kind, step, row, prompt) (B,) int64,
    a pure function of the arguments; the objective samples each row's pair."""

    def __init__(self, n_prompts: int, grad_accum: int):
        self.n_prompts, self.grad_accum = n_prompts, grad_accum

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rows = torch.arange(micro_step * batch_size, (micro_step + 1) * batch_size, dtype=torch.int64)
        start = (step * self.grad_accum + micro_step) * batch_size
        prompts = torch.tensor(walk_prompts(range(start, start + batch_size), self.n_prompts, seed), dtype=torch.int64)
        return torch.full_like(rows, TRAIN), torch.full_like(rows, step), rows, prompts

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        """The training prompts, as evaluation batches (``axon eval --split train``)."""
        return prompt_batches(0, self.n_prompts, batch_size, max_batches)


class PromptBatches:
    """Evaluation batches of one prompt set: (kind, set, index) (B,) int64, in file order."""

    def __init__(self, prompt_set: int, n_prompts: int):
        self.prompt_set, self.n_prompts = prompt_set, n_prompts

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        return prompt_batches(self.prompt_set, self.n_prompts, batch_size, max_batches)


def prompt_batches(prompt_set: int, n: int, batch_size: int, max_batches: int | None) -> Iterator[tuple]:
    starts = range(0, n, batch_size)
    if max_batches is not None:
        starts = starts[:max_batches]
    for s in starts:
        index = torch.arange(s, min(s + batch_size, n), dtype=torch.int64)
        yield torch.full_like(index, EVAL), torch.full_like(index, prompt_set), index

"""The ``ppo`` task: reinforcement learning of a language model against a reward with PPO
(InstructGPT's third step, Ouyang et al. 2022 sec. 3.5; the recipe of Ziegler et al. 2019).

    prompts --policy (sampled)--> answers --reward--> scores
        |                            |
        |      policy, value head, frozen reference: log-probs, values, KL per token
        v                            v
    token rewards = -beta * KL_t (+ score on the last token) --GAE--> advantages, returns
        |
        +--> `epochs` epochs of clipped-surrogate + clipped-value minibatch updates, then the next rollout

One trainer step is one minibatch update. A rollout of ``ppo.rollout_batch`` answers is trained
on for ``ppo.epochs`` epochs of minibatches of ``train.batch_size x train.grad_accum`` answers, so
``steps_per_rollout = epochs x rollout_batch / (batch_size x grad_accum)`` (which must divide).
The trainer knows none of this: its batches are indices (``axon.data.prompts``), and the
objective here (:class:`PPO`), at the first step that names a rollout it does not hold, samples
that rollout with the current policy and computes everything the updates need:

    answers     the policy in eval mode, no gradient, sampled at ``ppo.temperature``, answer i
                from a torch.Generator seeded from (train.seed, rollout index, i): a rollout is a
                pure function of the weights and its index, however its rows are batched or
                shared out over processes. An answer ends at the chat template's end marker
                ``$`` (kept as its last token) or after ``ppo.max_new_tokens`` tokens.
    score       ``ppo.reward`` on (prompt, answer text without the marker): one number per answer
    logp, ref   log-probabilities of the answer tokens under the policy and the frozen reference
                (of logits / temperature, over the tokenizer's vocabulary: the distribution sampled)
    values      the value head or the separate critic, V_t before each answer token
    rewards     -beta * KL_t on every token, plus the score on the last (axon.objectives.ppo)
    advantages  GAE(gamma, lam), whitened over the rollout; returns = advantages + values (unwhitened)
    beta        then updated by Ziegler et al.'s controller when ``ppo.kl_target`` is set

The rollout and beta are buffers of the model (``axon.models.actor_critic.RolloutStore``), so the
trainer's checkpoints carry them and a run stopped anywhere -- SIGKILL after a checkpoint, or
SIGTERM in the middle of a rollout's epochs -- resumes bit for bit (tests/tasks/test_ppo_task.py).

The reward (``ppo.reward``): ``gold:instructions`` and ``gold:sentiment`` are the programmatic
judges of ``axon.feedback``; a path is a run of the ``reward`` task (``model(ids, lengths) ->
(N,)``, reading ``prompt + answer`` as that task trains on them); in Python, any
:class:`Reward` or function ``(prompt, answer) -> float`` (``ppo_task(cfg, device, reward=fn)``).
The gold score is reported beside the reward when a gold judge applies (``ppo.gold``): with
``auto``, the reward itself when it is gold, the instruction judge when every prompt is one of its
instructions; ``sentiment`` or ``instructions`` names the judge, ``none`` reports none.

Starting weights: ``train.init_from``, a decoder run (SFT), is required: it is the reference
policy (loaded again on resume) and the policy's start; a shared value head starts at zero, a
separate critic (``model.value_head: separate``) as ``ppo.value_init`` says: the SFT body with
its head at zero, as built, or a reward run's weights (:func:`init_critic`). The run's model must
be that run's with ``model.family: actor_critic``; ``axon finetune RUN --task=ppo`` writes it.
The tokenizer is the run's.

Validation: answers to ``ppo.val_prompts`` sampled as in training with fixed seeds; the
validation loss is minus their mean score. At the end (``result.json``, ``axon eval``) the task
adds their mean ``score``, ``gold``, ``kl`` (nats per answer, against the reference), ``length``
and ``ended`` (share that wrote the end marker), and the last rollout's figures (``rollout_*``).

PPO-ptx (``ppo.ptx_coef`` > 0): the LM loss on windows of the bundled corpus's training part, in
the policy's tokenizer, is added to every update with that weight.

Several processes (torchrun, DDP): each rank samples, measures and scores its share of every
rollout's rows, each row from its own generator, and the ranks gather the whole rollout, so it
is the one a single process samples (:meth:`RolloutObjective.sample_rollout`); the minibatch
losses are means over the whole micro-step's answer tokens (:meth:`RolloutObjective.token_share`).
FSDP is refused. Best-of-n sampling against the same reward, the training-free baseline, is
:func:`best_of_n`.

What is not PPO's own is shared with the ``grpo`` task (``axon.tasks.grpo``: GRPO and RLOO, no
value function): :class:`RolloutObjective` (rollouts sampled, measured, scored and gathered;
minibatches through the model; validation) and :func:`rollout_run`, :func:`rollout_sources`,
:func:`rollout_setup` (the checks, the tokenizer, prompts, reward and gold, the TaskSetup).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from axon.data.chat import END, prompt_ids
from axon.data.prompts import EVAL, TRAIN, PromptBatches, RolloutSchedule, read_prompts
from axon.errors import ConfigError, DataError
from axon.model_configs.actor_critic import CRITIC_FIELDS as CRITIC_SHAPE
from axon.models.base import unwrap
from axon.objectives.ppo import (
    AdaptiveKL, entropy_from_logits, explained_variance, gae, kl_estimate, masked_mean, policy_loss, token_logprobs,
    token_rewards, value_loss, whiten,
)
from axon.tasks.base import TaskSetup, set_vocab_size

EVAL_SEED = 20240601  # validation answers are sampled from generators seeded with this, the set and the batch
SAMPLES = 3  # validation prompts answered greedily in samples.txt at each evaluation
TRAIN_SET, VAL_SET = 0, 1  # the prompt sets an evaluation batch names


# ----------------------------------------------------------------------------------------------
# Rewards: score(prompts, answers) -> (B,)


class Reward:
    """A reward source: one score per (prompt, answer), as a float tensor (B,)."""

    def score(self, prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError


class JudgeReward(Reward):
    """A function ``(prompt, answer) -> float`` applied to each pair: the gold judges, a test's reward."""

    def __init__(self, judge: Callable[[str, str], float]):
        self.judge = judge

    def score(self, prompts, answers):
        return torch.tensor([float(self.judge(p, a)) for p, a in zip(prompts, answers)], dtype=torch.float64)


class RunReward(Reward):
    """A reward model (the ``reward`` task's family): ``model(ids (N, T), lengths (N,)) -> (N,)``
    on ``prompt + answer`` in its own tokenizer, right-padded, keeping the last ``block_size``
    tokens of a longer text (the reward is read at the last token), as its task trains it."""

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        for p in self.model.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: torch.device, field: str = "ppo.reward") -> RunReward:
        from axon.config import GOLD_REWARDS, load_config, run_config_file
        from axon.train.run import load_run

        cfg = load_config(run_config_file(run_dir, field))
        if cfg.model.family != "reward":
            raise ConfigError(f"{field}: {run_dir} is a {cfg.model.family} run, not a reward model "
                              f"(train one with the reward task), nor {' or '.join(GOLD_REWARDS)}")
        _, model, tokenizer = load_run(run_dir, str(device))
        if tokenizer is None:
            raise ConfigError(f"{field}: {run_dir} has no tokenizer.json to encode the answers with")
        return cls(model, tokenizer)

    @torch.no_grad()
    def score(self, prompts, answers):
        device = next(self.model.parameters()).device
        block = self.model.config.block_size
        out = []
        for s in range(0, len(prompts), self.batch_size):
            ids = [self.tokenizer.encode(p + a)[-block:] for p, a in zip(prompts[s : s + self.batch_size],
                                                                      answers[s : s + self.batch_size])]
            lengths = torch.tensor([max(len(x), 1) for x in ids], device=device)
            idx = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long, device=device)
            for b, x in enumerate(ids):
                idx[b, : len(x)] = torch.tensor(x, dtype=torch.long, device=device)
            out.append(self.model(idx, lengths).double().cpu())
        return torch.cat(out)


def build_reward(spec: str, device: torch.device, field: str = "ppo.reward") -> Reward:
    """The reward ``ppo.reward`` (or ``field``, e.g. ``grpo.reward``) names (module docstring): a
    gold judge of the one registry (``axon.feedback.gold_for``, whose names the config's
    GOLD_REWARDS copies), or a reward run."""
    if spec.startswith("gold:"):
        from axon.feedback import gold_for

        return JudgeReward(gold_for(spec.removeprefix("gold:")))
    if not Path(spec).is_dir():
        from axon.config import GOLD_REWARDS

        raise ConfigError(f"{field}: {spec} is neither {', '.join(GOLD_REWARDS)} nor a run directory")
    return RunReward.from_run(spec, device, field)


def gold_judge(spec: str | None, prompts: Sequence[str], gold: str = "auto",
               field: str = "ppo.gold") -> Callable[[str, str], float] | None:
    """The gold judge to report beside the reward (``ppo.gold``): ``sentiment`` or
    ``instructions`` names one, ``none`` reports none; ``auto`` takes the reward's own when it is
    gold, the instruction judge when every prompt is an instruction, else none (a learnt reward in
    the sentiment setup reports VADER only when asked: ``ppo.gold: sentiment``)."""
    from axon.feedback import gold_for, parse_instruction

    if gold == "none":
        return None
    if gold != "auto":
        if gold == "instructions":  # the judge reads the instruction: a prompt that is none cannot be judged
            for p in prompts:
                try:
                    parse_instruction(p)
                except DataError as e:
                    raise ConfigError(f"{field}: instructions judges instructions, and a prompt is not one ({e}); "
                                      "choose sentiment, none or auto") from None
        return gold_for(gold)
    if isinstance(spec, str) and spec.startswith("gold:"):
        return gold_for(spec.removeprefix("gold:"))
    try:
        for p in prompts:
            parse_instruction(p)
    except DataError:
        return None
    return gold_for("instructions")


# ----------------------------------------------------------------------------------------------
# Answers: sampling, packing, and what a model says about each answer token


@dataclass
class Answers:
    """Prompts and their sampled answers, packed for one forward pass.

    tokens (N, L) int64: prompt + answer, right-padded with 0; prompt_len (N,); mask (N, R): 1 on
    the answer tokens (R: the longest answer); texts: the answers without the end marker;
    ended (N,) bool: wrote the marker; with ``sample_answers(..., logprobs=True)``, logp and
    entropy (N, R): each answer token's log-probability under the distribution it was sampled
    from (logits / temperature over the tokenizer's vocabulary) and that distribution's entropy,
    read off the generation's own logits (0 past each answer's end); else None."""

    tokens: torch.Tensor
    prompt_len: torch.Tensor
    mask: torch.Tensor
    texts: list[str]
    ended: torch.Tensor
    logp: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


def sample_answers(model, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float,
                   generator: torch.Generator | Sequence[torch.Generator] | None,
                   dtype: torch.dtype = torch.float32, logprobs: bool = False) -> Answers:
    """Answer each prompt (ids in the chat template) once; ``temperature=0``: greedily. A list of
    generators draws each answer from its own (``axon.generate.generate``). ``logprobs``: also
    each answer token's log-probability and the entropy of its distribution, from the sampling's
    own logits (``Answers.logp``, ``Answers.entropy``)."""
    from axon.generate import cut_at_stop, generate

    end = tokenizer.encode(END)
    stops = dict(stop_tokens=end) if len(end) == 1 else dict(stop_strings=[END], decode=tokenizer.decode)
    gen = generate(model, [list(p) for p in prompts], max_new_tokens, temperature=temperature, generator=generator,
                   vocab_limit=tokenizer.vocab_size, logprobs=logprobs, **stops)
    device = next(model.parameters()).device
    N, R = len(prompts), max(len(a) for a in gen.tokens)
    L = max(len(p) + len(a) for p, a in zip(prompts, gen.tokens))
    tokens = torch.zeros(N, L, dtype=torch.long)
    mask = torch.zeros(N, R, dtype=dtype)
    for b, (p, a) in enumerate(zip(prompts, gen.tokens)):
        tokens[b, : len(p) + len(a)] = torch.tensor([*p, *a], dtype=torch.long)
        mask[b, : len(a)] = 1
    decoded = [tokenizer.decode(a) for a in gen.tokens]
    mask = mask.to(device)
    per_token = {}
    if logprobs:  # (N, steps) -> (N, R), masked; new tensors, not inference-mode ones, so training may read them
        per_token = {"logp": gen.logprobs[:, :R].to(dtype) * mask, "entropy": gen.entropies[:, :R].to(dtype) * mask}
    return Answers(tokens.to(device), torch.tensor([len(p) for p in prompts], device=device), mask,
                   [cut_at_stop(t, [END]) for t in decoded], torch.tensor([END in t for t in decoded]), **per_token)


def at_answers(x: torch.Tensor, prompt_len: torch.Tensor, R: int) -> torch.Tensor:
    """x (B, L, ...) at the positions that predict each answer token: prompt_len - 1 + t for
    t < R, i.e. (B, R, ...). Positions past a row's end are clamped (the mask zeroes them)."""
    B, L = x.shape[:2]
    pos = (prompt_len[:, None] - 1 + torch.arange(R, device=x.device)[None]).clamp(max=L - 1)  # (B, R)
    index = pos.view(B, R, *([1] * (x.dim() - 2))).expand(B, R, *x.shape[2:])
    return x.gather(1, index)


def answer_tokens(tokens: torch.Tensor, prompt_len: torch.Tensor, R: int) -> torch.Tensor:
    """The answer tokens (B, R) of packed rows (0 past each answer's end)."""
    L = tokens.size(1)
    pos = (prompt_len[:, None] + torch.arange(R, device=tokens.device)[None]).clamp(max=L - 1)
    return tokens.gather(1, pos)


def answer_logits(logits: torch.Tensor, prompt_len: torch.Tensor, R: int, vocab: int, temperature: float) -> torch.Tensor:
    """The distribution each answer token was sampled from, as logits (B, R, vocab): the model's
    logits at those positions, over the tokenizer's vocabulary, divided by the temperature."""
    return at_answers(logits[..., :vocab], prompt_len, R) / temperature


def _head_apart(model) -> bool:
    """Whether ``model``'s forward may be run as its body (``hidden_states``), then the LM head on
    chosen positions: an Axon decoder or actor-critic called directly, its own forward, no hooks.
    A DDP- or compile-wrapped model is another class and runs whole (the wrapper's hooks)."""
    from axon.models.actor_critic import ActorCritic
    from axon.models.decoder import Decoder

    return (isinstance(model, Decoder) and type(model).forward in (Decoder.forward, ActorCritic.forward)
            and model.lm_head is not None and not model._forward_hooks and not model._forward_pre_hooks)


def answer_forward(model, tokens: torch.Tensor, prompt_len: torch.Tensor, R: int, vocab: int, temperature: float,
                   values: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`answer_logits` of ``model(tokens)`` (B, R, vocab), and with ``values`` the values (B, R)
    at the same positions. The LM head -- the largest matmul -- runs at the answer positions only
    when the model allows it (:func:`_head_apart`): the prompts are often half a rollout's
    positions (as ``axon.objectives.dpo.model_sequence_logprobs`` does for DPO); otherwise the
    whole forward, then the gather (the values need every position's state, so they come from it)."""
    if not _head_apart(model):
        out = model(tokens, values=True) if values else model(tokens)
        logits, v = out if values else (out, None)
        v = None if v is None else at_answers(v, prompt_len, R)
        return answer_logits(logits, prompt_len, R, vocab, temperature), v
    from axon.models.actor_critic import ActorCritic

    h = model.hidden_states(tokens)  # (B, L, C)
    v = None
    if values:  # as ActorCritic.forward(values=True) computes them
        if not isinstance(model, ActorCritic) or (model.critic is None and model.value_head is None):
            raise ValueError("model.value_head=none: this policy has no value function")
        v = model.critic(tokens) if model.critic is not None else model.value_head(h).squeeze(-1)  # (B, L)
        v = at_answers(v, prompt_len, R)
    logits = model.lm_head(at_answers(h, prompt_len, R))  # (B, R, V): the answer positions only
    return logits[..., :vocab] / temperature, v


# ----------------------------------------------------------------------------------------------
# The objective


@dataclass
class PromptSet:
    texts: list[str]
    ids: list[list[int]]


class RolloutObjective:
    """What the tasks that train on the policy's own answers share (``ppo``; ``grpo``,
    ``axon.tasks.grpo``): index batches (``axon.data.prompts``) dispatched to minibatch updates,
    which sample the rollout they name first, and to evaluations; a rollout's rows sampled each
    from its own generator, measured, scored and gathered over processes (:meth:`sample_rollout`);
    answers to validation prompts with fixed seeds and their figures (:meth:`split_figures`).

    A subclass names its config section (``section``: the fields ``reward``, ``prompts``,
    ``val_prompts``, ``max_new_tokens``, ``temperature``, ``gold``), whether :meth:`measure` reads
    the value function (``values``), whether the sampling returns the answers' log-probabilities
    (``sampled_logprobs``, for :meth:`measure_rollout`), and what a rollout stores (:meth:`rollout`)
    and a minibatch's loss is (:meth:`update`)."""

    section = "ppo"
    values = True
    sampled_logprobs = False  # sample_answers also returns each answer token's log-probability (measure_rollout)

    def __init__(self, cfg, tokenizer, sets: dict[int, PromptSet], schedule: RolloutSchedule, reference: torch.nn.Module,
                 reward: Reward, gold: Callable[[str, str], float] | None, dist=None):
        from axon.train.distributed import Dist

        self.cfg, self.p = cfg, getattr(cfg, self.section)
        self.tokenizer, self.sets, self.schedule = tokenizer, sets, schedule
        self.reference, self.reward, self.gold = reference, reward, gold
        self.vocab = tokenizer.vocab_size
        self.dist = dist or Dist()  # this process's share of each rollout (axon.train.distributed)

    def __call__(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        kind = int(batch[0][0])
        if kind == EVAL:
            return self.evaluate(model, batch)
        if kind != TRAIN:
            raise ValueError(f"unknown {self.section.upper()} batch kind {kind}")
        return self.update(model, batch)

    def rollout(self, model, k: int) -> None:
        """Sample rollout ``k`` and store what its updates need in the model's RolloutStore."""
        raise NotImplementedError

    def update(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """One minibatch's loss on the held rollout (sampled first if this batch names another)."""
        raise NotImplementedError

    # -- rollouts --------------------------------------------------------------------------------

    def _reference(self, like: torch.nn.Module) -> torch.nn.Module:
        """The frozen reference on the policy's device and dtype."""
        w = like.wte.weight
        if self.reference.wte.weight.dtype != w.dtype or self.reference.wte.weight.device != w.device:
            self.reference.to(device=w.device, dtype=w.dtype)
        return self.reference

    @torch.no_grad()
    def measure(self, policy, answers: Answers) -> dict[str, torch.Tensor]:
        """Per answer token: the policy's and the reference's log-probabilities, the values (when
        ``values``) and the policy's entropy, all (N, R), by forwards in eval mode (no dropout) over
        ``train.batch_size`` rows at a time (the logits of a whole rollout need not fit at once)."""
        was = policy.training
        policy.eval()
        reference = self._reference(policy)
        R, out = answers.mask.size(1), {}
        try:
            step = self.cfg.train.batch_size
            for s in range(0, answers.tokens.size(0), step):
                tokens, plen, m = answers.tokens[s : s + step], answers.prompt_len[s : s + step], answers.mask[s : s + step]
                logits, values = answer_forward(policy, tokens, plen, R, self.vocab, self.p.temperature, self.values)
                taken = answer_tokens(tokens, plen, R)
                ref, _ = answer_forward(reference, tokens, plen, R, self.vocab, self.p.temperature)
                part = {"logp": token_logprobs(logits, taken) * m, "ref_logp": token_logprobs(ref, taken) * m,
                        "entropy": entropy_from_logits(logits) * m}
                if values is not None:
                    part["values"] = values * m
                for k, v in part.items():
                    out.setdefault(k, []).append(v)
        finally:
            policy.train(was)
        return {k: torch.cat(v) for k, v in out.items()}

    def sample_rollout(self, model, k: int) -> dict[str, torch.Tensor]:
        """Rollout ``k`` sampled with the current policy, measured (:meth:`measure`) and scored:
        per row ``score``, ``gold`` (NaN without a gold judge), ``ended``, the packed ``tokens``,
        ``prompt_len`` and ``mask``, and the per-token tensors of :meth:`measure`.

        Under several processes rank r samples, measures and scores rows [r N / W, (r + 1) N / W)
        of the rollout, and every rank then gathers every row (``Dist.gather_rows``): whatever is
        computed from them (advantages, statistics) is computed over the whole rollout, alike on
        every rank, and each rank's store holds the whole rollout (so rank 0's checkpoint does).
        Row i's tokens come from its own generator, seeded from (train.seed, k, i): the rollout is
        a pure function of the weights and k, whatever the number of processes."""
        policy = unwrap(model)
        p, seed, d = self.p, self.cfg.train.seed, self.dist
        rows = self.schedule.rollout_prompts(k, seed)
        share = len(rows) // d.world_size
        mine = range(d.rank * share, (d.rank + 1) * share)  # this rank's rows of the rollout
        train = self.sets[TRAIN_SET]
        prompts = [train.texts[rows[i]] for i in mine]
        dtype = policy.wte.weight.dtype
        answers = sample_answers(policy, self.tokenizer, [train.ids[rows[i]] for i in mine], p.max_new_tokens,
                                 p.temperature, [generator(policy, seed, "rollout", k, i) for i in mine], dtype,
                                 logprobs=self.sampled_logprobs)
        m = self.measure_rollout(policy, answers, k)
        m["score"] = self.reward.score(prompts, answers.texts).to(answers.mask.device, dtype)
        m["gold"] = torch.tensor([self.gold(q, a) for q, a in zip(prompts, answers.texts)] if self.gold is not None
                                 else [math.nan] * len(prompts), dtype=torch.float64, device=answers.mask.device)
        m["ended"] = answers.ended.to(answers.mask.device, torch.float64)
        m.update(tokens=answers.tokens, prompt_len=answers.prompt_len, mask=answers.mask)
        return {name: d.gather_rows(t) for name, t in m.items()}  # the whole rollout, on every rank

    def measure_rollout(self, policy, answers: Answers, k: int) -> dict[str, torch.Tensor]:
        """The per-token tensors rollout ``k`` stores: :meth:`measure`'s (a subclass may read some off
        the sampling instead: ``sampled_logprobs``, ``axon.tasks.grpo``)."""
        return self.measure(policy, answers)

    def held_rollout(self, model, k: int, rows: int, field: str):
        """The model's RolloutStore holding rollout ``k`` (sampled now if it holds another), after
        checking that it has the ``rows`` answers that config ``field`` sets (a resumed run's
        checkpoint may hold another size)."""
        policy = unwrap(model)
        if policy.rollout.held != k:
            self.rollout(model, k)
        st = policy.rollout
        if st.tokens.size(0) != rows:
            raise ConfigError(f"{field}: the checkpoint's rollout holds {st.tokens.size(0)} answers, the config says "
                              f"{rows}; resume with the run's own {field}")
        return st

    def minibatch(self, model, st, rows: torch.Tensor):
        """The rows of the held rollout a minibatch names, cut to their longest answer, through the
        model: (logits (B, R, vocab) of the answer tokens at the sampling temperature, their
        log-probabilities (B, R), the mask (B, R), R, the values (B, R) or None)."""
        mask = st.mask[rows]
        R = int(mask.sum(1).max())
        mask, plen = mask[:, :R], st.prompt_len[rows]
        L = int((plen + mask.sum(1).long()).max())
        tokens = st.tokens[rows, :L]
        # through the wrapper when there is one (DDP's hooks, compile); the head at the answers only when not
        logits, values = answer_forward(model, tokens, plen, R, self.vocab, self.p.temperature, self.values)
        logp = token_logprobs(logits, answer_tokens(tokens, plen, R))
        return logits, logp, mask, R, values

    def token_share(self, mask: torch.Tensor) -> torch.Tensor | float:
        """n_r x W / n: this rank's answer tokens over the mean of every rank's (1 on one process)."""
        d = self.dist
        if not d.enabled:
            return 1.0
        n = float(d.all_reduce(mask.sum().item(), "sum"))
        return float(mask.sum().item()) * d.world_size / max(n, 1.0)

    # -- evaluation --------------------------------------------------------------------------------

    def answer_set(self, model, prompt_set: int, index: Sequence[int]) -> tuple[list[str], Answers]:
        """Sampled answers to prompts ``index`` of a prompt set, each from a generator seeded with
        the set and its index: the same answers for the same weights, however the prompts are
        batched (or shared out over processes)."""
        policy = unwrap(model)
        s = self.sets[prompt_set]
        gens = [generator(policy, EVAL_SEED, "eval", prompt_set, i) for i in index]
        answers = sample_answers(policy, self.tokenizer, [s.ids[i] for i in index], self.p.max_new_tokens,
                                 self.p.temperature, gens, policy.wte.weight.dtype)
        return [s.texts[i] for i in index], answers

    def evaluate(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """Minus the mean reward of sampled answers to the batch's prompts (the validation loss)."""
        prompts, answers = self.answer_set(model, int(batch[1][0]), batch[2].tolist())
        score = self.reward.score(prompts, answers.texts).mean()
        loss = -score.to(torch.float64)
        return loss, {"ce": loss, "count": len(prompts), "score": score}

    def split_figures(self, model, prompt_set: int, batch_size: int) -> dict[str, float]:
        """Mean score, gold, KL to the reference (k1 summed over an answer), length and share
        ended, of sampled answers to a whole prompt set (batched as the evaluation batches it)."""
        sums: dict[str, float] = {}
        n = len(self.sets[prompt_set].texts)
        for s in range(0, n, batch_size):
            prompts, answers = self.answer_set(model, prompt_set, list(range(s, min(s + batch_size, n))))
            m = self.measure(unwrap(model), answers)
            figures = {"score": self.reward.score(prompts, answers.texts).sum().item(),
                       "kl": ((m["logp"] - m["ref_logp"]) * answers.mask).sum().item(),
                       "length": answers.mask.sum().item(), "ended": answers.ended.sum().item()}
            if self.gold is not None:
                figures["gold"] = sum(self.gold(q, a) for q, a in zip(prompts, answers.texts))
            for k, v in figures.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / n for k, v in sums.items()}


class PPO(RolloutObjective):
    """(model, batch) -> (loss, parts) for the ``ppo`` task: rollouts and minibatch updates on
    training batches, scored answers on evaluation batches (``axon.data.prompts``)."""

    section, values = "ppo", True

    def rollout(self, model, k: int) -> None:
        """Sample rollout ``k`` with the current policy (:meth:`sample_rollout`: row i from its
        own generator, the rows shared out over processes and gathered), score it, and store it
        with its advantages and returns in the model (module docstring): KL, GAE, the whitening
        and the statistics are computed over the whole rollout."""
        policy = unwrap(model)
        p = self.p
        m = self.sample_rollout(model, k)
        mask, score = m["mask"], m["score"]
        store = policy.rollout
        beta = float(store.beta) if store.beta.numel() == 1 else p.kl_beta
        kl = kl_estimate(m["logp"], m["ref_logp"], p.kl_estimator) * mask
        rewards = token_rewards(score, kl, mask, beta)
        advantages, returns = gae(rewards, m["values"], mask, p.gamma, p.lam)
        if p.whiten_advantages:
            advantages = whiten(advantages, mask)
        kl_answer = float(((m["logp"] - m["ref_logp"]) * mask).sum(1).mean())  # k1 summed over an answer
        controller = AdaptiveKL(beta, p.kl_target, p.kl_horizon)
        next_beta = controller.update(kl_answer, mask.size(0))
        from axon.models.actor_critic import ROLLOUT_STATS

        stats = dict(score=float(score.mean()), gold=float(m["gold"].mean()), kl=kl_answer, beta=beta,
                     entropy=float(masked_mean(m["entropy"], mask)), length=float(mask.sum(1).mean()),
                     ended=float(m["ended"].mean()),
                     explained_variance=float(explained_variance(m["values"], returns, mask)))
        store.store(index=torch.tensor(k), beta=torch.tensor(next_beta, dtype=torch.float64),
                    tokens=m["tokens"], prompt_len=m["prompt_len"], mask=mask, logp=m["logp"],
                    values=m["values"], advantages=advantages, returns=returns,
                    stats=torch.tensor([stats[n] for n in ROLLOUT_STATS], dtype=torch.float64))

    # -- updates -----------------------------------------------------------------------------------

    def update(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """One minibatch's PPO loss on the held rollout (sampled first if this batch names another)."""
        p = self.p
        policy = unwrap(model)
        st = self.held_rollout(model, int(batch[1][0]), p.rollout_batch, "ppo.rollout_batch")
        rows = batch[2].to(st.tokens.device)
        logits, logp, mask, R, values = self.minibatch(model, st, rows)
        pg, pg_info = policy_loss(logp, st.logp[rows, :R], st.advantages[rows, :R], mask, p.clip)
        vf, vf_info = value_loss(values, st.values[rows, :R], st.returns[rows, :R], mask, p.value_clip)
        # Means over the answer tokens of the whole micro-step, every rank's rows: DDP averages the
        # ranks' gradients, so a rank's mean over its own n_r tokens is weighted by n_r x W / n.
        share = self.token_share(mask)
        pg, vf = pg * share, vf * share
        loss = pg + p.value_coef * vf
        parts = {"policy_loss": pg.detach(), "value_loss": vf.detach(),
                 **{k: v * share for k, v in {**pg_info, **vf_info}.items()}}
        if p.ptx_coef > 0:
            from axon.objectives import causal_lm_loss

            ptx, _ = causal_lm_loss(model(batch[3]), batch[4])
            loss = loss + p.ptx_coef * ptx
            parts["ptx_loss"] = ptx.detach()
        for name, value in policy.aux_losses().items():
            loss = loss + value
            parts[name] = value
        with torch.no_grad():
            parts["entropy"] = masked_mean(entropy_from_logits(logits), mask) * share
            parts["value_explained_variance"] = explained_variance(values, st.returns[rows, :R], mask)
        policy.record({k: float(v) for k, v in parts.items()})
        return loss, {"ce": loss.detach(), **parts}


def generator(model, seed: int, *keys) -> torch.Generator:
    """A torch generator on the model's device seeded from (seed, keys): a 63-bit seed drawn by
    numpy's SeedSequence from the integers, and the strings' bytes."""
    words = [int(seed)]
    for k in keys:
        words += list(k.encode()) if isinstance(k, str) else [int(k)]
    state = int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator(device=next(model.parameters()).device).manual_seed(state)


# ----------------------------------------------------------------------------------------------
# Best-of-n: the training-free baseline


def best_of_n(model, tokenizer, prompts: Sequence[str], n: int, reward: Reward | Callable[[str, str], float], *,
              max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0, batch_size: int = 64,
              gold: Callable[[str, str], float] | None = None) -> dict:
    """Sample ``n`` answers per prompt from ``model`` (a causal LM in the chat template) and keep
    the one ``reward`` scores highest (ties: the first sampled). Returns the mean ``score`` of the
    kept answers, their mean ``gold`` (when ``gold`` is given), the ``answers`` kept, every
    sample's score (``scores``, n per prompt), and ``kl``:
    KL(best-of-n || policy) = log n - (n - 1) / n nats per answer, the analytic value for distinct
    samples (Stiennon et al. 2020, appendix G.3), an upper bound when samples repeat."""
    reward = reward if isinstance(reward, Reward) else JudgeReward(reward)
    ids = [prompt_ids(tokenizer, p)[1] for p in prompts]
    flat = [(i, j) for i in range(len(prompts)) for j in range(n)]
    scores, texts = [], []
    for s in range(0, len(flat), batch_size):
        chunk = flat[s : s + batch_size]
        gen = generator(model, seed, "best_of_n", s)
        answers = sample_answers(model, tokenizer, [ids[i] for i, _ in chunk], max_new_tokens, temperature, gen)
        scores += reward.score([prompts[i] for i, _ in chunk], answers.texts).tolist()
        texts += answers.texts
    best = [max(range(i * n, (i + 1) * n), key=lambda r: (scores[r], -r)) for i in range(len(prompts))]
    out = {"n": n, "score": float(np.mean([scores[r] for r in best])), "kl": math.log(n) - (n - 1) / n,
           "answers": [texts[r] for r in best], "scores": [scores[i * n : (i + 1) * n] for i in range(len(prompts))]}
    if gold is not None:
        out["gold"] = float(np.mean([gold(p, texts[r]) for p, r in zip(prompts, best)]))
    return out


# ----------------------------------------------------------------------------------------------
# The task


def read_prompt_set(spec: str | None, field: str, split: str, tokenizer, cfg) -> PromptSet:
    """The prompts of ``ppo.prompts`` / ``ppo.val_prompts`` (or of another section's, ``field``
    naming it: ``grpo.prompts``; a path or ``bundled:NAME``; null: the bundled instruction file of
    ``split``), encoded in the chat template; a prompt that leaves no room for the section's
    max_new_tokens tokens in block_size is an error naming its line."""
    from axon.data.files import resolve_file
    from axon.feedback import bundled_path

    path = bundled_path(split) if spec is None else resolve_file(spec, field, cfg.data)  # a path, or bundled:NAME
    rows = read_prompts(path)
    texts, ids = [], []
    section = field.partition(".")[0]
    new = getattr(cfg, section).max_new_tokens
    room = cfg.model.block_size - new
    for text, line in rows:
        encoded = prompt_ids(tokenizer, text)[1]
        if len(encoded) > room:
            raise DataError(f"{path}:{line}: the prompt is {len(encoded)} tokens in the chat template, more than "
                            f"model.block_size={cfg.model.block_size} - {section}.max_new_tokens={new}; "
                            f"shorten it, or lower {section}.max_new_tokens")
        texts.append(text)
        ids.append(encoded)
    return PromptSet(texts, ids)


def check_source_model(cfg, task: str = "ppo") -> None:
    """Refuse a run whose policy is not the ``train.init_from`` run's decoder, naming the fields."""
    from axon.config import load_config, to_dict
    from axon.model_configs.actor_critic import VALUE_FIELDS
    from axon.tasks.finetune import KEEP_MODEL_FIELDS, init_run_dir

    run = init_run_dir(cfg.train.init_from)
    file = run / "config.yaml"
    if not file.is_file():
        return  # a bare checkpoint directory: the strict load checks the shapes
    source = load_config(file).model
    if source.family != "decoder":
        raise ConfigError(f"train.init_from: {run} is a {source.family} run; {task.upper()} starts from a decoder run "
                          "(an sft run of model.family=decoder)")
    was, now = to_dict(source), to_dict(cfg.model.decoder_config())
    skip = {"preset", "family", *KEEP_MODEL_FIELDS, *VALUE_FIELDS}
    changed = [f"model.{k}={now.get(k)!r} (the run has {was.get(k)!r})" for k in sorted(set(was) | set(now))
               if k not in skip and was.get(k) != now.get(k)]
    if changed:
        raise ConfigError(f"train.init_from: the policy is not {run}'s model: {'; '.join(changed[:3])}; "
                          f"axon finetune {run} --task={task} ... takes the run's model")


def init_critic(critic: torch.nn.Module, cfg, reference: torch.nn.Module) -> list[str]:
    """Start a separate critic as ``ppo.value_init`` says; returns the names it loaded.

    ``sft``: the body of the ``train.init_from`` run (the reference's weights; the critic must
    have the policy's shape), the head at zero. ``scratch``: as built. ``reward`` (the
    ``ppo.reward`` run) or a reward run's directory: that run's body, and its ``reward_head`` as the
    value head's weight (bias 0), so before training the critic's value at each position is the
    reward model's score of the text up to there (InstructGPT sec. 3.5). The run must be of the
    reward family, encode text with the policy's tokenizer (the critic reads the policy's token
    ids) and have the critic's shape; otherwise one line says which. (The reward model scores
    ``prompt + answer`` as written; the critic reads them in the chat template, so its start is
    the reward model's score of the templated text, a start the value loss then adapts.)"""
    spec, shape = cfg.ppo.value_init, cfg.model
    own = critic.state_dict()
    if spec == "scratch":
        return []
    if spec == "sft":
        differ = [f"model.{name}={shape.critic_shape(field)}" for name, field in CRITIC_SHAPE.items()
                  if shape.critic_shape(field) != getattr(shape, field)]
        if differ:
            raise ConfigError(f"ppo.value_init: sft starts the critic from train.init_from's body, of the policy's shape, "
                              f"but the critic has {', '.join(differ)}; set ppo.value_init=scratch or a reward run of the "
                              "critic's shape")
        body = {k: v for k, v in reference.state_dict().items() if k in own}
        unfilled = sorted(set(own) - set(body) - {"value_head.weight", "value_head.bias"})
        if unfilled:  # e.g. an MoE policy: the critic is dense
            raise ConfigError(f"ppo.value_init: sft starts the critic from train.init_from's body, which has no "
                              f"{unfilled[0]} (the critic is a dense decoder); set ppo.value_init=scratch or a reward run")
        critic.load_state_dict({**own, **body})
        return sorted(body)
    run = cfg.ppo.reward if spec == "reward" else spec
    if spec == "reward" and run.startswith("gold:"):
        raise ConfigError(f"ppo.value_init: reward starts the critic from the ppo.reward run, but ppo.reward is {run}; "
                          "give ppo.value_init a reward run's directory (or sft, scratch)")
    weights = critic_from_reward_run(run, cfg)
    missing = set(own) - set(weights)
    if missing != {"value_head.bias"}:
        raise ConfigError(f"ppo.value_init: {run}'s weights do not fit the critic ({sorted(missing)[:2]})")
    critic.load_state_dict({**weights, "value_head.bias": torch.zeros_like(own["value_head.bias"])})
    return sorted(weights)


def critic_from_reward_run(run: str, cfg) -> dict[str, torch.Tensor]:
    """The critic's weights from a reward run (:func:`init_critic`), after the checks."""
    import json

    from axon.config import load_config, run_config_file, to_dict
    from axon.model_configs.decoder import DecoderConfig
    from axon.tasks.finetune import KEEP_MODEL_FIELDS, init_run_dir
    from axon.train.run import load_run

    if not Path(run).is_dir():
        raise ConfigError(f"ppo.value_init: {run} is neither sft, scratch, reward nor a run directory")
    source = load_config(run_config_file(run, "ppo.value_init")).model
    if source.family != "reward":
        raise ConfigError(f"ppo.value_init: {run} is a {source.family} run, not a reward model (train one with the "
                          "reward task)")
    mine, theirs = init_run_dir(cfg.train.init_from) / "tokenizer.json", Path(run) / "tokenizer.json"
    same = theirs.is_file() and json.loads(theirs.read_text()) == json.loads(mine.read_text())
    if not same:
        raise ConfigError(f"ppo.value_init: {run} encodes text with another tokenizer than the policy's ({mine}); the "
                          "critic reads the policy's token ids, so its reward run must use the same tokenizer")
    was, now = to_dict(source), to_dict(cfg.model.critic_config())
    names = {field: f"critic_{field}" for field in CRITIC_SHAPE.values()}
    skip = {"family", "preset", *KEEP_MODEL_FIELDS}
    changed = [f"model.{names.get(k, k)}={now.get(k)!r} (the run has {was.get(k)!r})" for k in
               (f.name for f in fields(DecoderConfig)) if k not in skip and was.get(k) != now.get(k)]
    if changed:
        raise ConfigError(f"ppo.value_init: the critic is not {run}'s model: {'; '.join(changed[:3])}; give the critic "
                          "the reward run's shape (model.critic_n_layer, critic_n_head, critic_n_embd)")
    _, reward_model, _ = load_run(run, "cpu")
    state = reward_model.state_dict()
    out = {k: v for k, v in state.items() if k not in ("reward_head.weight", "labeller_theta")}
    out["value_head.weight"] = state["reward_head.weight"]
    return out


def load_reference(cfg, device: torch.device) -> torch.nn.Module:
    """The frozen reference policy: a decoder with the ``train.init_from`` weights, in eval mode."""
    from axon.models.decoder import Decoder
    from axon.tasks.finetune import frozen_reference

    return frozen_reference(lambda: Decoder(cfg.model.decoder_config()), cfg.train.init_from, device)


def rollout_run(cfg, device: torch.device, task: str, rows: int, field: str):
    """The checks every rollout task makes before reading anything, one line each: not under FSDP,
    an actor_critic model, a ``train.init_from`` run to start from, and ``rows`` answers per rollout
    (config ``field`` sets them) that split into minibatches. Returns this process's Dist."""
    from axon.models.actor_critic import ActorCriticConfig
    from axon.train.distributed import process_dist

    tc = cfg.train
    d = process_dist(device, tc.parallel)
    if d.fsdp:
        raise ConfigError(f"train.parallel: {task} runs under ddp, not fsdp (FSDP's ranks must run the same forwards, "
                          "and each rank's answers end after their own number of tokens); use --train.parallel=ddp")
    if not isinstance(cfg.model, ActorCriticConfig):
        raise ConfigError(f"task: {task} trains model.family=actor_critic, got {cfg.model.family}")
    if not tc.init_from:
        raise ConfigError(f"train.init_from: {task} starts from a language model (an sft run): set "
                          f"--train.init_from=RUN, or use axon finetune RUN --task={task}")
    minibatch = tc.batch_size * tc.grad_accum * d.world_size
    if rows % minibatch:
        what = "train.batch_size x train.grad_accum" + (" x processes" if d.enabled else "")
        raise ConfigError(f"{field}: {rows} answers do not split into minibatches of {what} = {minibatch}; "
                          f"make it a multiple of {minibatch}")
    return d


@dataclass
class RolloutSources:
    """What a rollout task reads from its config (:func:`rollout_sources`)."""

    tokenizer: object
    train_set: PromptSet
    val_set: PromptSet
    reward: Reward
    gold: Callable[[str, str], float] | None


def rollout_sources(cfg, device: torch.device, task: str,
                    reward: Reward | Callable[[str, str], float] | None = None) -> RolloutSources:
    """The ``train.init_from`` run's tokenizer (filling model.vocab_size), the check that the
    policy is that run's decoder, the training and validation prompts, the reward (``reward``, or
    the section's ``reward`` field) and the gold judge, as config section ``task`` says."""
    from axon.tasks.sft import pretrained_tokenizer

    p = getattr(cfg, task)
    tokenizer = pretrained_tokenizer(cfg.train.init_from)
    set_vocab_size(cfg, tokenizer.vocab_size)
    check_source_model(cfg, task)
    train_set = read_prompt_set(p.prompts, f"{task}.prompts", "train", tokenizer, cfg)
    val_set = read_prompt_set(p.val_prompts, f"{task}.val_prompts", "val", tokenizer, cfg)
    if reward is None:
        source = build_reward(p.reward, device, f"{task}.reward")
    else:
        source = reward if isinstance(reward, Reward) else JudgeReward(reward)
    gold = gold_judge(p.reward if reward is None else None, train_set.texts + val_set.texts, p.gold, f"{task}.gold")
    return RolloutSources(tokenizer, train_set, val_set, source, gold)


def rollout_setup(objective: RolloutObjective, sources: RolloutSources, init_weights) -> TaskSetup:
    """The TaskSetup of a rollout task: the schedule's index batches, the validation prompts,
    greedy samples, and at the end the validation answers' figures with the last rollout's
    (``rollout_*``: the store's statistics)."""
    batch_size = objective.cfg.train.batch_size

    def model_metrics(model, split: str) -> dict:
        out = objective.split_figures(model, VAL_SET if split == "val" else TRAIN_SET, batch_size)
        store = unwrap(model).rollout
        held = unwrap(model).metrics()  # the last rollout's figures (and minibatch means, left out)
        out.update({f"rollout_{k}": held[k] for k in store.STATS if k in held})
        return out

    return TaskSetup(train_data=objective.schedule, val_data=PromptBatches(VAL_SET, len(sources.val_set.texts)),
                     objective=objective, tokenizer=sources.tokenizer,
                     sample_fn=make_sampler(objective, sources.val_set), model_metrics=model_metrics,
                     init_weights=init_weights)


def ppo_task(cfg, device: torch.device, reward: Reward | Callable[[str, str], float] | None = None) -> TaskSetup:
    """The ``ppo`` task (module docstring); ``reward`` replaces ``ppo.reward`` (a :class:`Reward`
    or a function (prompt, answer) -> float)."""
    p, tc = cfg.ppo, cfg.train
    d = rollout_run(cfg, device, "ppo", p.rollout_batch, "ppo.rollout_batch")
    if cfg.model.value_head == "none":
        raise ConfigError("model.value_head: ppo trains a value function, and none is the policy alone (grpo's); set "
                          "model.value_head=shared or separate (axon finetune RUN --task=ppo takes shared)")
    src = rollout_sources(cfg, device, "ppo", reward)
    schedule = RolloutSchedule(len(src.train_set.texts), p.rollout_batch, p.epochs, tc.grad_accum,
                               ptx_tokens(src.tokenizer) if p.ptx_coef > 0 else None)
    reference = load_reference(cfg, device)
    objective = PPO(cfg, src.tokenizer, {TRAIN_SET: src.train_set, VAL_SET: src.val_set}, schedule, reference,
                    src.reward, src.gold, d)

    def init_policy(model, source_run) -> dict:
        """The policy from the reference's weights (the init_from run's); the value head as
        built, or a separate critic as ``ppo.value_init`` says (:func:`init_critic`)."""
        missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
        fresh = [k for k in missing if k.startswith(("value_head.", "critic."))]
        stray = [k for k in missing if not k.startswith(("value_head.", "critic.", "rollout."))] + list(unexpected)
        if stray:
            raise ConfigError(f"train.init_from: {source_run} does not fit the policy ({stray[0]})")
        if model.critic is not None:
            loaded = init_critic(model.critic, cfg, reference)
            fresh = [k for k in fresh if k.removeprefix("critic.") not in loaded]
        elif p.value_init != "sft":
            raise ConfigError(f"ppo.value_init: {p.value_init} initialises a separate critic, and model.value_head is "
                              "shared (a head on the policy's body, which starts from train.init_from); set "
                              "model.value_head=separate, or ppo.value_init=sft")
        return {"checkpoint": str(source_run), "initialised": fresh}

    return rollout_setup(objective, src, init_policy)


def ptx_tokens(tokenizer) -> np.ndarray:
    """The training part of the bundled corpus (the first 90%, as ``axon prepare`` splits it) in
    the policy's tokenizer: PPO-ptx's pretraining text (``axon.feedback.source`` reads it)."""
    from axon.feedback.source import corpus_parts

    try:
        return np.asarray(tokenizer.encode(corpus_parts()[0]), dtype=np.int64)
    except DataError as e:
        raise ConfigError(f"ppo.ptx_coef: the bundled corpus does not encode in the policy's tokenizer ({e})") from None


def make_sampler(objective: RolloutObjective, val_set: PromptSet):
    """sample_fn(model, step) -> text: greedy answers to the first validation prompts, with their
    reward (and gold score)."""

    def sample(model, step: int) -> str:
        policy = unwrap(model)
        texts, ids = val_set.texts[:SAMPLES], val_set.ids[:SAMPLES]
        answers = sample_answers(policy, objective.tokenizer, ids, objective.p.max_new_tokens, 0.0, None)
        scores = objective.reward.score(texts, answers.texts).tolist()
        lines = []
        for q, a, s, ended in zip(texts, answers.texts, scores, answers.ended.tolist()):
            gold = f", gold {objective.gold(q, a):.3f}" if objective.gold is not None else ""
            lines.append(f"User: {q}\nAssistant: {a}{END if ended else ' [no end marker]'}\n  (reward {s:.3f}{gold})")
        return "\n".join(lines)

    return sample

"""The ``grpo`` task: reinforcement learning of a language model against a reward with GRPO
(Shao et al. 2024, DeepSeekMath) or RLOO (Ahmadian et al. 2024), as TRL 1.16 computes them: no
value function, the baseline of an answer is the other answers to the same prompt.

    P prompts --policy (sampled), G answers each--> P x G answers --reward--> scores (P, G)
        |         + old log-probs, entropy per answer token (N, R), off the sampling's logits
        |                                  |
        |       frozen reference: log-probs per answer token (ref; with beta 0 only every
        |       grpo.kl_every-th rollout, for the logged KL)
        v                                  v
    advantage per answer: grpo (r - mean_group) / (std_group + 1e-4), or rloo r - mean(others)
        |                 broadcast to the answer's tokens
        +--> `epochs` passes of clipped-ratio minibatch updates (+ beta k3 to the reference), then
             the next rollout

One trainer step is one minibatch update. A rollout answers ``grpo.rollout_prompts`` prompts
``grpo.group_size`` times each (P x G rows, a group's G rows consecutive) and is trained on for
``grpo.epochs`` passes (TRL's num_iterations) of minibatches of ``train.batch_size x
train.grad_accum`` answers, so ``steps_per_rollout = epochs x P x G / (batch_size x grad_accum)``
(which must divide). The machinery is PPO's (``axon.tasks.ppo.RolloutObjective``): index batches,
the rollout sampled at the first step that names it, row i from a generator seeded from
(train.seed, rollout, i), so a rollout is a pure function of the weights and its index however its
rows are shared out over processes (gathered with ``Dist.gather_rows``; FSDP is refused). An
answer ends at the chat template's end marker or after ``grpo.max_new_tokens`` tokens; its tokens'
log-probabilities are of logits / ``grpo.temperature`` (the distribution sampled), as TRL's.

The arithmetic (``axon.objectives.grpo``, which says each formula):

    advantage  grpo (``grpo.scale_rewards``: group, TRL's default; batch; none) or rloo (the mean of
               the other G - 1 answers; ``grpo.normalize_advantages`` whitens them, as TRL's option)
    loss       grpo: a ratio per token, clipped to [1 - clip, 1 + clip_high], normalised as
               ``grpo.loss_type`` says: dapo (TRL's default), grpo, dr_grpo, bnpo; plus
               ``grpo.beta`` x the k3 estimate of KL(policy || reference) per token.
               rloo: TRL's RLOOTrainer: one ratio per answer (of its summed log-probabilities),
               the mean over answers; the KL is in the reward: r - beta x sum_t k1_t.
    beta       null: TRL's defaults, 0.0 for grpo (no KL term: the reference is then run only for
               the logged kl and token_kl, on every ``grpo.kl_every``-th rollout) and 0.05 for rloo

What is logged (the question TRL users ask again and again -- why is the loss 0? trl #2703,
#3452): per rollout, in metrics.jsonl with each step that trains on it, ``score`` (the reward
mean), ``group_std`` (the mean within-group standard deviation of the scores), ``frac_zero_std``
(the share of groups whose scores are all equal, whose advantages are 0: no gradient), ``kl`` (k1
summed over an answer, nats per answer, against the reference), ``entropy``, ``length``,
``ended`` (share that wrote the end marker), ``gold`` when a gold judge applies; per minibatch
(means since the last record) ``policy_loss``, ``clipfrac``, ``token_kl`` (TRL's ``kl``: mean k3
per token) and ``entropy`` (``kl`` and ``token_kl`` only from rollouts that ran the reference).
At the first minibatch of a rollout the ratio is 1 and the group advantages sum to 0, so the loss
is near 0 while its gradient is not.

Speed (issue 18's bar, ``benchmarks/trl_grpo.py``): a rollout is one cached batched generation;
its old log-probabilities and entropy come from the sampling's own logits (``generate(...,
logprobs=True)``: no second forward of the policy), the reference runs only when something reads
it, and the forwards apply the LM head at the answers' positions only (``answer_forward``).

The rollout lives in the model (``axon.models.actor_critic.RolloutStore`` with GROUP_BUFFERS:
tokens, old and reference log-probabilities, one advantage per answer, its statistics), so the
trainer's checkpoints carry it and a run stopped anywhere -- SIGKILL after a checkpoint, or in the
middle of a rollout's passes -- resumes bit for bit (tests/tasks/test_grpo_task.py).

The model: ``model.family: actor_critic`` with ``model.value_head: none`` (the policy and its
rollout state; ``axon convert --to-hf`` exports a plain decoder), from a decoder (SFT) run
``train.init_from``, which is also the frozen reference; ``axon finetune RUN --task=grpo``
writes that config. The tokenizer is the run's.

The reward and gold: as PPO's (``grpo.reward``: a gold judge of ``axon.feedback.gold_for``'s
registry, ``gold:instructions``, ``gold:sentiment``, or a reward run's directory; in Python any
function ``(prompt, answer) -> float``: ``grpo_task(cfg, device, reward=fn)``), ``grpo.gold`` as
``ppo.gold``.

Validation, as PPO's: one answer to each of ``grpo.val_prompts`` sampled with fixed seeds; the
validation loss is minus their mean score; at the end (``result.json``, ``axon eval``) their mean
``score``, ``gold``, ``kl``, ``length`` and ``ended``, and the last rollout's figures
(``rollout_*``); with a gold judge also ``greedy_gold`` and ``greedy_ended``: the same judge's mean
score of *greedy* answers to the validation prompts, measured by ``axon.tasks.sft.gold_figures``,
the function behind the sft task's ``gold`` (and ``greedy_gold``), so an SFT run and a GRPO run
given the same prompts report one comparable figure (``axon compare --metric greedy_gold``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from axon.data.prompts import RolloutSchedule
from axon.errors import ConfigError
from axon.models.base import unwrap
from axon.objectives.grpo import group_advantages, group_figures, grpo_loss, rloo_advantages, rloo_loss
from axon.objectives.ppo import entropy_from_logits, masked_mean
from axon.tasks.base import TaskSetup
from axon.tasks.ppo import (
    TRAIN_SET, VAL_SET, Reward, RolloutObjective, load_reference, rollout_run, rollout_setup, rollout_sources,
)


class GRPO(RolloutObjective):
    """(model, batch) -> (loss, parts) for the ``grpo`` task: group rollouts and minibatch updates
    on training batches, scored answers on evaluation batches (module docstring)."""

    section, values = "grpo", False

    sampled_logprobs = True  # the old log-probabilities and the entropy: read off the sampling's logits

    def measures_reference(self, k: int) -> bool:
        """Whether rollout ``k`` runs the frozen reference: always with a KL term, else on every
        ``grpo.kl_every``-th rollout, for the logged KL only (0: never)."""
        every = self.p.kl_every
        return self.p.kl_coef != 0.0 or (every > 0 and k % every == 0)

    def measure_rollout(self, policy, answers, k: int) -> dict[str, torch.Tensor]:
        """Per answer token (N, R): ``logp`` (the old log-probabilities) and ``entropy`` from the
        sampling's own logits (no second forward of the policy); and when the reference is run
        (:meth:`measures_reference`), its ``ref_logp`` and, from a forward of the policy over the same
        rows by the same code, ``kl_logp``: the policy's side of the logged KL (exactly 0 while the
        policy is the reference)."""
        m = {"logp": answers.logp, "entropy": answers.entropy}
        if self.measures_reference(k):
            forward = self.measure(policy, answers)
            m.update(ref_logp=forward["ref_logp"], kl_logp=forward["logp"])
        return m

    def rollout(self, model, k: int) -> None:
        """Sample rollout ``k`` (P prompts, G answers each; :meth:`sample_rollout`), and store it
        with one advantage per answer and its statistics in the model (``kl``: NaN, not logged, on
        a rollout that does not run the reference; ``ref_logp`` then empty)."""
        from axon.models.actor_critic import GROUP_STATS

        p, G = self.p, self.p.group_size
        m = self.sample_rollout(model, k)
        mask, score = m["mask"], m["score"]
        measured = "ref_logp" in m
        kl_answer = ((m["kl_logp"] - m["ref_logp"]) * mask).sum(1) if measured else None  # k1 summed per answer (N,)
        if p.advantage == "rloo":  # the KL is a penalty on the reward (TRL's RLOOTrainer)
            reward = score - p.kl_coef * kl_answer if p.kl_coef != 0.0 else score
            advantages = rloo_advantages(reward, G, p.normalize_advantages)
        else:
            advantages = group_advantages(score, G, p.scaling)
        stats = dict(score=float(score.mean()), gold=float(m["gold"].mean()),
                     kl=float(kl_answer.mean()) if measured else math.nan,
                     entropy=float(masked_mean(m["entropy"], mask)), length=float(mask.sum(1).mean()),
                     ended=float(m["ended"].mean()), **group_figures(score, G))
        unwrap(model).rollout.store(index=torch.tensor(k), tokens=m["tokens"], prompt_len=m["prompt_len"], mask=mask,
                                    logp=m["logp"], ref_logp=m["ref_logp"] if measured else mask.new_zeros(0),
                                    advantages=advantages,
                                    stats=torch.tensor([stats[n] for n in GROUP_STATS], dtype=torch.float64))

    def update(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """One minibatch's GRPO (or RLOO) loss on the held rollout (sampled first if this batch
        names another)."""
        p = self.p
        policy = unwrap(model)
        st = self.held_rollout(model, int(batch[1][0]), p.rollout_rows, "grpo.rollout_prompts")
        rows = batch[2].to(st.tokens.device)
        logits, logp, mask, R, _ = self.minibatch(model, st, rows)
        old, advantages = st.logp[rows, :R], st.advantages[rows]
        ref = st.ref_logp[rows, :R] if st.ref_logp.dim() == 2 else None  # None: this rollout ran no reference
        if p.loss == "rloo":
            loss, info = rloo_loss(logp, old, advantages, mask, clip=p.clip, clip_high=p.clip_high)
            if ref is not None:
                with torch.no_grad():
                    info["token_kl"] = masked_mean(torch.expm1(ref - logp) - (ref - logp), mask)
        else:
            mean_length = float(st.mask.sum()) / st.mask.size(0)  # over the whole rollout (dapo)
            loss, info = grpo_loss(logp, old, advantages, mask, loss_type=p.loss, clip=p.clip, clip_high=p.clip_high,
                                   beta=p.kl_coef, ref_logp=ref, max_new_tokens=p.max_new_tokens,
                                   mean_length=mean_length)
            if p.loss == "bnpo":  # the token mean over every rank's rows of the micro-step (as PPO's means)
                loss = loss * self.token_share(mask)
        parts = {"policy_loss": loss.detach(), **info}
        for name, value in policy.aux_losses().items():
            loss = loss + value
            parts[name] = value
        with torch.no_grad():
            parts["entropy"] = masked_mean(entropy_from_logits(logits), mask)
        policy.record({k: float(v) for k, v in parts.items()})
        return loss, {"ce": loss.detach(), **parts}


def grpo_task(cfg, device: torch.device, reward: Reward | Callable[[str, str], float] | None = None) -> TaskSetup:
    """The ``grpo`` task (module docstring); ``reward`` replaces ``grpo.reward`` (a :class:`Reward`
    or a function (prompt, answer) -> float)."""
    p, tc = cfg.grpo, cfg.train
    d = rollout_run(cfg, device, "grpo", p.rollout_rows, "grpo.rollout_prompts")
    if cfg.model.value_head != "none":
        raise ConfigError(f"model.value_head: grpo has no value function, and {cfg.model.value_head} builds one; set "
                          "model.value_head=none (axon finetune RUN --task=grpo does)")
    src = rollout_sources(cfg, device, "grpo", reward)
    schedule = RolloutSchedule(len(src.train_set.texts), p.rollout_rows, p.epochs, tc.grad_accum,
                               group_size=p.group_size)
    reference = load_reference(cfg, device)
    objective = GRPO(cfg, src.tokenizer, {TRAIN_SET: src.train_set, VAL_SET: src.val_set}, schedule, reference,
                     src.reward, src.gold, d)

    def init_policy(model, source_run) -> dict:
        """The policy from the reference's weights (the init_from run's); nothing else to start."""
        missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
        stray = [k for k in missing if not k.startswith("rollout.")] + list(unexpected)
        if stray:
            raise ConfigError(f"train.init_from: {source_run} does not fit the policy ({stray[0]})")
        return {"checkpoint": str(source_run), "initialised": []}

    setup = rollout_setup(objective, src, init_policy)
    if src.gold is not None:
        setup.model_metrics = with_greedy_gold(setup.model_metrics, src, cfg.model.block_size)
    return setup


def with_greedy_gold(model_metrics, src, block_size: int):
    """``model_metrics`` plus ``greedy_gold`` / ``greedy_ended`` of the validation prompts
    (``axon.tasks.sft.gold_figures``: greedy, at most GOLD_TOKENS tokens, the gold judge)."""
    from axon.tasks.sft import gold_figures

    def metrics(model, split: str) -> dict:
        out = model_metrics(model, split)
        if split == "val":
            figures = gold_figures(unwrap(model), src.tokenizer, src.val_set.texts, src.gold, block_size)
            out.update({f"greedy_{k}": v for k, v in figures.items()})
        return out

    return metrics

"""The ``online_dpo`` task: DPO on pairs the current policy samples and a reward labels (Guo et
al. 2024, "Direct Language Model Alignment from Online AI Feedback"; TRL's OnlineDPOTrainer), the
online counterpart of the ``dpo`` task, which trains on a fixed comparison file.

    step s: prompts p_r of rows r = 0 .. B-1 (axon.data.prompts.PairBatches, a pure function of s)
        |
        |  the current policy, eval mode, no gradient, at online_dpo.temperature: answers a_r, b_r,
        |  each from its own generator seeded with (train.seed, s, r, 0) and (train.seed, s, r, 1)
        v
    (p_r, a_r), (p_r, b_r) --reward--> score_a, score_b --> chosen = the higher, rejected = the lower
        |                                                   (equal scores: a tie, dropped from the loss)
        v
    kept pairs x, y (K, 2, T), chosen at [:, 0] --policy (train mode) and frozen reference-->
        pi_w, pi_l, ref_w, ref_l --dpo.loss (axon.objectives.dpo)--> the mean over the K pairs

Shapes: a micro-step of B rows samples 2B answers of up to ``online_dpo.max_new_tokens`` tokens
(an answer ends at the chat template's end marker ``$``, kept, or at that length). Each answer is
laid out as the dpo task lays out a side (``axon.data.preferences``): prompt + answer in the chat
template, x = ids[:-1], y = ids[1:] with IGNORE off the answer, so the log-probabilities cover the
answer tokens (and the marker if written): x, y (B, 2, T), T = the longest prompt + answer - 1.
A micro-step whose pairs are all ties still runs one pair through the policy, with weight 0 (its
loss is 0 and so are its gradients), so every micro-step has a forward and a backward.

Exact resume without storing anything: a step's prompts are a function of the step, its answers
of the weights and (train.seed, step, row), the reward is deterministic, and sampling draws from
those generators only (the global RNG, which dropout uses, is the trainer's, checkpointed), so a
run stopped after a checkpoint and resumed computes the same pairs and losses bit for bit
(tests/tasks/test_online_dpo_task.py).

The reward (``online_dpo.reward``) and the gold judge reported beside it (``online_dpo.gold``)
are PPO's (``axon.tasks.ppo``): ``gold:instructions``, ``gold:sentiment`` or a reward run's
directory; in Python any :class:`~axon.tasks.ppo.Reward` or function (prompt, answer) -> float
(``online_dpo_task(cfg, device, reward=fn)``). Starting weights: ``train.init_from`` (an sft run of
a causal family) loads strictly; the reference is the same checkpoint loaded again, frozen, in
eval mode, held by the objective and never checkpointed (as the dpo task's). It is loaded for
every loss, SimPO's too: the KL figures need it. ``axon finetune RUN --task=online_dpo`` takes the
model and tokenizer from the run. The losses are the dpo task's (``dpo.loss``, ``dpo.beta``, ...),
on log-probabilities of the logits at temperature 1, as TRL's OnlineDPOTrainer takes them.

Metrics, with every logged record, over the steps since the previous one: ``score`` (the mean
reward of the sampled answers), ``chosen_score`` and ``rejected_score`` (the means of each pair's
higher and lower score, ties included, so score is their mean), ``ties`` (tied pairs, dropped)
and ``tie_share`` (their share of the pairs), ``kl`` (nats per answer: the sum over its tokens of
log pi - log pi_ref, the distributions sampled: logits / temperature over the tokenizer's
vocabulary, as PPO's), ``length``, ``ended`` (share that wrote ``$``), ``gold`` when a gold judge
applies, and the DPO figures of the kept pairs (``train_chosen_reward``, ``train_rejected_reward``,
``train_margin``, ``train_accuracy``, ``train_chosen_logp``, ``train_rejected_logp``, as the dpo
task logs them; drawn in ``rewards.png`` when the run ends, ``axon.tasks.dpo.plot_rewards``). Validation is PPO's: answers to ``online_dpo.val_prompts`` sampled with fixed
seeds, the loss minus their mean score; ``result.json`` and ``axon eval`` add their mean
``score``, ``gold``, ``kl``, ``length`` and ``ended``.

Iterated DPO (Xu et al. 2023), rounds of the offline dpo task on comparisons sampled from the
previous round's policy and labelled by the same reward, is ``axon.lab.iterated_dpo``.

Several processes (DDP): each rank samples, scores and trains on its rows of the micro-step (the
rows are numbered across the ranks, so a row's pair is the one a single process samples), and
DDP averages the ranks' gradients, each rank's loss the mean over its own kept pairs; counts in
the logged records (``ties``) are per process. FSDP is refused, as for PPO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from axon.data.chat import IGNORE, prompt_ids
from axon.data.prompts import EVAL, TRAIN, PairBatches, PromptBatches, read_prompts
from axon.errors import ConfigError, DataError
from axon.models.base import unwrap
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.ppo import (
    EVAL_SEED, Answers, JudgeReward, PromptSet, Reward, build_reward, generator, gold_judge, make_sampler,
    sample_answers,
)

TRAIN_SET, VAL_SET = 0, 1  # the prompt sets an evaluation batch names (as PPO's)
SEED_TAG = "online_dpo"  # the generators of training answers: (train.seed, SEED_TAG, step, row, 0 or 1)


@dataclass
class Pairs:
    """One micro-step's pairs, each row's chosen answer at [:, 0] and rejected at [:, 1].

    x, y (B, 2, T) int64: the dpo task's layout (module docstring); score (B, 2) float64: the
    reward; tie (B,) bool: equal scores (dropped from the loss); ref_logp (B, 2): the reference's
    sequence log-probabilities (temperature 1, the loss's); kl (B, 2): nats per answer against the
    reference at the sampling temperature; length (B, 2): answer tokens; ended (B, 2) bool: wrote
    the end marker; gold (B, 2) float64 or None; texts: [(chosen, rejected)] per row."""

    x: torch.Tensor
    y: torch.Tensor
    score: torch.Tensor
    tie: torch.Tensor
    ref_logp: torch.Tensor
    kl: torch.Tensor
    length: torch.Tensor
    ended: torch.Tensor
    gold: torch.Tensor | None
    texts: list[tuple[str, str]]


def chat_rows(answers: Answers) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) (N, L - 1) of packed prompt + answer rows (``sample_answers``): x = ids[:-1], y =
    ids[1:] with IGNORE everywhere but the answer's tokens."""
    tokens, plen = answers.tokens, answers.prompt_len
    alen = answers.mask.sum(1).long().to(tokens.device)
    x, y = tokens[:, :-1], tokens[:, 1:].clone()
    t = torch.arange(y.size(1), device=y.device)[None]
    on = (t >= plen[:, None] - 1) & (t < (plen + alen)[:, None] - 1)  # position t predicts token t + 1
    return x, y.masked_fill(~on, IGNORE)


class OnlineDPO:
    """(model, batch) -> (loss, parts) for the ``online_dpo`` task: pairs sampled, labelled and
    trained on for training batches (kind, step, row, prompt); scored answers for evaluation
    batches (kind, set, index) (``axon.data.prompts``)."""

    def __init__(self, cfg, tokenizer, sets: dict[int, PromptSet], reference: torch.nn.Module, dpo,
                 reward: Reward, gold: Callable[[str, str], float] | None):
        self.cfg, self.p = cfg, cfg.online_dpo
        self.tokenizer, self.sets, self.reference, self.dpo = tokenizer, sets, reference, dpo
        self.reward, self.gold = reward, gold
        self.vocab = tokenizer.vocab_size
        self._sums: dict[str, float] = {}

    def __call__(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        kind = int(batch[0][0])
        if kind == EVAL:
            return self.evaluate(model, batch)
        if kind != TRAIN:
            raise ValueError(f"unknown online DPO batch kind {kind}")
        return self.update(model, batch)

    # -- pairs -------------------------------------------------------------------------------------

    @torch.no_grad()
    def measure(self, policy, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per row of (x, y) (N, T): the reference's sequence log-probability (temperature 1),
        the k1 KL of the policy to the reference summed over the answer (logits / temperature over
        the tokenizer's vocabulary: the distributions sampled), and the answer's length. Both
        models in eval mode (no dropout)."""
        from axon.objectives.dpo import sequence_logprobs

        was = policy.training
        policy.eval()
        try:
            ref_logits, logits = self.reference(x), policy(x)
        finally:
            policy.train(was)
        ref, n = sequence_logprobs(ref_logits, y)
        V, temp = self.vocab, self.p.temperature
        kl = sequence_logprobs(logits[..., :V] / temp, y)[0] - sequence_logprobs(ref_logits[..., :V] / temp, y)[0]
        return ref, kl, n

    def sample_pairs(self, model, step: int, rows: Sequence[int], prompts: Sequence[int], prompt_set: int = TRAIN_SET,
                     tag: str = SEED_TAG) -> Pairs:
        """The pairs of training step ``step``'s ``rows``, answering prompts ``prompts`` (indices
        into ``prompt_set``, the training prompts unless given): a pure function of the weights and
        (train.seed, tag, step, rows) (module docstring). Iterated DPO (``axon.lab.iterated_dpo``)
        samples its comparison files here too, with its own tags."""
        policy = unwrap(model)
        p, seed, s = self.p, self.cfg.train.seed, self.sets[prompt_set]
        B = len(rows)
        texts = [s.texts[i] for i in prompts for _ in range(2)]
        gens = [generator(policy, seed, tag, step, r, j) for r in rows for j in range(2)]
        answers = sample_answers(policy, self.tokenizer, [s.ids[i] for i in prompts for _ in range(2)],
                                 p.max_new_tokens, p.temperature, gens, next(policy.parameters()).dtype)
        score = self.reward.score(texts, answers.texts).to(torch.float64).view(B, 2)
        x, y = chat_rows(answers)
        ref, kl, n = self.measure(policy, x, y)
        gold = None
        if self.gold is not None:
            gold = torch.tensor([self.gold(q, a) for q, a in zip(texts, answers.texts)], dtype=torch.float64)
        # the chosen answer first: b when it scores higher, else a (a tie keeps a first; it is dropped)
        swap = (score[:, 1] > score[:, 0]).long()
        order = torch.stack([swap, 1 - swap], 1)  # (B, 2): which answer is chosen, which rejected
        flat = (torch.arange(B)[:, None] * 2 + order).view(-1)  # into the 2B answers
        dev = flat.to(x.device)

        def pick(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return t[index].view(B, 2, *t.shape[1:])

        pairs_texts = [(answers.texts[int(flat[2 * b])], answers.texts[int(flat[2 * b + 1])]) for b in range(B)]
        return Pairs(x=pick(x, dev), y=pick(y, dev), score=pick(score.view(-1), flat), tie=score[:, 0] == score[:, 1],
                     ref_logp=pick(ref, dev), kl=pick(kl, dev), length=pick(n, dev), ended=pick(answers.ended, flat),
                     gold=None if gold is None else pick(gold, flat), texts=pairs_texts)

    # -- updates -----------------------------------------------------------------------------------

    def update(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """The DPO loss of this micro-step's pairs, ties left out (module docstring)."""
        pairs = self.sample_pairs(model, int(batch[1][0]), batch[2].tolist(), batch[3].tolist())
        kept = (~pairs.tie).nonzero().squeeze(1)
        K = kept.numel()
        use = kept if K else torch.zeros(1, dtype=torch.long)  # all tied: one pair with weight 0
        index = use.to(pairs.x.device)
        x, y = pairs.x[index], pairs.y[index]
        T = int((y != IGNORE).any(0).any(0).nonzero().max()) + 1  # the kept pairs' longest row
        logp, n = self.dpo.logprobs(model, x[..., :T].contiguous(), y[..., :T].contiguous())  # through the wrapper
        ref = pairs.ref_logp[index] if self.dpo.reference is not None else None
        losses, figures = self.dpo.pair_losses(logp, n, ref)
        loss = losses.mean() if K else losses.sum() * 0.0
        parts = {"ce": loss.detach(), "pairs": K, "ties": int(pairs.tie.sum())}
        for name, value in unwrap(model).aux_losses().items():  # an MoE body's balance and z-losses
            loss = loss + value
            parts[name] = value
        self._record(pairs, figures if K else None)
        return loss, parts

    def _record(self, pairs: Pairs, figures: dict[str, torch.Tensor] | None) -> None:
        sums = {"answers": pairs.score.numel(), "pairs": pairs.score.size(0), "ties": int(pairs.tie.sum()),
                "score": float(pairs.score.sum()), "chosen_score": float(pairs.score[:, 0].sum()),
                "rejected_score": float(pairs.score[:, 1].sum()), "kl": float(pairs.kl.sum()),
                "length": float(pairs.length.sum()), "ended": float(pairs.ended.sum())}
        if pairs.gold is not None:
            sums["gold"] = float(pairs.gold.sum())
        if figures is not None:
            sums["kept"] = int(figures["margin"].numel())
            sums.update({f"train_{k}": float(v.sum()) for k, v in figures.items()})
        for k, v in sums.items():
            self._sums[k] = self._sums.get(k, 0) + v

    def metrics(self) -> dict[str, float]:
        """The training figures since the last call (module docstring), then reset."""
        s, self._sums = self._sums, {}
        if not s:
            return {}
        out = {k: s[k] / s["answers"] for k in ("score", "kl", "length", "ended", "gold") if k in s}
        out.update(chosen_score=s["chosen_score"] / s["pairs"], rejected_score=s["rejected_score"] / s["pairs"],
                   ties=float(s["ties"]), tie_share=s["ties"] / s["pairs"])
        out.update({k: v / s["kept"] for k, v in s.items() if k.startswith("train_")})
        return out

    # -- evaluation --------------------------------------------------------------------------------

    def answer_set(self, model, prompt_set: int, index: Sequence[int]) -> tuple[list[str], Answers]:
        """Sampled answers to prompts ``index`` of a prompt set, each from a generator seeded with
        the set and its index (PPO's seeds: the same answers for the same weights)."""
        policy = unwrap(model)
        s = self.sets[prompt_set]
        gens = [generator(policy, EVAL_SEED, "eval", prompt_set, i) for i in index]
        answers = sample_answers(policy, self.tokenizer, [s.ids[i] for i in index], self.p.max_new_tokens,
                                 self.p.temperature, gens, next(policy.parameters()).dtype)
        return [s.texts[i] for i in index], answers

    def evaluate(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """Minus the mean reward of sampled answers to the batch's prompts (the validation loss)."""
        prompts, answers = self.answer_set(model, int(batch[1][0]), batch[2].tolist())
        score = self.reward.score(prompts, answers.texts).to(torch.float64).mean()
        return -score, {"ce": -score, "count": len(prompts), "score": score}

    def split_figures(self, model, prompt_set: int, batch_size: int) -> dict[str, float]:
        """Mean score, gold, KL to the reference (nats per answer), length and share ended of
        sampled answers to a whole prompt set, batched as the evaluation batches it."""
        sums: dict[str, float] = {}
        n = len(self.sets[prompt_set].texts)
        for s in range(0, n, batch_size):
            prompts, answers = self.answer_set(model, prompt_set, list(range(s, min(s + batch_size, n))))
            _, kl, length = self.measure(unwrap(model), *chat_rows(answers))
            figures = {"score": float(self.reward.score(prompts, answers.texts).sum()), "kl": float(kl.sum()),
                       "length": float(length.sum()), "ended": float(answers.ended.sum())}
            if self.gold is not None:
                figures["gold"] = sum(self.gold(q, a) for q, a in zip(prompts, answers.texts))
            for k, v in figures.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / n for k, v in sums.items()}


# ----------------------------------------------------------------------------------------------
# The task


def read_prompt_set(spec: str | None, field: str, split: str, tokenizer, cfg) -> PromptSet:
    """The prompts of ``online_dpo.prompts`` / ``online_dpo.val_prompts`` (a path or
    ``bundled:NAME``; null: the bundled instruction file of ``split``) in the chat template; a
    prompt that leaves no room for ``online_dpo.max_new_tokens`` tokens is refused naming its line."""
    from axon.data.files import resolve_file
    from axon.feedback import bundled_path

    block, new = cfg.model.block_size, cfg.online_dpo.max_new_tokens
    if new >= block:
        raise ConfigError(f"online_dpo.max_new_tokens: {new} leaves no room for a prompt in model.block_size={block}; "
                          "lower it")
    path = bundled_path(split) if spec is None else resolve_file(spec, field, cfg.data)
    texts, ids = [], []
    for text, line in read_prompts(path):
        encoded = prompt_ids(tokenizer, text)[1]
        if len(encoded) > block - new:
            raise DataError(f"{path}:{line}: the prompt is {len(encoded)} tokens in the chat template, more than "
                            f"model.block_size={block} - online_dpo.max_new_tokens={new}; shorten it, or lower "
                            "online_dpo.max_new_tokens")
        texts.append(text)
        ids.append(encoded)
    return PromptSet(texts, ids)


def renamed(error: ConfigError, field: str) -> ConfigError:
    """PPO's error about ``ppo.<name>`` as one about ``field`` (the reward and gold code is PPO's)."""
    text = str(error)
    ppo_field = "ppo." + field.split(".", 1)[1]
    return ConfigError(f"{field}: {text.removeprefix(ppo_field + ': ')}")


def online_dpo_task(cfg, device: torch.device, reward: Reward | Callable[[str, str], float] | None = None) -> TaskSetup:
    """The ``online_dpo`` task (module docstring); ``reward`` replaces ``online_dpo.reward`` (a
    :class:`~axon.tasks.ppo.Reward` or a function (prompt, answer) -> float)."""
    from axon.objectives.dpo import DPO, REFERENCE_FREE
    from axon.tasks.dpo import REWARDS_PLOT, load_reference, plot_rewards
    from axon.tasks.finetune import check_pretrained_model
    from axon.tasks.sft import pretrained_tokenizer
    from axon.train.distributed import process_dist

    p, tc, d = cfg.online_dpo, cfg.train, cfg.dpo
    if not tc.init_from:
        raise ConfigError("train.init_from: online_dpo trains a language model from a starting run (an sft run), "
                          "which is also its reference; set --train.init_from=RUN, or use axon finetune RUN "
                          "--task=online_dpo")
    if process_dist(device, tc.parallel).fsdp:
        raise ConfigError("train.parallel: online_dpo runs under ddp, not fsdp (FSDP's ranks must run the same "
                          "forwards, and each rank's answers end after their own number of tokens); use "
                          "--train.parallel=ddp")
    tokenizer = pretrained_tokenizer(tc.init_from)
    set_vocab_size(cfg, tokenizer.vocab_size)
    check_pretrained_model(cfg, tc.init_from)
    train_set = read_prompt_set(p.prompts, "online_dpo.prompts", "train", tokenizer, cfg)
    val_set = read_prompt_set(p.val_prompts, "online_dpo.val_prompts", "val", tokenizer, cfg)
    try:
        if reward is None:
            source = build_reward(p.reward, device)
        else:
            source = reward if isinstance(reward, Reward) else JudgeReward(reward)
    except ConfigError as e:
        raise renamed(e, "online_dpo.reward") from None
    try:
        gold = gold_judge(p.reward if reward is None else None, train_set.texts + val_set.texts, p.gold)
    except ConfigError as e:
        raise renamed(e, "online_dpo.gold") from None
    reference = load_reference(cfg, device)  # SimPO's loss has none, but the KL figures need it
    loss = DPO(d.loss, None if d.loss in REFERENCE_FREE else reference, beta=d.beta,
               label_smoothing=d.label_smoothing, gamma=d.gamma, alpha=d.alpha)
    objective = OnlineDPO(cfg, tokenizer, {TRAIN_SET: train_set, VAL_SET: val_set}, reference, loss, source, gold)

    def model_metrics(model, split: str) -> dict:
        return objective.split_figures(model, VAL_SET if split == "val" else TRAIN_SET, tc.batch_size)

    return TaskSetup(train_data=PairBatches(len(train_set.texts), tc.grad_accum),
                     val_data=PromptBatches(VAL_SET, len(val_set.texts)), objective=objective, tokenizer=tokenizer,
                     sample_fn=make_sampler(objective, val_set), model_metrics=model_metrics,
                     plots={REWARDS_PLOT: plot_rewards})

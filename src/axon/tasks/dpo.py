"""The ``dpo`` task: a language model trained directly on preference comparisons, with no reward
model and no sampling (Rafailov et al. 2023), or one of its family (``dpo.loss``: cdpo, robust,
ipo, simpo, rpo; the formulas are ``axon.objectives.dpo``'s).

    comparisons (reward task's files) --chat template--> (chosen, rejected) pairs of (x, y)
                                                        (axon.data.preferences.ComparisonPairs)
    policy   = the train.init_from weights (trained)          --> pi_w, pi_l: sums of log p over
    reference = the same weights loaded again (frozen)        --> ref_w, ref_l    the answer's tokens
                                                                  --DPO--> loss, rewards, margin

Data (``data.train_file``, ``data.val_file``): the ``reward`` task's JSONL, comparisons
``{"prompt", "chosen", "rejected"}`` and rankings ``{"prompt", "responses", "ranking"}`` (a ranking
gives each of its K(K-1)/2 pairs; ``axon.data.preferences``); without a validation file every 10th
prompt, with all its comparisons, is held out. Each side is rendered in the SFT chat template, the
prompt as the user's turn and the response as the assistant's answer with its end marker, so the
log-probabilities cover the answer and the marker only -- the text an sft run learnt to write.

Starting weights: ``train.init_from`` (an sft or language-model run of a causal family) loads
strictly, as for sft, and its tokenizer encodes the text; ``axon finetune RUN --task=dpo
--data.train_file=...`` takes the model and tokenizer from the run. The reference is the same
checkpoint loaded into a second model, frozen and in eval mode: it is held by the objective, not
by the run's model, so no checkpoint carries it; a resumed run (or ``axon eval``) loads it again
from train.init_from. Its log-probabilities are computed under no_grad for each batch. SimPO has
no reference and loads none.

Metrics: the loss and ``accuracy`` (the share of pairs whose implicit reward margin is > 0) at
each evaluation; with each logged step the training pairs' means since the last record of
``train_chosen_reward``, ``train_rejected_reward`` (beta * (policy - reference) log-probability),
``train_margin``, ``train_accuracy``, ``train_chosen_logp`` and ``train_rejected_logp``; and the
same figures of the whole validation split in result.json and ``axon eval``
(``val_chosen_reward``, ...). Chosen rewards often fall while the margin grows (eric-mitchell/DPO
#32, #36), so both are there, and ``rewards.png`` draws them when the run ends
(:func:`plot_rewards`): the chosen and rejected rewards and their margin along training, and the
pairwise accuracy on the training pairs and at each evaluation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from axon.data.files import read_splits
from axon.data.preferences import encode_comparisons, read_preferences
from axon.errors import ConfigError
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.finetune import check_pretrained_model

EXAMPLE = 'a .jsonl file of {"prompt", "chosen", "rejected"} or {"prompt", "responses", "ranking"} lines'


def load_reference(cfg, device: torch.device) -> torch.nn.Module:
    """A frozen copy of the ``train.init_from`` weights in eval mode, of the run's model family."""
    from axon.models import build_model
    from axon.tasks.finetune import frozen_reference

    dtype = torch.float64 if cfg.train.dtype == "fp64" else None  # the policy's dtype (axon.train.run)
    return frozen_reference(lambda: build_model(cfg.model), cfg.train.init_from, device, dtype)


def dpo_task(cfg, device: torch.device) -> TaskSetup:
    from axon.objectives.dpo import DPO, REFERENCE_FREE
    from axon.tasks.sft import pretrained_tokenizer

    data, block, p = cfg.data, cfg.model.block_size, cfg.dpo
    if not cfg.train.init_from:
        raise ConfigError("train.init_from: dpo trains a language model from a starting run (an sft run), which is also "
                          "its reference; set --train.init_from=RUN, or use axon finetune RUN --task=dpo")
    tokenizer = pretrained_tokenizer(cfg.train.init_from)  # the tokenizer and model are checked before any data is read
    set_vocab_size(cfg, tokenizer.vocab_size)
    check_pretrained_model(cfg, cfg.train.init_from)
    # without a val_file every 10th prompt is held out, each with all its comparisons
    train_groups, train_file, val_groups, val_file = read_splits(data, read_preferences, example=EXAMPLE, what="prompts")
    train, cut_train = encode_comparisons(train_groups, tokenizer, block, data.truncate, str(train_file))
    val, cut_val = encode_comparisons(val_groups, tokenizer, block, data.truncate, str(val_file))
    if cut_train or cut_val:
        print(f"dpo: cut the end of {cut_train} training and {cut_val} validation answers to block_size={block} "
              "(data.truncate)", file=sys.stderr)
    reference = None if p.loss in REFERENCE_FREE else load_reference(cfg, device)
    objective = DPO(p.loss, reference, beta=p.beta, label_smoothing=p.label_smoothing, gamma=p.gamma, alpha=p.alpha)
    splits = {"train": train, "val": val}

    def model_metrics(model, split: str) -> dict:
        return preference_figures(model, objective, splits[split], cfg.train.batch_size, block)

    return TaskSetup(train_data=train, val_data=val, objective=objective, tokenizer=tokenizer,
                     model_metrics=model_metrics, plots={REWARDS_PLOT: plot_rewards})


REWARDS_PLOT = "rewards.png"


def chosen_fell(records: list[dict]) -> bool:
    """Whether, from the first logged record to the last, the chosen answers' implicit reward fell
    below 0 (and below where it began) while the margin grew: DPO pushed both answers down, the
    rejected one faster (the complaint of eric-mitchell/DPO #32, #36)."""
    first, last = records[0], records[-1]
    return (last["train_chosen_reward"] < min(0.0, first["train_chosen_reward"])
            and last["train_margin"] > first["train_margin"])


def plot_rewards(run_dir: Path) -> Path | None:
    """``rewards.png`` of a dpo-family run (dpo, online_dpo), from its metrics.jsonl: left, the
    training pairs' implicit rewards (beta x log pi/pi_ref; SimPO's length-normalised one) of the
    chosen and the rejected answers and the margin between them against the step, so a chosen
    reward that falls while the margin grows is seen at once (and said in the title); right, the
    pairwise accuracy on the training pairs and at each evaluation. None when nothing was logged."""
    from axon.train.logging import read_metrics

    records = read_metrics(Path(run_dir) / "metrics.jsonl")
    rows = [r for r in records if "train_margin" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (ax, acc) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for key, label, colour in (("train_chosen_reward", "chosen", "tab:green"),
                               ("train_rejected_reward", "rejected", "tab:red"),
                               ("train_margin", "margin (chosen - rejected)", "black")):
        ax.plot(steps, [r[key] for r in rows], color=colour, label=label, linewidth=1.3)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    falling = chosen_fell(rows)
    ax.set_title("chosen reward fell while the margin grew" if falling else "implicit rewards (training pairs)",
                 fontsize=10, color="tab:red" if falling else "black")
    ax.set_xlabel("step")
    ax.set_ylabel("reward, nats x beta")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    acc.plot(steps, [r["train_accuracy"] for r in rows], label="training pairs", linewidth=1.2)
    val = [(r["step"], r["val_accuracy"]) for r in records if "val_accuracy" in r]
    if val:
        acc.plot(*zip(*val), "o-", label="validation", linewidth=1.5)
    acc.axhline(0.5, color="grey", linestyle=":", linewidth=0.8)
    acc.set_ylim(0, 1.02)
    acc.set_xlabel("step")
    acc.set_ylabel("share of pairs with margin > 0")
    acc.set_title("pairwise accuracy", fontsize=10)
    acc.grid(alpha=0.3)
    acc.legend(fontsize=8)
    fig.suptitle(Path(run_dir).name, fontsize=10)
    fig.tight_layout()
    out = Path(run_dir) / REWARDS_PLOT
    fig.savefig(out)
    plt.close(fig)
    return out


@torch.no_grad()
def preference_figures(model, objective, pairs, batch_size: int, block_size: int) -> dict:
    """The means over every pair of ``pairs`` of the objective's figures (axon.objectives.dpo.FIGURES)."""
    from axon.objectives.dpo import FIGURES

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums, count = dict.fromkeys(FIGURES, 0.0), 0
    for x, y in pairs.iter_eval_batches(batch_size, block_size):
        _, parts = objective(model, (x.to(device), y.to(device)))
        for k in FIGURES:
            sums[k] += float(parts[f"sum_{k}"])
        count += int(parts["count"])
    model.train(was_training)
    return {k: v / count for k, v in sums.items()}

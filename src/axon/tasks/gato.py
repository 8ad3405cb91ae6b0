"""The ``gato`` task: a Gato-style generalist decoder (Reed et al. 2022) over tokenised expert
episodes of several environments and text (``axon.agents.gato`` has the diagram and the pieces).

    gato.envs --scripted experts, seeded (gato.data_seed)--> episodes.npz in the run directory
        |                                                     (gato.episodes per task, gato.val_episodes held out)
        v
    windows of model.block_size + 1 tokens (a share gato.text_share of the rows: the bundled corpus)
        --> the decoder --> cross-entropy on action and text tokens only (CausalLM, targets -100 elsewhere)

Evaluation (``eval_fn``, at every evaluation): ``gato.eval_episodes`` episodes of each task from
fixed env seeds, the context prompted with the task's first held-out expert episode; actions
decoded greedily among the task's valid action tokens; logged as ``val_return_<task>`` (with
``val_act_acc_<task>``: the share of held-out expert actions the model reproduces, teacher-forced).
The first episode of each task is written as ``rollout_<task>.gif`` and ``rollout_<task>.png`` (a
frame strip). At the end: ``returns.png``, the returns against the training step beside the
expert's and a uniform random policy's (``baselines.json``).

A specialist is the same run with one task in ``gato.envs`` (and ``gato.text_share=0``): the
same decoder, vocabulary and step budget (docs/gato.md). Needs the ``agents`` extra (gymnasium,
pygame-ce for CartPole's frames); model.family must be decoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from axon.errors import ConfigError
from axon.tasks.base import TaskSetup, set_vocab_size

RETURNS_PLOT = "returns.png"
EPISODES_FILE = "episodes.npz"
BASELINES_FILE = "baselines.json"


def gato_task(cfg, device: torch.device) -> TaskSetup:
    import importlib.util

    if importlib.util.find_spec("gymnasium") is None:
        raise ConfigError("task: gato needs gymnasium (pip install axon-lab[agents])")
    from axon.agents.gato.data import GatoWindows, Stream, collect, save_episodes
    from axon.agents.gato.tokens import Vocab
    from axon.data.tokenizers import CharTokenizer
    from axon.feedback.source import charset, corpus_parts
    from axon.objectives import CausalLM

    g = cfg.gato
    tokenizer = CharTokenizer(sorted(charset()))
    vocab = Vocab(tokenizer.vocab_size, g.bins, g.mu, g.m)
    set_vocab_size(cfg, vocab.size)
    train_eps = collect(g.envs, g.episodes, g.data_seed, "train")
    val_eps = collect(g.envs, g.val_episodes, g.data_seed, "val")
    text_train, text_val = (np.asarray(tokenizer.encode(t), dtype=np.int64) for t in corpus_parts())
    train = GatoWindows({n: Stream.of(vocab, n, e) for n, e in train_eps.items()}, text_train, g.text_share)
    val = GatoWindows({n: Stream.of(vocab, n, e) for n, e in val_eps.items()}, text_val, g.text_share)
    train.check(cfg.model.block_size, "gato.episodes")
    val.check(cfg.model.block_size, "gato.val_episodes")
    baselines = {n: {"expert": float(np.mean([e.ret for e in eps])),
                     "random": float(np.mean([e.ret for e in collect([n], 20, g.data_seed, "val", "random")[n]]))}
                 for n, eps in train_eps.items()}

    def write_episodes(path):
        save_episodes(path, train_eps)

    def write_baselines(path):
        from axon.atomic import atomic_write_json

        atomic_write_json(path, baselines, indent=1)

    def eval_fn(model, step: int, run_dir) -> dict:
        return evaluate(model, vocab, g, val_eps, cfg.model.block_size, run_dir)

    def sample(model, step: int) -> str:
        from axon.generate import generate

        ids = tokenizer.encode("ROMEO:\n")
        gen = torch.Generator(device=device).manual_seed(cfg.train.seed + step)
        out = generate(model, [ids], cfg.train.sample_tokens, temperature=1.0, generator=gen,
                       vocab_limit=tokenizer.vocab_size)
        return tokenizer.decode(ids + out.tokens[0])

    return TaskSetup(train_data=train, val_data=val, objective=CausalLM(z_loss=cfg.train.z_loss),
                     tokenizer=tokenizer, sample_fn=sample if g.text_share > 0 else None,
                     extra_files={EPISODES_FILE: write_episodes, BASELINES_FILE: write_baselines},
                     eval_fn=eval_fn if g.eval_episodes > 0 else None, plots={RETURNS_PLOT: plot_returns})


def evaluate(model, vocab, g, val_eps: dict, block_size: int, run_dir=None) -> dict:
    """Return per task (prompted greedy rollouts) and the held-out expert actions reproduced."""
    from axon.agents.gato.policy import greedy_actions, rollout, write_gif, write_strip

    out = {}
    for name, eps in val_eps.items():
        frames_wanted = g.gif_frames if run_dir is not None else 0
        returns, frames, _ = rollout(model, vocab, name, eps[0], g.eval_episodes, block_size, frames_wanted)
        out[f"return_{name}"] = float(np.mean(returns))
        hits = [np.mean(greedy_actions(model, vocab, name, e, block_size, prompt=eps[0]) == e.actions) for e in eps[1:]]
        if hits:
            out[f"act_acc_{name}"] = float(np.mean(hits))
        if frames:
            write_gif(Path(run_dir) / f"rollout_{name}.gif", frames)
            write_strip(Path(run_dir) / f"rollout_{name}.png", frames)
    return out


def plot_returns(run_dir) -> Path | None:
    """``returns.png``: each task's mean return at each evaluation against the step, with the
    expert's (dashed) and a random policy's (dotted) returns. None when nothing was evaluated."""
    from axon.train.logging import read_metrics

    run_dir = Path(run_dir)
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if any(k.startswith("val_return_") for k in r)]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = json.loads((run_dir / BASELINES_FILE).read_text()) if (run_dir / BASELINES_FILE).is_file() else {}
    names = sorted({k[len("val_return_"):] for r in records for k in r if k.startswith("val_return_")})
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), dpi=110, squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = [(r["step"], r[f"val_return_{name}"]) for r in records if f"val_return_{name}" in r]
        ax.plot(*zip(*pts), "o-", label="model (greedy, prompted)")
        if name in base:
            ax.axhline(base[name]["expert"], color="tab:green", linestyle="--", label="scripted expert")
            ax.axhline(base[name]["random"], color="grey", linestyle=":", label="random")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("mean return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(run_dir.name, fontsize=10)
    fig.tight_layout()
    from axon.atomic import temp_path

    out = run_dir / RETURNS_PLOT
    tmp = temp_path(out, ".png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out

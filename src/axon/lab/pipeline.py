"""InstructGPT in one command: ``axon pipeline RECIPE --name=NAME`` runs the three steps of Ouyang
et al. (2022) in order, each stage an ordinary run directory (or file) under ``OUT_DIR/NAME``:

    base (a pretrained LM run)
      |  sft      axon finetune BASE --config <sft recipe>                  -> NAME/sft
      |  label    K samples per prompt of the SFT model, compared by simulated
      |           labellers under the gold judge (axon.lab.labels)          -> NAME/label/comparisons.jsonl
      |           (+ gold comparisons, flip 0, of other prompts: the RM's validation)     /val.jsonl
      |  reward   axon finetune NAME/sft --config <reward recipe>
      |           --data.train_file=NAME/label/comparisons.jsonl           -> NAME/reward
      |  ppo      axon finetune NAME/sft --config <ppo recipe> --ppo.reward=NAME/reward -> NAME/ppo
      v  summary  SFT and PPO answers to PPO's validation prompts: gold, reward; RM accuracy; KL
                                                                            -> NAME/summary.json, ppo.png

The stages are what a user would type by hand: each training stage is ``finetune_config`` +
``train`` (what ``axon finetune`` calls) on an ordinary recipe, with the links between stages
(``train.init_from``, the data files, ``ppo.reward``, where the run goes) added as overrides, so
the trainer and the tasks know nothing of a pipeline. Running the same command again continues:

    a stage with result.json             finished: skipped
    a run directory with config.yaml     interrupted: resumed (``axon train --resume``, exactly;
                                         one killed before its first checkpoint starts again)
    a run directory without config.yaml  killed while being made: removed and started
    the label files                      written aside and renamed, result.json last: a killed
                                         label stage leaves nothing and is redone

What the pipeline was made from (the recipe's contents, the base run, the overrides) is recorded
in ``NAME/pipeline.json``; running it again with another recipe or base is refused, so a finished
stage is never reused for another experiment. SIGTERM or Ctrl-C in a training stage checkpoints
it (the trainer's handler) and stops the pipeline with 128 + the signal.

The recipe (``configs/instructgpt/*.yaml``)::

    base: runs/base             # the pretrained run SFT starts from (--base overrides it)
    gold: sentiment             # the gold judge: label's labellers and PPO's reported gold (ppo.gold)
    sft:    {recipe: sentiment_sft.yaml, overrides: [...]}     # paths relative to the recipe's folder
    label:  {prompts, max_prompts, val_prompts, val_max_prompts, k, labellers: {id: flip}, rankings,
             max_new_tokens, temperature, seed, batch_size}
    reward: {recipe: sentiment_rm.yaml}
    ppo:    {recipe: sentiment_ppo.yaml}
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from axon.errors import ConfigError

STAGES = ("sft", "label", "reward", "ppo")
TASK_OF = {"sft": "sft", "reward": "reward", "ppo": "ppo"}
TRAIN_KEYS = ("recipe", "overrides")
LABEL_KEYS = ("prompts", "max_prompts", "val_prompts", "val_max_prompts", "k", "labellers", "rankings",
              "max_new_tokens", "temperature", "seed", "batch_size")
SUMMARY_SEED = 0  # the answers of the summary are sampled from generators seeded with this


def read_recipe(path: str | Path) -> dict:
    """The pipeline recipe at ``path``, checked (module docstring); stage recipe paths made
    absolute (relative to the recipe's folder). A bad key or value is one line naming it."""
    from axon.config import load_yaml
    from axon.feedback import GOLDS
    from axon.lab.labels import parse_labellers

    path = Path(path)
    data = load_yaml(path)
    where = f"{path}:"
    unknown = sorted(set(data) - {"base", "gold", *STAGES})
    if unknown:
        raise ConfigError(f"{where} unknown key {unknown[0]!r}; a pipeline recipe has base, gold, {', '.join(STAGES)}")
    missing = [s for s in STAGES if not isinstance(data.get(s), dict)]
    if missing:
        raise ConfigError(f"{where} {missing[0]} must be a mapping (the stage's settings)")
    if data.get("gold") not in GOLDS:
        raise ConfigError(f"{where} gold must be one of {', '.join(GOLDS)}, got {data.get('gold')!r}")
    out = {"base": data.get("base"), "gold": data["gold"]}
    for stage in ("sft", "reward", "ppo"):
        section = data[stage]
        bad = sorted(set(section) - set(TRAIN_KEYS))
        if bad:
            raise ConfigError(f"{where} {stage}.{bad[0]}: unknown key; a training stage has {', '.join(TRAIN_KEYS)}")
        recipe = section.get("recipe")
        if not isinstance(recipe, str):
            raise ConfigError(f"{where} {stage}.recipe: give the stage's YAML recipe (relative to {path.parent})")
        file = (path.parent / recipe).resolve()
        if not file.is_file():
            raise ConfigError(f"{where} {stage}.recipe: {file} not found")
        overrides = section.get("overrides") or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) and o.startswith("--") for o in overrides):
            raise ConfigError(f"{where} {stage}.overrides: a list of --section.key=value strings")
        out[stage] = {"recipe": str(file), "overrides": overrides}
    label = data["label"]
    bad = sorted(set(label) - set(LABEL_KEYS))
    if bad:
        raise ConfigError(f"{where} label.{bad[0]}: unknown key; label has {', '.join(LABEL_KEYS)}")
    if not isinstance(label.get("prompts"), str):
        raise ConfigError(f"{where} label.prompts: give the prompts file (a path or bundled:NAME)")
    try:
        parse_labellers(label.get("labellers"))
    except ConfigError as e:
        raise ConfigError(f"{where} label.{e}") from None
    out["label"] = dict(label)
    return out


def _record(root: Path, made_from: dict) -> None:
    """Write ``root/pipeline.json`` the first time; later, refuse another recipe, base or overrides."""
    from axon.atomic import atomic_write_json

    file = root / "pipeline.json"
    if file.is_file():
        was = json.loads(file.read_text(encoding="utf-8"))
        changed = [k for k in made_from if was.get(k) != made_from[k]]
        if changed:
            k = changed[0]
            shown = (lambda v: " ".join(v) or "none") if k == "overrides" else (lambda v: v)  # noqa: E731
            detail = "" if k == "recipe" else f": {shown(was.get(k))}, now {shown(made_from[k])}"
            raise ConfigError(f"{root} was made with another {k} ({file}{detail}); run it again with what made it, "
                              "or pick another --name")
        return
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(file, made_from, indent=1)


class Stopped(Exception):
    """A training stage was stopped by a signal (and checkpointed)."""

    def __init__(self, stage: str, result: dict):
        self.stage, self.result = stage, result


def train_stage(stage: str, root: Path, source: str | Path, recipe: dict, links: list[str], overrides: list[str],
                say) -> dict:
    """One training stage: skip, resume or start it (module docstring); its result."""
    from axon.tasks.finetune import finetune_config
    from axon.train.run import train

    run_dir = root / stage
    if (run_dir / "result.json").is_file():
        result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
        say(f"{stage}: finished before ({result['step']} steps), skipped: {run_dir}")
        return result
    if (run_dir / "config.yaml").is_file():
        say(f"{stage}: interrupted before; resuming {run_dir}")
        result = train(resume=run_dir)
    else:
        if run_dir.exists():  # killed while the directory was being made: nothing in it to keep
            shutil.rmtree(run_dir)
        say(f"{stage}: axon finetune {source} --config {recipe['recipe']} {' '.join([*recipe['overrides'], *links, *overrides])}")
        cfg = finetune_config(source, recipe["recipe"], [*recipe["overrides"], *links, *overrides,
                                                         f"--task={TASK_OF[stage]}", f"--out_dir={root}", f"--name={stage}"])
        result = train(cfg)
    if result.get("interrupted"):
        raise Stopped(stage, result)
    return result


def label_stage(root: Path, label: dict, gold: str, device: str, progress: bool, say) -> dict:
    """Comparisons of the SFT model's samples (and gold validation comparisons); skipped when done."""
    from axon.atomic import atomic_write_json
    from axon.lab.labels import label_line, label_samples

    out = root / "label"
    done = out / "result.json"
    if done.is_file():
        info = json.loads(done.read_text(encoding="utf-8"))
        say(f"label: finished before ({info['train']['comparisons']} comparisons), skipped: {out}")
        return info
    common = {k: label[k] for k in ("k", "rankings", "max_new_tokens", "temperature", "seed", "batch_size") if k in label}
    say(f"label: {label.get('k', 4)} samples per prompt of {root / 'sft'} on {label['prompts']}, compared by "
        f"simulated labellers under the {gold} judge -> {out / 'comparisons.jsonl'}")
    info = {"train": label_samples(root / "sft", label["prompts"], out / "comparisons.jsonl", gold=gold,
                                   labellers=label.get("labellers"), max_prompts=label.get("max_prompts"),
                                   device=device, progress=progress, **common)}
    say("  " + label_line(info["train"]))
    if label.get("val_prompts"):
        say(f"label: gold comparisons (flip 0) of {label['val_prompts']} for the reward model's validation -> {out / 'val.jsonl'}")
        info["val"] = label_samples(root / "sft", label["val_prompts"], out / "val.jsonl", gold=gold, labellers={"gold": 0.0},
                                    max_prompts=label.get("val_max_prompts"), device=device, progress=progress,
                                    **{**common, "rankings": False})
        say("  " + label_line(info["val"]))
    atomic_write_json(done, info, indent=1)  # last: the stage is done when this exists
    return info


def policy_figures(run_dir: Path, prompts: list[str], gold: str, reward, max_new_tokens: int, temperature: float,
                   device: str, batch_size: int = 64) -> tuple[dict, list[str]]:
    """Mean gold and reward, share ended and mean length of answers of the chat run ``run_dir`` to
    ``prompts``, sampled at ``temperature`` from generators seeded by (SUMMARY_SEED, batch); and
    the answers."""
    import numpy as np

    from axon.data.chat import prompt_ids
    from axon.feedback import gold_for
    from axon.tasks.ppo import generator, sample_answers
    from axon.train.run import load_run

    _, model, tokenizer = load_run(run_dir, device)
    judge = gold_for(gold)
    texts, ended = [], 0
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s : s + batch_size]
        got = sample_answers(model, tokenizer, [prompt_ids(tokenizer, p)[1] for p in chunk], max_new_tokens, temperature,
                             generator(model, SUMMARY_SEED, "summary", s))
        texts += got.texts
        ended += int(got.ended.sum())
    return {"gold": float(np.mean([judge(p, a) for p, a in zip(prompts, texts)])),
            "reward": float(reward.score(prompts, texts).mean()), "ended": ended / len(prompts),
            "length": float(np.mean([len(a) for a in texts])), "examples": list(zip(prompts[:3], texts[:3]))}, texts


def summarize(root: Path, gold: str, results: dict, seconds: dict, device: str) -> dict:
    """The figures of the whole pipeline (module docstring), written to ``root/summary.json``;
    ``seconds``: each stage's wall time (the summary's own is added)."""
    start = time.perf_counter()
    import torch

    from axon.atomic import atomic_write_json
    from axon.config import load_config
    from axon.feedback import gold_for, judge_win_rate
    from axon.tasks.ppo import RunReward, read_prompt_set
    from axon.train.run import load_run

    cfg = load_config(root / "ppo" / "config.yaml")
    prompts = read_prompt_set(cfg.ppo.val_prompts, "ppo.val_prompts", "val", load_run(root / "sft", "cpu")[2], cfg).texts
    _, rm, rm_tok = load_run(root / "reward", device)
    reward = RunReward(rm, rm_tok)
    p = cfg.ppo
    with torch.no_grad():
        sft, sft_answers = policy_figures(root / "sft", prompts, gold, reward, p.max_new_tokens, p.temperature, device)
        ppo, ppo_answers = policy_figures(root / "ppo", prompts, gold, reward, p.max_new_tokens, p.temperature, device)
    won = judge_win_rate(gold_for(gold), prompts, ppo_answers, sft_answers)  # per prompt, ties as half, Wilson 95%
    rm_result, ppo_result = results["reward"], results["ppo"]
    summary = {"prompts": len(prompts), "gold_judge": gold, "sft": sft, "ppo": ppo,
               "ppo_over_sft": {k: getattr(won, k) for k in ("rate", "low", "high", "wins", "ties", "losses")},
               "ppo_val_kl": ppo_result.get("val_kl"), "ppo_val_gold": ppo_result.get("val_gold"),
               "rm_val_accuracy": rm_result.get("val_accuracy"),
               "rm_eps": {k.removeprefix("val_eps/"): v for k, v in rm_result.items() if k.startswith("val_eps/")},
               "labellers": results["label"]["train"]["labellers"], "seconds": seconds}
    plot_ppo({"PPO": root / "ppo"}, root / "ppo.png", gold=gold)
    summary["seconds"]["summary"] = time.perf_counter() - start
    atomic_write_json(root / "summary.json", summary, indent=1)
    return summary


GOLD_TITLES = {"sentiment": "VADER", "instructions": "the instruction judge"}


def plot_ppo(runs: dict[str, str | Path], path: str | Path, window: int = 10, gold: str = "sentiment") -> Path:
    """PPO runs over training, one line each (label -> run directory): each rollout's mean reward,
    its mean gold score under the judge ``gold`` (raw, and a ``window``-rollout running mean) and
    its KL from the reference (nats per answer), from the runs' metrics.jsonl; written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from axon.train.logging import read_metrics

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, run in runs.items():
        rows = {int(r["rollout"]): r for r in read_metrics(Path(run) / "metrics.jsonl") if "rollout" in r}
        steps = [r["step"] for r in rows.values()]
        for ax, key in zip(axes, ("score", "gold", "kl")):
            y = np.array([r[key] for r in rows.values()], dtype=float)
            line = ax.plot(steps, y, alpha=0.35 if key == "gold" else 1.0, label=label)[0]
            if key == "gold" and len(y) >= window:
                ax.plot(steps[window - 1 :], np.convolve(y, np.ones(window) / window, "valid"), color=line.get_color())
    for ax, title in zip(axes, ("reward of each rollout (what PPO maximises)", f"gold score of each rollout ({GOLD_TITLES.get(gold, gold)})",
                                "KL(policy || SFT), nats per answer")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def summary_lines(s: dict) -> list[str]:
    eps = ", ".join(f"{k} {v['flip']:g} -> {s['rm_eps'][k]:.2f}" for k, v in s["labellers"].items() if k in s["rm_eps"])
    w = s["ppo_over_sft"]
    return [f"summary ({s['prompts']} validation prompts, sampled; gold judge: {s['gold_judge']}):",
            f"  gold    SFT {s['sft']['gold']:.3f} -> PPO {s['ppo']['gold']:.3f} | PPO's win rate over SFT "
            f"{w['rate']:.3f} [{w['low']:.3f}, {w['high']:.3f}] ({w['wins']} wins, {w['ties']} ties, {w['losses']} losses)",
            f"  reward  SFT {s['sft']['reward']:.3f} -> PPO {s['ppo']['reward']:.3f} (the reward model's score)",
            f"  KL(PPO || SFT) {s['ppo_val_kl']:.2f} nats per answer | reward model: held-out pairwise accuracy "
            f"{s['rm_val_accuracy']:.3f}" + (f" | flip rates, true -> estimated: {eps}" if eps else ""),
            "  wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items())]


def run_pipeline(recipe: str | Path, name: str, *, out_dir: str | Path = "runs", base: str | Path | None = None,
                 overrides: list[str] | None = None, device: str = "auto", progress: bool = True) -> dict:
    """Run (or continue) the pipeline of ``recipe`` in ``out_dir/name`` (module docstring).
    ``overrides`` (``--section.key=value``) apply to every training stage. Returns {"root",
    "results" (stage -> result), "summary", "exit_code" (0, or 128 + the signal that stopped a stage)}."""
    from axon.config import RunConfig

    RunConfig(name=name)  # the same rule as a run's name: one path component
    spec = read_recipe(recipe)
    overrides = list(overrides or [])
    for o in overrides:  # a run's place is the pipeline's: --out_dir=X here would be overridden, and the pipeline go to runs/
        key = o.split("=", 1)[0].removeprefix("--")
        if key in ("out_dir", "name", "task"):
            raise ConfigError(f"{o}: the pipeline sets {key} of each stage itself (OUT_DIR/NAME/STAGE); "
                              "give the pipeline's own --out-dir and --name")
    if not progress:
        overrides.append("--log.progress=false")
    root = Path(out_dir) / name
    recorded = root / "pipeline.json"
    base = base or (json.loads(recorded.read_text(encoding="utf-8"))["base"] if recorded.is_file() else spec["base"])
    if not base:
        raise ConfigError("--base: give the pretrained run SFT starts from (the recipe has no base)")
    _record(root, {"recipe": spec, "base": str(base), "overrides": overrides})

    def say(line: str) -> None:
        print(f"[pipeline {name}] {line}", flush=True)

    from axon.atomic import atomic_write_json

    times = root / "seconds.json"  # each stage's wall time, summed over the invocations that ran it
    seconds = json.loads(times.read_text(encoding="utf-8")) if times.is_file() else {}
    results = {}
    start = 0.0

    def clock(stage: str) -> None:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
        atomic_write_json(times, seconds, indent=1)

    try:
        for stage in STAGES:
            start = time.perf_counter()
            done = (root / stage / "result.json").is_file()
            if stage == "label":
                results[stage] = label_stage(root, spec["label"], spec["gold"], device, progress, say)
            else:
                source = base if stage == "sft" else root / "sft"
                links = {"sft": [],
                         "reward": [f"--data.train_file={root / 'label' / 'comparisons.jsonl'}"]
                         + ([f"--data.val_file={root / 'label' / 'val.jsonl'}"] if spec["label"].get("val_prompts") else []),
                         "ppo": [f"--ppo.reward={root / 'reward'}", f"--ppo.gold={spec['gold']}"]}[stage]
                results[stage] = train_stage(stage, root, source, spec[stage], links, overrides, say)
                from axon.eval import finetune_line

                say("  " + finetune_line(results[stage]))
            if not done:
                clock(stage)
    except Stopped as e:
        clock(e.stage)
        sig = int(e.result["signal"])
        print(f"axon pipeline: stage {e.stage} stopped by signal {sig} at step {e.result['step']}, which is saved; "
              f"run the same command again to continue", file=sys.stderr)
        return {"root": str(root), "results": results, "summary": None, "exit_code": 128 + sig}
    if (root / "summary.json").is_file():
        say(f"summary: made before, printed again: {root / 'summary.json'}")
        summary = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    else:
        say(f"summary: SFT and PPO answers to the PPO run's validation prompts -> {root / 'summary.json'}")
        summary = summarize(root, spec["gold"], results, seconds, device)
    for line in summary_lines(summary):
        print(line)
    return {"root": str(root), "results": results, "summary": summary, "exit_code": 0}

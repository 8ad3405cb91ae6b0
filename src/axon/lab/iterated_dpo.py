"""Iterated DPO (Xu et al. 2023, "Some things are more CRINGE than others: Iterative Preference
Optimization with the Pairwise Cringe Loss"; the rounds of Yuan et al. 2024's self-rewarding
models): rounds of the offline ``dpo`` task, each on comparisons sampled from the previous round's
policy and labelled by a reward. It sits between the ``dpo`` task (one fixed comparison file) and
``online_dpo`` (fresh pairs at every step):

    START (an sft run) = policy_0
      |  round k = 1 .. R, under OUT_DIR/NAME:
      |    sample   policy_{k-1} answers `pairs` training prompts twice (the k-th stretch of the
      |             prompt walk, so the rounds see new prompts while there are any) and every
      |             validation prompt twice, from generators seeded with (train.seed, k, row);
      |             online_dpo.reward labels each pair, the higher is chosen; ties, and pairs with
      |             an empty answer (a comparison file refuses one), are dropped
      |                                              -> round_k-data/{train,val}.jsonl, counts.json
      |    train    axon finetune policy_{k-1} --task=dpo --data.train_file=... --data.val_file=...
      |             (so the round's reference is policy_{k-1})            -> round_k (= policy_k)
      v    figures  policy_k's answers to the validation prompts (PPO's fixed seeds): score, gold,
                    KL to START (nats per answer), length, ended         -> summary.json (round 0: START)

One set of ``--section.key=value`` overrides says everything: ``online_dpo.*`` how to sample and
label (reward, prompts, val_prompts, gold, max_new_tokens, temperature), and they together with
``dpo.*``, ``optim.*``, ``train.*``, ... make each round's dpo run. Sampling and figures are the
``online_dpo`` task's (``axon.tasks.online_dpo``: ``OnlineDPO.sample_pairs``, ``split_figures``).

The dpo task renders each side with the end marker, so an answer cut at max_new_tokens is learnt
as if it had ended (``online_dpo`` trains on it as sampled).

Running the same command again continues: a round with ``result.json`` is skipped, one with
``config.yaml`` is resumed (exactly, as ``axon train --resume``), and a round's data files are
written aside and renamed, ``counts.json`` last, so a killed sampling is redone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from axon.errors import ConfigError

TRAIN_TAG, VAL_TAG = "iterated-train", "iterated-val"  # the generators' keys, beside the round and row
SET_HERE = ("out_dir", "name", "task", "data.train_file", "data.val_file")  # each round's, not an override's


def sample_comparisons(objective, model, k: int, prompt_set: int, prompts: list[int],
                       batch_size: int) -> tuple[list[dict], dict]:
    """Comparisons {"prompt", "chosen", "rejected"} of ``model``'s pairs of answers to ``prompts``
    (indices into ``prompt_set``), and counts of what was dropped (module docstring)."""
    from axon.tasks.online_dpo import TRAIN_SET

    tag = TRAIN_TAG if prompt_set == TRAIN_SET else VAL_TAG
    texts = objective.sets[prompt_set].texts
    rows, counts = [], {"pairs": len(prompts), "ties": 0, "empty": 0}
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s : s + batch_size]
        pairs = objective.sample_pairs(model, k, range(s, s + len(chunk)), chunk, prompt_set, tag)
        for i, tie, (chosen, rejected) in zip(chunk, pairs.tie.tolist(), pairs.texts):
            if tie:
                counts["ties"] += 1
            elif not chosen.strip() or not rejected.strip():
                counts["empty"] += 1
            else:
                rows.append({"prompt": texts[i], "chosen": chosen, "rejected": rejected})
    counts["comparisons"] = len(rows)
    return rows, counts


def round_data(objective, policy_run: Path, k: int, per_round: int, data: Path, cfg, device) -> dict:
    """Round ``k``'s comparison files under ``data`` (train.jsonl, val.jsonl, counts.json), sampled
    from ``policy_run``; read back when counts.json is there."""
    from axon.atomic import atomic_write_json, atomic_write_text
    from axon.data.prompts import walk_prompts
    from axon.tasks.online_dpo import TRAIN_SET, VAL_SET
    from axon.train.run import load_run

    done = data / "counts.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    _, model, _ = load_run(policy_run, str(device))
    n = len(objective.sets[TRAIN_SET].texts)
    train_prompts = walk_prompts(range((k - 1) * per_round, k * per_round), n, cfg.train.seed)
    counts = {}
    data.mkdir(parents=True, exist_ok=True)
    for split, prompt_set, prompts in (("train", TRAIN_SET, train_prompts),
                                       ("val", VAL_SET, list(range(len(objective.sets[VAL_SET].texts))))):
        rows, counts[split] = sample_comparisons(objective, model, k, prompt_set, prompts, cfg.train.batch_size)
        if not rows:
            c = counts[split]
            raise ConfigError(f"online_dpo.reward: iterated DPO round {k} has no {split} comparison: of {c['pairs']} "
                              f"pairs of {policy_run}'s answers {c['ties']} tied and {c['empty']} had an empty answer; "
                              "the reward cannot order them (another reward, or a higher online_dpo.temperature)")
        atomic_write_text(data / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_json(done, counts, indent=1)  # last: the round's data is done when this exists
    return counts


def iterated_dpo(start: str | Path, rounds: int, *, name: str, out_dir: str | Path = "runs", pairs: int | None = None,
                 overrides: list[str] | tuple[str, ...] = (), reward=None,
                 say: Callable[[str], None] = print) -> dict:
    """Run (or continue) ``rounds`` rounds of iterated DPO from the sft run ``start`` into
    ``out_dir/name`` (module docstring); ``pairs``: training prompts per round (default: all);
    ``reward``: a Reward or function (prompt, answer) -> float in place of ``online_dpo.reward``.
    Returns the summary ({"start", "rounds": [{"round", "run", score, gold, kl, ...}]}), with
    ``interrupted`` and ``signal`` when a round's training was stopped by a signal."""
    from axon.atomic import atomic_write_json
    from axon.tasks.finetune import finetune_config
    from axon.tasks.online_dpo import TRAIN_SET, VAL_SET, online_dpo_task
    from axon.train.distributed import resolve_device
    from axon.train.run import load_run, train

    if rounds < 1:
        raise ConfigError(f"--rounds: must be >= 1, got {rounds}")
    if pairs is not None and pairs < 1:
        raise ConfigError(f"--pairs: must be >= 1 (or left out: every training prompt), got {pairs}")
    from axon.config import parse_overrides

    given = parse_overrides(list(overrides))
    for key in SET_HERE:
        section, _, field = key.rpartition(".")
        scope = (given.get(section) or {}) if section else given
        if isinstance(scope, dict) and field in scope:
            raise ConfigError(f"--{key}: iterated-dpo sets it for each round (OUT_DIR/NAME/round_K and its data); give "
                              "its own --out-dir and --name")
    root = Path(out_dir) / name
    cfg = finetune_config(start, None, ["--task=online_dpo", *overrides])
    device = resolve_device(cfg.train.device)
    objective = online_dpo_task(cfg, device, reward=reward).objective  # prompts, reward, gold, START as reference
    per_round = pairs or len(objective.sets[TRAIN_SET].texts)
    batch = cfg.train.batch_size

    def figures(run: Path) -> dict:
        _, policy, _ = load_run(run, str(device))
        return objective.split_figures(policy, VAL_SET, batch)

    summary = {"start": str(start), "rounds": [{"round": 0, "run": str(start), **figures(Path(start))}]}
    previous = Path(start)
    for k in range(1, rounds + 1):
        run, data = root / f"round_{k}", root / f"round_{k}-data"
        counts = round_data(objective, previous, k, per_round, data, cfg, device)
        if (run / "result.json").is_file():
            say(f"round {k}: finished before, skipped: {run}")
        else:
            c = counts["train"]
            say(f"round {k}: {c['comparisons']} comparisons of {previous}'s answers ({c['ties']} ties, {c['empty']} "
                f"with an empty answer dropped) -> dpo from {previous}")
            if (run / "config.yaml").is_file():
                result = train(resume=run)
            else:
                result = train(finetune_config(previous, None, [
                    "--task=dpo", *overrides, f"--data.train_file={data / 'train.jsonl'}",
                    f"--data.val_file={data / 'val.jsonl'}", f"--out_dir={root}", f"--name=round_{k}"]))
            if result.get("interrupted"):
                return {**summary, "interrupted": True, "signal": result["signal"], "run_dir": str(run),
                        "step": result["step"]}
        result = json.loads((run / "result.json").read_text(encoding="utf-8"))
        summary["rounds"].append({"round": k, "run": str(run), **figures(run), "comparisons": counts["train"],
                                  "val_comparisons": counts["val"],
                                  **{key: result[key] for key in ("val_accuracy", "val_margin") if key in result}})
        previous = run
    atomic_write_json(root / "summary.json", summary, indent=1)
    return summary


def summary_lines(summary: dict) -> list[str]:
    """One line per round: the validation figures of its policy."""
    lines = []
    for r in summary["rounds"]:
        gold = f" gold {r['gold']:.3f}" if "gold" in r else ""
        accuracy = r.get("val_accuracy", float("nan"))
        made = (f" | {r['comparisons']['comparisons']} comparisons, dpo val accuracy {accuracy:.2f}" if r["round"]
                else " (the start)")
        lines.append(f"round {r['round']}: score {r['score']:.3f}{gold} KL {r['kl']:.2f} length {r['length']:.1f} "
                     f"ended {r['ended']:.2f}{made}")
    return lines

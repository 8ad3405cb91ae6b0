"""Comparisons of a model's own samples: InstructGPT's data step (Ouyang et al. 2022, sec. 3.4-3.5).

    prompts file --SFT (or PPO) run, K samples per prompt, seeded--> K answers per prompt
        --gold judge (axon.feedback: VADER sentiment, the instruction judges)--> K scores
        --simulated labellers (each flips the gold preference with its own rate)--> comparisons
        --> JSONL for the reward task, written aside and renamed (a kill leaves no half file)

In InstructGPT labellers rank K = 4 to 9 outputs of the SFT model (and later of PPO policies) per
prompt; here the answers are sampled from a run in the chat template with ``sample_answers`` (the
PPO task's sampler: same stop marker, same decoding), the judge is a program and the labellers
are ``axon.feedback.Labeller``s, so the file has a known truth: each labeller's true flip rate,
which the reward model's ``model.labeller_noise`` estimates. Every answer is a pure function of
the run's weights, ``seed`` and its place in the flat list of (prompt, sample) pairs (batches of
``batch_size`` rows, each sampled from a generator seeded by (seed, "label", first row)), and the
labels of ``(seed, prompt index, pair)`` (``axon.feedback.labellers``): the same arguments write
the same bytes.

Each comparison line is ``{"prompt", "chosen", "rejected", "labeller"}`` (``rankings=True``: one
``{"prompt", "responses", "ranking", "labeller"}`` per prompt). Pairs the gold judge ties are
skipped (no right answer; with VADER, two answers it finds neutral), and so are identical answers
and empty ones (the end marker written first: no text for the reward model to read).

``axon label RUN --prompts FILE --gold sentiment --k 4 --out FILE`` is this function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from axon.errors import ConfigError, DataError, OptionError, check_count, check_new_file, is_real


def parse_labellers(spec: str | Sequence | dict | None):
    """Labellers from ``"id:flip,id:flip"`` (the command line), a mapping id -> flip (a recipe),
    or Labeller objects; None: ``axon.feedback.DEFAULT_LABELLERS``. OptionError ``labellers`` on a
    malformed one, naming it."""
    from axon.feedback import DEFAULT_LABELLERS, Labeller

    if spec is None:
        return tuple(DEFAULT_LABELLERS)
    if isinstance(spec, str):
        pairs = []
        for part in spec.split(","):
            name, sep, flip = part.strip().rpartition(":")
            try:
                pairs.append((name, float(flip)))
            except ValueError:
                raise OptionError("labellers", "must be id:flip pairs separated by commas, e.g. a:0.1,b:0.85", spec) from None
            if not sep or not name:
                raise OptionError("labellers", "must be id:flip pairs separated by commas, e.g. a:0.1,b:0.85", spec)
    elif isinstance(spec, dict):
        pairs = list(spec.items())
    else:
        return tuple(spec)
    out = []
    for name, flip in pairs:
        if not is_real(flip) or not 0 <= flip <= 1:
            raise OptionError("labellers", "gives each labeller a flip rate in [0, 1]", f"{name}:{flip}")
        out.append(Labeller(str(name), float(flip)))
    if len({lab.id for lab in out}) != len(out):
        raise OptionError("labellers", "names each labeller once", spec)
    if not out:
        raise OptionError("labellers", "needs at least one labeller", spec)
    return tuple(out)


def check_label_options(k: int, max_new_tokens: int, temperature: float, batch_size: int, max_prompts: int | None,
                        gold: str, seed: int) -> None:
    """The options of :func:`label_samples`, each an OptionError naming it (before any run is loaded)."""
    from axon.feedback import GOLDS

    check_count("k", k, 2, meaning="(answers compared per prompt)")
    check_count("max_new_tokens", max_new_tokens, 1)
    check_count("batch_size", batch_size, 1)
    check_count("max_prompts", max_prompts, 1, optional=True, meaning="(unset: every prompt of the file)")
    check_count("seed", seed, 0)
    if not is_real(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise OptionError("temperature", "must be > 0 (K answers are sampled; at 0 they would all be the same)", temperature)
    if gold not in GOLDS:
        raise OptionError("gold", f"must be one of {', '.join(GOLDS)}", gold)


def label_samples(run_dir: str | Path, prompts: str | Path, out: str | Path, *, gold: str = "sentiment", k: int = 4,
                  labellers=None, rankings: bool = False, max_prompts: int | None = None, max_new_tokens: int = 48,
                  temperature: float = 1.0, seed: int = 0, batch_size: int = 64, device: str = "auto",
                  progress: bool = True) -> dict:
    """Sample ``k`` answers per prompt of ``prompts`` (a JSONL prompts file, or ``bundled:NAME``;
    the first ``max_prompts``) from the chat run ``run_dir``, have ``labellers`` compare them by
    the gold judge ``gold`` and write the comparisons (or rankings) to ``out`` (module docstring).

    Returns ``{"out", "prompts", "answers", "lines", "comparisons", "gold": mean gold of the
    answers, "ended": share that wrote the end marker, "labellers": {id: {"flip", "comparisons",
    "observed_flip"}}}`` (observed: the share of its comparisons against the gold judge)."""
    import numpy as np
    from tqdm import tqdm

    from axon.data.chat import prompt_ids
    from axon.data.files import resolve_file
    from axon.data.prompts import read_prompts
    from axon.feedback import gold_for, make_comparisons, make_rankings, ranking_pairs
    from axon.feedback.datasets import write_jsonl
    from axon.feedback.labellers import observed_flips
    from axon.tasks import CHAT_TASKS, task_name
    from axon.tasks.ppo import generator, sample_answers
    from axon.train.run import load_run

    check_label_options(k, max_new_tokens, temperature, batch_size, max_prompts, gold, seed)
    labellers = parse_labellers(labellers)
    check_new_file("out", out, make_parents=True)
    path = resolve_file(str(prompts), "prompts")
    rows = read_prompts(path)[:max_prompts]
    judge = gold_for(gold)
    cfg, model, tokenizer = load_run(run_dir, device)
    if task_name(cfg) not in CHAT_TASKS:
        raise ConfigError(f"{run_dir} is a {task_name(cfg)} run; label samples answers of a chat model (an "
                          f"{', '.join(CHAT_TASKS[:-1])} or {CHAT_TASKS[-1]} run)")
    if tokenizer is None:
        raise ConfigError(f"{run_dir} has no tokenizer.json to encode the prompts with")
    room = cfg.model.block_size - max_new_tokens
    texts, ids = [], []
    for text, line in rows:
        encoded = prompt_ids(tokenizer, text)[1]
        if len(encoded) > room:
            raise DataError(f"{path}:{line}: the prompt is {len(encoded)} tokens in the chat template, more than "
                            f"model.block_size={cfg.model.block_size} - max_new_tokens={max_new_tokens}")
        texts.append(text)
        ids.append(encoded)
    flat = [(i, j) for i in range(len(texts)) for j in range(k)]
    answers, ended = [[] for _ in texts], 0
    with tqdm(total=len(flat), disable=not progress, unit="answer", desc=f"sampling {k} x {len(texts)}",
              dynamic_ncols=True) as bar:
        for s in range(0, len(flat), batch_size):
            chunk = flat[s : s + batch_size]
            got = sample_answers(model, tokenizer, [ids[i] for i, _ in chunk], max_new_tokens, temperature,
                                 generator(model, seed, "label", s))
            for (i, _), a in zip(chunk, got.texts):
                answers[i].append(a)
            ended += int(got.ended.sum())
            bar.update(len(chunk))
    # An empty answer (the end marker first) is no text to compare, and a ranking lists distinct
    # responses: the reward task refuses both, so they are left out here (and counted).
    candidates = [list(dict.fromkeys(a for a in ans if a.strip())) for ans in answers]
    if rankings:
        keep = [i for i, c in enumerate(candidates) if len(c) >= 2]
        lines = make_rankings([texts[i] for i in keep], [candidates[i] for i in keep], judge, labellers, seed)
    else:
        lines = make_comparisons(texts, candidates, judge, labellers, seed)
    write_jsonl(out, lines, "rankings file" if rankings else "comparisons file")
    pairs = [p for r in lines for p in ranking_pairs(r)] if rankings else lines
    seen = observed_flips(pairs, judge)
    return {"out": str(out), "prompts": len(texts), "answers": len(flat), "lines": len(lines), "comparisons": len(pairs),
            "gold": float(np.mean([judge(q, a) for q, ans in zip(texts, answers) for a in ans])),
            "ended": ended / len(flat), "empty": sum(not a.strip() for ans in answers for a in ans),
            "labellers": {lab.id: {"flip": lab.flip, "comparisons": seen.get(lab.id, (0, 0))[1],
                                   "observed_flip": (seen[lab.id][0] / seen[lab.id][1]) if seen.get(lab.id, (0, 0))[1] else None}
                          for lab in labellers}}


def label_line(info: dict) -> str:
    """One line of what :func:`label_samples` wrote."""
    who = ", ".join(f"{lab} {v['comparisons']} (flip {v['flip']:g}" + (f", observed {v['observed_flip']:.2f})"
                                                                          if v["observed_flip"] is not None else ")")
                    for lab, v in info["labellers"].items())
    return (f"wrote {info['out']}: {info['lines']} lines, {info['comparisons']} comparisons of {info['answers']} answers "
            f"to {info['prompts']} prompts | mean gold {info['gold']:.3f} | ended {info['ended']:.0%} | {who}")

"""Chain of thought at toy scale: one decoder trained on arithmetic word problems twice, with rationales
("... 5 + 6 = 11. The answer is 11.") and without ("The answer is 11."), each evaluated with direct
and with chain-of-thought demonstrations: a 2x2 table of exact match with 95% intervals.

Wei et al. (2022) prompt with rationales; Nye et al. (2021, scratchpads) and Ling et al. (2017)
train on them. At this scale the model learns its habits from the training text, so both are
measured: rows are what the model was trained on, columns what its prompt demonstrates.

    bundled.word_problem_records(--count, --data-seed)   (none in the bundled test or few-shot split)
      --> rationales.txt   "Q: <question>\\nA: <rationale ... The answer is N.>"   joined by "\\n\\n"
          direct.txt       "Q: <question>\\nA: The answer is N."                     (the same problems)
          each problem written exactly as a shot of word_problems_cot / word_problems shows it (rendered by
          those task files), so training text and evaluation prompts share one format
      --> axon prepare, both with one char tokenizer: the characters of both texts and of every record of
          the two tasks (the in-context corpus's lacks "+ * / =", which the rationales need)
    axon train (the lm task) on each: the same model, seed, block, batch and steps
      --> OUT/runs/rationales-sSEED, OUT/runs/direct-sSEED     (axon.lab.runner: resumable, one thread each)
    each run on word_problems and word_problems_cot (Axon's harness, --shots, 2 by default as in the task
      files): exact match of the number after "The answer is" (the tasks' regex filter)
    --> OUT/cot_finetune.json: the 2x2 table, each cell's per-seed figures, the share of generations
        that gave an answer at all, a few generations; printed as a table

Why from scratch rather than from a model pretrained on the in-context corpus: that corpus's
tokenizer lacks "+ * / =", and pretraining would spend the study's budget on text whose arithmetic
format ("Q: What is 48 plus 76? A: 124") is not the rationales' ("48 + 76 = 124"); the question
here is what rationales in the training data change, and both arms start from the same weights.
Why the lm task rather than sft: sft wraps examples in its chat template ("User: ...\\nAssistant:
...$"), which is not the tasks' "Q: ...\\nA:" prompt, so a model would be evaluated in a format it
never saw. The lm loss also covers the questions, which both arms share.

The same steps and batches are the same number of tokens for both arms; the direct text is shorter
(about 135 characters a problem against 200), so the direct arm reads each problem about 1.5 times as
often. Intervals: 95%; a cell's standard error is its examples' binomial one, with several seeds
pooled as in fewshot_scaling.py. The headline, chain of thought against direct answering
(the rationale-trained model with CoT demonstrations minus the direct-trained one with direct
demonstrations), is paired over the same test problems.

    python benchmarks/cot_finetune.py --out cot                 # the study (~10 min on 2 cores)
    python benchmarks/cot_finetune.py --out /tmp/cot --smoke    # the whole pipeline in seconds

Run by hand, never in CI (tests/test_benchmark_scripts.py runs --smoke).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot_scaling import (VAL_FRACTION, evaluate_runs, interval, mean_se, parse_list,  # noqa: E402
                             parse_sizes, pool_seeds, task_text, train_args, train_runs)

ARMS = {"rationales": "word_problems_cot", "direct": "word_problems"}  # arm -> the task whose shots it imitates
TASKS = ("word_problems", "word_problems_cot")  # the columns: direct demonstrations, then chain of thought
STUDY = dict(size="3x96", steps=1200, seeds="0", count=30_000, limit=None, block_size=512, batch_size=8)
SMOKE = dict(size="1x16", steps=20, seeds="0", count=200, limit=6, block_size=512, batch_size=4)
KEEP = 3  # generations kept in the JSON per cell


def write_texts(out: Path, count: int, seed: int) -> dict[str, Path]:
    """OUT/data/nCOUNT-sSEED/{rationales,direct}/: each arm's text prepared with one char tokenizer;
    kept when already there."""
    from axon.atomic import atomic_write_text
    from axon.data.prepare import load_meta, prepare
    from axon.data.tokenizers import CharTokenizer
    from axon.eval.prompting import load_task
    from axon.eval.prompting.bundled import bundled_tasks, word_problem_records

    root = out / "data" / f"n{count}-s{seed}"
    dirs = {arm: root / arm for arm in ARMS}
    if all(load_meta(d) is not None for d in dirs.values()):
        return dirs
    root.mkdir(parents=True, exist_ok=True)
    specs = {name: load_task(bundled_tasks()[name]) for name in TASKS}
    records = [{**r, "split": "fewshot"} for r in word_problem_records(count, seed)]  # rendered as shots are

    def shot(spec, doc) -> str:
        return spec.text(doc, "train") + spec.target_delimiter + spec.target_text(doc, "train")

    texts = {arm: specs[task].fewshot_delimiter.join(shot(specs[task], r) for r in records)
             for arm, task in ARMS.items()}
    # and every record the evaluation shows: its prompts must encode
    tokenizer = CharTokenizer.from_text([*texts.values(), *(task_text(spec) for spec in specs.values())])
    tokenizer.save(root / "tokenizer.json")
    for arm, text in texts.items():
        atomic_write_text(root / f"{arm}.txt", text)
        shutil.rmtree(dirs[arm], ignore_errors=True)  # a partial one, from a run stopped while preparing
        prepare([root / f"{arm}.txt"], dirs[arm], tokenizer=str(root / "tokenizer.json"), val_fraction=VAL_FRACTION,
                progress=False)
    print(f"word problems: {count:,} (seed {seed}); " + ", ".join(
        f"{arm}.txt {len(t):,} characters ({len(t) / count:.0f} a problem)" for arm, t in texts.items())
        + f"; one char tokenizer of {tokenizer.vocab_size} characters", flush=True)
    return dirs


def cell(per_seed: list[dict], k: int) -> dict:
    """One cell of the table from each seed's evaluation of one task: exact match, stderr, interval,
    the share that answered at all, a few generations."""
    entries = [ev["shots"][str(k)] for ev in per_seed]
    value, se = pool_seeds([mean_se(e["values"]) for e in entries])
    return {"metric": per_seed[0]["metric"], "value": value, "stderr": se, "interval": interval(value, se),
            "n": len(entries[0]["values"]), "per_seed": [mean_se(e["values"])[0] for e in entries],
            "answered": sum(e.get("answered", 0.0) for e in entries) / len(entries),
            "truncated": max(e["truncated"] for e in entries), "samples": entries[0]["samples"]}


def headline(cot: list[dict], direct: list[dict], k: int) -> dict:
    """CoT-trained with CoT demonstrations minus direct-trained with direct ones, paired by problem."""
    points = []
    for a, b in zip(cot, direct):
        xs, ys = a["shots"][str(k)]["values"], b["shots"][str(k)]["values"]
        points.append(mean_se([x - y for x, y in zip(xs, ys)]))
    value, se = pool_seeds(points)
    return {"value": value, "stderr": se, "interval": interval(value, se)}


def table_lines(table: dict, head: dict, k: int) -> list[str]:
    def fmt(c: dict) -> str:
        lo, hi = c["interval"]
        return f"{c['value']:.3f} [{max(lo, 0):.3f}, {min(hi, 1):.3f}] ans {c['answered']:.0%}"

    width = 40
    lines = [f"exact match, {k}-shot, 95% intervals (ans: share of generations with 'The answer is N')",
             f"{'':<28}{'direct demos (word_problems)':<{width}}{'CoT demos (word_problems_cot)'}"]
    for arm, label in (("rationales", "trained with rationales"), ("direct", "trained without (direct)")):
        lines.append((f"{label:<28}" + "".join(f"{fmt(table[arm][t]):<{width}}" for t in TASKS)).rstrip())
    lo, hi = head["interval"]
    verdict = "CoT helps" if lo > 0 else "CoT hurts" if hi < 0 else "no difference (the interval holds 0)"
    lines.append(f"chain of thought vs direct (rationale-trained + CoT demos minus direct-trained + direct demos, "
                 f"paired): {head['value']:+.3f} [{lo:+.3f}, {hi:+.3f}] -> {verdict}")
    for arm in ARMS:
        for t in TASKS:
            if table[arm][t]["truncated"] > 0:
                lines.append(f"  note: {arm} x {t}: {table[arm][t]['truncated']:.0%} of prompts cut on the left to "
                             "the model's context (the earlier demonstrations unseen)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder of the data, runs, evaluations and results")
    ap.add_argument("--size", help=f"LAYERSxWIDTH or a decoder preset (default {STUDY['size']})")
    ap.add_argument("--steps", type=int, help=f"training steps of each arm (default {STUDY['steps']})")
    ap.add_argument("--seeds", help=f"training seeds, comma-separated (default {STUDY['seeds']})")
    ap.add_argument("--count", type=int, help=f"word problems to train on (default {STUDY['count']:,})")
    ap.add_argument("--data-seed", type=int, default=0, help="of the word problems (default %(default)s)")
    ap.add_argument("--shots", type=int, default=2, help="demonstrations in each prompt (default %(default)s, "
                                                         "the task files' num_fewshot)")
    ap.add_argument("--limit", type=int, help="the first N test problems (default: all 300)")
    ap.add_argument("--block-size", type=int, help=f"the model's context (default {STUDY['block_size']}; the CoT "
                                                   "task keeps 256 tokens of it for the answer)")
    ap.add_argument("--batch-size", type=int, help=f"sequences per step (default {STUDY['batch_size']})")
    ap.add_argument("--eval-seed", type=int, default=1234, help="of the shots' draw (default %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="runs trained or evaluated at once (default %(default)s)")
    ap.add_argument("--smoke", action="store_true", help="the whole pipeline at toy size: " + ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in SMOKE.items()))
    args = ap.parse_args(argv)
    for key, value in (SMOKE if args.smoke else STUDY).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        ((label, model_args),) = parse_sizes(args.size)
        seeds = parse_list(args.seeds, "--seeds")
    except ValueError as e:
        ap.error(str(e).replace("--sizes", "--size"))
    for flag, value, least in (("--steps", args.steps, 1), ("--count", args.count, 10), ("--workers", args.workers, 1),
                               ("--block-size", args.block_size, 300), ("--batch-size", args.batch_size, 1),
                               ("--limit", args.limit, 2), ("--shots", args.shots, 0),
                               ("--data-seed", args.data_seed, 0)):
        if value is not None and value < least:
            ap.error(f"{flag}: must be at least {least}, got {value}")
    from axon.errors import AxonError, OptionError
    from axon.eval.prompting.bundled import bundled_tasks
    from axon.lab.runner import Job

    out = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        data = write_texts(out, args.count, args.data_seed)
        jobs = [Job(f"{arm}-s{seed}", train_args(data[arm], model_args, seed, args.steps, args.block_size,
                                                 args.batch_size)) for seed in seeds for arm in ARMS]
        results = train_runs(jobs, out, args.workers, progress=sys.stderr.isatty())
        runs = {job.name: out / "runs" / job.name for job in jobs}
        tasks = [str(bundled_tasks()[t]) for t in TASKS]
        evals = evaluate_runs(runs, out, tasks, [args.shots], args.limit, args.eval_seed,
                              1 if args.smoke else args.workers, keep=KEEP)  # smoke: a pool's start costs more
    except OptionError as e:
        ap.error(e.message_for(f"--{e.field.replace('_', '-')}"))
    except (AxonError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    k = args.shots
    table = {arm: {t: cell([evals[f"{arm}-s{s}"][t] for s in seeds], k) for t in TASKS} for arm in ARMS}
    head = headline([evals[f"rationales-s{s}"]["word_problems_cot"] for s in seeds],
                    [evals[f"direct-s{s}"]["word_problems"] for s in seeds], k)
    settings = {key: getattr(args, key) for key in ("steps", "count", "data_seed", "shots", "limit", "block_size",
                                                    "batch_size", "eval_seed", "smoke")}
    settings.update(size=label, seeds=seeds, tokens_per_run=args.steps * args.batch_size * args.block_size)
    runs_info = {name: {key: results[name].get(key) for key in ("params", "val_loss", "elapsed", "tokens", "step")}
                 for name in runs}
    report = {"settings": settings, "runs": runs_info, "table": table, "cot_vs_direct": head}
    (out / "cot_finetune.json").write_text(json.dumps(report, indent=1) + "\n")
    print("runs: " + ", ".join(f"{n} ({r['params']:,} params, val loss {r['val_loss']:.3f}, {r['elapsed']:.0f} s)"
                               for n, r in runs_info.items()))
    for line in table_lines(table, head, k):
        print(line)
    print(f"wrote {out / 'cot_finetune.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The DPO paper's Figure 2 rebuilt offline: gold reward against KL(policy || SFT) on the sentiment
task, for PPO, DPO, GRPO/RLOO and best-of-n, each point a run, seeds pooled with intervals.

Rafailov et al. (2023) trained GPT-2 to write positive IMDb reviews against a sentiment classifier
(the gold reward) and plotted, for each algorithm and hyperparameter, the gold reward of its
samples against their KL from the SFT model; their claim: DPO's frontier dominates PPO's (more
reward at every KL). Here the same on the bundled sentiment setup (docs/rlhf.md, "Sentiment
control end to end"): VADER is the gold judge, the prompts are corpus prefixes, and

    ppo        PPO against the gold judge itself (the paper's PPO-GT), fixed beta at several values
    ppo-rm     PPO against the pipeline's reward model (when --rm is given), one beta
    dpo        DPO on comparisons of the SFT model's own samples labelled by the gold judge (the
               paper's setup: pairs from the SFT model, preferences from the classifier), several beta
    online_dpo the same loss and budget, each step's pairs sampled from the current policy and
               labelled by the gold judge (Guo et al. 2024), several beta
    grpo/rloo  GRPO and RLOO against the gold judge (when the grpo task exists), beta in the loss
    best-of-n  from the SFT model, picked by the gold judge (an oracle) and, with --rm, by the RM

Every run is an ordinary ``axon finetune`` of the SFT run (printed before it starts), one thread
each, ``--workers`` at a time; a finished run (result.json) is kept, an unfinished one is started
again. Then ``axon frontier`` places them all (``frontier.json``, ``frontier.png`` in --out).

    axon train --name=base --train.max_steps=400
    axon pipeline configs/instructgpt/sentiment.yaml --name=senti --base=runs/base
    python benchmarks/reward_kl_frontier.py --sft runs/senti/sft --rm runs/senti/reward --out frontier/senti

Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROMPTS_TRAIN = "bundled:sentiment/train.jsonl"
PROMPTS_HELD_OUT = "bundled:sentiment/heldout.jsonl"
PPO_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "instructgpt" / "sentiment_ppo.yaml"
COMMON = ["--log.progress=false", "--train.threads=1"]


def ppo_args(beta: float, reward: str) -> list[str]:
    return ["--config", str(PPO_RECIPE), f"--ppo.reward={reward}", "--ppo.kl_target=null", f"--ppo.kl_beta={beta}"]


def dpo_args(beta: float, pairs: Path, val: Path, steps: int) -> list[str]:
    return ["--task=dpo", f"--dpo.beta={beta}", f"--data.train_file={pairs}", f"--data.val_file={val}",
            "--data.truncate=true", "--optim.name=adamw", "--optim.lr=3e-4", "--schedule.name=constant",
            "--schedule.warmup_steps=10", "--train.batch_size=16", f"--train.max_steps={steps}",
            "--train.eval_interval=100", "--train.checkpoint_interval=100", "--train.sample_tokens=0"]


def online_dpo_args(beta: float, steps: int) -> list[str]:
    """Offline DPO's loss, optimiser and budget (steps of 16 pairs), the pairs sampled from the current policy
    each step and labelled by the gold judge: the online/offline contrast at equal pairs."""
    return ["--task=online_dpo", f"--dpo.beta={beta}", "--online_dpo.reward=gold:sentiment", "--online_dpo.gold=sentiment",
            f"--online_dpo.prompts={PROMPTS_TRAIN}", f"--online_dpo.val_prompts={PROMPTS_HELD_OUT}",
            "--online_dpo.max_new_tokens=48", "--optim.name=adamw", "--optim.lr=3e-4", "--schedule.name=constant",
            "--schedule.warmup_steps=10", "--train.batch_size=16", f"--train.max_steps={steps}",
            "--train.eval_interval=100", "--train.eval_batches=4", "--train.log_interval=10",
            "--train.checkpoint_interval=100", "--train.sample_tokens=0"]


def grpo_args(advantage: str, beta: float, steps: int) -> list[str]:
    """PPO's sampling and updates: rollouts of 128 answers (16 prompts x 8), 2 passes of minibatches of 64."""
    return ["--task=grpo", f"--grpo.advantage={advantage}", f"--grpo.beta={beta}", "--grpo.reward=gold:sentiment",
            "--grpo.gold=sentiment", f"--grpo.prompts={PROMPTS_TRAIN}", f"--grpo.val_prompts={PROMPTS_HELD_OUT}",
            "--grpo.group_size=8", "--grpo.rollout_prompts=16", "--grpo.epochs=2", "--grpo.max_new_tokens=48",
            "--optim.name=adamw",
            "--optim.lr=3e-4", "--schedule.name=constant", "--schedule.warmup_steps=0", "--train.batch_size=32",
            "--train.grad_accum=2", f"--train.max_steps={steps}", "--train.eval_interval=1000",
            "--train.checkpoint_interval=40", "--train.log_interval=4"]


def axon(*args: str, log: Path) -> None:
    cmd = [sys.executable, "-m", "axon", *args]
    print("$ axon " + " ".join(args), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise SystemExit(f"failed ({code}): axon {' '.join(args)}; see {log}")


def finetune(sft: Path, runs: Path, name: str, args: list[str], seed: int) -> str:
    run = runs / name
    if (run / "result.json").is_file():
        return str(run)
    if run.exists():
        shutil.rmtree(run)  # unfinished: start again
    start = time.perf_counter()
    axon("finetune", str(sft), *args, *COMMON, f"--train.seed={seed}", f"--out_dir={runs}", f"--name={name}",
         log=runs / f"{name}.log")
    print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return str(run)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", required=True, type=Path, help="the SFT run (the reference)")
    ap.add_argument("--rm", type=Path, help="the pipeline's reward model: adds PPO against it and best-of-n by it")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--ppo-betas", default="0.02,0.05,0.15")
    ap.add_argument("--dpo-betas", default="0.05,0.1,0.3,1.0")
    ap.add_argument("--online-dpo-betas", default="0.1,0.3,1.0", help="online DPO (pairs of the current policy, "
                    "labelled by VADER), --dpo-steps steps of 16 pairs")
    ap.add_argument("--grpo-betas", default="0.0,0.05", help="GRPO and RLOO (skipped when the grpo task is missing)")
    ap.add_argument("--ppo-steps", type=int, default=160, help="40 rollouts of 128 answers (the recipe's)")
    ap.add_argument("--dpo-steps", type=int, default=300)
    ap.add_argument("--best-of-n", default="1,2,4,8,16,32")
    ap.add_argument("--pairs-k", type=int, default=4, help="answers per prompt labelled by the gold judge for DPO")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", help="comma-separated methods to train (ppo,ppo-rm,dpo,online_dpo,grpo,rloo); default all")
    args = ap.parse_args()

    from axon.tasks import TASKS

    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    want = lambda m: only is None or m in only  # noqa: E731
    seeds = range(args.seeds)
    jobs: list[tuple[str, list[str], int]] = []  # (name, finetune args, seed)
    if want("dpo"):
        pairs, val = args.out / "gold_pairs.jsonl", args.out / "gold_val.jsonl"
        if not pairs.is_file():
            axon("label", str(args.sft), "--prompts", PROMPTS_TRAIN, "--gold", "sentiment", "--labellers", "gold:0",
                 "--k", str(args.pairs_k), "--out", str(pairs), "--no-progress", log=args.out / "label.log")
        if not val.is_file():
            axon("label", str(args.sft), "--prompts", "bundled:sentiment/val.jsonl", "--max-prompts", "100", "--gold",
                 "sentiment", "--labellers", "gold:0", "--k", str(args.pairs_k), "--out", str(val), "--no-progress",
                 "--seed", "1", log=args.out / "label_val.log")
        jobs += [(f"dpo-b{b}-s{s}", dpo_args(float(b), pairs, val, args.dpo_steps), s)
                 for b in args.dpo_betas.split(",") for s in seeds]
    if want("ppo"):
        jobs += [(f"ppo-b{b}-s{s}", [*ppo_args(float(b), "gold:sentiment"), f"--train.max_steps={args.ppo_steps}"], s)
                 for b in args.ppo_betas.split(",") for s in seeds]
    if args.rm and want("ppo-rm"):
        jobs += [(f"ppo-rm-b0.15-s{s}", [*ppo_args(0.15, str(args.rm)), f"--train.max_steps={args.ppo_steps}"], s)
                 for s in seeds]
    if want("online_dpo"):
        jobs += [(f"online_dpo-b{b}-s{s}", online_dpo_args(float(b), args.dpo_steps), s)
                 for b in args.online_dpo_betas.split(",") for s in seeds]
    if "grpo" in TASKS:
        for adv in ("grpo", "rloo"):
            if want(adv):
                jobs += [(f"{adv}-b{b}-s{s}", grpo_args(adv, float(b), args.ppo_steps), s)
                         for b in args.grpo_betas.split(",") for s in seeds]
    else:
        print("no grpo task in this Axon: GRPO and RLOO left out", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda j: finetune(args.sft, runs, *j), jobs))
    done = sorted(str(r.parent) for r in runs.glob("*/result.json"))  # this call's runs and earlier calls'

    cmd = ["frontier", *done, "--reference", str(args.sft), "--prompts", PROMPTS_HELD_OUT, "--gold", "sentiment",
           "--best-of-n", args.best_of_n, "--out", str(args.out), "--no-progress"]
    axon(*cmd, log=args.out / "frontier.log")
    print((args.out / "frontier.log").read_text())
    if args.rm:  # best-of-n picked by the reward model: the proxy's own frontier
        axon("frontier", "--reference", str(args.sft), "--prompts", PROMPTS_HELD_OUT, "--gold", "sentiment",
             "--reward", str(args.rm), "--best-of-n", args.best_of_n, "--out", str(args.out / "bon_rm"),
             "--no-progress", log=args.out / "bon_rm.log")
        print((args.out / "bon_rm.log").read_text())
    print(json.dumps({"runs": len(done), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

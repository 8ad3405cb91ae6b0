"""Reward models from labellers of unequal reliability: Bradley-Terry against the labeller model.

The planted preference of axon.data.labellers, with a known truth: every prompt has two responses
of random letters, one with the letter "z" planted in it -- the truth is that it is better.
Simulated labellers each report the truth reversed with their own probability eps_l,
independently per comparison (the noise model of axon.objectives.reward), and a share of
comparisons comes without a labeller id (trusted, eps = 0). The validation file holds clean
comparisons of other prompts. For each
scenario and seed the script trains the same tiny reward model twice -- plain Bradley-Terry, then
``model.labeller_noise=true`` -- and prints held-out pairwise accuracy, each labeller's estimated
eps against its true eps and its empirical flip rate in the training file, and the wall time.

    python benchmarks/reward_labellers.py                      # 3 scenarios x 3 seeds, ~4 min on 2 cores
    python benchmarks/reward_labellers.py --seeds 1 --steps 100 --prompts 400    # a quick look
    python benchmarks/reward_labellers.py --json               # + one JSON line at the end

Figures: docs/rlhf.md ("Reward model"). Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from axon.data.labellers import LABELLERS, MARK, TRUSTED, flip_rates, planted_comparisons

# scenario -> ({labeller: (eps, share of comparisons)}, share without a labeller id)
SCENARIOS = {
    "honest-majority": ({"A": (0.05, 0.3), "B": (0.2, 0.3), "C": (0.8, 0.3)}, 0.1),
    "adversarial-majority": (LABELLERS, TRUSTED),  # bundled:labellers, configs/reward_labellers.yaml
    "no-trusted": ({"A": (0.05, 0.35), "B": (0.2, 0.35), "C": (0.8, 0.3)}, 0.0),
}


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_once(root: Path, name: str, train: Path, val: Path, args, noise: bool) -> dict:
    from axon.config import load_config
    from axon.train.run import train as train_run

    flags = ["--model.family=reward", "--model.preset=tiny", f"--data.train_file={train}", f"--data.val_file={val}",
             "--optim.name=adamw", f"--optim.lr={args.lr}", "--schedule.warmup_steps=10", f"--train.max_steps={args.steps}",
             f"--train.batch_size={args.batch_size}", f"--train.eval_interval={args.steps}", "--train.log_interval=50",
             f"--train.checkpoint_interval={args.steps}", "--train.sample_tokens=0", "--log.progress=false",
             f"--train.threads={args.threads}", f"--out_dir={root}", f"--name={name}", f"--model.labeller_noise={str(noise).lower()}"]
    start = time.perf_counter()
    result = train_run(load_config(None, flags))
    result["wall"] = time.perf_counter() - start
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--prompts", type=int, default=1500, help="training prompts (one comparison each)")
    p.add_argument("--val-prompts", type=int, default=400)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    names = args.scenarios.split(",")
    for n in names:
        if n not in SCENARIOS:
            print(f"error: --scenarios: unknown scenario {n!r}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
    import torch

    print(f"torch {torch.__version__}, {args.threads} thread(s); {args.prompts} training prompts, {args.steps} steps "
          f"of {args.batch_size}, AdamW lr {args.lr}, tiny reward model")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        val = write(root / "val.jsonl", planted_comparisons(args.val_prompts, seed=10_000))
        for name in names:
            labellers, trusted = SCENARIOS[name]
            for seed in range(args.seeds):
                rows = planted_comparisons(args.prompts, labellers, trusted, seed=seed)
                train = write(root / f"{name}-{seed}.jsonl", rows)
                flips = {lab: f for lab, (_, f) in flip_rates(rows).items()}
                agree = sum(MARK in r["chosen"] for r in rows) / len(rows)
                plain = train_once(root, f"{name}-{seed}-bt", train, val, args, noise=False)
                noisy = train_once(root, f"{name}-{seed}-noise", train, val, args, noise=True)
                est = {lab: noisy[f"val_eps/{lab}"] for lab in labellers}
                rec = dict(scenario=name, seed=seed, label_agreement=agree, acc_bt=plain["val_accuracy"],
                           acc_noise=noisy["val_accuracy"], wall_bt=plain["wall"], wall_noise=noisy["wall"],
                           eps_true={lab: labellers[lab][0] for lab in labellers}, eps_empirical=flips, eps_estimated=est)
                records.append(rec)
                print(f"{name:21s} seed {seed}: labels agree with the truth {agree:.3f} | held-out accuracy BT "
                      f"{rec['acc_bt']:.3f}, labeller model {rec['acc_noise']:.3f} | "
                      + ", ".join(f"eps_{lab} {est[lab]:.3f} (true {labellers[lab][0]:.2f}, file {flips[lab]:.3f})" for lab in labellers)
                      + f" | {plain['wall']:.1f} s / {noisy['wall']:.1f} s", flush=True)
    print("\nscenario               | acc BT (mean) | acc labeller model | |eps - file| max | wall BT / labeller (s)")
    for name in names:
        rs = [r for r in records if r["scenario"] == name]
        gap = max(abs(r["eps_estimated"][lab] - r["eps_empirical"][lab]) for r in rs for lab in r["eps_true"])
        print(f"{name:22s} | {statistics.mean(r['acc_bt'] for r in rs):13.3f} | {statistics.mean(r['acc_noise'] for r in rs):18.3f} "
              f"| {gap:16.3f} | {statistics.mean(r['wall_bt'] for r in rs):.1f} / {statistics.mean(r['wall_noise'] for r in rs):.1f}")
    if args.json:
        print(json.dumps({"args": vars(args), "records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

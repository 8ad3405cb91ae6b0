"""MAPPO against independent PPO and the random policy: runs of the ``mappo`` task on one figure
(docs/multi-agent.md).

Each run's training rollouts' mean episode return (thin) and its validation episodes' return at
each evaluation (markers) against environment steps, coloured by the critic (central: MAPPO,
local: IPPO), one line style per seed; the random policy's return on the same validation
episodes as a dotted line. Prints a markdown table: per run, the final validation return, the
random policy's, the environment steps and the wall seconds.

    axon train --config configs/agents/marl_cover.yaml --train.seed=1 --name=cover-central-s1
    axon train --config configs/agents/marl_cover.yaml --train.seed=1 --model.critic=local --name=cover-local-s1
    python benchmarks/marl_compare.py runs/cover-* --out docs/marl_cover.png --title "cover, 3 agents, view 1"

Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    from axon.tasks.mappo import val_returns
    from axon.train.logging import read_metrics

    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=110)
    colours = {"central": "tab:blue", "local": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    seeds: dict[int, str] = {}
    random = None
    print("| run | critic | seed | env steps | val return | random | wall s |\n|---|---|---|---|---|---|---|")
    for run in sorted(args.runs):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        critic, seed = cfg["model"]["critic"], cfg["train"]["seed"]
        style = seeds.setdefault(seed, styles[len(seeds) % len(styles)])
        records = read_metrics(run / "metrics.jsonl")
        train = [(r["env_steps"], r["episode_return"]) for r in records if "episode_return" in r]
        val = val_returns(records)
        result = json.loads((run / "result.json").read_text())
        label = f"{'MAPPO' if critic == 'central' else 'IPPO'} seed {seed}"
        ax.plot(*zip(*train), color=colours[critic], linestyle=style, linewidth=0.7, alpha=0.45)
        if val:
            ax.plot(*zip(*val), color=colours[critic], linestyle=style, marker="o", markersize=3, linewidth=1.5,
                    label=label)
        random = result.get("val_random_return", random)
        print(f"| {run.name} | {critic} | {seed} | {int(train[-1][0]):,} | {result['val_return']:.3f} | "
              f"{result.get('val_random_return', float('nan')):.3f} | {result['elapsed']:.0f} |")
    if random is not None:
        ax.axhline(random, color="grey", linestyle=":", label="random policy")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return (team)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Generalist against specialists: a table of returns per task and one figure of return against
the training step, from finished gato runs.

    python -m axon.agents.gato.compare GENERALIST_RUN SPECIALIST_RUN... [--plot out.png]

Each run's last evaluation gives its return per task (``val_return_<task>`` in metrics.jsonl).
The scripted expert is run from the same env seeds as the evaluation (``EVAL_SEED + i``, the
run's ``gato.eval_episodes`` of them), and a uniform random policy from 20 of those seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def last_returns(run: Path) -> tuple[dict, list]:
    from axon.train.logging import read_metrics

    rows = [r for r in read_metrics(run / "metrics.jsonl") if any(k.startswith("val_return_") for k in r)]
    return ({k[len("val_return_"):]: v for k, v in rows[-1].items() if k.startswith("val_return_")} if rows else {}), rows


def eval_seed_baselines(run: Path, random_episodes: int = 20) -> dict:
    """{task: {"expert": mean return, "random": mean return}} from the evaluation's env seeds."""
    import numpy as np

    from axon.agents.gato.envs import SPECS, run_episode
    from axon.agents.gato.policy import EVAL_SEED
    from axon.config import load_config

    g = load_config(run / "config.yaml").gato
    return {n: {"expert": float(np.mean([run_episode(SPECS[n], EVAL_SEED + i).ret for i in range(g.eval_episodes)])),
                "random": float(np.mean([run_episode(SPECS[n], EVAL_SEED + i, "random").ret
                                         for i in range(random_episodes)]))} for n in g.envs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generalist")
    ap.add_argument("specialists", nargs="+")
    ap.add_argument("--plot", default=None)
    a = ap.parse_args(argv)
    gen = Path(a.generalist)
    base = eval_seed_baselines(gen)
    g_last, g_rows = last_returns(gen)
    spec = {}
    for s in map(Path, a.specialists):
        last, rows = last_returns(s)
        for name, v in last.items():
            spec[name] = (v, rows, s)
    print("| task | random | scripted expert | specialist | generalist |")
    print("|---|---|---|---|---|")
    for name in g_last:
        sv = f"{spec[name][0]:.2f}" if name in spec else "-"
        print(f"| {name} | {base[name]['random']:.2f} | {base[name]['expert']:.2f} | {sv} | {g_last[name]:.2f} |")
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(g_last)
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), dpi=110, squeeze=False)
        for ax, name in zip(axes[0], names):
            ax.plot([r["step"] for r in g_rows], [r[f"val_return_{name}"] for r in g_rows], "o-", label="generalist")
            if name in spec:
                rows = spec[name][1]
                ax.plot([r["step"] for r in rows], [r[f"val_return_{name}"] for r in rows], "s-", label="specialist")
            ax.axhline(base[name]["expert"], color="tab:green", linestyle="--", label="scripted expert")
            ax.axhline(base[name]["random"], color="grey", linestyle=":", label="random")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("training step")
            ax.set_ylabel("mean return (greedy, prompted)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.plot)
        plt.close(fig)
        print(f"plot: {a.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A figure an ``axon compare`` report lacks: one of its final metrics at every evaluation, against the
training FLOPs spent so far (one colour per variant, one line per seed); docs/fusion_compare.png.

    python benchmarks/metric_curves.py COMPARE_DIR --metric caption_class_acc --out curves.png

Reads the compare's plan.json (each variant's tokens per step and FLOPs per token) and its runs'
metrics.jsonl (``val_<metric>`` at each evaluation); x = step x tokens per step x FLOPs per token.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def curves(compare: Path, metric: str) -> dict[str, list[list[tuple[float, float]]]]:
    """{variant: [one run's [(training FLOPs, value), ...] per seed]} for ``val_<metric>``."""
    plan = json.loads((compare / "plan.json").read_text())
    out: dict[str, list] = {}
    for v in plan["variants"]:
        per_step = v["tokens_per_step"] * v["flops_per_token"]
        for run in sorted((compare / "runs").glob(f"{v['name']}-s*")):
            if not run.name[len(v["name"]) + 2:].isdigit():  # "early-s0" is not a run of "early-both"
                continue
            with open(run / "metrics.jsonl") as f:
                rows = [json.loads(line) for line in f]
            pts = [(r["step"] * per_step, r[f"val_{metric}"]) for r in rows if f"val_{metric}" in r]
            out.setdefault(v["name"], []).append(pts)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("compare", help="an axon compare --out directory")
    ap.add_argument("--metric", required=True, help="a final figure of the runs, without val_ (e.g. caption_class_acc)")
    ap.add_argument("--out", default="metric_curves.png")
    args = ap.parse_args(argv)
    compare = Path(args.compare)
    if not (compare / "plan.json").is_file():
        ap.error(f"{compare}: not an axon compare directory (no plan.json)")
    data = curves(compare, args.metric)
    if not any(pts for runs in data.values() for pts in runs):
        ap.error(f"--metric {args.metric}: no run of {compare} logged val_{args.metric}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, runs) in enumerate(data.items()):
        for j, pts in enumerate(runs):
            if pts:
                ax.plot(*zip(*pts), color=f"C{i}", marker=".", lw=1, alpha=0.85, label=name if j == 0 else None)
    ax.set(xlabel="training FLOPs", ylabel=args.metric, title=f"{args.metric} against training FLOPs (a line per seed)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Fréchet distance and the class accuracy against the step, for every run of a diffusion
``axon compare`` (one colour per variant, one line per seed) and optionally a longer run beside
them: docs/ddpm_digits_curves.png.

    python benchmarks/diffusion_curves.py COMPARE_DIR --long RUN_DIR --out curves.png

Reads only the runs' metrics.jsonl (the val_frechet_distance and val_accuracy of each evaluation).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def curve(run: Path) -> list[tuple[int, float, float | None]]:
    out = []
    with open(run / "metrics.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if "val_frechet_distance" in r:
                out.append((r["step"], r["val_frechet_distance"], r.get("val_accuracy")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("compare", help="an axon compare --out directory (its runs/ hold NAME-sSEED runs)")
    ap.add_argument("--long", help="a longer run to draw beside them (dashed)")
    ap.add_argument("--out", default="curves.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = defaultdict(list)
    for run in sorted(Path(args.compare, "runs").iterdir()):
        if (run / "metrics.jsonl").is_file():
            variants[run.name.rsplit("-s", 1)[0]].append(run)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for i, (name, runs) in enumerate(variants.items()):
        color = f"C{i}"
        for j, run in enumerate(runs):
            c = curve(run)
            label = name if j == 0 else None
            a.plot([x[0] for x in c], [x[1] for x in c], "o-", color=color, alpha=0.7, label=label)
            if c and c[0][2] is not None:
                b.plot([x[0] for x in c], [x[2] for x in c], "o-", color=color, alpha=0.7, label=label)
    if args.long:
        c = curve(Path(args.long))
        a.plot([x[0] for x in c], [x[1] for x in c], "k--", label=Path(args.long).name)
        b.plot([x[0] for x in c], [x[2] for x in c], "k--", label=Path(args.long).name)
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("Fréchet distance")
    a.set_title("distance to the held-out data, one line per seed")
    b.set_xlabel("step")
    b.set_ylabel("class accuracy of conditional samples")
    b.set_title("how often a 7 is a 7")
    for ax in (a, b):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Retrieval bounds answering: each reader run's exact match against the share of held-out questions whose gold
passage it read (docs/rag_em_vs_hit.png), and its EM when the passage was read against when it was not.

    python benchmarks/rag_em_vs_hit.py runs/closed runs/bm25_k1 runs/dpr_k1 runs/oracle_k1 --out em_vs_hit.png

Reads each rag run's result.json (val_em, val_hit, val_em_hit, val_em_miss; axon.tasks.rag) and config.yaml
(the retriever and k, for the labels). A closed-book run has no hit rate: it is drawn at hit 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def points(runs: list[Path]) -> list[dict]:
    """One row per run: label, hit, em, em_hit, em_miss."""
    import yaml

    out = []
    for run in runs:
        file = run / "result.json"
        if not file.is_file():
            raise SystemExit(f"{run}: no result.json (not a finished run)")
        r = json.loads(file.read_text())
        if "val_em" not in r:
            raise SystemExit(f"{run}: no val_em in result.json (not a rag run)")
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        rag, family = cfg.get("rag", {}), cfg["model"]["family"]
        spec = rag.get("retriever", "bm25")
        spec = "dpr" if "/" in spec else spec
        label = "closed-book" if spec == "none" else f"{spec} k={rag.get('read_passages', 1)}"
        if family == "seq2seq":
            label += " (FiD)"
        elif family == "embed_reader":
            label += " (vectors)"
        out.append({"run": run.name, "label": label, "hit": r.get("val_hit", 0.0), "em": r["val_em"],
                    "em_hit": r.get("val_em_hit"), "em_miss": r.get("val_em_miss")})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="rag run directories")
    ap.add_argument("--out", default="rag_em_vs_hit.png")
    args = ap.parse_args(argv)
    rows = points([Path(r) for r in args.runs])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="EM = hit (a perfect reader)")
    placed: list[tuple[float, float]] = []
    for r in rows:
        a.scatter(r["hit"], r["em"], s=40)
        near = sum(abs(r["hit"] - x) < 0.08 and abs(r["em"] - y) < 0.05 for x, y in placed)  # stack close labels
        a.annotate(r["label"], (r["hit"], r["em"]), textcoords="offset points", xytext=(-60 if r["hit"] > 0.85 else 5,
                   -12 + 11 * near * (1 if near % 2 else -1) if near else -12), fontsize=8)
        placed.append((r["hit"], r["em"]))
    a.set(xlim=(-0.03, 1.05), ylim=(-0.03, 1.05), xlabel="gold passage read (share of held-out questions)",
          ylabel="exact match", title="exact match against retrieval hits")
    a.legend(loc="upper left", fontsize=8)
    x = range(len(rows))
    w = 0.38
    b.bar([i - w / 2 for i in x], [r["em_hit"] or 0 for r in rows], w, label="gold passage read")
    b.bar([i + w / 2 for i in x], [r["em_miss"] or 0 for r in rows], w, label="not read")
    b.set_xticks(list(x), [r["label"] for r in rows], rotation=20, ha="right", fontsize=8)
    b.set(ylabel="exact match", ylim=(0, 1.05), title="EM by whether the gold passage was read")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    for r in rows:
        print(f"{r['label']:<22} hit {r['hit']:.3f}  EM {r['em']:.3f}  EM|hit {r['em_hit']}  EM|miss {r['em_miss']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

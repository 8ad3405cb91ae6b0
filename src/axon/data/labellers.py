"""Labellers of known reliability: a planted preference task for reward models (``bundled:labellers/``).

The truth is planted: each prompt (a few random letters and ":") has two responses of 6-12 random
letters from ``a``-``h``, and the one with the letter ``z`` inserted somewhere is the better. Each
comparison is labelled by one simulated labeller, who reports the truth reversed with their own
probability eps, independently per comparison -- the noise model of ``model.labeller_noise``
(``axon.objectives.reward``) -- or comes without a labeller id and unreversed (trusted):

    labeller   eps    share of the comparisons
    A          0.05   15%      careful
    B          0.20   15%      sloppy
    C          0.80   60%      adversarial: reverses four comparisons in five
    (none)     0      10%      trusted, e.g. the researchers' own labels

So the training labels agree with the truth less than half the time (46.9% of train.jsonl):
plain Bradley-Terry learns the preference backwards, and the labeller model, which finds C's eps
above 0.5 and counts C's labels reversed, learns it the right way round (docs/rlhf.md). The
validation comparisons are clean (no labeller, never reversed), so held-out accuracy measures
the truth. Deterministic: fixed seeds, Python's ``random``.

Files: ``train.jsonl`` (1,500 comparisons), ``val.jsonl`` (400), ``meta.json`` (the true eps,
each labeller's count and its empirical flip rate in train.jsonl). Write them with ``python -m
axon.data.labellers --out DIR``; configs name them ``bundled:labellers/train.jsonl`` and
``bundled:labellers/val.jsonl``, which are written into the cache on first use.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


VERSION = 1
LETTERS, MARK = "abcdefgh", "z"
LABELLERS = {"A": (0.05, 0.15), "B": (0.2, 0.15), "C": (0.8, 0.6)}  # id -> (eps, share of comparisons)
TRUSTED = 0.1  # share of comparisons without a labeller id
N_TRAIN, N_VAL = 1500, 400
TRAIN_SEED, VAL_SEED = 4, 5
FILES = ("train.jsonl", "val.jsonl", "meta.json")


def planted_comparisons(n: int, labellers: dict[str, tuple[float, float]] | None = None, trusted: float = 1.0,
                        seed: int = 0) -> list[dict]:
    """``n`` comparison lines ``{"prompt", "chosen", "rejected"[, "labeller"]}`` of the planted
    task (module docstring); ``labellers``: id -> (eps, share); ``trusted``: the share without an
    id (shares are relative weights)."""
    rng = random.Random(seed)
    labellers = labellers or {}
    ids = list(labellers)
    weights = [labellers[i][1] for i in ids] + [trusted]
    rows = []
    for _ in range(n):
        prompt = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 6))) + ":"
        good, bad = ("".join(rng.choice(LETTERS) for _ in range(rng.randint(6, 12))) for _ in range(2))
        at = rng.randint(0, len(good))
        good = good[:at] + MARK + good[at:]
        who = rng.choices(ids + [None], weights)[0]
        row = {"prompt": prompt}
        if who is not None:
            row["labeller"] = who
            if rng.random() < labellers[who][0]:
                good, bad = bad, good
        rows.append({**row, "chosen": good, "rejected": bad})
    return rows


def flip_rates(rows: list[dict]) -> dict[str, tuple[int, float]]:
    """Each labeller's (comparisons, share of them reversed) in ``rows`` of the planted task."""
    out = {}
    for lab in sorted({r["labeller"] for r in rows if "labeller" in r}):
        mine = [r for r in rows if r.get("labeller") == lab]
        out[lab] = (len(mine), sum(MARK not in r["chosen"] for r in mine) / len(mine))
    return out


def write_labeller_task(out_dir: str | Path) -> dict:
    """Write train.jsonl, val.jsonl and meta.json into ``out_dir``; returns meta."""
    train = planted_comparisons(N_TRAIN, LABELLERS, TRUSTED, TRAIN_SEED)
    val = planted_comparisons(N_VAL, seed=VAL_SEED)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("val.jsonl", val)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    agree = sum(MARK in r["chosen"] for r in train) / len(train)
    meta = {"version": VERSION, "train": len(train), "val": len(val), "trusted_share": TRUSTED,
            "train_labels_agree_with_truth": agree,
            "labellers": {lab: {"eps": LABELLERS[lab][0], "comparisons": n, "flip_rate_in_train": f}
                          for lab, (n, f) in flip_rates(train).items()}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def bundled_file(name: str, cache_dir: Path) -> Path:
    """The file ``labellers/<file>`` of a ``bundled:`` name, written into ``cache_dir`` on first use."""
    from axon.data.cache import made_on_first_use

    return made_on_first_use(name, FILES, VERSION, cache_dir, write_labeller_task)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.data.labellers",
                                description="Write the planted preference task with simulated labellers.")
    p.add_argument("--out", required=True, help="directory for train.jsonl, val.jsonl, meta.json")
    meta = write_labeller_task(p.parse_args(argv).out)
    print(f"wrote {meta['train']} train / {meta['val']} val comparisons; train labels agree with the truth "
          f"{meta['train_labels_agree_with_truth']:.1%}; " + ", ".join(
              f"{lab}: eps {v['eps']}, {v['comparisons']} comparisons, {v['flip_rate_in_train']:.3f} reversed"
              for lab, v in meta["labellers"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

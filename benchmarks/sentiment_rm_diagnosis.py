"""Why the sentiment experiment's reward model does (not) learn VADER: the comparisons, not the run.

    python benchmarks/sentiment_rm_diagnosis.py runs/senti/label/comparisons.jsonl runs/senti/label/val.jsonl \
        [--rm runs/senti/reward ...]

Prints, for a comparisons file written by ``axon label --gold sentiment`` and its gold validation
file (flip 0):

    pairs           how many, the share whose label agrees with VADER, the share with one side neutral
    gold gap        quantiles of |VADER(chosen) - VADER(rejected)| (are the pairs hard?)
    bag of words    a linear model on word counts (chosen minus rejected), fitted by logistic
                    regression on the file's labels as they are (flips included): its held-out
                    accuracy is what the comparisons teach a learner that reads words
    each --rm run   its held-out pairwise accuracy, overall and by |gold gap| bin (does it at least
                    order the easy pairs?), scored the way PPO reads it (RunReward)

On one thread, about a minute for 20,000 pairs; needs the vaderSentiment package.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np

from axon.feedback.sentiment import sentiment_score

GAP_BINS = ((0.0, 0.3), (0.3, 0.6), (0.6, 2.01))


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def gold_gaps(rows: list[dict]) -> np.ndarray:
    return np.array([sentiment_score(r["chosen"]) - sentiment_score(r["rejected"]) for r in rows])


def bag_of_words(train: list[dict], val: list[dict], l2: float = 1e-2, steps: int = 2000, lr: float = 0.5) -> tuple[float, float]:
    """Held-out and training accuracy of w . (counts(chosen) - counts(rejected)) > 0, w fitted by
    L2-regularised logistic regression (full-batch gradient descent) on the labels as given."""
    vocab = {w: i for i, w in enumerate(sorted({w for r in train for t in (r["chosen"], r["rejected"]) for w in words(t)}))}

    def features(rows):
        from scipy.sparse import coo_matrix

        r, c, v = [], [], []
        for n, row in enumerate(rows):
            for sign, text in ((1.0, row["chosen"]), (-1.0, row["rejected"])):
                for w in words(text):
                    if w in vocab:
                        r.append(n), c.append(vocab[w]), v.append(sign)
        return coo_matrix((v, (r, c)), shape=(len(rows), len(vocab)), dtype=np.float64).tocsr()  # duplicates summed

    from scipy.sparse import vstack

    xt, xv = features(train), features(val)
    x, y = vstack([xt, -xt]).tocsr(), np.concatenate([np.ones(xt.shape[0]), np.zeros(xt.shape[0])])  # both orders: symmetric
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= lr * (x.T @ (p - y) / len(y) + l2 * w)
    return float(np.mean(xv @ w > 0)), float(np.mean(xt @ w > 0))


def rm_accuracy(run: str, val: list[dict], gaps: np.ndarray) -> dict:
    import torch

    from axon.tasks.ppo import RunReward

    reward = RunReward.from_run(run, torch.device("cpu"))
    prompts = [r["prompt"] for r in val]
    right = (reward.score(prompts, [r["chosen"] for r in val]) > reward.score(prompts, [r["rejected"] for r in val])).numpy()
    out = {"accuracy": float(right.mean())}
    for lo, hi in GAP_BINS:
        m = (np.abs(gaps) >= lo) & (np.abs(gaps) < hi)
        out[f"|gap| {lo}-{min(hi, 2):g}"] = (float(right[m].mean()) if m.any() else None, int(m.sum()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("comparisons")
    p.add_argument("val")
    p.add_argument("--rm", action="append", default=[], help="a reward run to score the validation pairs with")
    args = p.parse_args()
    train, val = read(args.comparisons), read(args.val)
    g, gv = gold_gaps(train), gold_gaps(val)
    neutral = np.mean([sentiment_score(r["chosen"]) == 0 or sentiment_score(r["rejected"]) == 0 for r in train])
    print(f"{args.comparisons}: {len(train)} pairs (gold ties were never written), labels agree with VADER "
          f"{np.mean(g > 0):.3f}, one side neutral {neutral:.3f}")
    print("  |gold gap| quantiles 10/25/50/75/90%: " + " ".join(f"{q:.2f}" for q in np.quantile(np.abs(g), [.1, .25, .5, .75, .9])))
    print(f"{args.val}: {len(val)} gold pairs, median |gold gap| {np.median(np.abs(gv)):.2f}")
    held, fit = bag_of_words(train, val)
    print(f"bag of words on the labels as given: held-out accuracy {held:.3f} (agreement with its training labels {fit:.3f})")
    for run in args.rm:
        print(f"{run}: " + json.dumps(rm_accuracy(run, val, gv)))


if __name__ == "__main__":
    main()

"""Samplers and guidance of trained digits diffusion runs: quality against cost (issue 19's table).

For one or more runs of ``configs/ddpm_digits.yaml`` (class-conditional), with the EMA's weights and
the same starting noise for every row:

    samplers   DDPM with all T steps, DDIM with 50 / 20 / 10 steps (eta 0), at guidance 1
    guidance   DDIM-50 at classifier-free guidance scale 0 (unconditional), 1, 3, 5

each scored by ``axon.eval.generative.digits_quality`` on --samples samples (the classes in turn):
the Fréchet distance on Axon's digits classifier with its bootstrap interval, the classifier's
accuracy on the classes asked for, the entropy of its mean prediction (diversity, max ln 10 =
2.303), and the wall seconds per 64 samples (one process, --threads torch threads).

    axon train --config configs/ddpm_digits.yaml --name=ddpm-digits
    python benchmarks/diffusion_sampling.py runs/ddpm-digits --samples 256

Given several runs -- the seeds of one ``axon compare`` variant -- each row is the mean over the
runs with a 95% Student-t interval over them (the seeds' spread, which is what a comparison must
beat), the bootstrap interval then left out:

    python benchmarks/diffusion_sampling.py compare/runs/base-s0 compare/runs/base-s1 compare/runs/base-s2

Run by hand, never in CI; time it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _settings(cfg) -> list[tuple[str, int, float]]:
    T = cfg.diffusion.timesteps
    settings = [("ddpm", T, 1.0), ("ddim", 50, 1.0), ("ddim", 20, 1.0), ("ddim", 10, 1.0)]
    if cfg.model.num_classes is not None:
        settings += [("ddim", 50, 0.0), ("ddim", 50, 3.0), ("ddim", 50, 5.0)]
    return settings


def score_run(run: str, samples: int, seed: int, settings=None, echo: bool = True) -> list[dict]:
    """The rows of one run: each setting's quality figures and seconds per 64 samples."""
    from axon.eval.generative import digits_quality
    from axon.tasks.diffusion import draw_samples
    from axon.train.run import load_run

    cfg, model, _ = load_run(run, "cpu")
    if cfg.diffusion.data != "digits":
        raise SystemExit(f"{run}: a digits run is needed (diffusion.data={cfg.diffusion.data})")
    rows = []
    with model.averaged():
        for sampler, steps, guidance in settings or _settings(cfg):
            start = time.perf_counter()
            x, classes = draw_samples(model, cfg, samples, seed=seed, sampler=sampler,
                                      steps=steps if sampler == "ddim" else None, guidance=guidance)
            seconds = time.perf_counter() - start
            q = digits_quality(x, classes if guidance > 0 else None, cache_dir=cfg.data.cache_dir)
            row = dict(run=str(run), sampler=sampler, steps=steps, guidance=guidance,
                       seconds_per_64=seconds * 64 / samples,
                       **{k: q[k] for k in ("frechet_distance", "frechet_lo", "frechet_hi", "n_gen",
                                            "entropy_of_mean_prediction", "mean_entropy")},
                       accuracy=q.get("accuracy", float("nan")))
            rows.append(row)
            if echo:
                print(f"{sampler:8} {steps:>5} {guidance:>8g} {row['frechet_distance']:8.2f} "
                      f"[{row['frechet_lo']:5.2f}, {row['frechet_hi']:5.2f}] {row['accuracy']:8.3f} "
                      f"{row['entropy_of_mean_prediction']:7.3f} {row['seconds_per_64']:7.2f}", flush=True)
    return rows


def _mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% Student-t interval over the values)."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="diffusion runs on the digits (several: the seeds of one recipe)")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    header = (f"{'sampler':8} {'steps':>5} {'guidance':>8} {'Fréchet [95%]':>22} {'accuracy':>8} {'entropy':>7} "
              f"{'s / 64':>7}")
    rows = []
    for run in args.runs:
        print(f"{run}\n{header}", flush=True)
        rows += score_run(run, args.samples, args.seed)
    if len(args.runs) > 1:
        print(f"\nmean over {len(args.runs)} runs, +- the 95% t-interval over them")
        print(f"{'sampler':8} {'steps':>5} {'guidance':>8} {'Fréchet':>16} {'accuracy':>15} {'entropy':>7} {'s / 64':>7}")
        keys = list(dict.fromkeys((r["sampler"], r["steps"], r["guidance"]) for r in rows))
        for key in keys:
            same = [r for r in rows if (r["sampler"], r["steps"], r["guidance"]) == key]
            f, fh = _mean_ci([r["frechet_distance"] for r in same])
            a, ah = _mean_ci([r["accuracy"] for r in same])
            e, _ = _mean_ci([r["entropy_of_mean_prediction"] for r in same])
            s, _ = _mean_ci([r["seconds_per_64"] for r in same])
            print(f"{key[0]:8} {key[1]:>5} {key[2]:>8g} {f:8.2f} +- {fh:5.2f} {a:7.3f} +- {ah:5.3f} {e:7.3f} {s:7.2f}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

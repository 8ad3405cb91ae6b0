"""Samplers and guidance of a trained digits diffusion run: quality against cost (issue 19's table).

For one run of ``configs/ddpm_digits.yaml`` (class-conditional), with the EMA's weights and the same
starting noise for every row:

    samplers   DDPM with all T steps, DDIM with 50 / 20 / 10 steps (eta 0), at guidance 1
    guidance   DDIM-50 at classifier-free guidance scale 0 (unconditional), 1, 3, 5

each scored by ``axon.eval.generative.digits_quality`` on --samples samples (the classes in turn):
the Fréchet distance on Axon's digits classifier with its bootstrap interval, the classifier's
accuracy on the classes asked for, the entropy of its mean prediction (diversity, max ln 10 =
2.303), and the wall seconds per 64 samples (one process, --threads torch threads).

    axon train --config configs/ddpm_digits.yaml --name=ddpm-digits
    python benchmarks/diffusion_sampling.py runs/ddpm-digits --samples 256

Run by hand, never in CI; time it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a diffusion run on the digits")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from axon.eval.generative import digits_quality
    from axon.tasks.diffusion import draw_samples
    from axon.train.run import load_run

    cfg, model, _ = load_run(args.run, "cpu")
    if cfg.diffusion.data != "digits":
        raise SystemExit(f"{args.run}: a digits run is needed (diffusion.data={cfg.diffusion.data})")
    T = cfg.diffusion.timesteps
    rows = []
    settings = [("ddpm", T, 1.0), ("ddim", 50, 1.0), ("ddim", 20, 1.0), ("ddim", 10, 1.0)]
    if cfg.model.num_classes is not None:
        settings += [("ddim", 50, 0.0), ("ddim", 50, 3.0), ("ddim", 50, 5.0)]
    print(f"{'sampler':8} {'steps':>5} {'guidance':>8} {'Fréchet [95%]':>22} {'accuracy':>8} {'entropy':>7} "
          f"{'s / 64':>7}", flush=True)
    with model.averaged():
        for sampler, steps, guidance in settings:
            start = time.perf_counter()
            samples, classes = draw_samples(model, cfg, args.samples, seed=args.seed, sampler=sampler,
                                            steps=steps if sampler == "ddim" else None, guidance=guidance)
            seconds = time.perf_counter() - start
            q = digits_quality(samples, classes if guidance > 0 else None, cache_dir=cfg.data.cache_dir)
            row = dict(sampler=sampler, steps=steps, guidance=guidance, seconds_per_64=seconds * 64 / args.samples,
                       **{k: q[k] for k in ("frechet_distance", "frechet_lo", "frechet_hi", "n_gen",
                                            "entropy_of_mean_prediction", "mean_entropy")},
                       accuracy=q.get("accuracy", float("nan")))
            rows.append(row)
            print(f"{sampler:8} {steps:>5} {guidance:>8g} {row['frechet_distance']:8.2f} "
                  f"[{row['frechet_lo']:5.2f}, {row['frechet_hi']:5.2f}] {row['accuracy']:8.3f} "
                  f"{row['entropy_of_mean_prediction']:7.3f} {row['seconds_per_64']:7.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

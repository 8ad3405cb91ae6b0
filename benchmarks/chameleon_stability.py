"""Chameleon's stability claim at toy scale (Chameleon Team 2024, sec. 2.3 and fig. 5): mixed-modal
training at a high learning rate is unstable without QK-norm -- the output logits drift and the loss
diverges -- and stable with QK-norm (and z-loss).

    the image tokenizer: --vq RUN (a vq run), else OUT/runs/vq (configs/multimodal/vq_digits.yaml)
    each lr x {qk+z, qk, z, none} x seed: configs/multimodal/early_digits.yaml (early fusion, both
        directions) with --model.qk_norm on/off, --train.z_loss 1e-5 (Chameleon's) or 0, at that lr,
        without dropout (as measured: the study predates the recipe's dropout 0.1)
        --> OUT/runs/lrLR-COMBO-sSEED   (axon.lab.runner: subprocesses, --workers at a time; resumable)
    --> OUT/chameleon_stability.json   per run: the train loss and grad norm at every log step, the
                                       validation loss and mean output-logit L2 norm at every evaluation,
                                       skipped (non-finite) steps; per lr and combo: means and sd over seeds
        OUT/chameleon_stability.png    a row per lr: train loss against step, logit norm against step
                                       (a colour per combo, a line per seed)

Per run: "spikes" counts the logged training losses above 1.25 x the lowest logged before them (after
the first 10% of the steps); "diverged" means a non-finite loss (a skipped step) or a final validation
loss above 1.5 x the run's best; "max grad norm" is the largest logged gradient norm (before
clipping). Per lr the verdict compares the runs with QK-norm (qk+z, qk) against
those without (z, none): the final validation loss's means with 95% intervals (1.96 standard errors of
the mean over runs), and the diverged and spiking runs.

Grad clipping stays at the recipe's (optim.grad_clip, 1.0): it is what every Axon run does, and it
hides some of what an unclipped run would show.

    python benchmarks/chameleon_stability.py --out stability                 # the study (about 25 minutes, 2 cores)
    python benchmarks/chameleon_stability.py --out stability --lrs 0.1 --seeds 0,1,2,3,4
    python benchmarks/chameleon_stability.py --out /tmp/st --smoke           # the pipeline in seconds

Run by hand, never in CI (tests/test_benchmark_scripts.py runs --smoke).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs/multimodal/early_digits.yaml"
VQ_RECIPE = ROOT / "configs/multimodal/vq_digits.yaml"
COMBOS = {  # name -> (qk_norm, z_loss)
    "qk+z": (True, 1e-5),
    "qk": (True, 0.0),
    "z": (False, 1e-5),
    "none": (False, 0.0),
}
SPIKE_RATIO = 1.25
DIVERGE_RATIO = 1.5


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the study's directory (resumable)")
    p.add_argument("--vq", default=None, help="a vq run to use as the image tokenizer (default: train one into OUT)")
    p.add_argument("--lrs", default="0.03,0.1", help="peak learning rates, comma-separated (the recipe's is 3e-3)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-interval", type=int, default=50)
    p.add_argument("--workers", type=int, default=None, help="runs at once (default: cores)")
    p.add_argument("--smoke", action="store_true", help="a tiny model, a few steps: the pipeline only")
    args = p.parse_args(argv)
    try:
        args.lrs = [float(x) for x in args.lrs.split(",")]
        args.seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        p.error(f"--lrs / --seeds: comma-separated numbers, got {args.lrs!r} / {args.seeds!r}")
    if any(not (lr > 0 and math.isfinite(lr)) for lr in args.lrs):
        p.error(f"--lrs: every learning rate must be positive, got {args.lrs}")
    if args.steps < 1 or args.eval_interval < 1:
        p.error("--steps and --eval-interval must be >= 1")
    if args.smoke:
        args.steps, args.eval_interval, args.seeds, args.lrs = 4, 2, args.seeds[:1], args.lrs[:1]
    return args


def run_name(lr: float, combo: str, seed: int) -> str:
    return f"lr{lr:g}-{combo}-s{seed}"


def jobs(args, vq_dir: Path):
    from axon.lab.runner import Job

    small = ["--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2"] if args.smoke else []
    out = []
    for lr in args.lrs:
        for combo, (qk, z) in COMBOS.items():
            for seed in args.seeds:
                out.append(Job(run_name(lr, combo, seed), [
                    "--config", str(RECIPE), *small, f"--mixed_modal.image_tokenizer={vq_dir}",
                    f"--model.qk_norm={str(qk).lower()}", f"--train.z_loss={z}", f"--optim.lr={lr}", "--model.dropout=0.0",
                    f"--train.seed={seed}", f"--train.max_steps={args.steps}", f"--train.eval_interval={args.eval_interval}",
                    f"--train.checkpoint_interval={args.steps}", "--train.log_interval=10", "--train.on_nonfinite=skip",
                    "--mixed_modal.eval_examples=0", "--train.sample_tokens=0"]))
    return out


def run_summary(run_dir: Path, steps: int) -> dict:
    """The curves and the verdict figures of one run, from its metrics.jsonl and result.json."""
    from axon.train.logging import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    train = [(r["step"], r["train_loss"], r.get("grad_norm")) for r in rows if "train_loss" in r]
    evals = [(r["step"], r["val_loss"], r.get("val_logit_norm")) for r in rows if "val_loss" in r]
    result = json.loads((run_dir / "result.json").read_text())
    spikes, low = 0, math.inf
    for step, loss, _ in train:
        if step > 0.1 * steps and math.isfinite(loss) and loss > SPIKE_RATIO * low:
            spikes += 1
        if math.isfinite(loss):
            low = min(low, loss)
    vals = [v for _, v, _ in evals if math.isfinite(v)]
    final = evals[-1][1] if evals else math.nan
    norms = [n for _, _, n in evals if n is not None and math.isfinite(n)]
    diverged = bool(result.get("skipped_steps", 0)) or not math.isfinite(final) or (
        bool(vals) and final > DIVERGE_RATIO * min(vals))
    return {"train": train, "evals": evals, "final_val_loss": final, "best_val_loss": min(vals) if vals else math.nan,
            "spikes": spikes, "diverged": diverged, "skipped_steps": result.get("skipped_steps", 0),
            "logit_norm_final": norms[-1] if norms else math.nan, "logit_norm_max": max(norms) if norms else math.nan,
            "max_grad_norm": max((g for _, _, g in train if g is not None and math.isfinite(g)), default=math.nan)}


def mean_sd(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def interval(xs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): 1.96 standard errors of the mean each side."""
    m, sd = mean_sd(xs)
    half = 1.96 * sd / math.sqrt(len(xs)) if len(xs) > 1 else math.nan
    return m, m - half, m + half


def verdict(lr_runs: dict[str, list[dict]]) -> dict:
    with_qk = [r for c in ("qk+z", "qk") for r in lr_runs[c]]
    without = [r for c in ("z", "none") for r in lr_runs[c]]
    a = interval([r["final_val_loss"] for r in with_qk])
    b = interval([r["final_val_loss"] for r in without])
    if not all(math.isfinite(x) for x in (*a, *b)):
        word = "undecided (too few runs)"
    elif b[1] > a[2]:
        word = "QK-norm helps (its interval wholly below)"
    elif b[2] < a[1]:
        word = "QK-norm hurts (its interval wholly above)"
    else:
        word = "no difference (the intervals overlap)"
    return {"with_qk_norm": {"final_val_loss": a, "diverged": sum(r["diverged"] for r in with_qk),
                             "spiking": sum(r["spikes"] > 0 for r in with_qk), "runs": len(with_qk)},
            "without_qk_norm": {"final_val_loss": b, "diverged": sum(r["diverged"] for r in without),
                                "spiking": sum(r["spikes"] > 0 for r in without), "runs": len(without)},
            "verdict": word}


def plot(summary: dict, lrs: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"qk+z": "tab:blue", "qk": "tab:cyan", "z": "tab:red", "none": "tab:orange"}
    fig, axes = plt.subplots(len(lrs), 2, figsize=(11, 3.6 * len(lrs)), squeeze=False)
    for row, lr in enumerate(lrs):
        for combo, runs in summary[f"{lr:g}"]["combos"].items():
            for i, r in enumerate(runs["runs"]):
                label = combo if i == 0 else None
                steps, losses, _ = zip(*r["train"]) if r["train"] else ((), (), ())
                axes[row][0].plot(steps, losses, color=colours[combo], lw=0.9, alpha=0.8, label=label)
                ev = [(s, n) for s, _, n in r["evals"] if n is not None]
                if ev:
                    axes[row][1].plot(*zip(*ev), color=colours[combo], lw=0.9, alpha=0.8, marker=".", label=label)
        axes[row][0].set(title=f"lr {lr:g}: training loss", xlabel="step", ylabel="loss (nats)")
        axes[row][1].set(title=f"lr {lr:g}: mean output-logit norm (validation)", xlabel="step", ylabel="||logits||_2")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Chameleon sec. 2.3 at toy scale: early fusion on the digits, QK-norm and z-loss on/off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from axon.lab.runner import Job, run_jobs

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vq_dir = Path(args.vq).resolve() if args.vq else out / "runs" / "vq"
    if args.vq is None:
        vq_args = ["--config", str(VQ_RECIPE)] + (["--model.preset=tiny", "--train.max_steps=20"] if args.smoke else [])
        run_jobs([Job("vq", vq_args)], out, workers=1)
    todo = jobs(args, vq_dir)
    run_jobs(todo, out, workers=args.workers)
    summary: dict = {"command": " ".join(["python benchmarks/chameleon_stability.py", *(argv or sys.argv[1:])]),
                     "steps": args.steps, "seeds": args.seeds}
    for lr in args.lrs:
        combos = {}
        for combo in COMBOS:
            runs = [run_summary(out / "runs" / run_name(lr, combo, s), args.steps) for s in args.seeds]
            m, sd = mean_sd([r["final_val_loss"] for r in runs])
            ln, ln_sd = mean_sd([r["logit_norm_final"] for r in runs])
            gn, gn_sd = mean_sd([r["max_grad_norm"] for r in runs])
            combos[combo] = {"final_val_loss": [m, sd], "logit_norm_final": [ln, ln_sd], "max_grad_norm": [gn, gn_sd],
                             "diverged": sum(r["diverged"] for r in runs), "spiking": sum(r["spikes"] > 0 for r in runs),
                             "runs": runs}
        summary[f"{lr:g}"] = {"combos": combos, **verdict({c: v["runs"] for c, v in combos.items()})}
    (out / "chameleon_stability.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    png = plot(summary, args.lrs, out / "chameleon_stability.png")
    print(f"{'lr':>6} {'combo':>6} {'final val loss':>18} {'logit norm (end)':>18} {'max grad norm':>16} {'diverged':>9} "
          f"{'spiking':>8}")
    for lr in args.lrs:
        s = summary[f"{lr:g}"]
        for combo, c in s["combos"].items():
            print(f"{lr:>6g} {combo:>6} {c['final_val_loss'][0]:>10.3f} +- {c['final_val_loss'][1]:<5.3f}"
                  f" {c['logit_norm_final'][0]:>10.1f} +- {c['logit_norm_final'][1]:<5.1f}"
                  f" {c['max_grad_norm'][0]:>8.1f} +- {c['max_grad_norm'][1]:<5.1f}"
                  f" {c['diverged']:>5}/{len(c['runs'])} {c['spiking']:>5}/{len(c['runs'])}")
        a, b = s["with_qk_norm"]["final_val_loss"], s["without_qk_norm"]["final_val_loss"]
        print(f"lr {lr:g}: with QK-norm {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}], without {b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}]: "
              f"{s['verdict']}")
    print(f"wrote {out / 'chameleon_stability.json'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

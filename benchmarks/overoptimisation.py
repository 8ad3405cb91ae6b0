"""Reward-model over-optimisation (Gao, Schulman & Hilton 2022), rebuilt offline on the sentiment task.

Gao et al. trained proxy reward models of several sizes on comparisons labelled by a fixed "gold"
reward model, optimised a policy against each proxy by best-of-n and by RL, and plotted the gold
and the proxy reward against d = sqrt(KL(policy || initial policy)): the proxy rises without end
while the gold rises, peaks and falls. They fit best-of-n R(d) = d (alpha - beta d) and RL
R(d) = d (alpha - beta log d) to the gold gain and found alpha growing and beta shrinking smoothly
with the proxy's size (their Figure 3): a bigger proxy is over-optimised later. Here:

    gold       VADER (``--gold sentiment``), as in the reward-KL frontier study
    policy     the sentiment pipeline's SFT run (``--sft``); best-of-n samples it, RL starts from it
    proxies    one base LM per size (``axon train``, 400 steps; --sizes LAYERSxWIDTH) with a reward
               head, trained on 24k comparisons of the SFT model's samples (8 per prompt, 2,000
               prompts) labelled by VADER (``axon label --labellers gold:0``):
               configs/instructgpt/sentiment_rm.yaml without the labeller-noise model
    RL         GRPO with no KL term (beta 0, TRL's default) against each proxy, 480 steps, a
               checkpoint every 40 steps: each kept checkpoint is a point (``axon frontier
               --checkpoints``), seeds pooled per step
    best-of-n  of the SFT model, picked by each proxy, n = 1 .. 64

Every step is an ordinary ``axon`` command, printed before it runs, one thread each, ``--workers``
at a time; a finished run (result.json) or file is kept, so the script resumes. Then ``axon
frontier --reward PROXY --fit --checkpoints`` per proxy (OUT/frontier-SIZE/) and the summary:
OUT/overoptimisation.json (alpha, beta and their intervals per proxy and form) and
OUT/overoptimisation.png (per proxy: gold and proxy gains against sqrt(KL) with the fits; then
alpha and beta against the proxy's parameters).

    axon train --name=base --train.max_steps=400
    axon pipeline configs/instructgpt/sentiment.yaml --name=senti --base=runs/base
    python benchmarks/overoptimisation.py --sft runs/senti/sft --out overopt

Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_kl_frontier import PROMPTS_HELD_OUT, PROMPTS_TRAIN, axon, finetune, grpo_args  # noqa: E402

RM_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "instructgpt" / "sentiment_rm.yaml"


def base_lm(runs: Path, size: str, steps: int) -> Path:
    """A pretrained LM of ``size`` (LAYERSxWIDTH, 4 heads) on the bundled corpus."""
    layers, width = size.split("x")
    run = runs / f"base-{size}"
    if not (run / "result.json").is_file():
        axon("train", f"--name=base-{size}", f"--out_dir={runs}", f"--model.n_layer={layers}", f"--model.n_embd={width}",
             "--model.n_head=4", f"--train.max_steps={steps}", "--train.threads=1", "--log.progress=false",
             log=runs / f"base-{size}.log")
    return run


def gold_labels(sft: Path, out: Path) -> tuple[Path, Path]:
    """Comparisons of the SFT model's own samples (8 per prompt) labelled by VADER: train and val."""
    train, val = out / "gold8.jsonl", out / "gold8_val.jsonl"
    if not train.is_file():
        axon("label", str(sft), "--prompts", PROMPTS_TRAIN, "--k", "8", "--gold", "sentiment", "--labellers", "gold:0",
             "--out", str(train), "--no-progress", log=out / "label.log")
    if not val.is_file():
        axon("label", str(sft), "--prompts", "bundled:sentiment/val.jsonl", "--max-prompts", "100", "--seed", "1",
             "--k", "8", "--gold", "sentiment", "--labellers", "gold:0", "--out", str(val), "--no-progress",
             log=out / "label_val.log")
    return train, val


def rm_args(train: Path, val: Path) -> list[str]:
    return ["--config", str(RM_RECIPE), "--model.labeller_noise=false", f"--data.train_file={train}",
            f"--data.val_file={val}"]


def rl_args(rm: str, steps: int, every: int) -> list[str]:
    args = [a for a in grpo_args("grpo", 0.0, steps) if not a.startswith(("--grpo.reward=", "--train.checkpoint_"))]
    return [*args, f"--grpo.reward={rm}", f"--train.checkpoint_interval={every}",
            f"--train.keep_checkpoints={steps // every + 1}"]


def params(run: Path) -> int:
    return int(json.loads((run / "result.json").read_text())["params"])


def summarise(sizes: list[str], out: Path, rms: dict[str, Path]) -> dict:
    rows = {}
    for size in sizes:
        fr = json.loads((out / f"frontier-{size}" / "frontier.json").read_text())
        acc = json.loads((rms[size] / "result.json").read_text()).get("val_accuracy")
        rows[size] = {"params": params(rms[size]), "val_accuracy": acc, "reference": fr["reference"],
                      "pooled": fr["pooled"], "fits": fr["fits"]}
    plot(rows, out / "overoptimisation.png")
    summary = {size: {"params": r["params"], "val_accuracy": r["val_accuracy"],
                      **{m: {k: f[k] for k in ("alpha", "alpha_ci", "beta", "beta_ci", "rmse", "points")}
                         for m, f in r["fits"].items()}} for size, r in rows.items()}
    (out / "overoptimisation.json").write_text(json.dumps(summary, indent=1))
    return summary


def _curve(pooled: list[dict], method: str) -> tuple[list[float], list[float], list[float]]:
    pts = sorted((r["kl"], r["gold"], r.get("reward", float("nan"))) for r in pooled if r["method"] == method)
    return [max(k, 0.0) ** 0.5 for k, _, _ in pts], [g for _, g, _ in pts], [p for _, _, p in pts]


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(rows)
    fig, axes = plt.subplots(2, max(n, 2), figsize=(3.6 * max(n, 2), 6.4), squeeze=False)
    colours = {"bon": "tab:blue", "rl": "tab:red"}
    for ax, (size, r) in zip(axes[0], rows.items()):
        g0, p0 = r["reference"]["gold"], r["reference"].get("reward")
        twin = ax.twinx()
        for method, fit in [(m, r["fits"].get(m)) for m in sorted({x["method"] for x in r["pooled"]})]:
            form = "bon" if method.startswith("best-of-n") else "rl"
            d, gold, proxy = _curve(r["pooled"], method)
            ax.plot(d, np.array(gold) - g0, "o-", color=colours[form], label=f"{'BoN' if form == 'bon' else 'GRPO'} gold")
            if p0 is not None:
                twin.plot(d, np.array(proxy) - p0, "x--", color=colours[form], alpha=0.5,
                          label=f"{'BoN' if form == 'bon' else 'GRPO'} proxy")
            if fit:
                dd = np.linspace(1e-3, max(d), 100)
                f = dd if form == "bon" else np.log(dd)
                ax.plot(dd, dd * (fit["alpha"] - fit["beta"] * f), ":", color=colours[form])
        ax.axhline(0, color="grey", lw=0.5)
        acc = r["val_accuracy"]
        ax.set_title(f"proxy {size} ({r['params'] / 1e3:.0f}k, acc {acc:.2f})", fontsize=9)
        ax.set_xlabel("sqrt(KL), sqrt(nats)")
        ax.set_ylabel("gold gain (VADER)")
        twin.set_ylabel("proxy gain (dashed)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="upper left")
    for ax in axes[0][n:]:
        ax.axis("off")
    sizes = list(rows)
    x = list(range(len(sizes)))  # one tick per proxy, labelled with its shape and parameters
    for ax, coef in zip(axes[1][:2], ("alpha", "beta")):
        for form, colour in colours.items():
            method = next((m for m in rows[sizes[0]]["fits"] if (m.startswith("best-of-n")) == (form == "bon")), None)
            if method is None:
                continue
            ys = [rows[s]["fits"].get(method, {}).get(coef, np.nan) for s in sizes]
            cis = [rows[s]["fits"].get(method, {}).get(f"{coef}_ci", (np.nan, np.nan)) for s in sizes]
            err = np.array([[y - lo, hi - y] for y, (lo, hi) in zip(ys, cis)]).T
            ax.errorbar(x, ys, yerr=np.abs(err), fmt="o-", color=colour, capsize=3, label="BoN" if form == "bon" else "GRPO")
        ax.set_xticks(x, [f"{s}\n{rows[s]['params'] / 1e3:.0f}k" for s in sizes], fontsize=8)
        ax.set_xlabel("proxy reward model (layers x width, parameters)")
        ax.set_title(f"{coef} (95% bootstrap)", fontsize=9)
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    for ax in axes[1][2:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", required=True, type=Path, help="the SFT run: the policy's start and best-of-n's sampler")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sizes", default="1x32,2x64,3x96,4x128", help="proxy sizes, LAYERSxWIDTH (default %(default)s)")
    ap.add_argument("--base-steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=1, help="GRPO seeds per proxy (default 1)")
    ap.add_argument("--steps", type=int, default=480, help="GRPO steps (default 480: 120 rollouts of 128 answers)")
    ap.add_argument("--every", type=int, default=40, help="a checkpoint, so a point, every this many steps")
    ap.add_argument("--best-of-n", default="1,2,4,8,16,32,64")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    sizes = args.sizes.split(",")
    out = args.out
    for d in ("runs", "rm", "rl"):
        (out / d).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.workers) as pool:
        bases = dict(zip(sizes, pool.map(lambda s: base_lm(out / "runs", s, args.base_steps), sizes)))
    train, val = gold_labels(args.sft, out)
    with ThreadPoolExecutor(args.workers) as pool:
        rms = dict(zip(sizes, map(Path, pool.map(
            lambda s: finetune(bases[s], out / "rm", f"rm-{s}", rm_args(train, val), 0), sizes))))
    jobs = [(size, seed) for size in sizes for seed in range(args.seeds)]
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda j: finetune(args.sft, out / "rl", f"grpo-{j[0]}-s{j[1]}",
                                         rl_args(str(rms[j[0]]), args.steps, args.every), j[1]), jobs))

    def place(size: str) -> None:
        dest = out / f"frontier-{size}"
        if (dest / "frontier.json").is_file():
            return
        runs = [str(out / "rl" / f"grpo-{size}-s{s}") for s in range(args.seeds)]
        axon("frontier", *runs, "--checkpoints", "--reference", str(args.sft), "--prompts", PROMPTS_HELD_OUT,
             "--gold", "sentiment", "--reward", str(rms[size]), "--best-of-n", args.best_of_n, "--fit",
             "--out", str(dest), "--no-progress", log=out / f"frontier-{size}.log")

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(place, sizes))
    summary = summarise(sizes, out, rms)
    for size, s in summary.items():
        fits = "; ".join(f"{m}: alpha {f['alpha']:.3f} [{f['alpha_ci'][0]:.3f}, {f['alpha_ci'][1]:.3f}], "
                         f"beta {f['beta']:.3f} [{f['beta_ci'][0]:.3f}, {f['beta_ci'][1]:.3f}]"
                         for m, f in s.items() if isinstance(f, dict))
        print(f"{size} ({s['params']} params, val accuracy {s['val_accuracy']:.3f}): {fits}")
    print(f"wrote {out / 'overoptimisation.json'}, {out / 'overoptimisation.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

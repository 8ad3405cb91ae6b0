"""DDPM training speed and sample quality: Axon's ``diffusion`` task against lucidrains'
denoising-diffusion-pytorch (its ``Unet`` + ``GaussianDiffusion``) on the 8x8 digits, one CPU.

    digits (train split, [-1, 1]) --> one batch per step (x0, t, noise), the same for both
        |                                                   |
    Axon: Trainer._train_step                         peer: GaussianDiffusion(x0, times=t, noise=noise)
      (diffusion objective, unet ``digits``,            (its loss, Unet(dim 32, mults (2, 2, 2))), backward,
       backward, clip 1.0, AdamW) + the EMA's           clip 1.0, the same AdamW, ema_pytorch.EMA.update()
       update (model.ema_decay 0.999)                   (its Trainer's: beta 0.995, every 10 steps)
        |                                                   |
    DDIM, 50 steps, eta 0, x0 clipped                  .sample(): its DDIM, 50 steps, eta 0, x0 clipped
    (the EMA's weights), N samples                     (its EMA's weights), N samples
        |                                                   |
        +--------- digits_quality: Fréchet distance on Axon's digits classifier (bootstrap 95%
                   interval, N against the 359 held-out digits), entropy of the mean prediction

Both models are unconditional, predict the noise, train with the simple loss on the same linear
schedule (1e-4 -> 0.02, T = 1000), the same batches (Axon's ``NoisedExamples``: examples, timesteps
and noise drawn from (seed, step); the peer gets the same x0, t and noise, and the drawing is in
both clocks), the same optimiser (Axon's ``build_optimizers`` over each model: AdamW, lr 2e-4,
betas (0.9, 0.999), no weight decay, constant lr), gradient clipping at 1.0, dropout 0.1, fp32.

Sizes. Axon: the ``digits`` preset (channels 32 / 64 / 64 at 8x8 / 4x4 / 2x2, two residual blocks a
level, one-head attention at 4x4 and in the middle; 1,623,169 parameters). The peer's ``Unet(dim=32,
dim_mults=(2, 2, 2), attn_heads=1, attn_dim_head=32, dropout=0.1)`` has the same channels at the
same resolutions and the same blocks per level; its options cannot drop attention from a level, so
it has linear attention at 8x8 and 4x4 and full attention at 2x2 and in the middle (1,639,873
parameters, 1.0% more). The script prints both counts and both forward FLOPs per image
(``torch.utils.flop_counter``).

The peer's ``Trainer`` is not used: it reads a folder of image files through ``accelerate`` and
a DataLoader, computes FID with Inception weights it downloads, and samples and saves every 1,000
steps. The script runs what its loop does per step (``loss = diffusion(data)``, backward,
``clip_grad_norm_(1.0)``, optimiser step and zero_grad, ``ema.update()``) in a plain loop, with
its EMA's settings; accelerate on one CPU adds nothing to that step.

Timing: ``--warmup`` untimed steps each, then blocks of ``--block`` steps, Axon and the peer
alternating (A B B A) at each thread count of ``--threads`` in turn (``torch.set_num_threads``;
one untimed step after each switch). Steps/s per side and thread count is the median over its
blocks. Every step of the run trains the models, so both end with exactly ``--steps`` steps. Then
N = ``--samples`` samples from each at the largest thread count, their wall time beside them.

Bar (issue 19): Axon >= 1.2x the peer's steps/s at equal or better quality (its Fréchet distance
no worse than the peer's, within the bootstrap intervals). A benchmark: the verdict is printed,
never asserted.

    python benchmarks/ddpm_peer.py                     # the bar: 1,500 steps, batch 64, 256 samples, threads 1, 2
    python benchmarks/ddpm_peer.py --quick --json      # smoke check (tests/test_benchmark_scripts.py): ~10 s
    python benchmarks/ddpm_peer.py --threads 1         # steadier on a busy shared machine
    python benchmarks/ddpm_peer.py --profile           # + torch.profiler's table of one step of each

Installing the peer (not a project dependency: it pulls torchvision, pytorch-fid, ema-pytorch and
accelerate; benchmarks are run by hand). Pin torchvision to the release built for the installed
torch first, or pip replaces torch::

    pip install torchvision==0.28.0          # for torch 2.13.0
    pip install denoising-diffusion-pytorch   # 2.3.4 measured
    python -c "import torch; print(torch.__version__)"   # still 2.13.0+cpu

PyPI's torchvision wheel is built against CUDA torch; beside a CPU torch its compiled ops do not
load and ``import torchvision`` then stops at registering a fake kernel for ``torchvision::nms``.
:func:`import_peer` declares that op's schema (and ``qnms``'s) so the import goes through; the ops
are never called (the peer uses torchvision only for its image folder and image files).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

BAR = 1.2  # Axon steps/s over the peer's, at equal or better quality
PEER_EMA = dict(beta=0.995, update_every=10)  # denoising_diffusion_pytorch.Trainer's defaults
PEER_UNET = dict(dim=32, dim_mults=(2, 2, 2), attn_heads=1, attn_dim_head=32)
_KEEP = []  # the torchvision op library of import_peer, alive for the process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trl_dpo import cpu_model, load_average, native_bf16  # noqa: E402  (the machine lines of every peer benchmark)


def import_peer():
    """denoising_diffusion_pytorch, importable beside a CPU torch (module docstring); SystemExit
    with one line when it is not installed."""
    try:
        importlib.import_module("torchvision")
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(lib)
    except ImportError:
        pass  # the peer's own import below says what is missing
    try:
        import denoising_diffusion_pytorch
        import ema_pytorch
    except ImportError as e:
        raise SystemExit(f"error: the comparison needs denoising-diffusion-pytorch (see this script's docstring "
                         f"for how to install it): {e}") from None
    return denoising_diffusion_pytorch, ema_pytorch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500, help="training steps of each model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=10, help="untimed steps at the start, each side")
    p.add_argument("--block", type=int, default=50, help="timed steps per block (blocks alternate A B B A)")
    p.add_argument("--threads", default="1,2", help="torch thread counts to time, comma-separated")
    p.add_argument("--samples", type=int, default=256, help="samples drawn from each model for the quality figures")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of both samplers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="the digits classifier's cache (default: a run's, ~/.cache/axon)")
    p.add_argument("--quick", action="store_true", help="smoke check: 12 steps, blocks of 2, 1 thread, "
                   "64 samples by 5 DDIM steps (~10 s)")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's table of one step of each")
    p.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.block, args.threads = 12, 1, 2, "1"
        args.samples, args.sample_steps = 64, 5
    try:
        args.threads = [int(n) for n in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads: comma-separated integers, e.g. 1,2; got {args.threads!r}")
    for name in ("steps", "batch_size", "block", "samples", "sample_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.threads) < 1:
        p.error(f"--threads must be >= 1 each, got {args.threads}")
    if args.samples < 2:
        p.error(f"--samples must be >= 2 (a covariance), got {args.samples}")
    if not 0 <= args.warmup < args.steps:
        p.error(f"--warmup must be in [0, --steps), got {args.warmup}")
    if args.sample_steps > 1000:
        p.error(f"--sample-steps must be <= 1000 (T), got {args.sample_steps}")
    args.is_bar_config = (not args.quick and (args.steps, args.batch_size, args.lr, args.samples, args.sample_steps)
                          == (1500, 64, 2e-4, 256, 50) and sorted(args.threads) == [1, 2])
    return args


def forward_flops(model, *inputs) -> float:
    """FLOPs of one forward (torch.utils.flop_counter: matrix products and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return float(counter.get_total_flops())


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    ddp, ema_pytorch = import_peer()
    with tempfile.TemporaryDirectory(prefix="axon-ddpm-peer-") as tmp:
        return bench(args, ddp, ema_pytorch, Path(tmp))


def bench(args, ddp, ema_pytorch, tmp: Path) -> int:
    from axon.config import load_config
    from axon.eval.generative import digits_quality
    from axon.models import build_model
    from axon.tasks import build_task
    from axon.tasks.diffusion import draw_samples
    from axon.train.optim import build_optimizers
    from axon.train.trainer import Trainer

    load_start = load_average()
    config = Path(__file__).resolve().parents[1] / "configs" / "ddpm_digits.yaml"
    cache = args.cache_dir  # the digits classifier's cache, as a run's data.cache_dir (default ~/.cache/axon)
    cfg = load_config(config, [
        "--model.num_classes=null", "--diffusion.cond_drop=0", f"--diffusion.sample_steps={args.sample_steps}",
        f"--optim.lr={args.lr}", "--schedule.warmup_steps=0", f"--train.batch_size={args.batch_size}",
        f"--train.max_steps={args.steps}", "--train.dtype=fp32", f"--train.seed={args.seed}",
        f"--out_dir={tmp / 'runs'}", *([f"--data.cache_dir={cache}"] if cache else [])])
    device = torch.device("cpu")
    torch.set_num_threads(max(args.threads))  # from here on: never more threads than asked for
    task = build_task(cfg, device)  # also trains and caches the digits classifier, outside every clock
    torch.manual_seed(args.seed)
    ax_model = build_model(cfg.model).train()
    trainer = Trainer(cfg, ax_model, task.objective, task.train_data, task.val_data, tmp / "runs" / "axon", device)
    callbacks = ax_model.callbacks()
    assert callbacks, "the digits config keeps an EMA (model.ema_decay)"

    torch.manual_seed(args.seed)
    unet = ddp.Unet(channels=1, dropout=cfg.model.dropout, **PEER_UNET)
    peer = ddp.GaussianDiffusion(unet, image_size=8, timesteps=cfg.diffusion.timesteps, objective="pred_noise",
                                 beta_schedule="linear", sampling_timesteps=args.sample_steps, ddim_sampling_eta=0.0,
                                 auto_normalize=False).train()  # the data is in [-1, 1] already
    peer_opt = build_optimizers(peer, cfg.optim)
    peer_ema = ema_pytorch.EMA(peer, **PEER_EMA)
    train_data, B, seed = task.train_data, args.batch_size, args.seed

    # the same schedule on both sides (the peer's buffers are float32 of float64 betas; Axon's tables float64)
    ax_betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(peer.betas.double(), ax_betas, atol=1e-8), "the peer's linear schedule differs"

    def axon_step(step: int) -> float:
        loss, _ = trainer._train_step(step)
        for cb in callbacks:
            cb.after_step(step)
        return loss

    def peer_step(step: int) -> float:
        x0, _, t, noise, _ = train_data.get_batch(step, B, 1, seed)
        loss = peer(x0, times=t, noise=noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(peer.parameters(), cfg.optim.grad_clip)
        for opt in peer_opt:
            opt.step()
            opt.zero_grad(set_to_none=True)
        peer_ema.update()
        return float(loss.detach())

    sides = {"axon": axon_step, "peer": peer_step}
    done = {"axon": 0, "peer": 0}
    first_losses = {"axon": [], "peer": []}

    def train(name: str, n: int) -> None:
        for _ in range(n):
            loss = sides[name](done[name])
            if len(first_losses[name]) < 3:
                first_losses[name].append(loss)
            done[name] += 1

    # sizes: parameters, and forward FLOPs per image
    x1, t1 = torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long)
    params = {"axon": sum(p.numel() for p in ax_model.parameters()), "peer": sum(p.numel() for p in unet.parameters())}
    flops = {"axon": forward_flops(ax_model, x1, t1), "peer": forward_flops(unet, x1, t1)}

    # --- training, timed in alternating blocks ------------------------------------------------
    for name in sides:
        train(name, args.warmup)
    times = {(name, n): [] for name in sides for n in args.threads}  # seconds per step, one entry a block
    wall = time.perf_counter()
    r = 0
    while done["axon"] < args.steps:
        for i, n in enumerate(args.threads if r % 2 == 0 else args.threads[::-1]):
            order = ("axon", "peer") if (r + i) % 2 == 0 else ("peer", "axon")
            left = args.steps - done["axon"]
            if left <= 0:
                break
            torch.set_num_threads(n)
            for name in order:
                train(name, 1)  # untimed: the thread pool resizes
                k = min(args.block, left - 1)
                if k > 0:
                    t0 = time.perf_counter()
                    train(name, k)
                    times[(name, n)].append((time.perf_counter() - t0) / k)
        r += 1
    train_wall = time.perf_counter() - wall
    assert done["axon"] == done["peer"] == args.steps
    load_end = load_average()

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        torch.set_num_threads(max(args.threads))
        for name in sides:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                sides[name](done[name])  # one more step each, after the counted ones
            print(f"torch.profiler, one {name} step, by self CPU time:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))

    # --- samples from each EMA, and their quality ---------------------------------------------
    torch.set_num_threads(max(args.threads))
    t0 = time.perf_counter()
    with ax_model.averaged():
        ax_samples, _ = draw_samples(ax_model, cfg, args.samples, seed=args.seed)
    ax_sample_s = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    peer_ema.ema_model.eval()  # as its Trainer does before sampling: no dropout
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        peer_samples = peer_ema.ema_model.sample(batch_size=args.samples)  # its DDIM, eta 0, x0 clipped; [-1, 1]
    peer_sample_s = time.perf_counter() - t0
    quality = {name: digits_quality(x, cache_dir=cache) for name, x in (("axon", ax_samples), ("peer", peer_samples))}
    from axon.data.images import digits_split

    real = digits_split("train")[0]
    real = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(args.seed))[: args.samples]]
    quality["real"] = digits_quality(real, cache_dir=cache)  # the floor: training digits at the same N

    # --- report -------------------------------------------------------------------------------
    rate = {key: 1.0 / statistics.median(v) for key, v in times.items() if v}
    ratios = {n: rate[("axon", n)] / rate[("peer", n)] for n in args.threads if ("axon", n) in rate}
    qa, qp = quality["axon"], quality["peer"]
    equal_or_better = qa["frechet_distance"] <= qp["frechet_hi"]  # within the peer's interval, or below it
    peer_version = importlib.metadata.version("denoising-diffusion-pytorch")
    print(f"torch {torch.__version__} | denoising-diffusion-pytorch {peer_version} | "
          f"python {platform.python_version()}")
    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical) | native bf16: {native_bf16()} (both sides run fp32)")
    print(f"axon: unet 'digits' (ch 32, mults 1/2/2, attention at 4 and mid) | {params['axon']:,} parameters | "
          f"{flops['axon'] / 1e6:.1f} MFLOP forward per image")
    print(f"peer: Unet(dim=32, dim_mults=(2, 2, 2), heads 1 x 32; linear attention at 8 and 4, full at 2 and mid) | "
          f"{params['peer']:,} parameters | {flops['peer'] / 1e6:.1f} MFLOP forward per image")
    print(f"same for both: digits train split, batch {B}, {args.steps} steps, the same (x0, t, noise) per step | "
          f"linear betas, T=1000, eps target, simple loss | AdamW lr {args.lr}, betas (0.9, 0.999), no decay, "
          f"clip {cfg.optim.grad_clip} | dropout {cfg.model.dropout} | fp32 | first losses "
          f"axon {', '.join(f'{v:.3f}' for v in first_losses['axon'])}; "
          f"peer {', '.join(f'{v:.3f}' for v in first_losses['peer'])}")
    print(f"EMA: axon model.ema_decay {cfg.model.ema_decay} every step | peer ema_pytorch.EMA(beta "
          f"{PEER_EMA['beta']}, update_every {PEER_EMA['update_every']}) as its Trainer | both inside the step")
    print(f"timing: {args.warmup} warm-up steps each, then blocks of {args.block} steps alternating A B B A over "
          f"threads {args.threads}; median block | training wall {train_wall:.0f} s for both")
    if load_start is not None:
        busy = max(load_start, load_end) > 0.5 * (os.cpu_count() or 1) + 0.5  # the end's includes this run
        print(f"1-min load average: {load_start:.2f} at start, {load_end:.2f} at end"
              + (" -- WARNING: the machine was busy; absolute figures are noisy, the interleaved ratio less so"
                 if busy else ""))
    print()
    print(f"{'threads':<9}{'axon steps/s':>14}{'peer steps/s':>14}{'axon/peer':>11}{'blocks':>8}")
    for n in args.threads:
        if ("axon", n) in rate:
            print(f"{n:<9}{rate[('axon', n)]:>14.2f}{rate[('peer', n)]:>14.2f}{ratios[n]:>10.2f}x"
                  f"{len(times[('axon', n)]):>8}")
    print()
    print(f"quality after {args.steps} steps: {args.samples} samples each, DDIM {args.sample_steps} steps, eta 0, "
          f"EMA weights; Fréchet on Axon's digits classifier (its held-out accuracy "
          f"{qa['classifier_accuracy']:.3f}) against the {qa['n_ref']} held-out digits, 95% bootstrap interval")
    print(f"{'':<7}{'Fréchet':>9}{'interval':>18}{'entropy of mean':>17}{'mean entropy':>14}{'sample s':>10}")
    for name, secs in (("axon", ax_sample_s), ("peer", peer_sample_s), ("real", None)):
        q = quality[name]
        interval = f"[{q['frechet_lo']:.2f}, {q['frechet_hi']:.2f}]"
        print(f"{name:<7}{q['frechet_distance']:>9.2f}{interval:>18}"
              f"{q['entropy_of_mean_prediction']:>17.3f}{q['mean_entropy']:>14.3f}"
              f"{'' if secs is None else f'{secs:.1f}':>10}")
    print("(real: training digits at the same count, the distance's floor at this N; entropy of the mean "
          "prediction: 2.303 = all ten classes equally often)")
    print()
    worst = min(ratios.values())
    verdict = "PASS" if worst >= BAR and equal_or_better else "FAIL"
    note = "" if args.is_bar_config else " (not the bar's config: for information)"
    speeds = ", ".join(f"{r:.2f}x at {n} thread{'s' if n > 1 else ''}" for n, r in ratios.items())
    print(f"Axon/peer speed: {speeds}; "
          f"Fréchet axon {qa['frechet_distance']:.2f} vs peer {qp['frechet_distance']:.2f}")
    print(f"bar: Axon >= {BAR}x the peer's steps/s at equal or better Fréchet distance: {verdict}{note}")
    if args.json:
        print(json.dumps({
            "torch": torch.__version__, "peer_version": peer_version,
            "cpu": cpu_model(), "native_bf16": native_bf16(), "params": params, "forward_flops": flops,
            "steps": args.steps, "batch_size": B, "threads": args.threads,
            "steps_per_s": {f"{name}@{n}": v for (name, n), v in rate.items()},
            "ratio": {str(n): v for n, v in ratios.items()}, "first_losses": first_losses,
            "quality": quality, "sample_seconds": {"axon": ax_sample_s, "peer": peer_sample_s},
            "load_average": [load_start, load_end], "bar": BAR, "bar_config": args.is_bar_config,
            "passed": verdict == "PASS",
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU speed bar: training throughput and MFU of GPT-2 124M (Axon's ``Decoder``, preset ``gpt2``).

What is measured: full training steps (forward, causal-LM loss, backward, grad clipping at 1.0,
fused AdamW with weight decay on 2-D tensors only, lr 6e-4, betas (0.9, 0.95)) of a model with
fp32 master weights under bf16 autocast, ``torch.compile``d (model and loss together), with
attention restricted to SDPA's flash backend (``sdpa_kernel([SDPBackend.FLASH_ATTENTION])``: a
forward that flash cannot serve fails instead of silently falling back) and TF32 matmuls allowed.
Warm-up steps (compilation included) run untimed; the timed window is bracketed by
``torch.cuda.synchronize()``.

    tokens/s = steps * batch * grad_accum * block / seconds
    MFU      = flops_per_token * tokens/s / peak            (model FLOPs utilisation, PaLM app. B)

flops_per_token is ``axon.models.flops.flops_per_token`` (the project's one definition):
6 N + 12 * n_layer * block * d_attn, N = non-embedding parameters + the (tied) head matrix; the
attention term counts every key a query could see. peak = the data-sheet dense bf16 tensor-core
peak (no sparsity) from ``axon.models.flops.peak_flops`` (H100 SXM: 989 TFLOP/s), or --peak-tflops;
on a CPU, a measured fp32 matmul peak.

The bar (issue 8): MFU >= 45% on one H100 (nanoGPT's 124M reaches ~30%, llm.c ~60% on an A100).

    python benchmarks/gpu_gpt2.py                                  # the bar, on one H100
    python benchmarks/gpu_gpt2.py --batch-size 32 --json           # bigger micro-batch, one JSON line
    python benchmarks/gpu_gpt2.py --data data/fw --steps 100       # real tokens (`axon prepare`): loss must fall
    python benchmarks/gpu_gpt2.py --device cpu --preset tiny --block-size 64 --batch-size 2 --steps 2 \\
        --warmup 1 --dtype fp32 --no-compile --json                # CPU smoke check (tests run it)

Synthetic data (the default) is uniform random tokens: the loss stays near ln(vocab). Run by hand,
never in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time

import torch

from axon.models.decoder import PRESETS, Decoder, DecoderConfig
from axon.models.flops import flops_per_token, peak_flops
from axon.objectives import causal_lm_loss
from axon.train.optim import param_groups

BAR_MFU = 0.45  # on one H100


def die(msg: str):
    """A user error (missing data, no GPU, flash unavailable): one line, exit status 2 (DESIGN rule 12)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt2", choices=list(PRESETS), help="Axon decoder preset (default gpt2: 12 layers, 12 heads, 768 wide)")
    p.add_argument("--vocab", type=int, default=None,
                   help="vocabulary size; default: the preset's padded up to a multiple of 64 (gpt2: 50257 -> 50304, as nanoGPT: "
                        "the head's matmul tiles better; the 47 extra rows are never targets), 50304 for a preset without one (tiny)")
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=16, help="micro-batch (16 leaves headroom on an 80 GB H100 at block 1024; try 32)")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing (compilation happens here)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="bf16: autocast over fp32 master weights")
    p.add_argument("--no-compile", action="store_true", help="run eager (default: torch.compile)")
    p.add_argument("--data", default=None, help="a directory made by `axon prepare` (its train split); default: synthetic random tokens")
    p.add_argument("--peak-tflops", type=float, default=None, help="MFU denominator in TFLOP/s (default: axon.models.flops.peak_flops)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line with the results at the end")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, profile N more steps (torch.profiler) and print the kernels that take the most device time")
    args = p.parse_args(argv)
    if args.vocab is None:
        v = PRESETS[args.preset]["config"].get("vocab_size")
        args.vocab = 64 * math.ceil(v / 64) if v else 50304
    for name in ("vocab", "block_size", "batch_size", "grad_accum", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


class Batches:
    """(x, y) on the device for (step, micro_step): random tokens from a seeded generator, or an
    `axon prepare` directory through TokenDataset.get_batch. Host tensors are pinned on CUDA so
    that the copies are asynchronous (non_blocking)."""

    def __init__(self, args, device: torch.device, data_vocab: int):
        self.B, self.T, self.seed, self.device = args.batch_size, args.block_size, args.seed, device
        self.pin = device.type == "cuda"
        self.dataset = None
        if args.data is not None:
            from axon.data.loader import TokenDataset
            from axon.errors import AxonError

            try:
                self.dataset = TokenDataset.from_dir(args.data, "train")
            except AxonError as e:
                die(str(e))
            if self.dataset.vocab_size > args.vocab:
                die(f"{args.data} has vocab_size {self.dataset.vocab_size} > --vocab {args.vocab}")
        self.gen = torch.Generator().manual_seed(args.seed)
        self.data_vocab = data_vocab

    def get(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dataset is not None:
            x, y = self.dataset.get_batch(step, self.B, self.T, self.seed, micro_step=micro)
        else:
            xy = torch.randint(self.data_vocab, (self.B, self.T + 1), generator=self.gen)
            x, y = xy[:, :-1], xy[:, 1:]
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        die("--device cuda but torch sees no CUDA device (use --device cpu for the smoke check)")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    base = PRESETS[args.preset]["config"]
    cfg = DecoderConfig(**{**base, "vocab_size": args.vocab, "block_size": args.block_size}, preset=args.preset)
    model = Decoder(cfg).to(device).train()  # fp32 master weights
    n_params = model.num_params()
    fpt = flops_per_token(cfg)  # 6N + 12 L T d_attn, the project's one definition
    attn_term = 12.0 * cfg.n_layer * cfg.block_size * cfg.n_head * cfg.head_dim
    n_matmul = round((fpt - attn_term) / 6)  # N in 6N: non-embedding params + head matrix

    B, T, accum = args.batch_size, args.block_size, args.grad_accum
    batches = Batches(args, device, min(args.vocab, base.get("vocab_size") or args.vocab))
    opt = torch.optim.AdamW(param_groups(model, 0.1, 6e-4), lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    params = [p for p in model.parameters() if p.requires_grad]

    def forward_loss(x, y):  # compiled as one graph: the fp32 upcast of the logits fuses into the CE
        return causal_lm_loss(model(x), y)[0]

    loss_fn = forward_loss if args.no_compile else torch.compile(forward_loss)
    bf16 = args.dtype == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    # --- flash attention: one forward where SDPA may use nothing else -----------------------------
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if cuda and bf16:
        def attn_ctx():  # a fresh context each time: sdpa_kernel's is a one-shot generator
            return sdpa_kernel([SDPBackend.FLASH_ATTENTION])

        try:
            with attn_ctx(), autocast, torch.no_grad():
                model(batches.get(0, 0)[0])
        except RuntimeError as e:
            die(f"SDPA's flash backend cannot serve this model here: {str(e).splitlines()[0]}")
        flash = "passed (one forward under sdpa_kernel([FLASH_ATTENTION]); timed steps run in that context)"
    else:
        attn_ctx = contextlib.nullcontext
        flash = f"skipped ({'not CUDA' if not cuda else 'fp32: flash needs bf16/fp16'}; SDPA picks its own backend)"

    def train_step(step: int) -> torch.Tensor:
        total = torch.zeros((), device=device)
        for k in range(accum):
            x, y = batches.get(step, k)
            with autocast:
                loss = loss_fn(x, y) / accum
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total  # no .item(): reading it would synchronise every step

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with attn_ctx():
        t = time.perf_counter()
        for s in range(args.warmup):
            train_step(s)
        sync()
        warmup_s = time.perf_counter() - t
        losses = []
        t0 = time.perf_counter()
        for s in range(args.warmup, args.warmup + args.steps):
            losses.append(train_step(s))
        sync()
        seconds = time.perf_counter() - t0
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                for s in range(args.profile):
                    train_step(args.warmup + args.steps + s)
                sync()
            key = "self_device_time_total" if cuda else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=70))
    loss_first, loss_last = losses[0].item(), losses[-1].item()

    tokens_per_s = args.steps * B * accum * T / seconds
    if args.peak_tflops is not None:
        peak, peak_src = args.peak_tflops * 1e12, "--peak-tflops"
    else:
        peak = peak_flops(device)
        peak_src = "data-sheet dense bf16 (axon.models.flops)" if cuda else "measured fp32 matmul (axon.models.flops)"
    mfu = fpt * tokens_per_s / peak
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    peak_mem = torch.cuda.max_memory_allocated(device) if cuda else None

    print(f"device: {name} | torch {torch.__version__} | dtype {args.dtype}{' autocast, fp32 master weights' if bf16 else ''} | "
          f"{'eager' if args.no_compile else 'torch.compile (model + loss)'} | TF32 matmuls allowed")
    print(f"model: Decoder preset {args.preset}: n_layer={cfg.n_layer} n_head={cfg.n_head} n_embd={cfg.n_embd} vocab={cfg.vocab_size} "
          f"block={T} | params {n_params:,}")
    print(f"FLOPs/token (axon.models.flops.flops_per_token): 6N + 12*L*T*d_attn = 6 * {n_matmul:,} + {attn_term:,.0f} = {fpt / 1e6:,.1f} M "
          f"(N = non-embedding params + head matrix)")
    print(f"batch {B} x accum {accum} x block {T} = {B * accum * T:,} tokens/step | data: "
          f"{args.data + ' (train split)' if args.data else f'synthetic uniform tokens < {batches.data_vocab}'} | "
          f"AdamW fused, lr 6e-4, betas (0.9, 0.95), wd 0.1 on 2-D | clip 1.0")
    print(f"flash attention check: {flash}")
    print(f"warm-up: {args.warmup} steps in {warmup_s:.1f} s | timed: {args.steps} steps in {seconds:.3f} s "
          f"({1e3 * seconds / args.steps:.1f} ms/step)")
    print(f"loss: {loss_first:.4f} at the first timed step, {loss_last:.4f} at the last"
          + (f" (random tokens: ~ln({batches.data_vocab}) = {math.log(batches.data_vocab):.2f} expected)" if not args.data else ""))
    if args.data and loss_last >= loss_first:
        print("warning: the loss did not fall on real data", file=sys.stderr)
    print(f"peak memory: {peak_mem / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)" if peak_mem is not None else "peak memory: n/a on CPU")
    print(f"tokens/s {tokens_per_s:,.0f} | peak {peak / 1e12:,.3f} TFLOP/s ({peak_src}) | MFU {100 * mfu:.1f}%")
    bar_cfg = args.preset == "gpt2" and bf16 and not args.no_compile and T == 1024
    if cuda and "H100" in name:
        verdict = "PASS" if mfu >= BAR_MFU else "FAIL"
        print(f"bar: MFU >= {100 * BAR_MFU:.0f}% on one H100: {verdict} ({100 * mfu:.1f}%)"
              + ("" if bar_cfg else " (not the bar's config: for information)"))
    else:
        print(f"bar: MFU >= {100 * BAR_MFU:.0f}% on one H100: no verdict on {name} (MFU {100 * mfu:.1f}%)")
    if args.json:
        print(json.dumps({
            "device": str(device), "device_name": name, "torch": torch.__version__, "preset": args.preset, "vocab_size": cfg.vocab_size,
            "block_size": T, "batch_size": B, "grad_accum": accum, "steps": args.steps, "warmup": args.warmup, "dtype": args.dtype,
            "compile": not args.no_compile, "data": args.data or "synthetic", "flash_check": flash, "params": n_params,
            "flops_n": n_matmul, "flops_per_token": fpt, "flops_definition": "6N + 12*n_layer*T*d_attn (axon.models.flops.flops_per_token)",
            "seconds": seconds, "warmup_seconds": warmup_s, "tokens_per_s": tokens_per_s, "peak_flops": peak, "peak_source": peak_src,
            "mfu": mfu, "peak_memory_bytes": peak_mem, "loss_first": loss_first, "loss_last": loss_last,
            "bar": BAR_MFU, "passed": (mfu >= BAR_MFU) if cuda and "H100" in name else None,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput: Axon's GPT-2 decoder against Hugging Face's ``GPT2LMHeadModel`` and nanoGPT's ``GPT``.

Both models are built with the same shape, the Hugging Face weights are copied into Axon and the
two are checked to give the same logits (fp32, ``torch.testing.assert_close``) before any timing,
so "identical config" is a tested fact rather than a claim. Then both train in this one process on
the same sequence of (x, y) batches with the same loss (``axon.objectives.causal_lm_loss``), the
same optimizer (torch AdamW; weight decay on 2-D tensors only, grouped by
``axon.train.optim.param_groups`` for both) and the same gradient clipping (global norm 1.0).

Timing runs in rounds of blocks, A B then B A, ... (ABBA order), so slow drift and background load
land on both models; the reported figure is the median over blocks (best is printed beside it).
MFU = flops_per_token * tokens/s / peak, with one flops_per_token for all models (the models are
identical) and the peak an fp32 matmul measured in this run (best of a measurement before and
after the timing).

With ``--nanogpt DIR`` nanoGPT's own ``GPT`` (its ``model.py``, loaded from that checkout, unmodified)
is a third contestant with the same weights (copied from the HF model, logits checked), batches and
optimizer; it computes its loss its own way (``model(x, targets)``, as its train.py does). nanoGPT
uses the exact (erf) GELU, so with it in the race all three models take the exact GELU (HF's
``gelu``, Axon's ``approximate="none"``): one model, three implementations.

The project's bars (nanoGPT's CPU shakespeare_char config: 4 layers, 4 heads, 128 wide, block 64,
batch 12): Axon >= 1.4x the Hugging Face model (sdpa attention) and >= 1.0x nanoGPT, in tokens/s.

    python benchmarks/train_throughput.py                      # the HF bar
    python benchmarks/train_throughput.py --nanogpt DIR          # both bars (DIR: a nanoGPT checkout)
    python benchmarks/train_throughput.py --hf-attn sdpa,eager # also HF's eager attention
    python benchmarks/train_throughput.py --breakdown          # forward / backward / optimizer split
    python benchmarks/train_throughput.py --preset gpt2 --batch-size 1 --block-size 128 --steps 6

Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from axon.data.corpus import corpus_path
from axon.models.decoder import PRESETS, Decoder, DecoderConfig
from axon.objectives import causal_lm_loss
from axon.models.flops import matmul_peak_flops
from axon.train.optim import param_groups

BAR = 1.4  # Axon tokens/s over Hugging Face tokens/s, at the default (nanoGPT CPU) config
BAR_NANOGPT = 1.0  # Axon tokens/s over nanoGPT tokens/s, same config


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------------------------
# data: the bundled corpus, char-encoded; a fixed list of batches that every model walks in order


def make_batches(n: int, batch_size: int, block_size: int, vocab_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    text = corpus_path("shakespeare").read_text(encoding="utf-8")
    chars = sorted(set(text))
    if len(chars) > vocab_size:
        raise SystemExit(f"error: the corpus has {len(chars)} distinct chars; --vocab-size must be >= that")
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=g)
        x = torch.stack([data[i : i + block_size] for i in ix.tolist()])
        y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix.tolist()])
        batches.append((x, y))
    return batches


# ----------------------------------------------------------------------------------------------
# models


def build_hf(args, attn: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=args.vocab_size, n_positions=args.block_size, n_embd=args.n_embd, n_layer=args.n_layer,
        n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        activation_function=args.hf_activation, tie_word_embeddings=True, use_cache=False,
        bos_token_id=0, eos_token_id=0,  # GPT-2's 50256 lies outside a small vocabulary; unused here
    )
    torch.manual_seed(args.seed)
    return GPT2LMHeadModel._from_config(cfg, attn_implementation=attn).float().train()


def build_axon(args) -> Decoder:
    cfg = DecoderConfig(
        vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
        n_embd=args.n_embd, mlp="gelu", norm="layernorm", norm_bias=True, norm_eps=1e-5, pos="learned",
        bias=True, tie_embeddings=True, dropout=0.0, attn_impl="sdpa",
    )
    model = Decoder(cfg).float().train()
    if args.hf_activation == "gelu":  # the exact GELU, as HF's "gelu" and nanoGPT's nn.GELU()
        for block in model.blocks:
            block.mlp.approximate = "none"
    return model


def load_nanogpt(directory: str):
    """nanoGPT's model.py from a checkout, imported as a module of its own (not copied, not edited)."""
    import importlib.util
    from pathlib import Path

    path = Path(directory) / "model.py"
    if not path.is_file():
        raise SystemExit(f"error: --nanogpt {directory}: no model.py there (a nanoGPT checkout is expected)")
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_nanogpt(args, module):
    cfg = module.GPTConfig(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                           n_embd=args.n_embd, dropout=0.0, bias=True)
    return module.GPT(cfg).float().train()


@torch.no_grad()
def copy_hf_into_nanogpt(hf, gpt) -> None:
    """nanoGPT's keys are HF's with nn.Linear (out, in) weights: transpose the Conv1D ones (as its
    own GPT.from_pretrained does)."""
    src, dst = hf.state_dict(), gpt.state_dict()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    for k, v in dst.items():
        if k.endswith(".attn.bias"):  # nanoGPT's causal-mask buffer (only without SDPA)
            continue
        w = src[k]
        v.copy_(w.t() if k.endswith(conv1d) else w)


@torch.no_grad()
def copy_hf_into_axon(hf, ax: Decoder) -> None:
    """HF GPT-2 keeps its linears as Conv1D, weight (in, out): transpose into nn.Linear (out, in).
    c_attn's output columns are [q; k; v], head-major inside each: the layout of Axon's fused qkv."""
    t = hf.transformer
    ax.wte.weight.copy_(t.wte.weight)
    ax.wpe.weight.copy_(t.wpe.weight)
    for hb, ab in zip(t.h, ax.blocks, strict=True):
        for h_ln, a_ln in ((hb.ln_1, ab.norm1), (hb.ln_2, ab.norm2)):
            a_ln.weight.copy_(h_ln.weight)
            a_ln.bias.copy_(h_ln.bias)
        for h_lin, a_lin in ((hb.attn.c_attn, ab.attn.qkv), (hb.attn.c_proj, ab.attn.proj),
                             (hb.mlp.c_fc, ab.mlp.fc), (hb.mlp.c_proj, ab.mlp.proj)):
            a_lin.weight.copy_(h_lin.weight.t())
            a_lin.bias.copy_(h_lin.bias)
    ax.norm_f.weight.copy_(t.ln_f.weight)
    ax.norm_f.bias.copy_(t.ln_f.bias)
    assert ax.lm_head.weight is ax.wte.weight and hf.lm_head.weight is t.wte.weight, "both heads are tied"


class Contestant:
    """One model with its optimizer, stepping through the shared batch list."""

    def __init__(self, name: str, model: torch.nn.Module, loss_fn, args):
        self.name, self.model, self.loss_fn = name, model, loss_fn  # loss_fn(x, y) -> scalar loss
        self.params = [p for p in model.parameters() if p.requires_grad]
        impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[args.optim_impl]
        self.opt = torch.optim.AdamW(param_groups(model, args.weight_decay, args.lr), lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **impl)
        self.clip = args.grad_clip
        self.step_i = 0
        self.blocks: list[float] = []  # tokens/s of each timed block
        self.phase = {"forward+loss": 0.0, "backward": 0.0, "clip+optimizer": 0.0}
        self.phase_steps = 0

    def train_step(self, batches, timed_phases: bool = False) -> float:
        x, y = batches[self.step_i % len(batches)]
        self.step_i += 1
        t0 = time.perf_counter()
        loss = self.loss_fn(x, y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if timed_phases:
            t3 = time.perf_counter()
            self.phase["forward+loss"] += t1 - t0
            self.phase["backward"] += t2 - t1
            self.phase["clip+optimizer"] += t3 - t2
            self.phase_steps += 1
        return loss.item()

    def run_block(self, batches, steps: int, tokens_per_step: int) -> float:
        t = time.perf_counter()
        for _ in range(steps):
            self.train_step(batches)
        dt = time.perf_counter() - t
        self.blocks.append(steps * tokens_per_step / dt)
        return dt


# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, help=f"take n_layer/n_head/n_embd/vocab from an Axon GPT-2 preset ({', '.join(k for k in PRESETS if k.startswith('gpt2'))}); "
                   "block size stays --block-size; for information only, the bar is for the default config")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=65, help="65 = the corpus' characters")
    p.add_argument("--steps", type=int, default=200, help="timed steps per model (split over --rounds rounds)")
    p.add_argument("--seconds", type=float, default=None, help="instead of --steps: a wall-clock budget for the timed part, all models together")
    p.add_argument("--max-seconds", type=float, default=75.0,
                   help="stop timing after an even number of rounds (>= 2) once this much time has passed, so a busy machine cannot stretch the run")
    p.add_argument("--rounds", type=int, default=10, help="timing rounds; each runs one block per model, order alternating (ABBA)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per model before timing")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--hf-attn", default="sdpa", help="comma list of HF attn_implementation values to race, e.g. sdpa,eager (the bar uses the first)")
    p.add_argument("--hf-activation", default="gelu_new", help="HF activation_function (GPT2Config's default gelu_new is GPT-2's tanh GELU)")
    p.add_argument("--optim-impl", choices=["default", "foreach", "fused"], default="default",
                   help="torch AdamW implementation, the same for every model (default: torch's choice, as axon.train.optim builds it)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--compile", action="store_true", help="torch.compile the Axon model (not HF's); off by default")
    p.add_argument("--breakdown", action="store_true", help="also time forward+loss / backward / clip+optimizer separately (extra steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    p.add_argument("--nanogpt", default=None, metavar="DIR",
                   help="a nanoGPT checkout: its GPT joins the race (all three models then take the exact GELU)")
    args = p.parse_args(argv)
    if args.nanogpt is not None:
        args.hf_activation = "gelu"  # nanoGPT's nn.GELU() is the exact form
    if args.preset is not None:
        if args.preset not in PRESETS or not args.preset.startswith("gpt2"):
            p.error(f"--preset must be a GPT-2 preset: {', '.join(k for k in PRESETS if k.startswith('gpt2'))}")
        c = PRESETS[args.preset]["config"]
        args.n_layer, args.n_head, args.n_embd, args.vocab_size = c["n_layer"], c["n_head"], c["n_embd"], c["vocab_size"]
        args.block_size = min(args.block_size, c["block_size"])
    if args.seconds is not None:
        args.max_seconds = max(args.max_seconds, 1.5 * args.seconds)
    args.hf_attn = [a.strip() for a in args.hf_attn.split(",") if a.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import transformers

    B, T = args.batch_size, args.block_size
    tokens_per_step = B * T
    is_bar_config = (args.preset is None and (B, T, args.n_layer, args.n_head, args.n_embd, args.vocab_size) == (12, 64, 4, 4, 128, 65)
                     and not args.compile)

    load_start = load_average()

    # --- build and prove identical -----------------------------------------------------------
    hf_models = {attn: build_hf(args, attn) for attn in args.hf_attn}
    ref = hf_models[args.hf_attn[0]]
    for other in list(hf_models.values())[1:]:
        other.load_state_dict(ref.state_dict())
    ax = build_axon(args)
    copy_hf_into_axon(ref, ax)
    n_params = sum(p.numel() for p in ax.parameters())
    assert n_params == sum(p.numel() for p in ref.parameters()), "parameter counts differ"
    nano = None
    if args.nanogpt is not None:
        nano = build_nanogpt(args, load_nanogpt(args.nanogpt))
        copy_hf_into_nanogpt(ref, nano)
        assert sum(p.numel() for p in nano.parameters()) == n_params, "nanoGPT's parameter count differs"

    batches = make_batches(64, B, T, args.vocab_size, args.seed)
    x0 = batches[0][0]
    with torch.no_grad():
        ax_logits = ax(x0)
        for attn, m in hf_models.items():
            torch.testing.assert_close(ax_logits, m(x0, use_cache=False).logits, rtol=1e-4, atol=1e-4,
                                       msg=lambda s, a=attn: f"Axon and HF ({a}) logits differ: {s}")
        if nano is not None:  # with targets, nanoGPT returns every position's logits
            torch.testing.assert_close(ax_logits, nano(x0, batches[0][1])[0], rtol=1e-4, atol=1e-4,
                                       msg=lambda s: f"Axon and nanoGPT logits differ: {s}")

    ax_forward = torch.compile(ax) if args.compile else ax
    contestants = [Contestant("axon" + (" (compiled)" if args.compile else ""), ax,
                              lambda x, y: causal_lm_loss(ax_forward(x), y)[0], args)]
    for attn, m in hf_models.items():
        contestants.append(Contestant(f"hf-{attn}", m, lambda x, y, m=m: causal_lm_loss(m(x, use_cache=False).logits, y)[0], args))
    if nano is not None:
        contestants.append(Contestant("nanogpt", nano, lambda x, y: nano(x, y)[1], args))  # its own loss, as its train.py

    # --- warm-up; the first steps double as a check that training is identical too -------------
    losses = {c.name: [c.train_step(batches) for _ in range(max(args.warmup, 3))] for c in contestants}
    first = losses[contestants[0].name]
    loss_gap = 0.0
    for c in contestants[1:]:
        worst = max(abs(a - b) for a, b in zip(first[:3], losses[c.name][:3]))
        loss_gap = max(loss_gap, worst)
        if worst > 1e-3:
            print(f"warning: first 3 training losses of {c.name} differ from Axon's by {worst:.2e}: {losses[c.name][:3]} vs {first[:3]}", file=sys.stderr)

    # --- peak, timing -------------------------------------------------------------------------
    peak_before = matmul_peak_flops(torch.device("cpu"))
    if args.seconds is not None:
        # size blocks from a short probe so that the whole timed part fits the budget
        probe = {}
        for c in contestants:
            t = time.perf_counter()
            for _ in range(3):
                c.train_step(batches)
            probe[c.name] = (time.perf_counter() - t) / 3
        per_round = args.seconds / args.rounds
        block_steps = max(1, int(per_round / sum(probe.values())))
    else:
        block_steps = max(1, args.steps // args.rounds)
    order = list(range(len(contestants)))
    t_timing = time.perf_counter()
    rounds_done = 0
    for r in range(args.rounds):
        if r >= 2 and r % 2 == 0 and time.perf_counter() - t_timing > args.max_seconds:
            print(f"time cap: stopping after {r} rounds (--max-seconds {args.max_seconds:g})", file=sys.stderr)
            break
        rounds_done += 1
        for i in (order if r % 2 == 0 else order[::-1]):
            contestants[i].run_block(batches, block_steps, tokens_per_step)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{c.name} {c.blocks[-1]:,.0f}" for c in contestants) + " tokens/s",
              file=sys.stderr, flush=True)
    if args.breakdown:
        for r in range(2):
            for i in (order if r % 2 == 0 else order[::-1]):
                for _ in range(max(1, block_steps // 2)):
                    contestants[i].train_step(batches, timed_phases=True)
    peak_after = matmul_peak_flops(torch.device("cpu"))
    peak = max(peak_before, peak_after)
    load_end = load_average()

    # --- report -------------------------------------------------------------------------------
    fpt = ax.flops_per_token()
    rows = []
    for c in contestants:
        med, best = statistics.median(c.blocks), max(c.blocks)
        rows.append({"name": c.name, "tokens_per_s": med, "best_tokens_per_s": best, "ms_per_step": 1e3 * tokens_per_step / med,
                         "mfu": fpt * med / peak, "blocks": [round(b, 1) for b in c.blocks]})
    hf0 = rows[1]
    ratio = rows[0]["tokens_per_s"] / hf0["tokens_per_s"]
    nano_row = next((r for r in rows if r["name"] == "nanogpt"), None)
    ratio_nano = rows[0]["tokens_per_s"] / nano_row["tokens_per_s"] if nano_row else None

    print(f"torch {torch.__version__} | transformers {transformers.__version__} | python {platform.python_version()} | "
          f"threads {torch.get_num_threads()} | cpu: {cpu_model()} ({os.cpu_count()} logical)")
    print(f"config: {'preset ' + args.preset + ', ' if args.preset else ''}n_layer={args.n_layer} n_head={args.n_head} n_embd={args.n_embd} "
          f"block={T} batch={B} vocab={args.vocab_size} | params {n_params:,} | {fpt / 1e6:.2f} MFLOP/token (train)")
    print(f"same for all: logits checked equal (fp32), first 3 train losses within {loss_gap:.1e} | data: bundled shakespeare, char-level, same batches | loss: causal_lm_loss | "
          f"AdamW lr={args.lr} betas=(0.9, 0.95) wd={args.weight_decay} on 2-D only, impl={args.optim_impl} | clip {args.grad_clip}")
    print(f"HF: GPT2LMHeadModel, attn_implementation={','.join(args.hf_attn)}, activation={args.hf_activation}, use_cache=False | "
          f"Axon: Decoder (attn sdpa){', torch.compile' if args.compile else ', eager (not compiled)'}"
          + (" | nanoGPT: its GPT from " + args.nanogpt + " (SDPA, nn.GELU, its own loss)" if nano is not None else ""))
    print(f"timing: {args.warmup} warm-up steps each, then {rounds_done} rounds x {block_steps} steps per model (ABBA order); "
          f"median block shown | matmul peak {peak / 1e9:.1f} GFLOP/s (before {peak_before / 1e9:.1f}, after {peak_after / 1e9:.1f})")
    if load_start is not None:
        busy = max(load_start, load_end) > 0.5 * (os.cpu_count() or 1) + 0.5
        print(f"1-min load average: {load_start:.2f} at start, {load_end:.2f} at end"
              + (" -- WARNING: the machine was busy (other work, or a run just before); absolute figures are noisy, the interleaved ratio less so" if busy else ""))
    print()
    print(f"{'model':<18}{'tokens/s':>11}{'best':>11}{'ms/step':>10}{'MFU':>8}{'vs ' + hf0['name']:>14}")
    for row in rows:
        print(f"{row['name']:<18}{row['tokens_per_s']:>11,.0f}{row['best_tokens_per_s']:>11,.0f}{row['ms_per_step']:>10.1f}"
              f"{100 * row['mfu']:>7.1f}%{row['tokens_per_s'] / hf0['tokens_per_s']:>13.2f}x")
    if args.breakdown:
        print()
        print(f"{'ms/step by phase':<18}" + "".join(f"{k:>16}" for k in contestants[0].phase))
        for c in contestants:
            print(f"{c.name:<18}" + "".join(f"{1e3 * v / c.phase_steps:>16.1f}" for v in c.phase.values()))
    print()
    verdict = "PASS" if ratio >= BAR else "FAIL"
    note = "" if is_bar_config else " (not the bar's config: for information)"
    print(f"bar: Axon >= {BAR}x HF: {verdict} (ratio {ratio:.2f}){note}")
    if ratio_nano is not None:
        print(f"bar: Axon >= {BAR_NANOGPT}x nanoGPT: {'PASS' if ratio_nano >= BAR_NANOGPT else 'FAIL'} (ratio {ratio_nano:.2f}){note}")
    if args.json:
        print(json.dumps({
            "torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "config": {"preset": args.preset, "n_layer": args.n_layer, "n_head": args.n_head, "n_embd": args.n_embd, "block_size": T,
                        "batch_size": B, "vocab_size": args.vocab_size},
            "compile": args.compile, "optim_impl": args.optim_impl, "hf_attn": args.hf_attn, "hf_activation": args.hf_activation,
            "params": n_params, "first_losses_max_gap": loss_gap, "flops_per_token": fpt, "load_average": [load_start, load_end], "peak_flops": peak, "block_steps": block_steps, "rounds": rounds_done,
            "results": rows, "ratio": ratio, "bar": BAR, "bar_config": is_bar_config, "passed": ratio >= BAR,
            "ratio_nanogpt": ratio_nano, "bar_nanogpt": BAR_NANOGPT, "passed_nanogpt": None if ratio_nano is None else ratio_nano >= BAR_NANOGPT,
            "breakdown_ms": {c.name: {k: 1e3 * v / c.phase_steps for k, v in c.phase.items()} for c in contestants} if args.breakdown else None,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time and memory per generated token against the context already read: Mamba vs a Transformer.

A Transformer's decode step attends over every cached key and value, so its time and its KV cache
grow with the context; Mamba's step reads a fixed state (conv (n_layer, B, D, d_conv) + SSM
(n_layer, B, D, N)), so both stay flat (Gu & Dao 2023, sec. 3.3 and Figure 8).

For each model and each context length C (fp32, CPU, batch 1, random weights and tokens):

- prefill C random tokens into a fresh cache, ``--prefill-chunk`` tokens per forward (so the peak
  memory is the cache's, not one huge prefill's), through the models' own cache interface
  (``model.make_cache``, ``model(idx, cache=cache)``: what ``axon.generate`` calls);
- then ``--tokens`` single-token forwards (greedy), each timed; ms/token = their median;
- cache MiB = bytes of the state the cache holds for C tokens (KV: keys and values of every layer
  for the C slots in use; Mamba: its state tensors, whatever C);
- peak RSS MiB: each (model, C) runs in a fresh subprocess; its ``ru_maxrss`` (process peak,
  including torch itself and the weights; "base" = the same process before any prefill).

Models (similar parameter counts, vocabulary 256): Mamba n_embd 256, 8 layers, d_state 16
(3.5M parameters) and Axon's decoder n_embd 256, 4 layers, 4 heads, SwiGLU, RoPE (3.2M).

    python benchmarks/decode_vs_context.py                       # C = 128 512 1024 2048 4096, ~2-4 min on 2 cores
    python benchmarks/decode_vs_context.py --contexts 128,8192 --tokens 32 --threads 2
    python benchmarks/decode_vs_context.py --scan-timing         # the training scans instead (chunk size)

``--scan-timing`` times the training scan instead (``axon.nn.ssm``): forward + backward of the
selective scan alone over T = ``--scan-T`` steps, shapes of the mixer of configs/mamba_tiny.yaml
(batch 8, D = 256 channels, N = 16), the step-by-step reference against the chunked scan at
several chunk lengths (median of ``--scan-repeats``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

VOCAB = 256


def build(kind: str, block: int):
    torch.manual_seed(0)
    if kind == "mamba":
        from axon.models.mamba import Mamba, MambaConfig

        return Mamba(MambaConfig(vocab_size=VOCAB, n_embd=256, n_layer=8, d_state=16)).eval()
    from axon.models.decoder import Decoder, DecoderConfig

    return Decoder(DecoderConfig(vocab_size=VOCAB, block_size=block, n_embd=256, n_layer=4, n_head=4)).eval()


def cache_bytes(kind: str, model, cache, context: int) -> int:
    if kind == "mamba":
        return sum(t.numel() * t.element_size() for t in cache.state)
    from axon.generate.cache import KVCache

    cfg = model.config
    return KVCache.bytes_per_token(cfg.n_layer, cfg.kv_heads, cfg.head_dim) * context


@torch.no_grad()
def one(kind: str, context: int, tokens: int, chunk: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    model = build(kind, context + tokens + 1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    g = torch.Generator().manual_seed(context)
    prompt = torch.randint(0, VOCAB, (1, context), generator=g)
    cache = model.make_cache(1, context + tokens + 1)
    t0 = time.perf_counter()
    for a in range(0, context, chunk):
        logits = model(prompt[:, a : a + chunk], cache=cache, last_only=True)
    prefill = time.perf_counter() - t0
    times = []
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(tokens):
        t = time.perf_counter()
        nxt = model(nxt, cache=cache)[:, -1].argmax(-1, keepdim=True)
        times.append(time.perf_counter() - t)
    return {"model": kind, "context": context, "params": sum(p.numel() for p in model.parameters()),
            "ms_per_token": 1000 * statistics.median(times), "prefill_s": prefill,
            "cache_mib": cache_bytes(kind, model, cache, context) / 2**20,
            "base_rss_mib": base, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def scan_timing(T: int, chunks: list[int], repeats: int, threads: int) -> None:
    from axon.nn.ssm import scan_chunked, scan_sequential

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    Bsz, D, N = 8, 256, 16
    x, dt = torch.randn(Bsz, T, D, generator=g), torch.rand(Bsz, T, D, generator=g) * 0.1
    A = -torch.arange(1.0, N + 1).expand(D, N)
    Bm, Cm = torch.randn(Bsz, T, N, generator=g), torch.randn(Bsz, T, N, generator=g)
    print(f"# scan fwd+bwd, B={Bsz} T={T} D={D} N={N}, {threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    runs = [("sequential", scan_sequential)] + [(f"chunked L={c}", lambda *a, c=c: scan_chunked(*a, chunk=c)) for c in chunks]
    for name, scan in runs:
        times = []
        for _ in range(repeats):
            leaves = [t.clone().requires_grad_() for t in (x, dt, Bm, Cm)]
            t0 = time.perf_counter()
            y, _ = scan(leaves[0], leaves[1], A, leaves[2], leaves[3])
            y.sum().backward()
            times.append(time.perf_counter() - t0)
        print(f"{name:16} {1000 * statistics.median(times):8.1f} ms", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contexts", default="128,512,1024,2048,4096")
    p.add_argument("--tokens", type=int, default=16, help="timed single-token steps per row (median)")
    p.add_argument("--prefill-chunk", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="mamba,decoder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--scan-timing", action="store_true", help="time the training scans instead")
    p.add_argument("--scan-T", type=int, default=256)
    p.add_argument("--scan-chunks", default="4,8,16,32,64")
    p.add_argument("--scan-repeats", type=int, default=5)
    p.add_argument("--one", nargs=2, metavar=("MODEL", "CONTEXT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.scan_timing:
        scan_timing(args.scan_T, [int(c) for c in args.scan_chunks.split(",")], args.scan_repeats, args.threads)
        return
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.tokens, args.prefill_chunk, args.threads)))
        return

    print(f"# fp32 CPU, batch 1, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}")
    rows = []
    for context in (int(c) for c in args.contexts.split(",")):
        for kind in args.models.split(","):
            cmd = [sys.executable, __file__, "--one", kind, str(context), "--tokens", str(args.tokens),
                   "--prefill-chunk", str(args.prefill_chunk), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                if len(rows) == 1:
                    print(f"{'model':8} {'params':>9} {'context':>8} {'ms/token':>9} {'cache MiB':>10} {'peak RSS MiB':>13} {'base RSS':>9} {'prefill s':>10}")
                print(f"{r['model']:8} {r['params']:>9,} {r['context']:>8} {r['ms_per_token']:>9.2f} {r['cache_mib']:>10.2f} "
                      f"{r['peak_rss_mib']:>13.0f} {r['base_rss_mib']:>9.0f} {r['prefill_s']:>10.2f}", flush=True)


if __name__ == "__main__":
    main()

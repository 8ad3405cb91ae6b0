"""Decode throughput: Axon's ``generate`` against Hugging Face ``GPT2LMHeadModel.generate()``.

Both models are built with the same GPT-2 shape (HF from a local config, random weights; nothing
is downloaded), the HF weights are copied into Axon (``copy_hf_into_axon`` from
``train_throughput.py``) and the logits are checked equal in fp32 before any timing. Then, in one
run, for each config and batch size:

- prefill tokens/s = B * prompt_len / time of one forward over the prompts with a fresh cache
  (Axon: ``model(idx, cache=model.make_cache(B))``; HF: ``model(idx, use_cache=True)``, a fresh
  ``DynamicCache``). Both compute logits at every prompt position here (the like-for-like forward);
  inside ``generate()`` HF computes only the last position's (``logits_to_keep=1``), Axon all.
- decode tokens/s = B * (new_tokens - 1) / (end of the last forward - end of the first forward),
  greedy, inside one ``generate`` call: a forward hook on the model stamps the end of every forward.
  The first forward is the prefill; between it and the last one the loop chooses N - 1 tokens and
  runs N - 1 one-token forwards: the new-token loop alone, as each library runs it. What a call
  does before its prefill or after its last forward is a fixed cost per call, not per token, and
  is in the whole-call time ("gen s") only: Axon relays its weights column-major for a batch-1
  CPU call and back (``axon.generate.layout``), HF assembles its output tensor. The older clock
  (to the return of ``generate``, B * N tokens) is printed beside as "to return".
  HF: ``generate(ids, attention_mask, max_new_tokens=N, min_new_tokens=N, do_sample=False,
  use_cache=True)``, sdpa attention, its default cache (``DynamicCache``). No eos token is set on
  either side, so both produce exactly N tokens and no logits processor changes the argmax.
- the greedy tokens of the two libraries are compared (at batch 1 they must match; at batch 8 the
  count of matching sequences is printed, batched matmuls may round differently).

Axon and HF alternate (A B, then B A, ...) over ``--repeats`` rounds after a warm-up; the best
round of each (the least disturbed by other work on a shared machine) is reported and the bars use
it; the ratio of the medians is printed beside. Batch 8 uses 8 different prompts of the same
length (no padding). The tiny config uses a 65-token vocabulary (nanoGPT's characters; --tiny-vocab).

Bars (the generation issue): Axon decode >= 3x HF at the tiny config and >= 1.2x at 124M, batch 1,
fp32 CPU. Also prints KV-cache bytes per token for MHA / GQA / MQA at the Llama-style presets.

    python benchmarks/decode_throughput.py                          # both configs, batch 1 and 8
    python benchmarks/decode_throughput.py --threads 1              # steadier on a busy shared machine
    python benchmarks/decode_throughput.py --configs tiny --batch-sizes 1 --repeats 15
    python benchmarks/decode_throughput.py --profile                # + torch.profiler of Axon decode steps

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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import copy_hf_into_axon, cpu_model, load_average

from axon.generate import KVCache, generate
from axon.models.decoder import PRESETS, Decoder, DecoderConfig

BARS = {"tiny": 3.0, "124m": 1.2}  # Axon decode tokens/s over HF's, batch 1


# ----------------------------------------------------------------------------------------------
# configs and models


def shape_of(name: str, tiny_vocab: int) -> dict:
    if name == "tiny":  # nanoGPT's shakespeare_char CPU shape, GPT-2 switches
        return {"n_layer": 4, "n_head": 4, "n_embd": 128, "vocab_size": tiny_vocab}
    if name == "124m":
        c = PRESETS["gpt2"]["config"]
        return {"n_layer": c["n_layer"], "n_head": c["n_head"], "n_embd": c["n_embd"], "vocab_size": c["vocab_size"]}
    raise SystemExit(f"error: unknown config {name!r}; choose from tiny, 124m")


def build_pair(shape: dict, block_size: int, hf_attn: str, seed: int):
    """HF GPT2LMHeadModel with random weights, and an Axon Decoder holding the same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=shape["vocab_size"], n_positions=block_size, n_embd=shape["n_embd"], n_layer=shape["n_layer"],
        n_head=shape["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        activation_function="gelu_new", tie_word_embeddings=True, use_cache=True,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,  # no eos: every run makes exactly N tokens
    )
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel._from_config(cfg, attn_implementation=hf_attn).float().eval()
    ax = Decoder(DecoderConfig(
        vocab_size=shape["vocab_size"], block_size=block_size, n_layer=shape["n_layer"], n_head=shape["n_head"],
        n_embd=shape["n_embd"], mlp="gelu", norm="layernorm", norm_bias=True, norm_eps=1e-5, pos="learned",
        bias=True, tie_embeddings=True, dropout=0.0, attn_impl="sdpa",
    )).float().eval()
    copy_hf_into_axon(hf, ax)
    return hf, ax


class ForwardClock:
    """Forward hook that stamps the end of the first (the prefill) and the last forward after ``arm()``."""

    def __init__(self, model: torch.nn.Module):
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.calls = 0
        model.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.calls += 1
        self.t_last = time.perf_counter()
        if self.t_first is None:
            self.t_first = self.t_last

    def arm(self) -> None:
        self.t_first, self.t_last, self.calls = None, None, 0


# ----------------------------------------------------------------------------------------------
# the two contestants: each returns (prefill seconds) or
# (new tokens, whole-call seconds, new-token loop seconds, first forward end to return seconds)


@torch.no_grad()
def axon_prefill(ax: Decoder, idx: torch.Tensor) -> float:
    t = time.perf_counter()
    ax(idx, cache=ax.make_cache(idx.size(0)))
    return time.perf_counter() - t


@torch.no_grad()
def hf_prefill(hf, idx: torch.Tensor) -> float:
    t = time.perf_counter()
    hf(idx, use_cache=True)
    return time.perf_counter() - t


def axon_generate(ax: Decoder, clock: ForwardClock, idx: torch.Tensor, n: int):
    clock.arm()
    t = time.perf_counter()
    out = generate(ax, idx, n, temperature=0)
    t_end = time.perf_counter()
    assert clock.calls == n and all(len(s) == n for s in out.tokens), (clock.calls, [len(s) for s in out.tokens])
    return out.tokens, t_end - t, clock.t_last - clock.t_first, t_end - clock.t_first


@torch.no_grad()
def hf_generate(hf, clock: ForwardClock, idx: torch.Tensor, n: int):
    clock.arm()
    t = time.perf_counter()
    out = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
                      do_sample=False, use_cache=True, pad_token_id=0)
    t_end = time.perf_counter()
    new = out[:, idx.size(1):].tolist()
    assert clock.calls == n and all(len(s) == n for s in new), (clock.calls, [len(s) for s in new])
    return new, t_end - t, clock.t_last - clock.t_first, t_end - clock.t_first


# ----------------------------------------------------------------------------------------------


def run_config(name: str, args, deadline: float) -> list[dict]:
    shape = shape_of(name, args.tiny_vocab)
    n_new = args.new_tokens[name]
    T = args.prompt_len
    block = T + n_new
    hf, ax = build_pair(shape, block, args.hf_attn, args.seed)
    n_params = sum(p.numel() for p in ax.parameters())
    g = torch.Generator().manual_seed(args.seed + 1)
    prompts = torch.randint(shape["vocab_size"], (max(args.batch_sizes), T), generator=g)

    with torch.no_grad():  # same weights, same function
        torch.testing.assert_close(ax(prompts[:2]), hf(prompts[:2], use_cache=False).logits, rtol=1e-4, atol=1e-4)
    ax_clock, hf_clock = ForwardClock(ax), ForwardClock(hf)
    print(f"[{name}] n_layer={shape['n_layer']} n_head={shape['n_head']} n_embd={shape['n_embd']} vocab={shape['vocab_size']} "
          f"block={block} params={n_params:,} | prompt {T}, new {n_new}: logits equal (fp32)", file=sys.stderr, flush=True)

    rows = []
    for B in args.batch_sizes:
        idx = prompts[:B].contiguous()
        # warm-up: a short generate and a prefill each
        for _ in range(args.warmup):
            axon_generate(ax, ax_clock, idx, min(8, n_new))
            hf_generate(hf, hf_clock, idx, min(8, n_new))
            axon_prefill(ax, idx)
            hf_prefill(hf, idx)
        res = {w: {"prefill": [], "total": [], "decode": [], "to_return": []} for w in ("axon", "hf")}
        toks = {}
        for r in range(args.repeats[name]):
            if r >= 1 and time.perf_counter() > deadline:
                print(f"time cap: {name} batch {B} stops after {r} repeats (--max-seconds {args.max_seconds:g})", file=sys.stderr)
                break
            order = ("axon", "hf") if r % 2 == 0 else ("hf", "axon")
            for who in order:
                if who == "axon":
                    pre = axon_prefill(ax, idx)
                    toks["axon"], total, loop, to_return = axon_generate(ax, ax_clock, idx, n_new)
                else:
                    pre = hf_prefill(hf, idx)
                    toks["hf"], total, loop, to_return = hf_generate(hf, hf_clock, idx, n_new)
                res[who]["prefill"].append(B * T / pre)
                res[who]["total"].append(total)
                res[who]["decode"].append(B * (n_new - 1) / loop)
                res[who]["to_return"].append(B * n_new / to_return)
            print(f"  {name} b{B} repeat {r + 1}: decode tok/s axon {res['axon']['decode'][-1]:,.0f} hf {res['hf']['decode'][-1]:,.0f}",
                  file=sys.stderr, flush=True)
        same = sum(a == h for a, h in zip(toks["axon"], toks["hf"]))
        first_diff = None
        if same < B:
            a, h = next((a, h) for a, h in zip(toks["axon"], toks["hf"]) if a != h)
            first_diff = next(i for i, (x, y) in enumerate(zip(a, h)) if x != y)
        med = {w: {k: statistics.median(v) for k, v in d.items()} for w, d in res.items()}
        best = {w: {"prefill": max(d["prefill"]), "decode": max(d["decode"]), "to_return": max(d["to_return"]),
                    "total": min(d["total"])} for w, d in res.items()}
        rows.append({
            "config": name, "batch": B, "prompt_len": T, "new_tokens": n_new, "params": n_params, "repeats": len(res["axon"]["decode"]),
            "prefill_tok_s": {"axon": best["axon"]["prefill"], "hf": best["hf"]["prefill"]},  # best of the repeats
            "decode_tok_s": {"axon": best["axon"]["decode"], "hf": best["hf"]["decode"]},
            "generate_s": {"axon": best["axon"]["total"], "hf": best["hf"]["total"]},
            "prefill_ratio": best["axon"]["prefill"] / best["hf"]["prefill"],
            "decode_ratio": best["axon"]["decode"] / best["hf"]["decode"],
            "to_return_tok_s": {"axon": best["axon"]["to_return"], "hf": best["hf"]["to_return"]},
            "to_return_ratio": best["axon"]["to_return"] / best["hf"]["to_return"],
            "median": {"prefill_tok_s": {w: med[w]["prefill"] for w in med}, "decode_tok_s": {w: med[w]["decode"] for w in med},
                       "prefill_ratio": med["axon"]["prefill"] / med["hf"]["prefill"],
                       "decode_ratio": med["axon"]["decode"] / med["hf"]["decode"]},
            "greedy_same_sequences": same, "first_diff_at": first_diff,
            "all": {w: {k: [round(x, 4) for x in v] for k, v in d.items()} for w, d in res.items()},
        })
    if args.profile and name in args.profile_configs:
        profile_decode_step(ax, prompts[:1].contiguous(), args)
    del hf, ax
    return rows


@torch.no_grad()
def profile_decode_step(ax: Decoder, idx: torch.Tensor, args) -> None:
    """torch.profiler over decode steps of Axon (batch 1): where does one step's time go?"""
    from torch.profiler import ProfilerActivity, profile

    cache = ax.make_cache(1)
    logits = ax(idx, cache=cache)[:, -1]
    nxt = logits.argmax(-1)
    room = ax.config.block_size - idx.size(1)
    warm, steps = min(3, room // 3), max(1, min(10, room - min(3, room // 3) - 1))
    for _ in range(warm):
        nxt = ax(nxt[:, None], cache=cache)[:, -1].argmax(-1)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(steps):
            nxt = ax(nxt[:, None], cache=cache)[:, -1].argmax(-1)
    wall = (time.perf_counter() - t) / steps
    print(f"\nprofile: Axon decode step, batch 1, {steps} steps under the profiler ({1e3 * wall:.2f} ms/step with profiler overhead)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))


def kv_table() -> list[dict]:
    rows = []
    for preset in ("llama-3.2-1b", "smollm-135m"):
        c = PRESETS[preset]["config"]
        nl, nh, ne = c["n_layer"], c["n_head"], c["n_embd"]
        hd = ne // nh
        for label, nkv in ((f"MHA ({nh} kv heads)", nh), (f"GQA ({c['n_kv_head']} kv heads){' = preset' }", c["n_kv_head"]), ("MQA (1 kv head)", 1)):
            rows.append({"preset": preset, "attention": label, "n_layer": nl, "n_kv_head": nkv, "head_dim": hd,
                         "fp32": KVCache.bytes_per_token(nl, nkv, hd, torch.float32),
                         "bf16": KVCache.bytes_per_token(nl, nkv, hd, torch.bfloat16)})
    return rows


# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="tiny,124m", help="comma list from tiny (4 layers, 4 heads, 128 wide), 124m (the gpt2 preset)")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", default="tiny=128,124m=64",
                   help="new tokens per sequence: one number for all configs, or per config (default keeps 124M's run short on 2 cores)")
    p.add_argument("--tiny-vocab", type=int, default=65, help="vocabulary of the tiny config (65 = shakespeare chars, as nanoGPT)")
    p.add_argument("--repeats", default="tiny=7,124m=3",
                   help="timed rounds per (config, batch): one number, or per config; the best is reported, the median beside it")
    p.add_argument("--warmup", type=int, default=1, help="untimed short generate + prefill rounds per (config, batch)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--hf-attn", default="sdpa", help="HF attn_implementation")
    p.add_argument("--max-seconds", type=float, default=150.0,
                   help="time cap: once passed, remaining (config, batch) cells keep only their first repeat")
    p.add_argument("--profile", action="store_true", help="torch.profiler over Axon decode steps (batch 1)")
    p.add_argument("--profile-configs", default="tiny,124m")
    p.add_argument("--profile-rows", type=int, default=18)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    args = p.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    args.profile_configs = [c.strip() for c in args.profile_configs.split(",")]
    for c in args.configs:
        shape_of(c, args.tiny_vocab)

    def per_config(flag: str, text: str) -> dict[str, int]:  # "7" or "tiny=7,124m=3"
        out = {}
        try:
            for part in text.split(","):
                k, _, v = part.rpartition("=")
                if k:
                    out[k.strip()] = int(v)
                else:
                    out.update({c: int(v) for c in ("tiny", "124m")})
        except ValueError:
            p.error(f"{flag}: expected a number or config=number pairs, got {text!r}")
        missing = [c for c in args.configs if c not in out]
        if missing:
            p.error(f"{flag} gives no count for {', '.join(missing)}")
        return out

    args.new_tokens = per_config("--new-tokens", args.new_tokens)
    args.repeats = per_config("--repeats", args.repeats)
    if args.prompt_len < 1 or min(args.new_tokens[c] for c in args.configs) < 2 or min(args.repeats[c] for c in args.configs) < 1:
        p.error("--prompt-len must be >= 1, --new-tokens >= 2, --repeats >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import transformers

    load_start = load_average()
    t0 = time.perf_counter()
    deadline = t0 + args.max_seconds
    rows = []
    for name in args.configs:
        rows += run_config(name, args, deadline)
    load_end = load_average()
    wall = time.perf_counter() - t0

    print(f"torch {torch.__version__} | transformers {transformers.__version__} | python {platform.python_version()} | "
          f"threads {torch.get_num_threads()} | cpu: {cpu_model()} ({os.cpu_count()} logical) | fp32")
    if load_start is not None:
        busy = max(load_start, load_end) > 0.5 * (os.cpu_count() or 1) + 0.5
        print(f"1-min load average: {load_start:.2f} at start, {load_end:.2f} at end"
              + (" -- WARNING: the machine was busy; absolute figures are noisy, the interleaved ratios less so" if busy else ""))
    print(f"HF: GPT2LMHeadModel, attn_implementation={args.hf_attn}, generate(do_sample=False, use_cache=True, min_new_tokens=max_new_tokens), "
          f"default cache DynamicCache | Axon: Decoder (GPT-2 switches, sdpa), axon.generate.generate(temperature=0), KVCache")
    print(f"same weights (HF -> Axon, logits checked equal), same prompts (random ids, length {args.prompt_len}, batch 8 = 8 different prompts), "
          f"new tokens {', '.join(f'{c}={args.new_tokens[c]}' for c in args.configs)} | warm-up {args.warmup}, best of "
          f"{', '.join(f'{c}={args.repeats[c]}' for c in args.configs)} alternating repeats (median ratio beside) | wall {wall:.0f} s")
    print("prefill = B*prompt / one forward with a fresh cache (all positions' logits, both); "
          "decode = B*(new-1) / (last forward end - first forward end): the new-token loop; "
          "to return = B*new / (generate return - first forward end), the older clock, with the per-call teardown")
    print()
    hdr = (f"{'config':<7}{'batch':>6}{'prefill tok/s: axon':>21}{'hf':>10}{'ratio':>7}{'(med)':>7}"
           f"{'decode tok/s: axon':>21}{'hf':>10}{'ratio':>7}{'(med)':>7}{'to return: ratio':>18}"
           f"{'gen s: axon':>13}{'hf':>8}  greedy same")
    print(hdr)
    for r in rows:
        same = f"{r['greedy_same_sequences']}/{r['batch']}" + (f" (first diff at token {r['first_diff_at']})" if r["first_diff_at"] is not None else "")
        print(f"{r['config']:<7}{r['batch']:>6}{r['prefill_tok_s']['axon']:>21,.0f}{r['prefill_tok_s']['hf']:>10,.0f}{r['prefill_ratio']:>6.2f}x{r['median']['prefill_ratio']:>6.2f}x"
              f"{r['decode_tok_s']['axon']:>21,.0f}{r['decode_tok_s']['hf']:>10,.0f}{r['decode_ratio']:>6.2f}x{r['median']['decode_ratio']:>6.2f}x"
              f"{r['to_return_ratio']:>17.2f}x"
              f"{r['generate_s']['axon']:>13.3f}{r['generate_s']['hf']:>8.3f}  {same}")
    print()
    verdicts = {}
    for name, bar in BARS.items():
        r = next((r for r in rows if r["config"] == name and r["batch"] == 1), None)
        if r is None:
            continue
        ok = r["decode_ratio"] >= bar
        verdicts[name] = ok
        same = "" if r["greedy_same_sequences"] == 1 else " -- WARNING: greedy tokens differ at batch 1"
        print(f"{name} b1 decode >= {bar:g}x: {'PASS' if ok else 'FAIL'} ({r['decode_ratio']:.2f}; median ratio {r['median']['decode_ratio']:.2f}){same}")
    print()
    print("KV cache bytes per token (keys + values, all layers) -- KVCache.bytes_per_token:")
    kv = kv_table()
    print(f"  {'preset':<14}{'attention':<28}{'layers':>7}{'kv heads':>9}{'head_dim':>9}{'fp32 B/tok':>12}{'bf16 B/tok':>12}{'bf16 MiB / 8k tok':>19}")
    for k in kv:
        print(f"  {k['preset']:<14}{k['attention']:<28}{k['n_layer']:>7}{k['n_kv_head']:>9}{k['head_dim']:>9}{k['fp32']:>12,}{k['bf16']:>12,}"
              f"{k['bf16'] * 8192 / 2**20:>19,.0f}")
    if args.json:
        print(json.dumps({
            "torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "load_average": [load_start, load_end], "hf_attn": args.hf_attn, "hf_cache": "DynamicCache", "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens, "tiny_vocab": args.tiny_vocab, "results": rows, "bars": BARS, "passed": verdicts, "kv_cache": kv,
            "wall_s": wall,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DPO step speed: Axon's ``dpo`` task against TRL 1.16's ``DPOTrainer`` on one model, one batch, one CPU.

One Axon decoder with GPT-2's switches (4 layers, 4 heads, 256 wide, block 256 by default) is
written with ``axon.to_hf`` (weights and tokenizer) and loaded back by ``transformers`` as the TRL
policy; TRL builds its reference from that directory as it does by default (``ref_model=None``),
Axon holds a frozen copy of the same weights as the ``dpo`` task does. The tokenizer is a byte-level
BPE of ``--vocab-size`` ids trained on the bundled Shakespeare corpus; the comparisons are generated
from the same corpus (a passage as the prompt, the passage that follows as the chosen answer, a
passage from elsewhere as the rejected one; ``--pairs`` of them, prompt + answer ~130-256 tokens),
written as a preference JSONL file and read by Axon's reader in the SFT chat template
(``axon.data.preferences.encode_comparisons``). Both sides get exactly those token ids: Axon as its
(x, y) batch, TRL as the same prompt / answer ids through its own collator
(``DataCollatorForPreference``), so the scored positions are the same.

Before timing the script checks that the two models give the same logits and the same sequence
log-probabilities (TRL's fused LM head against the dpo objective), and compares the losses of the
warm-up steps (the same model trained the same way).

What one step is, on each side (fp32, the same AdamW: fused, lr ``--lr``, betas (0.9, 0.999), no
weight decay, constant lr; gradient clipping at 1.0; the same torch threads):

* Axon: ``Trainer._train_step``, the one trainer's step: the dpo objective on the batch (policy
  forward on chosen and rejected in one call, the reference's log-probabilities under no_grad, the
  LM head and log-softmax at the answers' positions only, the loss), backward, clipping, the
  optimizer step, zero_grad. The batch comes from a dataset that returns
  the prepared batch, so collation is outside the clock.
* TRL: what ``Trainer``'s inner loop does per optimizer step on a collated batch:
  ``trainer.training_step`` (moving inputs, ``DPOTrainer.compute_loss``: policy forward and the
  reference model's forward, each through TRL's fused, chunked log-prob head, which off CUDA scores
  every position and recomputes the logits in backward; the loss; backward), ``_clip_grad_norm``, ``optimizer.step()``,
  ``lr_scheduler.step()``, ``model.zero_grad()``. Tokenisation and collation are outside the clock
  (TRL tokenises at construction; its collator is called once, before timing).

Timing: ``--warmup`` untimed steps each, then ``--repeats`` rounds of one step each, Axon and TRL
alternating A B B A ... so background load lands on both; the figure is the median step, with the
spread (min-max and the quartiles) beside it. Bar (issue 18): Axon's DPO step >= 1.5x TRL's speed
(TRL's median step time over Axon's). A benchmark, not a test: the verdict is printed, never asserted.

    python benchmarks/trl_dpo.py                       # the bar's config (~1 min on 2 quiet cores, ~3 busy)
    python benchmarks/trl_dpo.py --quick               # smoke check: a tiny model, a few steps
    python benchmarks/trl_dpo.py --threads 1           # steadier on a busy shared machine
    python benchmarks/trl_dpo.py --n-layer 6 --n-embd 384 --vocab-size 16384 --json
    python benchmarks/trl_dpo.py --profile             # + torch.profiler's table of one step of each

Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

BAR = 1.5  # Axon DPO steps/s over TRL's, at the default config


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


def native_bf16() -> str:
    """The CPU flags that give bf16 matrix products in hardware (lscpu's avx512_bf16 / amx), or 'no'."""
    try:
        flags = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    found = sorted({f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags.split()})
    return ", ".join(found) if found else "no"


# ----------------------------------------------------------------------------------------------
# data: comparisons generated from the bundled corpus


def make_comparisons(text: str, n: int, seed: int, prompt_chars: tuple[int, int],
                     answer_chars: tuple[int, int]) -> list[dict]:
    """``n`` comparisons: a passage of the corpus as the prompt, the passage after it as the chosen
    answer, a passage from elsewhere (of another length) as the rejected one."""
    text = text.replace("$", "S")  # the chat template's end marker may not appear in an answer
    rng = random.Random(seed)
    top = len(text) - prompt_chars[1] - 2 * answer_chars[1]
    rows = []
    for _ in range(n):
        s = rng.randrange(top)
        lp = rng.randint(*prompt_chars)
        prompt = text[s : s + lp]
        chosen = text[s + lp : s + lp + rng.randint(*answer_chars)]
        r = rng.randrange(top)
        rejected = text[r : r + rng.randint(*answer_chars)]
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


class FixedBatch:
    """A training set of one prepared batch: what ``Trainer._train_step`` draws, without collation."""

    def __init__(self, batch):
        self.batch = batch

    def get_batch(self, step, batch_size, block_size, seed, micro_step=0):
        return self.batch


def trl_examples(pairs, rows) -> list[dict]:
    """TRL's tokenised form of Axon's encoded pairs: prompt ids, then each side's answer ids, split
    where Axon's loss mask starts (the answer and its end marker are the last pieces)."""
    out = []
    for b in rows:
        w, lo = (int(i) for i in pairs.pairs[b])
        sides = []
        for i in (w, lo):
            ids, trained = pairs.seqs[i].tolist(), pairs.trained[i]
            k = int(trained.argmax())
            assert trained[k:].all() and not trained[:k].any(), "the loss mask is not a suffix"
            sides.append((ids[:k], ids[k:]))
        assert sides[0][0] == sides[1][0], "the two sides of a pair have different prompt ids"
        out.append({"prompt_ids": sides[0][0], "chosen_ids": sides[0][1], "rejected_ids": sides[1][1]})
    return out


# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=8192, help="BPE ids, trained on the bundled corpus")
    p.add_argument("--pairs", type=int, default=8, help="comparisons in the batch")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per side, alternating ABBA")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="stop timing after an even number of rounds (>= 2) once this much time has passed")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke check: 1 layer, 64 wide, block 64, vocab 512, 4 pairs, "
                   "2 warm-up steps and 2 timed rounds (~10 s)")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's table of one step of each")
    p.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    args = p.parse_args(argv)
    if args.quick:
        args.n_layer, args.n_head, args.n_embd, args.block_size, args.vocab_size = 1, 2, 64, 64, 512
        args.pairs, args.warmup, args.repeats = 4, 2, 2
    if args.n_embd % args.n_head:
        p.error(f"--n-embd {args.n_embd} is not a multiple of --n-head {args.n_head}")
    if args.vocab_size < 300:
        p.error(f"--vocab-size must be >= 300 (the 256 bytes of byte-level BPE and some merges), got {args.vocab_size}")
    if args.block_size < 32:
        p.error(f"--block-size must be >= 32, got {args.block_size}")
    args.is_bar_config = (not args.quick and (args.n_layer, args.n_head, args.n_embd, args.block_size, args.vocab_size,
                                              args.pairs) == (4, 4, 256, 256, 8192, 8))
    return args


def quiet_libraries() -> None:
    """TRL and transformers print notices at construction (the tokeniser's pad token, the Trainer's
    device); none is about the timing."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "trl", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="axon-trl-dpo-") as tmp:  # the files, the export, TRL's output_dir
        return bench(args, Path(tmp))


def bench(args, tmp: Path) -> int:
    try:
        import datasets
        import transformers
        import trl
        from trl import DPOConfig, DPOTrainer
    except ImportError as e:
        raise SystemExit(f"error: the comparison needs trl, transformers and datasets (the dev extra): {e}") from None

    import axon
    from axon.config import load_config
    from axon.data.corpus import corpus_path
    from axon.data.preferences import encode_comparisons, read_preferences
    from axon.data.tokenizers import BPETokenizer
    from axon.models.decoder import Decoder, DecoderConfig
    from axon.objectives.dpo import DPO
    from axon.train.trainer import Trainer

    load_start = load_average()

    # --- tokenizer, comparisons, Axon's batch ------------------------------------------------
    text = corpus_path("shakespeare").read_text(encoding="utf-8")
    tok = BPETokenizer.train([text], args.vocab_size)
    answer = (args.block_size, 2 * args.block_size) if not args.quick else (40, 80)  # ~3.5 chars per token
    prompt = (args.block_size // 2, args.block_size + args.block_size // 4) if not args.quick else (20, 40)
    rows = make_comparisons(text, args.pairs, args.seed, prompt, answer)
    pref_file = tmp / "comparisons.jsonl"
    pref_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # at most block_size tokens a text: Axon's model reads n - 1 of them, TRL's all n (it drops the last state)
    pairs, cut = encode_comparisons(read_preferences(pref_file), tok, args.block_size - 1, True, str(pref_file))
    batch = pairs.collate(range(len(pairs)))
    x, y = batch
    B, _, T = x.shape
    answer_tokens = int((y != -100).sum())
    lengths = [len(s) for s in pairs.seqs]

    # --- the model, written for transformers --------------------------------------------------
    cfg_model = DecoderConfig(vocab_size=tok.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                              n_head=args.n_head, n_embd=args.n_embd, mlp="gelu", norm="layernorm", norm_bias=True,
                              norm_eps=1e-5, pos="learned", bias=True, tie_embeddings=True, dropout=0.0,
                              attn_impl="sdpa")
    torch.manual_seed(args.seed)
    policy = Decoder(cfg_model).float().train()
    n_params = sum(p.numel() for p in policy.parameters())
    hf_dir = axon.to_hf(policy, tmp / "hf", tokenizer=tok)
    reference = Decoder(cfg_model).float()
    reference.load_state_dict(policy.state_dict())
    for p in reference.parameters():  # as axon.tasks.finetune.frozen_reference makes it
        p.requires_grad_(False)
    reference.eval()

    # --- Axon: the dpo objective on the one trainer -------------------------------------------
    overrides = ["--task=dpo", f"--model.block_size={args.block_size}", f"--model.vocab_size={tok.vocab_size}",
                 "--optim.name=adamw", f"--optim.lr={args.lr}", "--optim.weight_decay=0", "--optim.betas=[0.9,0.999]",
                 "--optim.grad_clip=1.0", "--schedule.name=constant", "--schedule.warmup_steps=0",
                 f"--train.batch_size={B}", "--train.max_steps=100000", "--train.dtype=fp32",
                 f"--train.seed={args.seed}",
                 f"--dpo.beta={args.beta}", f"--out_dir={tmp / 'runs'}"]
    cfg = load_config(None, overrides)
    objective = DPO("dpo", reference, beta=args.beta)
    ax_trainer = Trainer(cfg, policy, objective, FixedBatch(batch), FixedBatch(batch), tmp / "runs" / "axon",
                         torch.device("cpu"))
    ax_step_i = [0]

    def axon_step() -> float:
        loss, _ = ax_trainer._train_step(ax_step_i[0])
        ax_step_i[0] += 1
        return loss

    # --- TRL: DPOTrainer on the exported model ------------------------------------------------
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    hf_policy = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                                                  attn_implementation="sdpa")
    trl_args = DPOConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=B, learning_rate=args.lr,
                         lr_scheduler_type="constant", weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999,
                         max_grad_norm=1.0, beta=args.beta, loss_type=["sigmoid"], max_length=None, use_cpu=True,
                         bf16=False, fp16=False, report_to=[], save_strategy="no", logging_strategy="no",
                         disable_tqdm=True, seed=args.seed, dataloader_num_workers=0)
    trl_trainer = DPOTrainer(model=hf_policy, args=trl_args, processing_class=hf_tok,
                             train_dataset=datasets.Dataset.from_list(rows))
    trl_trainer.create_optimizer()
    trl_model, trl_trainer.optimizer = trl_trainer.accelerator.prepare(trl_trainer.model, trl_trainer.optimizer)
    trl_trainer.create_scheduler(num_training_steps=100000)
    trl_trainer.model_wrapped = trl_model
    trl_trainer.current_gradient_accumulation_steps = 1  # what the inner loop sets for one micro-batch a step
    inputs = trl_trainer.data_collator(trl_examples(pairs, range(len(pairs))))

    def trl_step() -> float:
        loss = trl_trainer.training_step(trl_model, inputs)
        trl_trainer._clip_grad_norm(trl_model)
        trl_trainer.optimizer.step()
        trl_trainer.lr_scheduler.step()
        trl_model.zero_grad()
        return float(loss)

    # --- the same model, the same scored tokens ------------------------------------------------
    with torch.no_grad():
        flat = x.reshape(2 * B, T)
        torch.testing.assert_close(policy(flat), hf_policy(input_ids=flat, use_cache=False).logits,
                                   rtol=1e-4, atol=1e-4,
                                   msg=lambda s: f"Axon and transformers logits differ: {s}")
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        trl_logp = hf_policy(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                             fused_lm_head=True).log_probs.sum(1)
        ax_logp = objective.logprobs(policy, x, y)[0]
        logp_gap = float((ax_logp - torch.stack(trl_logp.chunk(2), 1)).abs().max())
        if logp_gap > 1e-3:
            raise SystemExit(f"error: Axon's and TRL's sequence log-probabilities differ by {logp_gap:.2e}")

    # --- warm-up (the first losses double as a check that both train alike), then timing -------
    n_warm = max(args.warmup, 1)
    warm = {"axon": [axon_step() for _ in range(n_warm)], "trl": [trl_step() for _ in range(n_warm)]}
    loss_gap = max(abs(a - b) for a, b in zip(warm["axon"], warm["trl"]))
    if loss_gap > 1e-3:
        print(f"warning: warm-up losses differ by {loss_gap:.2e}: Axon {warm['axon']} vs TRL {warm['trl']}",
              file=sys.stderr)

    steps = {"axon": axon_step, "trl": trl_step}
    times: dict[str, list[float]] = {"axon": [], "trl": []}
    t_timing = time.perf_counter()
    rounds = 0
    for r in range(args.repeats):
        if r >= 2 and r % 2 == 0 and time.perf_counter() - t_timing > args.max_seconds:
            print(f"time cap: stopping after {r} rounds (--max-seconds {args.max_seconds:g})", file=sys.stderr)
            break
        for name in (("axon", "trl") if r % 2 == 0 else ("trl", "axon")):
            t = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t)
        rounds += 1
        print(f"round {r + 1}/{args.repeats}: axon {1e3 * times['axon'][-1]:.0f} ms, "
              f"trl {1e3 * times['trl'][-1]:.0f} ms",
              file=sys.stderr, flush=True)
    load_end = load_average()

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name in ("axon", "trl"):
            with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
                steps[name]()
            print(f"torch.profiler, one {name} step, by self CPU time:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    # --- report -------------------------------------------------------------------------------
    def summary(ts: list[float]) -> dict:
        q = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) >= 2 else [ts[0]] * 3
        return {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts),
                "q1_ms": 1e3 * q[0], "q3_ms": 1e3 * q[2], "steps_ms": [round(1e3 * t, 1) for t in ts]}

    res = {k: summary(v) for k, v in times.items()}
    ratio = res["trl"]["median_ms"] / res["axon"]["median_ms"]
    # the spread of the ratio: each round's pair of steps, ran back to back
    per_round = sorted(b / a for a, b in zip(times["axon"], times["trl"]))
    print(f"torch {torch.__version__} | transformers {transformers.__version__} | trl {trl.__version__} | "
          f"python {platform.python_version()} | threads {torch.get_num_threads()}")
    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical) | native bf16: {native_bf16()} (both sides run fp32)")
    print(f"model: Axon Decoder, GPT-2 switches, n_layer={args.n_layer} n_head={args.n_head} n_embd={args.n_embd} "
          f"block={args.block_size} vocab={tok.vocab_size} (BPE on the bundled corpus) | params {n_params:,} | "
          f"exported with axon.to_hf -> {type(hf_policy).__name__} (sdpa)")
    print(f"batch: {B} comparisons -> {2 * B} sequences of {min(lengths)}-{max(lengths)} tokens (padded to {T}), "
          f"{answer_tokens} answer tokens scored{f', {cut} answers cut to the block' if cut else ''} | "
          "same ids on both sides")
    print(f"same for all: logits checked equal, sequence log-probs within {logp_gap:.1e}, warm-up losses within "
          f"{loss_gap:.1e} | DPO sigmoid loss, beta={args.beta} | AdamW fused, lr={args.lr}, betas (0.9, 0.999), "
          "no weight decay, constant lr | clip 1.0 | fp32")
    print(f"timing: {n_warm} warm-up steps each, then {rounds} rounds of one step each (ABBA order); medians")
    if load_start is not None:
        busy = max(load_start, load_end) > 0.5 * (os.cpu_count() or 1) + 0.5
        print(f"1-min load average: {load_start:.2f} at start, {load_end:.2f} at end"
              + (" -- WARNING: the machine was busy; absolute figures are noisy, the interleaved ratio less so"
                 if busy else ""))
    print()
    print(f"{'DPO step':<10}{'median ms':>11}{'min':>9}{'q1':>9}{'q3':>9}{'max':>9}")
    for name in ("axon", "trl"):
        r = res[name]
        cells = "".join(f"{r[k + '_ms']:>9.1f}" for k in ("min", "q1", "q3", "max"))
        print(f"{name:<10}{r['median_ms']:>11.1f}{cells}")
    print()
    print(f"Axon/TRL speed: {ratio:.2f}x (TRL's median step / Axon's); "
          f"per round {per_round[0]:.2f}-{per_round[-1]:.2f}x")
    verdict = "PASS" if ratio >= BAR else "FAIL"
    note = "" if args.is_bar_config else " (not the bar's config: for information)"
    print(f"bar: Axon DPO step >= {BAR}x TRL's speed: {verdict} (ratio {ratio:.2f}){note}")
    if args.json:
        print(json.dumps({
            "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "threads": torch.get_num_threads(), "cpu": cpu_model(), "native_bf16": native_bf16(),
            "config": {"n_layer": args.n_layer, "n_head": args.n_head, "n_embd": args.n_embd,
                       "block_size": args.block_size,
                       "vocab_size": tok.vocab_size, "pairs": B, "padded_length": T, "answer_tokens": answer_tokens},
            "params": n_params, "logp_gap": logp_gap, "warmup_loss_gap": loss_gap, "rounds": rounds,
            "load_average": [load_start, load_end], "results": res, "ratio": ratio,
            "ratio_per_round": [round(v, 3) for v in per_round], "bar": BAR, "bar_config": args.is_bar_config,
            "passed": ratio >= BAR,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

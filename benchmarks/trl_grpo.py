"""GRPO iteration speed: Axon's ``grpo`` task against TRL 1.16's ``GRPOTrainer`` on one model, one CPU.

One GRPO iteration is: sample G answers to each of P prompts with the current policy, score them,
and one optimizer step on that generation batch (beta 0, one update per generation batch: TRL's
default ``num_iterations=1``, its batch sizes set so that one step consumes the whole batch).

The model is built as in ``benchmarks/trl_dpo.py``: one Axon decoder with GPT-2's switches (4 layers,
4 heads, 256 wide, block 256 by default), here as the grpo task's policy (``model.family:
actor_critic``, ``model.value_head: none``), written with ``axon.to_hf`` (weights and the BPE
tokenizer of ``--vocab-size`` ids trained on the bundled Shakespeare corpus) and loaded back by
``transformers`` as TRL's policy. The prompts are ``--prompts`` passages of the corpus in Axon's chat
template; TRL gets the template's text and, for it, the same ids as Axon (its one tokenizer call
replaced by a look-up: Axon encodes the template piece by piece, which a whole-text encoding does not
reproduce). The reward is the same cheap deterministic judge on both sides: the share of the
answer's characters that are ``e``.

What one iteration is, on each side (fp32, temperature 1, the same AdamW: fused, lr ``--lr``, betas
(0.9, 0.999), no weight decay, constant lr; clipping at 1.0; the dapo loss, group-scaled advantages,
clip 0.2; the same torch threads):

* Axon: ``Trainer._train_step`` on the grpo task's schedule with one step per rollout, so each step
  samples a rollout (``GRPO.rollout``: Axon's cached batched generation of all P x G answers, each
  row drawing from its own generator, the old log-probabilities and entropy read off the sampling's
  own logits -- no measuring forward -- the reward, the advantages) and makes the one minibatch
  update (the LM head at the answers' positions only). At beta 0 the frozen reference runs only on
  every ``grpo.kl_every``-th rollout (the task's default 10; ``--kl-every``), a forward of it and of
  the policy for the logged KL: the warm-up's rollout 0 is one, the timed ones are not unless
  ``--kl-every`` says so (``--kl-every 1``: the reference on every rollout, as before).
* TRL: what ``Trainer``'s inner loop does per optimizer step: ``trainer.training_step`` on the P x G
  prompt rows (each prompt G times, as its RepeatSampler yields them) -- ``GRPOTrainer._prepare_inputs``
  generates with ``transformers``' ``generate`` (its default: no vLLM), scores, computes the
  advantages, then ``compute_loss`` and backward -- ``_clip_grad_norm``, ``optimizer.step()``,
  ``lr_scheduler.step()``, ``model.zero_grad()``.

The split rollout / update is measured inside the same timed iterations: Axon's by timing
``GRPO.rollout``, TRL's by timing ``_generate_and_score_completions``; the update is the rest.
Answers end at an end marker (Axon: the chat template's; TRL: the tokenizer's eos) or after
``--max-new-tokens``; the untrained model rarely writes either, and the mean answer lengths of the
two sides are printed.

Timing: ``--warmup`` untimed iterations each, then ``--repeats`` rounds of one iteration each, Axon
and TRL alternating A B B A ...; medians with the spread. Bar (issue 18): Axon's GRPO iteration >= 2x
TRL's speed (TRL's median iteration time over Axon's). A benchmark, not a test: the verdict is
printed, never asserted.

    python benchmarks/trl_grpo.py                       # the bar's config: 8 prompts x 8 answers, 48 new tokens
    python benchmarks/trl_grpo.py --quick               # smoke check: a tiny model, a few iterations
    python benchmarks/trl_grpo.py --threads 1           # steadier on a busy shared machine
    python benchmarks/trl_grpo.py --kl-every 1          # Axon also runs the reference (its logged KL) every rollout
    python benchmarks/trl_grpo.py --profile             # + torch.profiler's table of one iteration of each
    python benchmarks/trl_grpo.py --prompts 16 --group-size 4 --max-new-tokens 64 --json

Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trl_dpo import cpu_model, load_average, native_bf16, quiet_libraries  # noqa: E402

BAR = 2.0  # Axon GRPO iterations/s over TRL's, at the default config
LETTER = "e"


def share_of_letter(answer: str) -> float:
    """The reward: the share of the answer's characters that are LETTER (0 for an empty answer)."""
    return answer.count(LETTER) / len(answer) if answer else 0.0


def trl_reward(completions, **kwargs) -> list[float]:
    return [share_of_letter(c) for c in completions]


def make_prompts(text: str, n: int, seed: int, chars: tuple[int, int]) -> list[str]:
    """``n`` passages of the corpus, of ``chars`` characters, as the users' prompts."""
    text = text.replace("$", "S")  # the chat template's end marker
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = rng.randrange(len(text) - chars[1])
        out.append(text[s : s + rng.randint(*chars)])
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=8192, help="BPE ids, trained on the bundled corpus")
    p.add_argument("--prompts", type=int, default=8, help="prompts per generation batch (P)")
    p.add_argument("--group-size", type=int, default=8, help="answers per prompt (G)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per side")
    p.add_argument("--repeats", type=int, default=6, help="timed iterations per side, alternating ABBA")
    p.add_argument("--max-seconds", type=float, default=240.0,
                   help="stop timing after an even number of rounds (>= 2) once this much time has passed")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kl-every", type=int, default=None,
                   help="Axon's grpo.kl_every: at beta 0 the reference runs on every N-th rollout, for the logged KL "
                   "(default: the task's, 10; 1: every rollout; 0: never)")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's table of one iteration of each")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 layer, 64 wide, block 64, vocab 512, "
                   "2 prompts x 4 answers of 8 tokens, 1 warm-up iteration and 2 timed rounds (~10 s)")
    p.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    args = p.parse_args(argv)
    if args.quick:
        args.n_layer, args.n_head, args.n_embd, args.block_size, args.vocab_size = 1, 2, 64, 64, 512
        args.prompts, args.group_size, args.max_new_tokens, args.warmup, args.repeats = 2, 4, 8, 1, 2
    if args.n_embd % args.n_head:
        p.error(f"--n-embd {args.n_embd} is not a multiple of --n-head {args.n_head}")
    if args.vocab_size < 300:
        p.error(f"--vocab-size must be >= 300 (the 256 bytes of byte-level BPE and some merges), got {args.vocab_size}")
    if args.group_size < 2:
        p.error(f"--group-size must be >= 2, got {args.group_size}")
    if args.max_new_tokens + 48 > args.block_size:
        p.error(f"--max-new-tokens {args.max_new_tokens} leaves under 48 tokens of --block-size for the prompt")
    args.is_bar_config = (not args.quick and (args.n_layer, args.n_head, args.n_embd, args.block_size, args.vocab_size,
                                              args.prompts, args.group_size, args.max_new_tokens)
                          == (4, 4, 256, 256, 8192, 8, 8, 48))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="axon-trl-grpo-") as tmp:  # the export, the runs, TRL's output_dir
        return bench(args, Path(tmp))


def timed(owner, name: str, into: list[float]) -> None:
    """Wrap ``owner.name`` so that each call's duration is appended to ``into``."""
    fn = getattr(owner, name)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            into.append(time.perf_counter() - t)

    setattr(owner, name, wrapper)


def bench(args, tmp: Path) -> int:
    try:
        import datasets
        import transformers
        import trl
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as e:
        raise SystemExit(f"error: the comparison needs trl, transformers and datasets (the dev extra): {e}") from None

    import axon
    from axon.config import load_config
    from axon.data.chat import prompt_ids
    from axon.data.corpus import corpus_path
    from axon.data.prompts import RolloutSchedule
    from axon.data.tokenizers import BPETokenizer
    from axon.models import build_model
    from axon.tasks.grpo import GRPO
    from axon.tasks.ppo import TRAIN_SET, JudgeReward, PromptSet
    from axon.train.trainer import Trainer

    load_start = load_average()
    P, G, NEW = args.prompts, args.group_size, args.max_new_tokens
    N = P * G

    # --- tokenizer, prompts --------------------------------------------------------------------
    text = corpus_path("shakespeare").read_text(encoding="utf-8")
    tok = BPETokenizer.train([text], args.vocab_size)
    chars = (80, 200) if not args.quick else (20, 40)
    users = make_prompts(text, P, args.seed, chars)
    templated = [prompt_ids(tok, u) for u in users]  # (text in the chat template, its ids)
    prompt_lens = [len(ids) for _, ids in templated]
    if max(prompt_lens) + NEW > args.block_size:
        raise SystemExit(f"error: a prompt of {max(prompt_lens)} tokens + {NEW} new ones passes the block")

    # --- Axon: the grpo task's objective on the one trainer ------------------------------------
    overrides = ["--task=grpo", "--model.family=actor_critic", "--model.value_head=none",
                 f"--model.vocab_size={tok.vocab_size}", f"--model.block_size={args.block_size}",
                 f"--model.n_layer={args.n_layer}", f"--model.n_head={args.n_head}", f"--model.n_embd={args.n_embd}",
                 "--model.mlp=gelu", "--model.norm=layernorm", "--model.norm_bias=true", "--model.norm_eps=1e-5",
                 "--model.pos=learned", "--model.bias=true", "--model.tie_embeddings=true", "--model.dropout=0",
                 "--model.attn_impl=sdpa",
                 f"--grpo.rollout_prompts={P}", f"--grpo.group_size={G}", f"--grpo.max_new_tokens={NEW}",
                 "--grpo.temperature=1.0", "--grpo.beta=0", "--grpo.epochs=1",
                 "--optim.name=adamw", f"--optim.lr={args.lr}", "--optim.weight_decay=0", "--optim.betas=[0.9,0.999]",
                 "--optim.grad_clip=1.0", "--schedule.name=constant", "--schedule.warmup_steps=0",
                 f"--train.batch_size={N}", "--train.grad_accum=1", "--train.max_steps=100000", "--train.dtype=fp32",
                 f"--train.seed={args.seed}", f"--out_dir={tmp / 'runs'}"]
    if args.kl_every is not None:
        overrides.append(f"--grpo.kl_every={args.kl_every}")
    cfg = load_config(None, overrides)
    torch.manual_seed(args.seed)
    model = build_model(cfg.model).float().train()
    decoder = model.policy()
    n_params = sum(p.numel() for p in decoder.parameters())
    hf_dir = axon.to_hf(decoder, tmp / "hf", tokenizer=tok)
    reference = copy.deepcopy(decoder)  # the frozen reference: the policy's starting weights
    reference.load_state_dict(decoder.state_dict())
    for p in reference.parameters():  # as axon.tasks.ppo.load_reference makes it
        p.requires_grad_(False)
    reference.eval()
    prompt_set = PromptSet(list(users), [ids for _, ids in templated])
    schedule = RolloutSchedule(P, N, 1, 1, group_size=G)
    assert schedule.steps_per_rollout(N) == 1
    objective = GRPO(cfg, tok, {TRAIN_SET: prompt_set}, schedule, reference,
                     JudgeReward(lambda q, a: share_of_letter(a)), None, None)
    ax_trainer = Trainer(cfg, model, objective, schedule, schedule, tmp / "runs" / "axon", torch.device("cpu"))
    ax_rollout_s: list[float] = []
    timed(objective, "rollout", ax_rollout_s)
    ax_step_i = [0]
    ax_lengths: list[float] = []

    def axon_iteration() -> float:
        loss, _ = ax_trainer._train_step(ax_step_i[0])  # step k: rollout k sampled, then its one update
        ax_step_i[0] += 1
        ax_lengths.append(float(model.rollout.mask.sum(1).mean()))
        return loss

    # --- TRL: GRPOTrainer on the exported model -------------------------------------------------
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    hf_policy = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                                                  attn_implementation="sdpa")
    trl_args = GRPOConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=N, gradient_accumulation_steps=1,
                          num_generations=G, num_iterations=1, max_completion_length=NEW, temperature=1.0,
                          beta=0.0, loss_type="dapo", scale_rewards="group", epsilon=0.2, learning_rate=args.lr,
                          lr_scheduler_type="constant", weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999,
                          max_grad_norm=1.0, use_cpu=True, bf16=False, fp16=False, report_to=[], save_strategy="no",
                          logging_strategy="no", disable_tqdm=True, seed=args.seed, dataloader_num_workers=0,
                          use_vllm=False, log_completions=False)
    assert trl_args.steps_per_generation == 1 and trl_args.generation_batch_size == N
    rows = [{"prompt": t} for t, _ in templated]
    trl_trainer = GRPOTrainer(model=hf_policy, reward_funcs=[trl_reward], args=trl_args, processing_class=hf_tok,
                              train_dataset=datasets.Dataset.from_list(rows))
    trl_trainer.create_optimizer()
    trl_model, trl_trainer.optimizer = trl_trainer.accelerator.prepare(trl_trainer.model, trl_trainer.optimizer)
    trl_trainer.create_scheduler(num_training_steps=100000)
    trl_trainer.model_wrapped = trl_model
    trl_trainer.current_gradient_accumulation_steps = 1  # what the inner loop sets for one micro-batch a step
    trl_model.train()
    # the same prompt ids on both sides: Axon encodes the chat template piece by piece, and the exported
    # tokenizer, reading the template's text whole, merges across the pieces' boundaries; TRL's prompt
    # tokenisation (one call of the tokenizer, ~1 ms) is replaced by a look-up of Axon's ids
    ids_of = {t: list(ids) for t, ids in templated}
    trl_trainer._tokenize_prompts = lambda prompts: ([ids_of[p] for p in prompts], None, {})
    generation_batch = [r for r in rows for _ in range(G)]  # each prompt G times running (its RepeatSampler)
    trl_rollout_s: list[float] = []
    timed(trl_trainer, "_generate_and_score_completions", trl_rollout_s)
    trl_lengths: list[float] = []

    def trl_iteration() -> float:
        loss = trl_trainer.training_step(trl_model, generation_batch, None)
        trl_trainer._clip_grad_norm(trl_model)
        trl_trainer.optimizer.step()
        trl_trainer.lr_scheduler.step()
        trl_model.zero_grad()
        trl_lengths.append(float(trl_trainer._buffered_inputs[0]["completion_mask"].sum(1).float().mean()))
        return float(loss)

    # --- the same model ----------------------------------------------------------------------------
    with torch.no_grad():
        x = torch.tensor([templated[0][1]])
        torch.testing.assert_close(decoder(x), hf_policy(input_ids=x, use_cache=False).logits, rtol=1e-4, atol=1e-4,
                                   msg=lambda s: f"Axon and transformers logits differ: {s}")

    # --- warm-up, then timing ------------------------------------------------------------------------
    n_warm = max(args.warmup, 1)
    for _ in range(n_warm):
        axon_iteration()
    for _ in range(n_warm):
        trl_iteration()
    for lst in (ax_rollout_s, trl_rollout_s, ax_lengths, trl_lengths):
        lst.clear()

    steps = {"axon": axon_iteration, "trl": trl_iteration}
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
        print(f"round {r + 1}/{args.repeats}: axon {1e3 * times['axon'][-1]:.0f} ms "
              f"(rollout {1e3 * ax_rollout_s[-1]:.0f}), trl {1e3 * times['trl'][-1]:.0f} ms "
              f"(rollout {1e3 * trl_rollout_s[-1]:.0f})", file=sys.stderr, flush=True)
    load_end = load_average()
    timed_axon = range(n_warm, ax_step_i[0])  # the rollouts of the timed iterations

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name in ("axon", "trl"):
            with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
                steps[name]()
            print(f"torch.profiler, one {name} iteration, by self CPU time:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    # --- report -------------------------------------------------------------------------------
    def summary(ts: list[float], rollout: list[float]) -> dict:
        q = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) >= 2 else [ts[0]] * 3
        update = [a - b for a, b in zip(ts, rollout)]
        return {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts),
                "q1_ms": 1e3 * q[0], "q3_ms": 1e3 * q[2], "rollout_median_ms": 1e3 * statistics.median(rollout),
                "update_median_ms": 1e3 * statistics.median(update),
                "iterations_ms": [round(1e3 * t, 1) for t in ts]}

    res = {"axon": summary(times["axon"], ax_rollout_s), "trl": summary(times["trl"], trl_rollout_s)}
    ratio = res["trl"]["median_ms"] / res["axon"]["median_ms"]
    per_round = sorted(b / a for a, b in zip(times["axon"], times["trl"]))
    lengths = {"axon": statistics.mean(ax_lengths), "trl": statistics.mean(trl_lengths)}
    print(f"torch {torch.__version__} | transformers {transformers.__version__} | trl {trl.__version__} | "
          f"python {platform.python_version()} | threads {torch.get_num_threads()}")
    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical) | native bf16: {native_bf16()} (both sides run fp32)")
    print(f"model: Axon Decoder, GPT-2 switches, n_layer={args.n_layer} n_head={args.n_head} n_embd={args.n_embd} "
          f"block={args.block_size} vocab={tok.vocab_size} (BPE on the bundled corpus) | params {n_params:,} | "
          f"exported with axon.to_hf -> {type(hf_policy).__name__} (sdpa)")
    print(f"generation batch: {P} prompts of {min(prompt_lens)}-{max(prompt_lens)} tokens x {G} answers = {N} rows, "
          f"up to {NEW} new tokens at temperature 1 | mean answer length: Axon {lengths['axon']:.1f}, "
          f"TRL {lengths['trl']:.1f} tokens | same prompt ids on both sides")
    print(f"same for all: logits checked equal | reward: share of '{LETTER}' | GRPO dapo loss, group-scaled "
          f"advantages, clip 0.2, beta 0, one update per generation batch | AdamW fused, lr={args.lr}, betas "
          "(0.9, 0.999), no weight decay, constant lr | clip 1.0 | fp32")
    kl_every = cfg.grpo.kl_every
    kl_timed = sum(objective.measures_reference(k) for k in timed_axon)
    print(f"Axon's reference (the logged KL at beta 0; TRL runs none): "
          f"{f'every {kl_every} rollout(s)' if kl_every else 'never'} (grpo.kl_every={kl_every}), in {kl_timed} of "
          f"the {len(timed_axon)} timed iterations")
    print(f"timing: {n_warm} warm-up iteration(s) each, then {rounds} rounds of one iteration each (ABBA order); "
          "medians")
    if load_start is not None:
        busy = max(load_start, load_end) > 0.5 * (os.cpu_count() or 1) + 0.5
        print(f"1-min load average: {load_start:.2f} at start, {load_end:.2f} at end"
              + (" -- WARNING: the machine was busy; absolute figures are noisy, the interleaved ratio less so"
                 if busy else ""))
    print()
    print(f"{'GRPO iter':<10}{'median ms':>11}{'min':>9}{'q1':>9}{'q3':>9}{'max':>9}{'rollout':>10}{'update':>9}")
    for name in ("axon", "trl"):
        r = res[name]
        cells = "".join(f"{r[k + '_ms']:>9.1f}" for k in ("min", "q1", "q3", "max"))
        print(f"{name:<10}{r['median_ms']:>11.1f}{cells}{r['rollout_median_ms']:>10.1f}{r['update_median_ms']:>9.1f}")
    print()
    print(f"Axon/TRL speed: {ratio:.2f}x (TRL's median iteration / Axon's); "
          f"per round {per_round[0]:.2f}-{per_round[-1]:.2f}x | rollout "
          f"{res['trl']['rollout_median_ms'] / res['axon']['rollout_median_ms']:.2f}x, update "
          f"{res['trl']['update_median_ms'] / res['axon']['update_median_ms']:.2f}x")
    verdict = "PASS" if ratio >= BAR else "FAIL"
    note = "" if args.is_bar_config else " (not the bar's config: for information)"
    print(f"bar: Axon GRPO iteration >= {BAR}x TRL's speed: {verdict} (ratio {ratio:.2f}){note}")
    if args.json:
        print(json.dumps({
            "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "threads": torch.get_num_threads(), "cpu": cpu_model(), "native_bf16": native_bf16(),
            "config": {"n_layer": args.n_layer, "n_head": args.n_head, "n_embd": args.n_embd,
                       "block_size": args.block_size, "vocab_size": tok.vocab_size, "prompts": P, "group_size": G,
                       "max_new_tokens": NEW, "prompt_tokens": prompt_lens},
            "params": n_params, "mean_answer_length": lengths, "rounds": rounds, "axon_kl_every": cfg.grpo.kl_every,
            "load_average": [load_start, load_end], "results": res, "ratio": ratio,
            "ratio_per_round": [round(v, 3) for v in per_round], "bar": BAR, "bar_config": args.is_bar_config,
            "passed": ratio >= BAR,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

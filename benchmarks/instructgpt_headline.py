"""InstructGPT's headline at toy scale, and PPO against best-of-n at equal KL, by win rates of a gold judge.

Two measurements on the bundled held-out instructions (200 prompts whose instruction type and word
no training prompt shares; ``instruction_gold`` scores an answer, 1 = followed):

1. **The headline** (Ouyang et al. 2022, fig. 1: the 1.3B PPO model's outputs are preferred to
   those of the 175B SFT model). A small model after SFT and PPO against a large model ~10x its size
   after SFT alone, both pretrained and fine-tuned with the same recipe (configs/instructgpt_small.yaml):

       win rate(A over B) = (wins + ties / 2) / n, per prompt, by the gold score of each answer,
                            with its Wilson 95% interval (``axon.feedback.judge_win_rate``)

   for small-PPO over large-SFT (the headline) and small-SFT over large-SFT (the control: what SFT
   alone gives the small model), once with answers sampled at temperature 1 and once greedy.

2. **PPO against best-of-n at equal KL.** For each PPO run, its KL from its SFT model is estimated
   on the held-out prompts (k1 summed over each sampled answer, averaged), and n is the integer
   whose best-of-n KL, log n - (n - 1) / n nats (Stiennon et al. 2020, appendix G.3), is nearest to
   it. Best-of-n samples n answers per prompt from the SFT model and keeps the one the PPO run's own
   reward (``ppo.reward``) scores highest; the table gives the gold win rate of the PPO answer over
   the best-of-n answer on each prompt, and both mean gold scores.

The runs (docs/rlhf.md, "The headline at toy scale", has their times and the tables):

    axon train --name=shakespeare --train.max_steps=400                  # the large model, 812,288 parameters
    axon finetune runs/shakespeare --task=sft --name=instruct300 --train.max_steps=300 \\
        --data.train_file=src/axon/feedback/data/instructions_train.jsonl \\
        --data.val_file=src/axon/feedback/data/instructions_val.jsonl
    axon train --config configs/instructgpt_small.yaml --name=small      # the small model, 86,400
    axon finetune runs/small --task=sft --name=small_sft --train.max_steps=300 --train.eval_interval=100 \\
        --data.train_file=src/axon/feedback/data/instructions_train.jsonl \\
        --data.val_file=src/axon/feedback/data/instructions_val.jsonl
    axon finetune runs/small_sft --config configs/ppo_instructions.yaml --name=small_ppo
    axon finetune runs/instruct300 --config configs/ppo_instructions.yaml --name=ppo
    axon finetune runs/instruct300 --config configs/ppo_instructions.yaml --name=ppo_low \\
        --optim.lr=1e-4 --train.max_steps=160 --train.eval_interval=1000
    python benchmarks/instructgpt_headline.py --large runs/instruct300 --small-sft runs/small_sft \\
        --small-ppo runs/small_ppo --ppo runs/ppo runs/ppo_low runs/small_ppo --threads 1

``--json`` prints the figures as JSON instead of the tables. Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict

import torch

from axon.config import load_config, run_config_file
from axon.data.chat import prompt_ids
from axon.errors import AxonError, ConfigError
from axon.feedback import bundled_path, instruction_gold, judge_win_rate, read_jsonl
from axon.models.actor_critic import ActorCritic
from axon.objectives.ppo import token_logprobs
from axon.tasks.finetune import init_run_dir
from axon.tasks.ppo import answer_logits, answer_tokens, best_of_n, build_reward, generator, sample_answers
from axon.train.run import load_run


def answers_of(run: str, prompts: list[str], types: list[str], max_new_tokens: int, seed: int,
               batch_size: int = 64) -> dict:
    """A run's policy's answers to ``prompts``: one sampled at temperature 1 (a generator seeded per
    chunk from ``seed``) and one greedy each, their gold scores (also per instruction type, of the
    sampled answers), the model's size, and for a PPO run its KL from the SFT model it started
    from (k1 summed over each sampled answer, averaged)."""
    t = time.perf_counter()
    cfg, model, tok = load_run(run, "cpu")
    ppo = isinstance(model, ActorCritic)
    policy = model.policy() if ppo else model
    reference = load_run(cfg.train.init_from, "cpu")[1] if ppo else None
    ids = [prompt_ids(tok, p)[1] for p in prompts]
    sampled, greedy, kl = [], [], 0.0
    for s in range(0, len(prompts), batch_size):
        chunk = ids[s : s + batch_size]
        a = sample_answers(policy, tok, chunk, max_new_tokens, 1.0, generator(policy, seed, "policy", s))
        sampled += a.texts
        greedy += sample_answers(policy, tok, chunk, max_new_tokens, 0.0, None).texts
        if reference is not None:
            with torch.no_grad():  # log pi(a) - log pi_ref(a), each answer token, at the temperature sampled
                R = a.mask.size(1)
                taken = answer_tokens(a.tokens, a.prompt_len, R)  # (B, R)
                lp = token_logprobs(answer_logits(policy(a.tokens), a.prompt_len, R, tok.vocab_size, 1.0), taken)
                lr = token_logprobs(answer_logits(reference(a.tokens), a.prompt_len, R, tok.vocab_size, 1.0), taken)
                kl += float(((lp - lr) * a.mask).sum())
    params = sum(p.numel() for p in policy.parameters())
    golds = [instruction_gold(p, a) for p, a in zip(prompts, sampled)]
    by_type = {k: sum(g for g, t in zip(golds, types) if t == k) / types.count(k) for k in sorted(set(types))}
    return {"run": run, "params": params, "ppo": ppo, "init_from": cfg.train.init_from,
            "reward": cfg.ppo.reward if ppo else None, "sampled": sampled, "greedy": greedy,
            "gold": sum(golds) / len(prompts), "gold_by_type": by_type,
            "greedy_gold": sum(instruction_gold(p, a) for p, a in zip(prompts, greedy)) / len(prompts),
            "kl": kl / len(prompts) if ppo else None, "seconds": time.perf_counter() - t}


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || policy) = log n - (n - 1) / n nats (Stiennon et al. 2020, appendix G.3)."""
    return math.log(n) - (n - 1) / n


def n_at_kl(kl: float, max_n: int) -> int:
    """The n in 1..max_n whose best-of-n KL is nearest to ``kl`` (it increases with n)."""
    n = 1
    while n < max_n and best_of_n_kl(n + 1) <= kl:
        n += 1
    return n + 1 if n < max_n and best_of_n_kl(n + 1) - kl < kl - best_of_n_kl(n) else n


def same_run(a: str, b: str) -> bool:
    return init_run_dir(a).resolve() == init_run_dir(b).resolve()


def headline(large: dict, small_sft: dict, small_ppo: dict, prompts: list[str]) -> dict:
    """Small-PPO over large-SFT and small-SFT over large-SFT, sampled and greedy."""
    rows = []
    for name, a, b in (("small PPO vs large SFT", small_ppo, large),
                       ("small SFT vs large SFT (control)", small_sft, large),
                       ("small PPO vs small SFT", small_ppo, small_sft)):
        for kind in ("sampled", "greedy"):
            w = judge_win_rate(instruction_gold, prompts, a[kind], b[kind])
            rows.append({"comparison": name, "answers": kind, **asdict(w)})
    return {"policies": [{k: v for k, v in r.items() if k not in ("sampled", "greedy")}
                         for r in (large, small_sft, small_ppo)],
            "size_ratio": large["params"] / small_ppo["params"], "win_rates": rows}


def equal_kl(ppo: dict, prompts: list[str], max_new_tokens: int, seed: int, max_n: int, batch_size: int) -> dict:
    """A PPO run's sampled answers against best-of-n of its SFT model at the n of equal KL."""
    t = time.perf_counter()
    n = n_at_kl(ppo["kl"], max_n)
    _, sft, tok = load_run(ppo["init_from"], "cpu")
    reward = build_reward(ppo["reward"], torch.device("cpu"))
    b = best_of_n(sft, tok, prompts, n, reward, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                  gold=instruction_gold)
    w = judge_win_rate(instruction_gold, prompts, ppo["sampled"], b["answers"])
    return {"ppo": ppo["run"], "sft": ppo["init_from"], "reward": ppo["reward"], "ppo_kl": ppo["kl"], "n": n,
            "best_of_n_kl": b["kl"], "ppo_gold": ppo["gold"], "best_of_n_gold": b["gold"],
            "best_of_n_reward": b["score"], "win_rate": asdict(w), "seconds": time.perf_counter() - t}


def interval(w: dict) -> str:
    return f"{w['rate']:.3f} [{w['low']:.3f}, {w['high']:.3f}]  {w['wins']:>3}/{w['ties']:>3}/{w['losses']:>3}"


def print_tables(out: dict) -> None:
    print(f"{out['prompts']} held-out prompts; win rate (ties as half) [Wilson 95%]  wins/ties/losses")
    if "headline" in out:
        h = out["headline"]
        print(f"\nThe headline: the large model has {h['size_ratio']:.1f}x the small one's parameters")
        print(f"{'policy':<36} {'params':>8} {'gold':>6} {'greedy':>7} {'KL':>6} {'s':>6}")
        for p in h["policies"]:
            kl = "" if p["kl"] is None else f"{p['kl']:.2f}"
            print(f"{p['run'][-36:]:<36} {p['params']:>8,} {p['gold']:>6.3f} {p['greedy_gold']:>7.3f} {kl:>6} "
                  f"{p['seconds']:>6.1f}")
        print(f"\n{'comparison':<34} {'answers':<8} {'win rate':<40}")
        for r in h["win_rates"]:
            print(f"{r['comparison']:<34} {r['answers']:<8} {interval(r)}")
        types = list(h["policies"][0]["gold_by_type"])
        print(f"\ngold of sampled answers per instruction type\n{'policy':<36} " + " ".join(f"{t[:8]:>8}" for t in types))
        for p in h["policies"]:
            print(f"{p['run'][-36:]:<36} " + " ".join(f"{p['gold_by_type'][t]:>8.2f}" for t in types))
    for e in out.get("equal_kl", []):
        print(f"\nPPO at KL {e['ppo_kl']:.2f} against best-of-{e['n']} (KL {e['best_of_n_kl']:.2f}) of {e['sft']}, "
              f"reward {e['reward']} ({e['seconds']:.0f} s)")
        print(f"  gold: PPO {e['ppo_gold']:.3f}, best-of-{e['n']} {e['best_of_n_gold']:.3f}; "
              f"PPO's win rate over best-of-{e['n']}: {interval(e['win_rate'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", help="the large model's SFT run")
    ap.add_argument("--small-sft", help="the small model's SFT run")
    ap.add_argument("--small-ppo", help="a PPO run started from --small-sft")
    ap.add_argument("--ppo", nargs="*", default=[], help="PPO runs to compare with best-of-n of their SFT run")
    ap.add_argument("--max-n", type=int, default=1000, help="largest best-of-n drawn")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64, help="answers sampled at once for best-of-n")
    ap.add_argument("--limit", type=int, default=None, help="first N held-out prompts only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    three = [args.large, args.small_sft, args.small_ppo]
    if any(three) and not all(three):
        ap.error("the headline needs --large, --small-sft and --small-ppo together")
    if not any(three) and not args.ppo:
        ap.error("nothing to measure: give --large/--small-sft/--small-ppo, --ppo RUN..., or both")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = read_jsonl(bundled_path("heldout"), ("prompt", "type"))[: args.limit]
    prompts, types = [r["prompt"] for r in rows], [r["type"] for r in rows]
    runs: dict[str, dict] = {}

    def answers(run: str) -> dict:
        if run not in runs:
            runs[run] = answers_of(run, prompts, types, args.max_new_tokens, args.seed)
        return runs[run]

    out: dict = {"prompts": len(prompts)}
    if all(three):
        large, small_sft, small_ppo = answers(args.large), answers(args.small_sft), answers(args.small_ppo)
        if not small_ppo["ppo"] or not same_run(small_ppo["init_from"], args.small_sft):
            raise ConfigError(f"--small-ppo {args.small_ppo}: not a PPO run started from --small-sft {args.small_sft}")
        if large["ppo"] or small_sft["ppo"]:
            raise ConfigError("--large, --small-sft: SFT runs are expected, not PPO runs")
        out["headline"] = headline(large, small_sft, small_ppo, prompts)
    for run in args.ppo:
        if not answers(run)["ppo"]:
            raise ConfigError(f"--ppo {run}: not a PPO run (model.family: {load_config(run_config_file(run)).model.family})")
    out["equal_kl"] = [equal_kl(answers(run), prompts, args.max_new_tokens, args.seed, args.max_n, args.batch_size)
                       for run in args.ppo]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_tables(out)


if __name__ == "__main__":
    try:
        main()
    except AxonError as e:
        sys.exit(f"error: {e}")

"""PPO against best-of-n: the gold score bought per nat of KL from the SFT model, on held-out prompts.

For each run given (an SFT run and PPO runs started from it), and for best-of-n sampling from the
SFT run against the same reward, on the bundled held-out instructions (200 prompts whose
instruction type and word no training prompt shares):

    policy      answers sampled at temperature 1, one per prompt (``axon.tasks.ppo.sample_answers``)
    gold        ``instruction_gold`` of each answer, averaged
    reward      the reward a PPO run trained on (``ppo.reward`` of its config; ``--reward`` otherwise)
    KL          of a PPO policy from its reference (the SFT run), nats per answer, estimated from
                the sampled answers (k1 summed over each answer, averaged); best-of-n:
                log n - (n - 1) / n (Stiennon et al. 2020, appendix G.3), analytic
    greedy      the gold score of greedy answers too

    python benchmarks/ppo_best_of_n.py runs/instruct runs/ppo --n 1 4 16 --plot docs/ppo_instructions.png
    python benchmarks/ppo_best_of_n.py runs/instruct --reward gold:instructions --json

Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from axon.config import load_config, run_config_file
from axon.data.chat import prompt_ids
from axon.feedback import bundled_path, instruction_gold, read_jsonl
from axon.models.actor_critic import ActorCritic
from axon.objectives.ppo import token_logprobs
from axon.tasks.ppo import answer_logits, answer_tokens, best_of_n, build_reward, generator, sample_answers
from axon.train.run import load_run


def policy_figures(run: str, prompts: list[str], reward, max_new_tokens: int, seed: int, batch_size: int) -> dict:
    cfg, model, tok = load_run(run, "cpu")
    policy = model.policy() if isinstance(model, ActorCritic) else model
    reference = None
    if isinstance(model, ActorCritic):
        _, reference, _ = load_run(cfg.train.init_from, "cpu")
    ids = [prompt_ids(tok, p)[1] for p in prompts]
    out = {"run": run, "gold": 0.0, "reward": 0.0, "greedy_gold": 0.0, "kl": 0.0 if reference is not None else None,
           "length": 0.0}
    for s in range(0, len(prompts), batch_size):
        chunk, chunk_ids = prompts[s : s + batch_size], ids[s : s + batch_size]
        a = sample_answers(policy, tok, chunk_ids, max_new_tokens, 1.0, generator(policy, seed, "policy", s))
        g = sample_answers(policy, tok, chunk_ids, max_new_tokens, 0.0, None)
        out["gold"] += sum(instruction_gold(p, t) for p, t in zip(chunk, a.texts))
        out["greedy_gold"] += sum(instruction_gold(p, t) for p, t in zip(chunk, g.texts))
        out["reward"] += float(reward.score(chunk, a.texts).sum())
        out["length"] += float(a.mask.sum())
        if reference is not None:
            with torch.no_grad():
                R = a.mask.size(1)
                taken = answer_tokens(a.tokens, a.prompt_len, R)
                lp = token_logprobs(answer_logits(policy(a.tokens), a.prompt_len, R, tok.vocab_size, 1.0), taken)
                lr = token_logprobs(answer_logits(reference(a.tokens), a.prompt_len, R, tok.vocab_size, 1.0), taken)
                out["kl"] += float(((lp - lr) * a.mask).sum())
    return {k: v / len(prompts) if isinstance(v, float) else v for k, v in out.items()}


def plot(runs: list[str], path: str, window: int = 10) -> None:
    """Each PPO run's per-rollout gold score (or reward; faint, and its mean over ``window``
    rollouts) with the validation score at each evaluation (dots: minus val_loss), and the KL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from axon.train.logging import read_metrics

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        rows, val = {}, []
        for r in read_metrics(Path(run) / "metrics.jsonl"):
            if "rollout" in r:
                rows.setdefault(int(r["rollout"]), r)  # the first record of each rollout
            if "val_loss" in r:
                val.append((r["step"], -r["val_loss"]))
        steps = np.array([r["step"] for r in rows.values()])
        gold = np.array([r.get("gold", r["score"]) for r in rows.values()])
        name = Path(run).name
        line = a.plot(steps, gold, alpha=0.3)[0]
        if len(gold) >= window:
            a.plot(steps[window - 1 :], np.convolve(gold, np.ones(window) / window, "valid"), color=line.get_color(),
                   label=f"{name}: rollouts (mean of {window})")
        if val:
            a.plot(*zip(*val), "o", color=line.get_color(), label=f"{name}: validation prompts")
        b.plot(steps, [r["kl"] for r in rows.values()], color=line.get_color())
    a.set(xlabel="step", ylabel="gold score", title="gold score of sampled answers")
    b.set(xlabel="step", ylabel="KL(policy || SFT), nats per answer", title="KL from the SFT model")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="the SFT run first (best-of-n samples from it), then PPO runs")
    ap.add_argument("--n", type=int, nargs="+", default=[1, 4, 16], help="best-of-n sizes")
    ap.add_argument("--reward", default=None, help="default: the first PPO run's ppo.reward, else gold:instructions")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="first N held-out prompts only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="PNG", help="also plot the PPO runs' gold score and KL over training")
    args = ap.parse_args()
    if args.plot:
        plot(args.runs[1:], args.plot)
    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = [r["prompt"] for r in read_jsonl(bundled_path("heldout"), ("prompt",))][: args.limit]
    spec = args.reward
    for run in args.runs[1:]:
        spec = spec or load_config(run_config_file(run)).ppo.reward
    reward = build_reward(spec or "gold:instructions", torch.device("cpu"))
    rows = []
    for run in args.runs:
        t = time.perf_counter()
        rows.append({**policy_figures(run, prompts, reward, args.max_new_tokens, args.seed, 64),
                     "seconds": time.perf_counter() - t})
    _, sft, tok = load_run(args.runs[0], "cpu")
    for n in args.n:
        t = time.perf_counter()
        b = best_of_n(sft, tok, prompts, n, reward, max_new_tokens=args.max_new_tokens, seed=args.seed,
                      gold=instruction_gold)
        rows.append({"run": f"best-of-{n} of {args.runs[0]}", "gold": b["gold"], "reward": b["score"], "kl": b["kl"],
                     "seconds": time.perf_counter() - t})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{len(prompts)} held-out prompts, reward {spec or 'gold:instructions'}")
    print(f"{'policy':<48} {'gold':>6} {'reward':>7} {'KL nats':>8} {'greedy':>7} {'s':>6}")
    for r in rows:
        kl = "" if r.get("kl") is None else f"{r['kl']:.2f}"
        greedy = "" if "greedy_gold" not in r else f"{r['greedy_gold']:.3f}"
        print(f"{r['run'][-48:]:<48} {r['gold']:>6.3f} {r['reward']:>7.3f} {kl:>8} {greedy:>7} {r['seconds']:>6.1f}")


if __name__ == "__main__":
    main()

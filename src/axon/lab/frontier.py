"""Reward against KL: what a fine-tuned policy gained for how far it moved from its reference.
The DPO paper's Figure 2 (Rafailov et al. 2023: gold reward against KL(pi || pi_ref), each point a
run) and the over-optimisation curves of Gao, Schulman & Hilton (2022), on held-out prompts:

    reference run (SFT)                                   policy runs (ppo, grpo, dpo, ... of it)
        |                                                      |
        |  best-of-n: N answers per prompt, sampled once;      |  one answer per prompt, sampled at the
        |  for each n the best of the first n by the           |  temperature; KL_k1 = sum over its tokens
        |  reward it optimises (the proxy, or the gold          |  of log pi(y_t) - log pi_ref(y_t)
        |  judge itself); KL = log n - (n - 1) / n, analytic    |  (nats per answer, the reference = the
        |  (Stiennon et al. 2020, appendix G.3)                 |  run's train.init_from unless given)
        v                                                      v
    Point(method, setting, seed): per prompt gold(prompt, answer) and proxy reward; their means and
    the mean KL, each with a 95% bootstrap interval over the prompts
        |
        v  the seeds of one (method, setting) pooled: means, and a t-interval over the seeds' means
    frontier.json; frontier.png: gold against KL, one colour per method, each point a setting

Gao et al.'s functional forms of the gold reward gained, R = gold(d) - gold(0), in d = sqrt(KL):

    best-of-n   R(d) = d (alpha - beta d)
    RL          R(d) = d (alpha - beta log d)

are linear in (alpha, beta), so :func:`fit_gao` solves them by least squares (no intercept: R(0)
= 0 by construction) and gives percentile intervals from refits on bootstrap resamples of the
points (``axon.lab.fit.interval``).

Answers are sampled from generators seeded by (seed, prompt index[, sample index]), so a point is
a pure function of the run and the seed, however the prompts are batched. ``axon frontier`` is
the command (docs/rlhf.md, "Reward against KL").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from axon.errors import ConfigError

BOOTSTRAP = 1000  # resamples of the prompts for a point's intervals
LEVEL = 0.95


@dataclass
class Point:
    """One policy on the prompts: means over prompts with bootstrap intervals (``*_ci``)."""

    method: str  # ppo, grpo, dpo, best-of-n, sft, ...
    setting: str  # what distinguishes it within the method (e.g. "beta=0.1", "n=16")
    seed: int | None
    run: str
    gold: float
    gold_ci: tuple[float, float]
    kl: float
    kl_ci: tuple[float, float]
    reward: float | None = None
    reward_ci: tuple[float, float] | None = None
    length: float = 0.0  # answer tokens, mean
    ended: float = 0.0  # share of answers that wrote the end marker
    prompts: int = 0
    extra: dict = field(default_factory=dict)


def bootstrap_ci(values: np.ndarray, level: float = LEVEL, resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over resamples of its entries."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def _load(run, device: str, checkpoint: Path | None = None):
    """(config, model in eval mode, tokenizer) of ``run``: its newest checkpoint, or ``checkpoint``."""
    from axon.train.checkpoint import load_checkpoint
    from axon.train.run import load_run

    cfg, model, tokenizer = load_run(run, device)
    if checkpoint is not None:
        load_checkpoint(Path(checkpoint), model)
    if tokenizer is None:
        raise ConfigError(f"{run}: no tokenizer.json; the frontier samples answers in the run's chat template")
    return cfg, model.eval(), tokenizer


@torch.no_grad()
def answer_kl(policy, reference, answers, vocab: int, temperature: float) -> torch.Tensor:
    """KL_k1 of each answer (N,): the sum over its tokens of log pi - log pi_ref, both of logits /
    temperature over the tokenizer's vocabulary (the distribution sampled)."""
    from axon.objectives.ppo import token_logprobs
    from axon.tasks.ppo import answer_logits, answer_tokens

    R = answers.mask.size(1)
    taken = answer_tokens(answers.tokens, answers.prompt_len, R)
    lp = token_logprobs(answer_logits(policy(answers.tokens), answers.prompt_len, R, vocab, temperature), taken)
    ref = token_logprobs(answer_logits(reference(answers.tokens), answers.prompt_len, R, vocab, temperature), taken)
    return ((lp - ref) * answers.mask).sum(1).double().cpu()


@torch.no_grad()
def sample(model, tokenizer, prompts: Sequence[str], samples: int, *, max_new_tokens: int, temperature: float,
           seed: int, batch_size: int, reference=None, progress: Callable[[int], None] | None = None) -> dict:
    """``samples`` answers to each prompt, row (i, j) from the generator seeded (seed, "frontier",
    i, j): {"texts": [[str] * samples] per prompt, "kl": (P, samples) or None, "length", "ended"}."""
    from axon.data.chat import prompt_ids
    from axon.tasks.ppo import generator, sample_answers

    ids = [prompt_ids(tokenizer, p)[1] for p in prompts]
    rows = [(i, j) for i in range(len(prompts)) for j in range(samples)]
    texts: list[str] = []
    kl, length, ended = [], [], []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        gens = [generator(model, seed, "frontier", i, j) for i, j in chunk]
        got = sample_answers(model, tokenizer, [ids[i] for i, _ in chunk], max_new_tokens, temperature, gens)
        texts += got.texts
        length.append(got.mask.sum(1).double().cpu())
        ended.append(got.ended.double())
        if reference is not None:
            kl.append(answer_kl(model, reference, got, tokenizer.vocab_size, temperature))
        if progress is not None:
            progress(len(chunk))
    P = len(prompts)
    return {"texts": [texts[i * samples : (i + 1) * samples] for i in range(P)],
            "kl": torch.cat(kl).view(P, samples).numpy() if kl else None,
            "length": torch.cat(length).view(P, samples).numpy(), "ended": torch.cat(ended).view(P, samples).numpy()}


def describe(cfg) -> tuple[str, str]:
    """(method, setting) of a run from its config: the task and the hyperparameters that place it."""
    task = cfg.task or "lm"
    if task == "ppo":
        p = cfg.ppo
        kl = f"kl_target={p.kl_target:g}" if p.kl_target is not None else f"beta={p.kl_beta:g}"
        return "ppo" + ("" if p.reward.startswith("gold:") else "-rm"), kl
    if task in ("dpo",):
        p = cfg.dpo
        return (task if p.loss == "dpo" else p.loss), f"beta={p.beta:g}"
    if task == "grpo":  # axon.tasks.grpo: grpo or rloo advantages, beta the KL coefficient in the loss
        return cfg.grpo.advantage, f"beta={cfg.grpo.beta:g}"
    if task == "online_dpo":
        return "online_dpo", f"beta={cfg.dpo.beta:g}"
    return task, ""


def _point(method, setting, seed, run, gold: np.ndarray, kl: np.ndarray, reward: np.ndarray | None,
           length: np.ndarray, ended: np.ndarray, **extra) -> Point:
    return Point(method=method, setting=setting, seed=seed, run=str(run), gold=float(gold.mean()),
                 gold_ci=bootstrap_ci(gold), kl=float(kl.mean()), kl_ci=bootstrap_ci(kl),
                 reward=None if reward is None else float(reward.mean()),
                 reward_ci=None if reward is None else bootstrap_ci(reward), length=float(length.mean()),
                 ended=float(ended.mean()), prompts=len(gold), extra=extra)


def _scores(judge, prompts, texts) -> np.ndarray:
    return np.array([judge(p, a) for p, a in zip(prompts, texts)], dtype=float)


def checkpoint_steps(run) -> list[tuple[int, Path]]:
    """(step, directory) of each kept checkpoint of ``run``, oldest first (``train.keep_checkpoints``
    says how many a run keeps; raise it to keep a curve along training)."""
    from axon.train.checkpoint import PREFIX, list_checkpoints

    return sorted((int(p.name[len(PREFIX) :]), p) for p in list_checkpoints(Path(run) / "checkpoints"))


def run_point(run, prompts: Sequence[str], judge, *, reward=None, reference=None, label: str | None = None,
              max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0, batch_size: int = 64,
              device: str = "cpu", progress=None, checkpoint: tuple[int, Path] | None = None) -> Point:
    """A policy run's point: one answer per prompt, gold, proxy ``reward`` (a ``Reward``) and KL to
    ``reference`` (a run directory; default the run's ``train.init_from``; the run itself gives 0).
    ``checkpoint``: (step, directory) of one of the run's checkpoints instead of its newest; the
    setting then ends in ``step=N`` (Gao et al.'s RL curves: one run's points along training)."""
    cfg, model, tokenizer = _load(run, device, None if checkpoint is None else checkpoint[1])
    ref_dir = reference or cfg.train.init_from
    if not ref_dir:
        raise ConfigError(f"{run}: no train.init_from to measure its KL against; give --reference")
    _, ref_model, ref_tok = _load(ref_dir, device)
    if ref_tok.vocab_size != tokenizer.vocab_size:
        raise ConfigError(f"{run}: its reference {ref_dir} has another tokenizer ({ref_tok.vocab_size} tokens against "
                          f"{tokenizer.vocab_size}); the KL needs both to read the same ids")
    got = sample(model, tokenizer, prompts, 1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                 batch_size=batch_size, reference=ref_model, progress=progress)
    texts = [t[0] for t in got["texts"]]
    method, setting = describe(cfg)
    if label:
        method, _, setting = label.partition(":")
    extra = {}
    if checkpoint is not None:
        setting, extra = " ".join(filter(None, (setting, f"step={checkpoint[0]}"))), {"step": checkpoint[0]}
    return _point(method, setting, cfg.train.seed, run, _scores(judge, prompts, texts), got["kl"][:, 0],
                  None if reward is None else reward.score(list(prompts), texts).numpy(), got["length"][:, 0],
                  got["ended"][:, 0], **extra)


def best_of_n_points(reference_run, prompts: Sequence[str], judge, ns: Sequence[int], *, reward=None,
                     max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0, batch_size: int = 64,
                     device: str = "cpu", progress=None) -> list[Point]:
    """Best-of-n from the reference for each n in ``ns``: max(ns) answers per prompt sampled once,
    the best of the first n picked by ``reward`` (a ``Reward``; None: the gold judge itself, an
    oracle), first among equals; its gold (and proxy) score; KL log n - (n - 1)/n."""
    ns = sorted({int(n) for n in ns})
    if not ns or ns[0] < 1:
        raise ConfigError(f"best-of-n: n must be >= 1, got {ns}")
    _, model, tokenizer = _load(reference_run, device)
    got = sample(model, tokenizer, prompts, ns[-1], max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                 batch_size=batch_size, progress=progress)
    P, N = len(prompts), ns[-1]
    flat_prompts = [p for p in prompts for _ in range(N)]
    flat = [a for texts in got["texts"] for a in texts]
    gold = _scores(judge, flat_prompts, flat).reshape(P, N)
    proxy = None if reward is None else reward.score(flat_prompts, flat).numpy().reshape(P, N)
    picker = gold if proxy is None else proxy
    out = []
    for n in ns:
        best = np.argmax(picker[:, :n], axis=1)  # first among equals
        rows = np.arange(P)
        kl = math.log(n) - (n - 1) / n
        out.append(_point("best-of-n" + ("" if proxy is not None else " (gold)"), f"n={n}", seed, reference_run,
                          gold[rows, best], np.full(P, kl), None if proxy is None else proxy[rows, best],
                          got["length"][rows, best], got["ended"][rows, best], n=n))
    return out


def pool_seeds(points: Sequence[Point], level: float = LEVEL) -> list[dict]:
    """One row per (method, setting): the means over its seeds, and a t-interval of the seeds'
    means when there are several (else the single run's bootstrap interval)."""
    from scipy import stats

    groups: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        groups.setdefault((p.method, p.setting), []).append(p)
    rows = []
    for (method, setting), ps in groups.items():
        row = {"method": method, "setting": setting, "seeds": len(ps), "runs": [p.run for p in ps]}
        for key in ("gold", "kl", "reward"):
            vals = np.array([getattr(p, key) for p in ps if getattr(p, key) is not None], dtype=float)
            if vals.size == 0:
                continue
            row[key] = float(vals.mean())
            if vals.size >= 2:
                half = float(stats.t.ppf(0.5 + level / 2, vals.size - 1) * vals.std(ddof=1) / math.sqrt(vals.size))
                row[f"{key}_ci"] = (row[key] - half, row[key] + half)
            else:
                row[f"{key}_ci"] = getattr(ps[0], f"{key}_ci")
        rows.append(row)
    return rows


FORMS = {"bon": lambda d: d, "rl": lambda d: np.log(d)}  # R(d) = d (alpha - beta f(d))


def fit_gao(d, gain, form: str, bootstrap: int = 200, seed: int = 0) -> dict:
    """Least-squares (alpha, beta) of Gao et al.'s form ``bon`` or ``rl`` (module docstring) to the
    gold gains ``gain`` at d = sqrt(KL) > 0, with percentile intervals from ``bootstrap`` refits on
    resamples of the points. Needs three points with d > 0."""
    from axon.lab.fit import interval

    if form not in FORMS:
        raise ConfigError(f"fit: unknown form {form!r}; choose bon or rl")
    d, gain = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    keep = d > 0
    d, gain = d[keep], gain[keep]
    if d.size < 3:
        raise ConfigError(f"fit: Gao et al.'s {form} form needs at least 3 points with KL > 0, got {d.size}")

    def solve(dd, gg):
        X = np.stack([dd, -dd * FORMS[form](dd)], axis=1)  # R = alpha d - beta d f(d)
        coef, *_ = np.linalg.lstsq(X, gg, rcond=None)
        return coef

    alpha, beta = solve(d, gain)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        i = rng.integers(0, d.size, d.size)
        draws.append(solve(d[i], gain[i]) if np.unique(d[i]).size >= 2 else (math.nan, math.nan))
    draws = np.array(draws, dtype=float)
    pred = d * (alpha - beta * FORMS[form](d))
    return {"form": form, "alpha": float(alpha), "beta": float(beta), "alpha_ci": interval(draws[:, 0]),
            "beta_ci": interval(draws[:, 1]), "points": int(d.size),
            "rmse": float(np.sqrt(np.mean((pred - gain) ** 2)))}


def plot_frontier(rows: Sequence[dict], path: str | Path, gold_name: str = "gold", fits: dict | None = None,
                  baseline: float | None = None, points: Sequence[dict] = ()) -> Path:
    """frontier.png: gold against KL (nats per answer), one colour per method, its points joined in
    order of KL, interval bars both ways; each seed's own run (``points``) as a faint cross;
    ``fits`` ({method: fit_gao result}) drawn as curves. The KL axis starts at 0 (an interval over
    two seeds can reach below it; the KL cannot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    for m in methods:
        pts = sorted((r for r in rows if r["method"] == m), key=lambda r: r["kl"])
        x = np.array([r["kl"] for r in pts])
        y = np.array([r["gold"] for r in pts])

        def err(key, centre, pts=pts):
            lo = np.array([r.get(f"{key}_ci", (math.nan, math.nan))[0] for r in pts], dtype=float)
            hi = np.array([r.get(f"{key}_ci", (math.nan, math.nan))[1] for r in pts], dtype=float)
            return np.nan_to_num(np.stack([centre - lo, hi - centre]), nan=0.0).clip(min=0)

        ax.errorbar(x, y, xerr=err("kl", x), yerr=err("gold", y), fmt="o-", ms=4, lw=1.2, capsize=2, color=colors[m],
                    label=m, alpha=0.9)
        seeds = [p for p in points if p["method"] == m]
        if any(r["seeds"] > 1 for r in pts):
            ax.plot([p["kl"] for p in seeds], [p["gold"] for p in seeds], "x", ms=4, color=colors[m], alpha=0.5)
        if fits and m in fits and baseline is not None:
            f = fits[m]
            d = np.linspace(1e-3, math.sqrt(max(x.max(), 1e-3)) * 1.1, 100)
            ax.plot(d**2, baseline + d * (f["alpha"] - f["beta"] * FORMS[f["form"]](d)), "--", color=colors[m], lw=1)
    if baseline is not None:
        ax.axhline(baseline, color="grey", lw=0.8, ls=":", label="reference")
    ax.set_xlim(left=-0.02 * max(max((r["kl"] for r in rows), default=1.0), 1.0))
    ax.set_xlabel("KL(policy || reference), nats per answer")
    ax.set_ylabel(f"{gold_name}, held-out prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def frontier(runs: Sequence[str], reference: str, prompts: Sequence[str], gold: str | Callable[[str, str], float],
             out: str | Path, *,
             reward: str | None = None, best_of: Sequence[int] = (), labels: dict[str, str] | None = None,
             max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0, batch_size: int = 64,
             device: str = "cpu", fit: bool = False, progress: bool = True, checkpoints: bool = False) -> dict:
    """Points of ``runs`` (and best-of-n of ``reference``), pooled over seeds, optional Gao fits;
    with ``checkpoints``, a point for every kept checkpoint of each run (setting ``... step=N``);
    written to ``out``/frontier.json and frontier.png. Returns the JSON's contents. ``gold`` names a
    judge of ``axon.feedback`` or is one, ``(prompt, answer) -> float``; ``reward`` is a reward run's
    directory or a gold judge's name (``gold:sentiment``), as ``ppo.reward``."""
    from tqdm import tqdm

    from axon.atomic import atomic_write_json
    from axon.feedback import GOLDS, gold_for
    from axon.tasks.ppo import build_reward

    if isinstance(gold, str) and gold not in GOLDS:
        raise ConfigError(f"--gold: {gold!r} is not a gold judge; choose one of: {', '.join(GOLDS)}")
    judge = gold_for(gold) if isinstance(gold, str) else gold
    gold = gold if isinstance(gold, str) else getattr(gold, "__name__", "gold")
    proxy = build_reward(reward, torch.device(device)) if reward else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpts = {run: checkpoint_steps(run) if checkpoints else [None] for run in runs}
    for run, found in ckpts.items():
        if not found:
            raise ConfigError(f"{run}: no checkpoint to place (checkpoints/ is empty)")
    total = len(prompts) * (sum(map(len, ckpts.values())) + 1 + (max(best_of) if best_of else 0))
    bar = tqdm(total=total, desc="frontier", unit="answer", disable=not progress, dynamic_ncols=True)
    points = []
    try:
        ref = run_point(reference, prompts, judge, reward=proxy, reference=reference, label="reference:",
                        max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=batch_size,
                        device=device, progress=bar.update)
        for run in runs:
            for ckpt in ckpts[run]:
                points.append(run_point(run, prompts, judge, reward=proxy, reference=None,
                                        label=(labels or {}).get(run), max_new_tokens=max_new_tokens,
                                        temperature=temperature, seed=seed, batch_size=batch_size, device=device,
                                        progress=bar.update, checkpoint=ckpt))
        if best_of:
            points += best_of_n_points(reference, prompts, judge, best_of, reward=proxy, max_new_tokens=max_new_tokens,
                                       temperature=temperature, seed=seed, batch_size=batch_size, device=device,
                                       progress=bar.update)
    finally:
        bar.close()
    rows = pool_seeds(points)
    fits = {}
    if fit:
        for m in dict.fromkeys(r["method"] for r in rows):
            pts = [r for r in rows if r["method"] == m and r["kl"] > 0]
            if len(pts) >= 3:
                form = "bon" if m.startswith("best-of-n") else "rl"
                fits[m] = fit_gao(np.sqrt([r["kl"] for r in pts]), [r["gold"] - ref.gold for r in pts], form)
    result = {"reference": asdict(ref), "gold_judge": gold, "reward": reward, "prompts": len(prompts),
              "checkpoints": checkpoints,
              "temperature": temperature, "max_new_tokens": max_new_tokens, "seed": seed,
              "points": [asdict(p) for p in points], "pooled": rows, "fits": fits}
    plot_frontier(rows, out / "frontier.png", gold_name=gold, fits=fits, baseline=ref.gold,
                  points=[asdict(p) for p in points])
    atomic_write_json(out / "frontier.json", result, indent=1)
    return result


def frontier_lines(result: dict) -> list[str]:
    """The pooled points as a table, best gold first within each method."""
    ref = result["reference"]
    lines = [f"reference {ref['run']}: gold {ref['gold']:.3f} [{ref['gold_ci'][0]:.3f}, {ref['gold_ci'][1]:.3f}] on "
             f"{result['prompts']} prompts (gold judge: {result['gold_judge']})",
             (f"{'method':<22} {'setting':<16} {'seeds':>5} {'gold':>22} {'KL (nats)':>20}"
              + (f" {'reward':>8}" if result["reward"] else ""))]
    for r in result["pooled"]:
        g, k = r.get("gold_ci", (math.nan,) * 2), r.get("kl_ci", (math.nan,) * 2)
        line = (f"{r['method']:<22} {r['setting']:<16} {r['seeds']:>5} {r['gold']:>7.3f} [{g[0]:.3f}, {g[1]:.3f}] "
                f"{r['kl']:>6.2f} [{k[0]:.2f}, {k[1]:.2f}]")
        if result["reward"] and "reward" in r:
            line += f" {r['reward']:>8.3f}"
        lines.append(line)
    for m, f in result["fits"].items():
        lines.append(f"fit {m} ({f['form']}): alpha {f['alpha']:.3f} [{f['alpha_ci'][0]:.3f}, {f['alpha_ci'][1]:.3f}], "
                     f"beta {f['beta']:.3f} [{f['beta_ci'][0]:.3f}, {f['beta_ci'][1]:.3f}] ({f['points']} points)")
    return lines

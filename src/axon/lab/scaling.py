"""`axon scaling`: plan a sweep, run it (resumably), fit scaling laws, report, predict.

    plan     budgets x sizes (IsoFLOP profiles, Chinchilla approach 2) or tokens x sizes (a grid of
             N and D) from one base recipe; each planned run is an `axon train` job
    run      the plan through axon.lab.runner (finished runs are never redone), then fit + report
    fit      sweep.csv (ours, or any CSV with columns N, D, loss) -> fits.json, scaling.png, report.html
    predict  fits.json -> the loss-optimal N and D for a compute budget, with bootstrap intervals

Model sizes. A size is ``n_embd`` or ``n_layer x n_embd`` ("64", "2x96"); the depth defaults to the
base recipe's, and heads follow the base recipe's head width: n_head = n_embd / head_dim rounded to
a divisor of n_embd (a 4 x 128 recipe with 4 heads gives 32-wide heads, so 64 -> 2 heads). Every
other setting (norm, MLP, positions, optimiser, batch, context) is the base recipe's.

Axes. N is the NON-EMBEDDING parameter count (axon.models.flops.count_params(non_embedding=True)),
as in Kaplan et al. 2020: with a 65-character vocabulary the embedding is a small, size-independent
term that bends small-model power laws. D is training tokens, steps x batch_size x grad_accum x block_size.
C is training FLOPs, D x flops_per_token(model) (axon.models.flops: 6 N_matmul + the attention term,
which at these sizes is far from negligible: a budget means real FLOPs). A run of budget C trains
D = C / flops_per_token tokens, rounded to whole steps; the warmup is cut to a fifth of a short run
so that every run reaches its peak learning rate, and its cosine schedule spans exactly the run
(Chinchilla, sec. 3 and fig. A1: a schedule longer than the run overestimates the loss).

Prediction. Chinchilla's allocation assumes C = 6 N D. For a sweep, fits.json records
k = median(C / (N D)) over its runs and predictions use C = k N D, so that a budget given to
`predict` is counted the way the sweep counted its budgets; for a CSV without a C column k = 6.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from axon.atomic import AtomicFile, atomic_write_json
from axon.errors import ConfigError, DataError, check_count, check_output_dir, reading
from axon.lab import fit as F

CSV_COLUMNS = ["name", "budget", "n_layer", "n_embd", "n_head", "N", "N_total", "flops_per_token", "steps", "D", "C", "loss"]


# --------------------------------------------------------------------------------------------
# Planning


@dataclass
class Size:
    n_layer: int
    n_embd: int
    n_head: int

    @property
    def label(self) -> str:
        return f"L{self.n_layer}-d{self.n_embd}"


@dataclass
class PlannedRun:
    name: str
    budget: float | None  # the nominal compute budget (IsoFLOP sweeps), None in an N x D grid
    size: Size
    N: int  # non-embedding parameters
    N_total: int
    flops_per_token: float
    steps: int
    D: int  # training tokens actually run (whole steps)
    C: float  # training FLOPs actually run: D x flops_per_token
    args: list[str]


def parse_numbers(text: str, what: str) -> list[float]:
    """ "1e12,3e12" -> [1e12, 3e12] (positive, sorted, unique)."""
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated numbers such as 1e12,3e12, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"{what}: expected positive numbers, got {text!r}")
    return sorted(set(values))


def parse_sizes(text: str, base_model, head_dim: int | None = None) -> list[Size]:
    """ "32,64,2x96" -> sizes; depth from the base model unless given as LAYERSxWIDTH."""
    head_dim = head_dim or base_model.n_embd // base_model.n_head
    sizes = []
    for item in str(text).split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            layers, width = item.split("x") if "x" in item else (base_model.n_layer, item)
            layers, width = int(layers), int(width)
        except ValueError:
            raise ConfigError(f"--sizes: {item!r} is not n_embd or n_layer x n_embd (e.g. 64 or 4x64)") from None
        if layers < 1 or width < 1:
            raise ConfigError(f"--sizes: {item!r}: layers and width must be positive")
        heads = max(1, round(width / head_dim))
        while width % heads or (width // heads) % 2:  # a divisor of n_embd with an even head width (RoPE)
            heads -= 1
            if heads == 0:
                raise ConfigError(f"--sizes: n_embd={width} has no even head width; use an even n_embd")
        sizes.append(Size(layers, width, heads))
    if not sizes:
        raise ConfigError("--sizes: give at least one model size, e.g. --sizes 32,64,96")
    return sizes


def _fmt(x: float) -> str:
    """1e12 -> "1e12", 3.5e12 -> "3.5e12" (run names and tables)."""
    m, e = f"{x:.3g}".split("e") if "e" in f"{x:.3g}" else (f"{x:.3g}", None)
    return f"{m}e{int(e)}" if e else m


def plan_sweep(config: str | None, overrides: list[str], sizes: str, budgets: str | None = None,
               tokens: str | None = None, head_dim: int | None = None, min_steps: int = 10) -> tuple[list[PlannedRun], list[str]]:
    """The runs of a sweep: each size at each budget (IsoFLOP) or at each token count (grid).
    Returns (runs, notes) where notes name the runs left out (fewer than ``min_steps`` steps)."""
    from axon.config import load_config
    from axon.models.flops import count_params, flops_per_token
    from axon.tasks import resolve_vocab

    if (budgets is None) == (tokens is None):
        raise ConfigError("give --budgets (IsoFLOP profiles: FLOPs per run) or --tokens (a grid of N and D), not both")
    check_count("head_dim", head_dim, 1, optional=True)
    check_count("min_steps", min_steps, 0, meaning="(0: keep every run)")
    base = resolve_vocab(load_config(config, overrides))
    m, tc = base.model, base.train
    for key in ("n_layer", "n_embd", "n_head"):
        if not hasattr(m, key):
            raise ConfigError(f"model.family={m.family}: --sizes scales n_layer/n_embd/n_head, which this family lacks")
    per_step = tc.batch_size * tc.grad_accum * m.block_size
    runs, notes, left_out = [], [], []
    for size in parse_sizes(sizes, m, head_dim):
        model_args = [f"--model.n_layer={size.n_layer}", f"--model.n_embd={size.n_embd}", f"--model.n_head={size.n_head}"]
        kv = getattr(m, "n_kv_head", None)
        if kv is not None and size.n_head % kv:
            model_args.append("--model.n_kv_head=null")  # the base's grouping does not fit: plain MHA
        if getattr(m, "mlp_hidden", None) is not None:
            model_args.append("--model.mlp_hidden=null")  # the MLP width follows n_embd
        cfg = load_config(config, [*overrides, *model_args])
        cfg.model.vocab_size = m.vocab_size
        n, n_total, fpt = count_params(cfg.model, non_embedding=True), count_params(cfg.model), flops_per_token(cfg.model)
        for target in parse_numbers(budgets, "--budgets") if budgets else parse_numbers(tokens, "--tokens"):
            d_target = target / fpt if budgets else target
            steps = max(1, round(d_target / per_step))
            name = f"{'C' + _fmt(target) if budgets else 'D' + _fmt(target)}-{size.label}"
            if steps < min_steps:
                left_out.append((steps, name))
                notes.append(f"{name}: left out, {steps} steps < --min-steps {min_steps} (budget too small for this size)")
                continue
            warmup = min(base.schedule.warmup_steps, steps // 5)
            args = ([f"--config={config}"] if config else []) + list(overrides) + model_args + [
                f"--train.max_steps={steps}", "--train.max_tokens=null", "--train.max_seconds=null",
                f"--schedule.warmup_steps={warmup}", f"--train.eval_interval={steps}", "--train.sample_tokens=0"]
            d = steps * per_step
            runs.append(PlannedRun(name, target if budgets else None, size, n, n_total, fpt, steps, d, d * fpt, args))
    runs.sort(key=lambda r: (r.budget or 0.0, r.D if r.budget is None else 0, r.N))
    if not runs:
        steps, name = max(left_out, key=lambda t: t[0])  # the first of the longest
        raise ConfigError(f"every planned run was left out: each has fewer than --min-steps {min_steps} steps (the "
                          f"longest, {name}, has {steps}); raise the budgets or lower --min-steps")
    return runs, notes


def plan_table(runs: list[PlannedRun]) -> str:
    lines = [f"{'run':<22} {'layers':>6} {'n_embd':>6} {'heads':>5} {'N (non-emb)':>12} {'tokens D':>11} {'steps':>6} {'FLOPs C':>10}"]
    for r in runs:
        lines.append(f"{r.name:<22} {r.size.n_layer:>6} {r.size.n_embd:>6} {r.size.n_head:>5} {r.N:>12,} {r.D:>11,} {r.steps:>6} {r.C:>10.3g}")
    total = sum(r.C for r in runs)
    lines.append(f"{len(runs)} runs, {sum(r.steps for r in runs):,} steps, {total:.3g} FLOPs in all")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Running and collecting


def run_sweep(runs: list[PlannedRun], out: Path, workers: int | None = None, threads: int = 1,
              progress: bool = True) -> list[dict]:
    """Run the planned runs through axon.lab.runner (a finished run is skipped, a killed one
    resumed) and write ``sweep.csv``; returns its rows."""
    from axon.lab.runner import Job, check_parallelism, run_jobs

    out = Path(out)
    check_parallelism(workers, threads, "threads")  # before anything is written
    check_output_dir("out", out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    results = run_jobs([Job(r.name, r.args) for r in runs], out, workers=workers, threads_per_job=threads, progress=progress)
    rows = []
    for r in runs:
        res = results[r.name]
        if res.get("val_loss") is None:
            raise DataError(f"run {r.name} reported no validation loss (see {out / 'logs' / (r.name + '.log')})")
        d = int(res.get("tokens") or r.D)
        rows.append({"name": r.name, "budget": r.budget if r.budget is not None else None, "n_layer": r.size.n_layer,
                     "n_embd": r.size.n_embd, "n_head": r.size.n_head, "N": r.N, "N_total": r.N_total,
                     "flops_per_token": r.flops_per_token, "steps": int(res.get("step") or r.steps), "D": d,
                     "C": d * r.flops_per_token, "loss": float(res["val_loss"])})
    write_csv(rows, out / "sweep.csv")
    return read_csv(out / "sweep.csv")  # the rows as `axon scaling fit` will read them


def write_csv(rows: list[dict], path: Path) -> None:
    with AtomicFile(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def read_csv(path: str | Path) -> list[dict]:
    """Rows with float N, D, loss (required columns) and C, budget, name when present; a cell that
    is missing, empty or not a positive number is a DataError naming the file, line and column."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.csv"
    if not path.is_file():
        raise DataError(f"no sweep CSV at {path}")
    with reading(path, "sweep CSV"), open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"N", "D", "loss"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}; a sweep CSV needs N, D, loss (optional: C, budget, name)")
        rows = []
        for i, raw in enumerate(reader, start=2):
            row = {}
            for key in ("N", "D", "loss", "C", "budget"):
                cell = raw.get(key)
                if cell is None or not cell.strip():  # None: the line has fewer cells than the header
                    if key in ("N", "D", "loss"):
                        raise DataError(f"{path}, line {i}: no value in column {key}; every run needs N, D and loss")
                    row[key] = math.nan
                    continue
                try:
                    row[key] = float(cell)
                except ValueError:
                    raise DataError(f"{path}, line {i}, column {key}: {cell!r} is not a number") from None
                if key in ("N", "D", "loss") and not (math.isfinite(row[key]) and row[key] > 0):
                    raise DataError(f"{path}, line {i}, column {key}: N, D and loss must be positive numbers, got {cell!r}")
            row["name"] = raw.get("name") or f"row{i}"
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no runs in the file")
    return rows


# --------------------------------------------------------------------------------------------
# Fitting


def check_fit_options(bootstrap, seed) -> None:
    """``bootstrap`` resamples (0: no intervals) and the bootstrap's ``seed``: integers >= 0."""
    check_count("bootstrap", bootstrap, 0, meaning="(0: no intervals)")
    check_count("seed", seed, 0)


def fit_sweep(rows: list[dict], bootstrap: int = 200, seed: int = 0, progress: bool = False) -> dict:
    """Every fit of the sweep, as JSON-ready data (see axon.lab.fit for the mathematics). A law is
    fitted only from enough points (Kaplan's: F.POWER_LAW_MIN_POINTS distinct values of its
    variable, more than its two parameters; Chinchilla's: F.CHINCHILLA_MIN_RUNS runs); when the
    runs allow no fit at all, a DataError says what each law needs."""
    check_fit_options(bootstrap, seed)
    n, d, loss = (np.array([r[k] for r in rows], dtype=float) for k in ("N", "D", "loss"))
    c = np.array([r.get("C", math.nan) for r in rows], dtype=float)
    k = float(np.median(c / (n * d))) if np.all(np.isfinite(c)) else 6.0
    out: dict = {"runs": len(rows), "N": "non-embedding parameters", "D": "training tokens",
                 "flops_per_param": k, "bootstrap": bootstrap, "seed": seed}
    for by, key in (("N", "kaplan_N"), ("D", "kaplan_D")):
        x, l = F.kaplan_points(n, d, loss, by)
        if np.unique(x).size >= F.POWER_LAW_MIN_POINTS:
            law = F.fit_power_law(x, l, bootstrap=bootstrap, seed=seed)
            out[key] = {"law": f"L({by}) = ({by}_c / {by})^alpha_{by}", "alpha": law.alpha, "alpha_ci": list(law.alpha_ci),
                        f"{by}_c": law.x_c, f"{by}_c_ci": list(law.x_c_ci), "points": law.points,
                        "x": x.tolist(), "loss": l.tolist()}
    if not ({"kaplan_N", "kaplan_D"} & out.keys()) and len(rows) < F.CHINCHILLA_MIN_RUNS:
        raise DataError(
            f"{len(rows)} runs are too few to fit any law: Kaplan's L(N) needs {F.POWER_LAW_MIN_POINTS} distinct model "
            f"sizes (these runs have {np.unique(n).size}), L(D) {F.POWER_LAW_MIN_POINTS} distinct token counts (they have "
            f"{np.unique(d).size}), Chinchilla's L(N, D) {F.CHINCHILLA_MIN_RUNS} runs")
    if len(rows) >= F.CHINCHILLA_MIN_RUNS:
        out["chinchilla"] = F.fit_chinchilla(n, d, loss, bootstrap=bootstrap, seed=seed, progress=progress).to_dict()
    budget = np.array([r.get("budget", math.nan) for r in rows], dtype=float)
    if np.all(np.isfinite(budget)):
        minima = F.isoflop_minima(n, loss, budget)
        for m in minima:  # D at the vertex from the budget's own FLOPs per parameter-token
            rows_c = budget == m["budget"]
            k_c = float(np.median(c[rows_c] / (n[rows_c] * d[rows_c]))) if np.all(np.isfinite(c)) else 6.0
            m["D"] = m["budget"] / (k_c * m["N"])
        out["isoflop"] = {"minima": minima, "law": F.fit_isoflop(minima, bootstrap=bootstrap, seed=seed)}
    return out


def predict(fits: dict, flops: float) -> dict:
    """Loss-optimal N, D and loss at ``flops`` from the Chinchilla fit (with intervals), and N from
    the IsoFLOP law when the sweep had one."""
    if "chinchilla" not in fits:
        raise DataError(f"these fits have no Chinchilla L(N, D) (it needs at least {F.CHINCHILLA_MIN_RUNS} runs)")
    law = F.Chinchilla.from_dict(fits["chinchilla"])
    k = float(fits.get("flops_per_param", 6.0))
    out = {"flops": flops, "flops_per_param": k, **law.optimal(flops, flops_per_param=k)}
    iso = (fits.get("isoflop") or {}).get("law")
    if iso:
        with np.errstate(over="ignore"):
            out["isoflop_N"] = float(iso["k"] * np.float64(flops) ** iso["a"])
    return {key: (float(v) if np.ndim(v) == 0 else [float(x) for x in v]) for key, v in out.items()}


def load_fits(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "fits.json"
    if not path.is_file():
        raise DataError(f"no fits at {path}; run `axon scaling fit` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None


# --------------------------------------------------------------------------------------------
# Text, plots, report


def _ci(lo_hi) -> str:
    """An interval as text; NaN (no resamples, or resamples that all gave the same value, see
    axon.lab.fit.interval) is shown as undetermined, never as a zero-width certainty."""
    lo, hi = lo_hi
    return f"[{lo:.4g}, {hi:.4g}]" if math.isfinite(lo) and math.isfinite(hi) else "[undetermined]"


def summary_lines(fits: dict) -> list[str]:
    lines = [f"{fits['runs']} runs; N = non-embedding parameters, D = training tokens; 95% bootstrap intervals ({fits['bootstrap']} resamples)"]
    for key, var in (("kaplan_N", "N"), ("kaplan_D", "D")):
        if key in fits:
            f = fits[key]
            lines.append(f"Kaplan   L({var}) = ({f[var + '_c']:.4g} / {var})^{f['alpha']:.4f}   "
                         f"alpha_{var} {_ci(f['alpha_ci'])}, {var}_c {_ci(f[var + '_c_ci'])}  ({f['points']} points)")
    if "chinchilla" in fits:
        c = fits["chinchilla"]
        lines.append(f"Chinchilla L(N, D) = {c['E']:.4g} + {c['A']:.4g} / N^{c['alpha']:.4f} + {c['B']:.4g} / D^{c['beta']:.4f}")
        lines.append("           " + ", ".join(f"{k} {_ci(c[k + '_ci'])}" for k in ("E", "A", "B", "alpha", "beta")))
        if c.get("E_at_bound"):
            lines.append("           note: E ended on its floor: these runs are too far above the irreducible loss to determine it")
        lines.append(f"           N_opt = {c['G']:.4g} (C/{fits['flops_per_param']:.3g})^{c['a']:.3f}, "
                     f"D_opt = (C/{fits['flops_per_param']:.3g})^{c['b']:.3f} / {c['G']:.4g}   (a {_ci(c.get('a_ci', (math.nan,) * 2))})")
    for m in (fits.get("isoflop") or {}).get("minima", []):
        if m["bracketed"]:
            lines.append(f"IsoFLOP  C = {m['budget']:.3g}: parabola vertex N_opt = {m['N']:,.0f}, loss {m['loss']:.4f}")
        else:
            lines.append(f"IsoFLOP  C = {m['budget']:.3g}: the profile's minimum lies outside the sizes tried (not used)")
    iso = (fits.get("isoflop") or {}).get("law")
    if iso:
        lines.append(f"IsoFLOP  N_opt = {iso['k']:.4g} C^{iso['a']:.3f}  from {iso['budgets']} budget minima"
                     + (f", a {_ci(iso['a_ci'])}" if "a_ci" in iso else ""))
    if fits["bootstrap"] and any("[undetermined]" in line for line in lines):
        lines.append("note: [undetermined]: the bootstrap resamples gave one value (too few points, or points on "
                     "the law without noise); that measures no error, it is not certainty")
    return lines


def prediction_lines(p: dict) -> list[str]:
    lines = [f"budget {p['flops']:.4g} FLOPs (C = {p['flops_per_param']:.3g} N D):",
             f"  N_opt {p['N']:,.0f} non-embedding params  {_ci(p['N_ci'])}" if "N_ci" in p else f"  N_opt {p['N']:,.0f}",
             f"  D_opt {p['D']:,.0f} tokens  {_ci(p['D_ci'])}" if "D_ci" in p else f"  D_opt {p['D']:,.0f}",
             f"  loss  {p['loss']:.4f}  {_ci(p['loss_ci'])}" if "loss_ci" in p else f"  loss {p['loss']:.4f}"]
    if "isoflop_N" in p:
        lines.append(f"  (IsoFLOP law, approach 2: N_opt {p['isoflop_N']:,.0f})")
    return lines


def plot(rows: list[dict], fits: dict, path: Path) -> Path:
    """scaling.png, four panels: loss vs FLOPs with the fitted frontier; IsoFLOP profiles with
    their parabola minima; N_opt vs FLOPs (approaches 2 and 3); loss vs D per size with L(N, D)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, d, loss = (np.array([r[k] for r in rows], dtype=float) for k in ("N", "D", "loss"))
    c = np.array([r.get("C", math.nan) for r in rows], dtype=float)
    k = fits.get("flops_per_param", 6.0)
    c = np.where(np.isfinite(c), c, k * n * d)
    sizes = np.unique(n)
    cmap = plt.get_cmap("viridis")
    colour = {s: cmap(i / max(1, len(sizes) - 1)) for i, s in enumerate(sizes)}
    law = F.Chinchilla.from_dict(fits["chinchilla"]) if "chinchilla" in fits else None
    fig, ax = plt.subplots(2, 2, figsize=(12, 9))

    a = ax[0, 0]  # loss vs FLOPs; the frontier is L(N_opt(C), D_opt(C))
    for s in sizes:
        rows_s = np.flatnonzero(n == s)
        o = rows_s[np.argsort(c[rows_s])]
        a.plot(c[o], loss[o], "o-", color=colour[s], label=f"N={s:,.0f}")
    if law is not None:
        cs = np.geomspace(c.min() / 2, c.max() * 4, 100)
        a.plot(cs, [law.optimal(x, k)["loss"] for x in cs], "k--", label="fitted frontier L(N_opt, D_opt)")
    a.set(xscale="log", xlabel="training FLOPs C", ylabel="validation loss", title="Loss vs compute")
    a.legend(fontsize=7)

    a = ax[0, 1]  # IsoFLOP profiles (Chinchilla fig. 3, left)
    iso = fits.get("isoflop") or {}
    budget = np.array([r.get("budget", math.nan) for r in rows], dtype=float)
    if np.all(np.isfinite(budget)):
        budgets = np.unique(budget)
        bc = {b: plt.get_cmap("plasma")(i / max(1, len(budgets) - 1) * 0.85) for i, b in enumerate(budgets)}
        for b in budgets:
            o = np.flatnonzero(budget == b)
            o = o[np.argsort(n[o])]
            a.plot(n[o], loss[o], "o", color=bc[b], label=f"C={b:.2g}")
        for m in iso.get("minima", []):
            xs = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
            p2, p1, p0 = m["coef"]
            a.plot(xs, p2 * np.log(xs) ** 2 + p1 * np.log(xs) + p0, "-", color=bc[m["budget"]], alpha=0.6)
            if m["bracketed"]:  # an unbracketed vertex is an extrapolation: the curve alone is drawn
                a.plot(m["N"], m["loss"], "*", color=bc[m["budget"]], markersize=12, markeredgecolor="k")
        a.legend(fontsize=7)
    else:
        a.text(0.5, 0.5, "not an IsoFLOP sweep (no budget column)", ha="center", transform=a.transAxes)
    a.set(xscale="log", xlabel="non-embedding parameters N", ylabel="validation loss", title="IsoFLOP profiles (approach 2)")

    a = ax[1, 0]  # N_opt vs C
    cs = np.geomspace(c.min() / 2, c.max() * 100, 50)
    if law is not None:
        opt = [law.optimal(x, k) for x in cs]
        a.plot(cs, [o["N"] for o in opt], "k-", label="approach 3: L(N, D) fit")
        if "N_ci" in opt[0]:
            a.fill_between(cs, [o["N_ci"][0] for o in opt], [o["N_ci"][1] for o in opt], color="k", alpha=0.15, label="95% bootstrap")
    bracketed = [m for m in iso.get("minima", []) if m["bracketed"]]
    if bracketed:
        a.plot([m["budget"] for m in bracketed], [m["N"] for m in bracketed], "*", color="C3", markersize=12, label="IsoFLOP minima")
        if iso.get("law"):
            a.plot(cs, iso["law"]["k"] * cs ** iso["law"]["a"], "--", color="C3", label=f"approach 2: N ~ C^{iso['law']['a']:.2f}")
    a.plot(c, n, ".", color="0.6", label="runs")
    a.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel="N_opt", title="Compute-optimal model size")
    a.legend(fontsize=7)

    a = ax[1, 1]  # the L(N, D) fit against the runs
    for s in sizes:
        o = np.flatnonzero(n == s)
        o = o[np.argsort(d[o])]
        a.plot(d[o], loss[o], "o", color=colour[s], label=f"N={s:,.0f}")
        if law is not None:
            ds = np.geomspace(d.min() / 1.5, d.max() * 1.5, 100)
            a.plot(ds, law.loss(s, ds), "-", color=colour[s], alpha=0.7)
    a.set(xscale="log", xlabel="training tokens D", ylabel="validation loss", title="L(N, D) fit (lines) vs runs (dots)")
    a.legend(fontsize=7)
    from matplotlib.ticker import NullFormatter

    for a in ax.flat:  # minor-tick labels of short log axes overlap the major ones
        a.xaxis.set_minor_formatter(NullFormatter())
        a.yaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rows: list[dict], fits: dict, out: Path, predictions: list[dict] = ()) -> Path:
    """report.html: the fitted laws, the plot (embedded, base64) and the table of runs; offline."""
    from html import escape

    png = base64.b64encode((out / "scaling.png").read_bytes()).decode()
    head = ["name", "N", "D", "C", "loss"]
    table = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(r.get(h)))}</td>" for h in head) + "</tr>" for r in rows)
    pred = "".join(f"<pre>{escape(chr(10).join(prediction_lines(p)))}</pre>" for p in predictions)
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>Axon scaling laws</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:2px 10px;text-align:right}}
pre{{background:#f5f5f5;padding:8px}}</style></head><body>
<h1>Scaling laws</h1>
<pre>{escape(chr(10).join(summary_lines(fits)))}</pre>{pred}
<img src="data:image/png;base64,{png}" style="width:100%">
<h2>Runs</h2><table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{table}</table>
<p>Fits: Kaplan et al. 2020 (L(N), L(D) power laws, log-log least squares); Hoffmann et al. 2022
approach 3 (Huber loss, delta 1e-3, on log-loss, L-BFGS from their initialisation grid) and approach 2
(parabolas through IsoFLOP profiles). Every constant with its {fits['bootstrap']}-resample bootstrap
interval is in fits.json.</p></body></html>
"""
    path = out / "report.html"
    path.write_text(html)
    return path


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if not v.is_integer() or abs(v) >= 1e7 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def fit_and_report(rows: list[dict], out: Path, bootstrap: int = 200, seed: int = 0,
                   flops: list[float] = (), progress: bool = False) -> tuple[dict, list[dict]]:
    """fits.json, scaling.png and report.html in ``out``; returns (fits, predictions)."""
    out = Path(out)
    check_output_dir("out", out)
    fits = fit_sweep(rows, bootstrap=bootstrap, seed=seed, progress=progress)  # a refused fit writes nothing
    out.mkdir(parents=True, exist_ok=True)
    predictions = [predict(fits, f) for f in flops] if "chinchilla" in fits else []
    atomic_write_json(out / "fits.json", fits, indent=1)
    plot(rows, fits, out / "scaling.png")
    write_report(rows, fits, out, predictions)
    return fits, predictions


def echo(lines) -> None:
    print("\n".join(lines), file=sys.stdout)


__all__ = ["PlannedRun", "Size", "fit_and_report", "fit_sweep", "load_fits", "parse_sizes", "plan_sweep",
           "plan_table", "predict", "read_csv", "run_sweep", "write_csv"]

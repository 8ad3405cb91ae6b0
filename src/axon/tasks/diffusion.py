"""The ``diffusion`` task: a denoiser trained to undo Gaussian noise (Ho et al. 2020), sampled by
DDPM or DDIM, optionally class-conditional with classifier-free guidance (Ho & Salimans 2022).

    images / points x0 (B, ...) in about [-1, 1] --+-- t ~ U{0..T-1}, eps ~ N(0, I): drawn by the
    classes y (B,) or none                          |   dataset from (seed, step, micro_step); or
                                                    |   t ~ p_t by the loss history (importance)
                                                    v
      x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps   (axon.diffusion.Diffusion.q_sample)
      y'  = y, or the null class with probability diffusion.cond_drop (guidance's unconditional half)
                                                    |
      out = model(x_t, t, y')   (unet, mlp_denoiser: the noise, x0 or v -- diffusion.target;
                                                    |    with model.learn_sigma also the variance's v)
      loss = mean over the batch of Diffusion.loss(out, x0, eps, t, diffusion.weighting)
             (x 1 / (T p_t) with importance-sampled t; a learned variance adds the hybrid term)

Data (``diffusion.data``): ``digits``, scikit-learn's bundled 8x8 digits (1,797 images, 10
classes; a fixed stratified fifth held out, ``axon.data.images.digits_split``); ``swiss_roll``,
``moons``, ``gaussians``: ``diffusion.points`` 2-D points, the last tenth held out; or a folder of
images, one sub-folder per class, resized to the model's ``image_size`` (every tenth held out).
The model is a ``unet`` for images and an ``mlp_denoiser`` for points; with ``model.num_classes``
set it is class-conditional and the classes of the data must fit it.

With ``diffusion.timestep_sampling: importance`` each example's t is drawn by inverse CDF from
the batch's uniform ``u`` and the objective's :class:`axon.diffusion.ImportanceSampler`, whose
loss history the checkpoints carry (``checkpoint_tensors``), so resume stays exact; evaluation
keeps the uniform t of its batches. ``variance: learned_range`` needs ``model.learn_sigma``.

The process (betas, target, variance) lives in :class:`axon.diffusion.Diffusion`, built from the
config by :func:`make_process` -- never in the model, so an EMA of the model's weights
(``model.ema_decay``, ``axon.nn.ema``) can never touch it. Evaluation and sampling use the EMA's
weights (``Model.averaged``).

At each evaluation (``TaskSetup.eval_fn``) the task samples ``diffusion.eval_samples`` with fixed
noise (the same at every evaluation, so the curve shows the model and not the draw), by
``diffusion.sampler`` with ``sample_steps``, ``eta`` and, for a conditional model, the classes in
turn at guidance ``diffusion.guidance``; it writes ``samples/step_NNNNNNN.png`` (a grid, or a
scatter over the held-out points) and logs the quality figures with the evaluation's record:
digits -- the Fréchet distance on the features of Axon's own digits classifier with its bootstrap
interval and sample counts, the classifier's accuracy on conditional samples, the entropy of its
mean prediction (diversity); points -- the sliced Wasserstein distance and MMD to the held-out
points (``axon.eval.generative``). The final figures (``result.json``, ``axon eval``) add the
bound in bits/dim of ``diffusion.bpd_examples`` held-out examples. ``quality.png``: the loss and
the distance against the step, with the step where the distance was best marked.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from axon.errors import ConfigError
from axon.tasks.base import TaskSetup

SAMPLES_DIR = "samples"
QUALITY_PLOT = "quality.png"
TOY_HELD_OUT = 0.1


def make_process(cfg):
    """The run's :class:`axon.diffusion.Diffusion` from its ``diffusion:`` section."""
    from axon.diffusion import Diffusion, make_betas

    d = cfg.diffusion
    return Diffusion(make_betas(d.schedule, d.timesteps), target=d.target, variance=d.variance)


def is_points(cfg) -> bool:
    return cfg.model.family == "mlp_denoiser"


# ----------------------------------------------------------------------------------------------
# Data


def load_data(cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x_train, y_train, x_val, y_val, classes in the data) for ``diffusion.data``, checked
    against the model (one line naming the field when they do not fit)."""
    from axon.data.images import (
        TOY_CLASSES,
        TOY_SETS,
        digits_split,
        load_image_folder,
        toy_2d,
    )

    d, m = cfg.diffusion, cfg.model
    if d.data in TOY_SETS:
        if not is_points(cfg):
            raise ConfigError(f"diffusion.data: {d.data} is 2-D points; use model.family=mlp_denoiser "
                              f"(model.family={m.family} takes images)")
        if m.data_dim != 2:
            raise ConfigError(f"model.data_dim: {d.data} points are 2-D, got {m.data_dim}")
        x, y = toy_2d(d.data, d.points, seed=0)
        cut = d.points - max(1, int(d.points * TOY_HELD_OUT))
        return x[:cut], y[:cut], x[cut:], y[cut:], TOY_CLASSES[d.data]
    if is_points(cfg):
        raise ConfigError(f"diffusion.data: {d.data!r} is images; model.family=mlp_denoiser takes 2-D points "
                          "(swiss_roll, moons, gaussians); use model.family=unet")
    if d.data == "digits":
        if (m.image_size, m.in_channels) != (8, 1):
            raise ConfigError(f"model.image_size / model.in_channels: the digits are 8x8 grey, got "
                              f"{m.image_size}x{m.image_size} with {m.in_channels} channels (model.preset=digits fits)")
        xt, yt = digits_split("train")
        xv, yv = digits_split("val")
        return xt, yt, xv, yv, 10
    folder = Path(d.data)
    if not folder.is_dir():
        raise ConfigError(f"diffusion.data: {d.data!r} is neither digits, swiss_roll, moons, gaussians nor a folder")
    x, y, names = load_image_folder(folder, m.image_size, m.in_channels)
    val = torch.arange(len(x)) % 10 == 9
    if not val.any():
        raise ConfigError(f"diffusion.data: {folder} has {len(x)} images; at least 10 are needed "
                          "(every tenth is held out)")
    return x[~val], y[~val], x[val], y[val], len(names)


def _generator(*seeds: int) -> torch.Generator:
    state = np.random.SeedSequence(list(seeds)).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


class NoisedExamples:
    """Batches ``(x0, y, t, noise, u)``: examples drawn with replacement, their timesteps, noise,
    dropped classes and a uniform ``u`` in [0, 1) each (importance sampling's draw of t) all from
    one generator seeded with (seed, step, micro_step) -- a pure function of its arguments, so
    resume is exact. ``y`` is -1 for an unconditional model; a dropped class is ``null`` (the
    model's num_classes)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, timesteps: int, null: int | None, cond_drop: float):
        self.x, self.y, self.T, self.null, self.cond_drop = x, y, timesteps, null, cond_drop

    def __len__(self) -> int:
        return len(self.x)

    def _make(self, idx: torch.Tensor, g: torch.Generator, drop: bool) -> tuple[torch.Tensor, ...]:
        B = len(idx)
        x0 = self.x[idx]
        t = torch.randint(self.T, (B,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        if self.null is None:
            y = torch.full((B,), -1, dtype=torch.long)
        else:
            y = self.y[idx].clone()
            if drop and self.cond_drop > 0:
                y[torch.rand(B, generator=g) < self.cond_drop] = self.null
        return x0, y, t, noise, torch.rand(B, generator=g, dtype=torch.float64)

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        g = _generator(seed, step, micro_step)
        return self._make(torch.randint(len(self.x), (batch_size,), generator=g), g, drop=True)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        starts = range(0, len(self.x), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        for s in starts:  # every held-out example once, its t and noise fixed by its batch's position
            yield self._make(torch.arange(s, min(s + batch_size, len(self.x))), _generator(0, s), drop=False)


# ----------------------------------------------------------------------------------------------
# The objective and the sampler


class DenoisingLoss:
    """(model, (x0, y, t, noise, u)) -> (mean loss, parts): ``Diffusion.loss`` of the model's
    prediction at x_t, averaged over the batch (``count``: examples). With an ``ImportanceSampler``
    a training call (``model.training``) draws t from ``u`` instead, weights each loss by 1 / (T p_t)
    and records it; the sampler's state is the objective's checkpoint state."""

    def __init__(self, process, weighting: str, conditional: bool, *, hybrid_lambda: float = 0.001,
                 discrete: bool = True, sampler=None):
        self.process, self.weighting, self.conditional = process, weighting, conditional
        self.hybrid_lambda, self.discrete, self.sampler = hybrid_lambda, discrete, sampler

    def __call__(self, model, batch):
        x0, y, t, noise, u = batch
        weight = None
        if self.sampler is not None and model.training:
            t, weight = self.sampler.draw(u)
        x_t = self.process.q_sample(x0, t, noise)
        out = model(x_t, t, y if self.conditional else None)  # unconditional batches carry y = -1
        losses = self.process.loss(out, x0, noise, t, self.weighting, hybrid_lambda=self.hybrid_lambda,
                                   discrete=self.discrete)
        if weight is not None:
            self.sampler.update(t, losses)
            losses = losses * weight.to(losses.dtype)
        return losses.mean(), {"count": x0.shape[0]}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return self.sampler.state_tensors() if self.sampler is not None else {}

    def load_checkpoint_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.sampler is not None:
            self.sampler.load_state_tensors(tensors)


def denoiser(model, y: torch.Tensor | None, guidance: float, null: int | None, channels: int | None = None):
    """``(x_t, t) -> out`` for ``Diffusion.sample``: the model at classes ``y`` (None: unconditional),
    with classifier-free guidance ``uncond + guidance (cond - uncond)`` when guidance != 1 (one
    forward of the conditional and null-class rows together); ``channels``: guide only the first
    that many (a learned variance keeps the conditional v)."""
    from axon.diffusion import cfg as combine

    if y is None or guidance == 1.0:
        return lambda x, t: model(x, t, y)
    nulls = torch.full_like(y, null)

    def guided(x, t):
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, nulls]))
        cond, uncond = both.chunk(2)
        return combine(cond, uncond, guidance, channels)

    return guided


@torch.no_grad()
def draw_samples(model, cfg, n: int, *, classes: torch.Tensor | None = None, seed: int = 0, sampler: str | None = None,
                 steps: int | None = None, eta: float | None = None, guidance: float | None = None, keep: int = 0,
                 progress=None):
    """``n`` samples of the run's model (call inside ``model.averaged()`` for the EMA's weights);
    ``classes`` (n,) for a conditional model (default: 0, 1, 2, ... in turn). Options default to
    the run's ``diffusion:`` section. Returns (samples, classes or None[, strip])."""
    d = cfg.diffusion
    process = make_process(cfg)
    null = cfg.model.num_classes
    device = next(model.parameters()).device
    if null is None and classes is not None:
        raise ConfigError("--class: this model is unconditional (model.num_classes is null)")
    if null is not None and classes is None:
        classes = torch.arange(n) % null
    y = None if classes is None else classes.to(device)
    shape = (n, cfg.model.data_dim) if is_points(cfg) else (n, cfg.model.in_channels, cfg.model.image_size,
                                                           cfg.model.image_size)
    was_training = model.training
    model.eval()
    channels = shape[1] if process.learned else None
    try:
        out = process.sample(denoiser(model, y, d.guidance if guidance is None else guidance, null, channels), shape,
                             sampler=sampler or d.sampler,
                             steps=(steps or d.sample_steps) if (sampler or d.sampler) == "ddim" else None,
                             eta=d.eta if eta is None else eta, generator=torch.Generator(device).manual_seed(seed),
                             clip_x0=d.clip_x0 and not is_points(cfg), keep=keep, progress=progress, device=device,
                             clipped_eps=True)  # DDIM's eps from the clipped x0: guidance needs it (ddim_step)
    finally:
        model.train(was_training)
    if keep:
        x, strip = out
        return x.cpu(), classes, strip
    return out.cpu(), classes


# ----------------------------------------------------------------------------------------------
# Figures and pictures


def quality(cfg, samples: torch.Tensor, classes: torch.Tensor | None, x_val: torch.Tensor, cache_dir) -> dict:
    """The quality figures of ``samples`` (module docstring): digits or points; a folder of images
    has no reference classifier, so only its sample count."""
    from axon.eval.generative import digits_quality, points_quality

    d = cfg.diffusion
    if is_points(cfg):
        return points_quality(samples, x_val)
    if d.data == "digits":
        q = digits_quality(samples, classes, cache_dir=cache_dir)
        if classes is None:
            q.pop("accuracy", None)
        return q
    return {"n_gen": len(samples)}


def save_grid(images: torch.Tensor, path: Path, columns: int | None = None, scale: int | None = None) -> Path:
    """Images (N, C, H, W) in [-1, 1] as one PNG grid (a 1-pixel border between cells), each
    pixel ``scale`` times larger (default: cells of at least 32 pixels). Written via a temporary
    file, so a crash leaves the old picture or none."""
    from PIL import Image

    from axon.atomic import atomic_write_bytes

    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    N, C, H, W = x.shape
    cols = columns or math.ceil(math.sqrt(N))
    rows = math.ceil(N / cols)
    scale = scale or max(1, 32 // max(H, W))
    grid = torch.full((C, rows * (H + 1) + 1, cols * (W + 1) + 1), 255, dtype=torch.uint8)
    for i in range(N):
        r, c = divmod(i, cols)
        grid[:, 1 + r * (H + 1): 1 + r * (H + 1) + H, 1 + c * (W + 1): 1 + c * (W + 1) + W] = x[i]
    array = grid.permute(1, 2, 0).numpy()
    img = Image.fromarray(array[:, :, 0] if C == 1 else array, mode="L" if C == 1 else "RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def save_points(samples: torch.Tensor, reference: torch.Tensor, path: Path, title: str = "") -> Path:
    """A scatter of 2-D samples over the held-out points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.scatter(*reference.T.numpy(), s=3, alpha=0.3, color="grey", label="held out")
    ax.scatter(*samples.T.numpy(), s=3, alpha=0.6, color="tab:red", label="samples")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def save_picture(cfg, samples: torch.Tensor, x_val: torch.Tensor, path: Path, title: str = "") -> Path:
    if is_points(cfg):
        return save_points(samples, x_val, path, title)
    return save_grid(samples, path, columns=cfg.model.num_classes if cfg.model.num_classes else None)


def save_strip(strip: list, path: Path) -> Path:
    """The denoising strip x_T -> x_0 of a few samples: one row per sample, one column per kept
    step (``draw_samples(..., keep=k)``)."""
    columns = len(strip)
    rows = strip[0][1].shape[0]
    cells = torch.stack([x.detach().float().cpu() for _, x in strip], 1)  # (rows, columns, C, H, W)
    return save_grid(cells.reshape(rows * columns, *cells.shape[2:]), path, columns=columns)


def plot_quality(run_dir: Path) -> Path | None:
    """quality.png: the validation loss and the sample distance against the step, the best
    distance marked -- where it turns up while the loss keeps falling is the step to stop at."""
    from axon.train.logging import read_metrics

    records = read_metrics(Path(run_dir) / "metrics.jsonl")
    key = next((k for k in ("val_frechet_distance", "val_sliced_wasserstein") if any(k in r for r in records)), None)
    if key is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    dist = [(r["step"], r[key]) for r in records if key in r]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(*zip(*val), "o-", color="tab:blue", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("denoising loss", color="tab:blue")
    twin = ax.twinx()
    twin.plot(*zip(*dist), "s-", color="tab:red", label=key[4:].replace("_", " "))
    lo, hi = "val_frechet_lo", "val_frechet_hi"
    bars = [(r["step"], r[lo], r[hi]) for r in records if lo in r and hi in r]
    if bars and key == "val_frechet_distance":
        twin.fill_between([b[0] for b in bars], [b[1] for b in bars], [b[2] for b in bars], color="tab:red", alpha=0.15)
    best = min(dist, key=lambda p: p[1])
    twin.axvline(best[0], color="tab:red", linestyle=":", linewidth=1)
    twin.set_ylabel(key[4:].replace("_", " ") + f" (best at step {best[0]})", color="tab:red")
    ax.set_title(Path(run_dir).name, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(run_dir) / QUALITY_PLOT
    fig.savefig(out)
    plt.close(fig)
    return out


def weights_key(model) -> str:
    """A digest of the model's parameters as they are now (inside ``averaged()``: the EMA's)."""
    import hashlib

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# The task


def diffusion_task(cfg, device: torch.device) -> TaskSetup:
    d, m = cfg.diffusion, cfg.model
    if m.learn_sigma and d.variance != "learned_range":
        raise ConfigError(f"model.learn_sigma: the net's variance output is read only with diffusion.variance="
                          f"learned_range (got {d.variance}); set one or the other")
    if d.variance == "learned_range" and not m.learn_sigma:
        raise ConfigError("diffusion.variance: learned_range needs a net that outputs the variance too; set "
                          "model.learn_sigma=true")
    if d.timestep_sampling == "importance" and torch.distributed.is_available() and \
            torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        raise ConfigError("diffusion.timestep_sampling: importance keeps one process's loss history (a checkpoint "
                          "holds rank 0's, which would not resume the others exactly); use uniform under torchrun")
    x_train, y_train, x_val, y_val, n_classes = load_data(cfg)
    null = m.num_classes
    if null is not None and n_classes > null:
        raise ConfigError(f"model.num_classes: the data has {n_classes} classes but the model embeds {null}; "
                          f"set model.num_classes={n_classes} (or null for an unconditional model)")
    process = make_process(cfg)
    train = NoisedExamples(x_train, y_train, d.timesteps, null, d.cond_drop)
    val = NoisedExamples(x_val, y_val, d.timesteps, null, 0.0)
    cache_dir = cfg.data.cache_dir
    seed = cfg.train.seed
    if d.data == "digits":  # the quality figures' classifier: trained (seconds) and cached now, not mid-run
        from axon.eval.digits_classifier import digits_classifier

        digits_classifier(cache_dir)

    last: dict = {}  # the figures of the weights last scored: a run's end asks twice (eval_fn, model_metrics)

    def figures(model) -> tuple[dict, torch.Tensor]:
        key = weights_key(model)
        if last.get("key") != key:
            samples, classes = draw_samples(model, cfg, d.eval_samples, seed=seed)
            last.update(key=key, figures=quality(cfg, samples, classes, x_val, cache_dir), samples=samples)
        return dict(last["figures"]), last["samples"]

    def eval_fn(model, step: int, run_dir: Path) -> dict:
        out, samples = figures(model)
        folder = Path(run_dir) / SAMPLES_DIR
        folder.mkdir(exist_ok=True)
        shown = samples[: 100 if null is None else null * 10]
        save_picture(cfg, shown if not is_points(cfg) else samples, x_val, folder / f"step_{step:07d}.png",
                     title=f"step {step}")
        return out

    def model_metrics(model, split: str) -> dict:
        out, _ = figures(model)
        if d.bpd_examples and split == "val":
            device = next(model.parameters()).device
            x0 = x_val[: d.bpd_examples].to(device)
            y0 = None if null is None else y_val[: d.bpd_examples].to(device)

            def denoise(x, t):  # bits_per_dim stacks the examples once per timestep: (k * B, ...)
                return model(x, t, None if y0 is None else y0.repeat(x.shape[0] // len(x0)))

            was = model.training
            model.eval()
            try:
                bpd = process.bits_per_dim(denoise, x0, torch.Generator(device).manual_seed(0),
                                           discrete=not is_points(cfg))
            finally:
                model.train(was)
            out["bits_per_dim"] = float(bpd.mean())
        return out

    from axon.diffusion import ImportanceSampler

    sampler = ImportanceSampler(d.timesteps) if d.timestep_sampling == "importance" else None
    objective = DenoisingLoss(process, d.weighting, null is not None, hybrid_lambda=d.hybrid_lambda,
                              discrete=not is_points(cfg), sampler=sampler)
    return TaskSetup(train_data=train, val_data=val, objective=objective,
                     model_metrics=model_metrics, eval_fn=eval_fn, plots={QUALITY_PLOT: plot_quality})

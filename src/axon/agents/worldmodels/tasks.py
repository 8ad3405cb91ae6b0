"""World Models' three tasks (Ha & Schmidhuber 2018), each a run of the one trainer:

    wm_vae         collect random-policy rollouts of world_model.env (Chase: axon.agents.worldmodels.env, or
                   gymnasium's CarRacing-v3: axon.agents.worldmodels.carracing) -> rollouts.npz
                   in the run; train V (model.family wm_vae) on their frames
    wm_mdn         encode the V run's rollouts (world_model.vae_run) -> latents.npz in the run; train M
                   (wm_mdnrnn) on (z_t, a_t) -> (z_{t+1}, r_t) windows
    wm_controller  C (wm_controller) by CMA-ES: one trainer step is one generation; fitness is the mean
                   return of each candidate over world_model.rollouts episodes inside M ("the dream",
                   world_model.fitness: dream) or in the real environment (real), C acting on [z, h]

The controller task fits the trainer without a special case. Its batches name the generation; its
objective asks the CMA-ES state (buffers of the model: ``LinearController.es``) for
``train.batch_size`` candidates sampled from a generator seeded by (train.seed, generation), rolls
them all out as one batched world, tells the fitnesses back and writes the new mean into the
controller's weights. The loss it returns is minus the population's mean return plus 0 x the
weights: a zero gradient, so AdamW's step is exactly zero (and the weights are marked
``_no_weight_decay``). The trainer checkpoints the model, hence the search: resume is exact.

The worlds (:class:`RealWorld`, :class:`DreamWorld`) share one interface, ``reset(seed) -> (z, h)``
and ``step(actions) -> (z, h, reward)``: the real one renders frames, encodes them with V's mean and
advances M's state on (z, a); the dream starts from V's encoding of real first frames and samples
z_{t+1} from M's mixture at ``world_model.temperature``, its reward M's reward head.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from axon.agents.worldmodels import env as chase
from axon.errors import ConfigError
from axon.models.base import unwrap

if TYPE_CHECKING:
    from axon.tasks.base import TaskSetup

# axon.tasks.base.TaskSetup is imported inside the builders: axon.tasks imports this module for its registry.
ROLLOUTS_FILE = "rollouts.npz"  # wm_vae: the random-policy rollouts (frames uint8, actions, rewards), train and val
LATENTS_FILE = "latents.npz"  # wm_mdn: V's mu and logvar of every frame of those rollouts
STRIP_FILE = "strip.png"  # wm_vae: frames over reconstructions; wm_controller: + a dream decoded
RETURNS_PLOT = "returns.png"
EVAL_SEED = 20240601
TRAIN, EVAL = 0, 1


ACTION_DIMS = {"chase": 1, "carracing": 3}  # C's and M's action size in each world_model.env


def make_env(w, n: int):
    """``n`` environments of ``world_model.env``, stepped together (Chase's interface)."""
    if w.env == "carracing":
        from axon.agents.worldmodels.carracing import CarRacing

        return CarRacing(n, w.frame_size, w.horizon)
    return chase.Chase(n, w.frame_size, w.horizon)


def collect(w, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Random-policy rollouts of ``world_model.env`` (frames, actions, rewards; env.collect's format)."""
    if w.env == "carracing":
        from axon.agents.worldmodels.carracing import collect as collect_carracing

        return collect_carracing(episodes, w.frame_size, w.horizon, seed)
    return chase.collect(episodes, w.frame_size, w.horizon, seed)


def _check_action_dim(cfg) -> None:
    want = ACTION_DIMS[cfg.world_model.env]
    if cfg.model.action_dim != want:
        raise ConfigError(f"model.action_dim={cfg.model.action_dim}, but world_model.env={cfg.world_model.env} "
                          f"has {want}-dim actions")


def _same_env(cfg, run_cfg, field: str) -> None:
    if run_cfg.world_model.env != cfg.world_model.env:
        raise ConfigError(f"{field}: that run is of world_model.env={run_cfg.world_model.env}, "
                          f"this one of {cfg.world_model.env}")


class _EnvSpec:
    """The world_model fields :func:`make_env` reads."""

    def __init__(self, env: str, frame_size: int, horizon: int):
        self.env, self.frame_size, self.horizon = env, frame_size, horizon


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from axon.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _load_npz(path: Path, field: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ConfigError(f"{field}: {path.parent} has no {path.name} (is it a run of the right task?)")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _run_of(spec: str | None, field: str, family: str):
    """(config, model in eval mode) of the run ``spec`` names, which must be of ``family``."""
    from axon.config import load_config
    from axon.train.run import load_run

    if not spec:
        raise ConfigError(f"{field}: not set; name the {family} run to use")
    if not (Path(spec) / "config.yaml").is_file():
        raise ConfigError(f"{field}: {spec} is not a run directory (no config.yaml)")
    if load_config(Path(spec) / "config.yaml").model.family != family:
        raise ConfigError(f"{field}: {spec} is not a {family} run")
    cfg, model, _ = load_run(spec, "cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    return cfg, model.eval()


def to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (..., S, S, 3) -> float (..., 3, S, S) in [0, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float() / 255.0


# ----------------------------------------------------------------------------------------------
# V


class FrameData:
    """Batches of single frames (B, 3, S, S) drawn with replacement, a pure function of (seed, step)."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames.reshape(-1, *frames.shape[-3:])  # (N, S, S, 3) uint8

    def get_batch(self, step, batch_size, block_size, seed, micro_step=0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return (to_float(self.frames[rng.integers(0, len(self.frames), batch_size)]),)

    def iter_eval_batches(self, batch_size, block_size, max_batches=None):
        n = len(self.frames) if max_batches is None else min(len(self.frames), batch_size * max_batches)
        for s in range(0, n, batch_size):
            yield (to_float(self.frames[s : min(n, s + batch_size)]),)


class VAELoss:
    """The paper's V loss: L2 reconstruction + max(KL, kl_tolerance x Z), both per pixel (divided by
    3 S^2 so the lr does not depend on the frame size). ``ce``: the reconstruction MSE per pixel."""

    def __init__(self, kl_tolerance: float):
        self.kl_tolerance = kl_tolerance

    def __call__(self, model, batch):
        (x,) = batch
        recon, mu, logvar = model(x)
        mse = ((recon - x) ** 2).mean()
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)).mean()  # nats per frame
        Z = mu.size(-1)
        loss = mse + torch.clamp(kl, min=self.kl_tolerance * Z) / x[0].numel()
        return loss, {"ce": mse.detach(), "kl": kl.detach(), "count": x.size(0)}


@torch.no_grad()
def recon_mse(model, frames: np.ndarray, batch_size: int = 256) -> float:
    """V's (eval mode: z = mu) reconstruction MSE per pixel over uint8 frames (N, S, S, 3)."""
    was = model.training
    model.eval()
    frames = frames.reshape(-1, *frames.shape[-3:])
    se = 0.0
    for s in range(0, len(frames), batch_size):
        x = to_float(frames[s : s + batch_size])
        se += float(((model(x)[0] - x) ** 2).sum())
    model.train(was)
    return se / (len(frames) * frames[0].size)


def mean_frame_mse(train: np.ndarray, val: np.ndarray) -> float:
    """The MSE per pixel of predicting every val frame by the mean train frame (the bound V must beat)."""
    mean = train.reshape(-1, *train.shape[-3:]).astype(np.float64).mean(0) / 255.0
    return float(((val.reshape(-1, *val.shape[-3:]) / 255.0 - mean) ** 2).mean())


def save_strip(rows: list[torch.Tensor], path: Path, scale: int = 3) -> Path:
    """Rows of frames, each (N, 3, S, S) in [0, 1], as one PNG (1-pixel white borders), written atomically."""
    from axon.tasks.diffusion import save_grid

    N = max(r.size(0) for r in rows)
    cells = []
    for r in rows:
        pad = torch.ones(N - r.size(0), *r.shape[1:])
        cells.append(torch.cat([r.float().cpu(), pad]))
    return save_grid(torch.cat(cells) * 2 - 1, path, columns=N, scale=scale)


def wm_vae_task(cfg, device: torch.device) -> "TaskSetup":
    from axon.tasks.base import TaskSetup

    w = cfg.world_model
    if cfg.model.family != "wm_vae":
        raise ConfigError(f"task wm_vae trains a wm_vae model, got model.family={cfg.model.family}")
    if cfg.model.frame_size != w.frame_size:
        raise ConfigError(f"model.frame_size={cfg.model.frame_size} differs from world_model.frame_size={w.frame_size}")
    train = collect(w, w.episodes, w.data_seed)
    val = collect(w, w.val_episodes, w.data_seed + 1_000_003)
    arrays = {**train, **{f"val_{k}": v for k, v in val.items()}}
    baseline = mean_frame_mse(train["frames"], val["frames"])
    shown = val["frames"][0, ::4][:16]  # one validation episode, every 4th frame

    def eval_fn(model, step, run_dir):
        x = to_float(shown)
        with torch.no_grad():
            was = model.training
            model.eval()
            recon = model(x)[0]
            model.train(was)
        save_strip([x, recon], Path(run_dir) / STRIP_FILE)
        return {"recon_mse": recon_mse(model, val["frames"][:, ::2]), "mean_frame_mse": baseline}

    return TaskSetup(
        train_data=FrameData(train["frames"]), val_data=FrameData(val["frames"]), objective=VAELoss(w.kl_tolerance),
        extra_files={ROLLOUTS_FILE: lambda path: _save_npz(Path(path), arrays)},
        model_metrics=lambda model, split: {"recon_mse": recon_mse(model, val["frames"]), "mean_frame_mse": baseline},
        eval_fn=eval_fn,
    )


# ----------------------------------------------------------------------------------------------
# M


@torch.no_grad()
def encode_frames(vae, frames: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """V's mu and logvar (..., Z) float32 of uint8 frames (..., S, S, 3)."""
    flat = frames.reshape(-1, *frames.shape[-3:])
    mus, lvs = [], []
    for s in range(0, len(flat), batch_size):
        mu, lv = vae.encode(to_float(flat[s : s + batch_size]))
        mus.append(mu)
        lvs.append(lv)
    shape = frames.shape[:-3]
    return (torch.cat(mus).numpy().reshape(*shape, -1), torch.cat(lvs).numpy().reshape(*shape, -1))


class LatentWindows:
    """Windows of ``block_size`` steps of encoded rollouts: (z_t, a_t, z_{t+1}, r_t), z drawn from V's
    posterior N(mu, exp(logvar)) as the paper trains M, with a generator seeded by (seed, step):
    z (B, L, Z), a (B, L, A), z_next (B, L, Z), r (B, L)."""

    def __init__(self, mu: np.ndarray, logvar: np.ndarray, actions: np.ndarray, rewards: np.ndarray):
        if actions.ndim == 2:  # Chase: (E, T), one action dim
            actions = actions[..., None]
        self.mu, self.std, self.actions, self.rewards = mu, np.exp(0.5 * logvar), actions, rewards  # (E, T+1, Z), (E, T, A), (E, T)

    def _windows(self, rng, episodes, starts, L):
        idx = starts[:, None] + np.arange(L + 1)[None]  # (B, L + 1)
        e = episodes[:, None]
        z = self.mu[e, idx] + self.std[e, idx] * rng.standard_normal((len(episodes), L + 1, self.mu.shape[-1]))
        z = torch.from_numpy(z.astype(np.float32))
        a = torch.from_numpy(self.actions[e, idx[:, :L]])
        r = torch.from_numpy(self.rewards[e, idx[:, :L]])
        return z[:, :L], a, z[:, 1:], r

    def get_batch(self, step, batch_size, block_size, seed, micro_step=0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        E, T = self.actions.shape[:2]
        L = min(block_size, T)
        return self._windows(rng, rng.integers(0, E, batch_size), rng.integers(0, T - L + 1, batch_size), L)

    def iter_eval_batches(self, batch_size, block_size, max_batches=None):
        E, T = self.actions.shape[:2]
        L = min(block_size, T)
        eps = np.repeat(np.arange(E), T // L)
        starts = np.tile(np.arange(T // L) * L, E)
        for b, s in enumerate(range(0, len(eps), batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            rng = np.random.default_rng(np.random.SeedSequence([EVAL_SEED, b]))
            yield self._windows(rng, eps[s : s + batch_size], starts[s : s + batch_size], L)


class MDNLoss:
    """M's loss: the mixture's NLL of z_{t+1} per latent dim (``ce``) + the reward head's MSE
    (logged as ``reward_mse``, the training batches' mean since the last record)."""

    def __init__(self):
        self.seen: list[float] = []

    def metrics(self) -> dict[str, float]:
        out = {"reward_mse": sum(self.seen) / len(self.seen)} if self.seen else {}
        self.seen = []
        return out

    def __call__(self, model, batch):
        from axon.models.wm import mdn_nll

        z, a, z_next, r = batch
        log_pi, mu, log_sigma, reward, _ = model(z, a)
        nll = mdn_nll(log_pi, mu, log_sigma, z_next).mean()
        reward_mse = ((reward - r) ** 2).mean()
        if model.training:
            self.seen.append(float(reward_mse.detach()))
        return nll + reward_mse, {"ce": nll.detach(), "reward_mse": reward_mse.detach(), "count": z.shape[0] * z.shape[1]}


def wm_mdn_task(cfg, device: torch.device) -> "TaskSetup":
    from axon.tasks.base import TaskSetup

    w = cfg.world_model
    if cfg.model.family != "wm_mdnrnn":
        raise ConfigError(f"task wm_mdn trains a wm_mdnrnn model, got model.family={cfg.model.family}")
    _check_action_dim(cfg)
    vae_cfg, vae = _run_of(w.vae_run, "world_model.vae_run", "wm_vae")
    _same_env(cfg, vae_cfg, "world_model.vae_run")
    z_dim = vae_cfg.model.z_dim
    if cfg.model.z_dim is None:
        cfg.model.z_dim = z_dim
    elif cfg.model.z_dim != z_dim:
        raise ConfigError(f"model.z_dim={cfg.model.z_dim} differs from V's z_dim={z_dim} (world_model.vae_run)")
    data = _load_npz(Path(w.vae_run) / ROLLOUTS_FILE, "world_model.vae_run")
    mu, lv = encode_frames(vae, data["frames"])
    vmu, vlv = encode_frames(vae, data["val_frames"])
    latents = {"mu": mu, "logvar": lv, "val_mu": vmu, "val_logvar": vlv}
    return TaskSetup(
        train_data=LatentWindows(mu, lv, data["actions"], data["rewards"]),
        val_data=LatentWindows(vmu, vlv, data["val_actions"], data["val_rewards"]),
        objective=MDNLoss(),
        extra_files={LATENTS_FILE: lambda path: _save_npz(Path(path), latents)},
    )


# ----------------------------------------------------------------------------------------------
# C: the worlds, rollouts, CMA-ES as a task


class RealWorld:
    """``n`` environments (Chase, or CarRacing with ``env="carracing"``) seen through V (z = mu of each
    frame) with M's state h advanced on (z, a)."""

    def __init__(self, vae, mdn, n: int, size: int, horizon: int, env: str = "chase"):
        self.vae, self.mdn = vae, mdn
        self.env = make_env(_EnvSpec(env, size, horizon), n)
        self.frames: list[np.ndarray] = []

    @torch.no_grad()
    def reset(self, seed):
        frames = self.env.reset(seed)
        self.frames = [frames]
        self.z = self.vae.encode(to_float(frames))[0]  # (n, Z)
        self.state = None
        return self.z, torch.zeros(self.env.n, self.mdn.config.hidden)

    @torch.no_grad()
    def step(self, actions: torch.Tensor):
        *_, self.state = self.mdn(self.z[:, None], actions[:, None].float(), self.state)
        frames, reward, _ = self.env.step(actions.numpy())  # (n, A); Chase reads (n, 1) as (n,)
        self.frames.append(frames)
        self.z = self.vae.encode(to_float(frames))[0]
        return self.z, self.mdn.hidden_of(self.state), torch.from_numpy(reward)


class DreamWorld:
    """``n`` rollouts inside M: z_0 = V's mu of a real first frame (drawn from ``starts``), then
    z_{t+1} ~ M's mixture at ``temperature``, reward = M's reward head; ``seed`` seeds both draws."""

    def __init__(self, mdn, starts: torch.Tensor, n: int, temperature: float):
        self.mdn, self.starts, self.n, self.temperature = mdn, starts, n, temperature

    @torch.no_grad()
    def reset(self, seed):
        self.gen = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        pick = torch.randint(0, len(self.starts), (self.n,), generator=self.gen)
        self.z, self.state = self.starts[pick].float(), None
        return self.z, torch.zeros(self.n, self.mdn.config.hidden)

    @torch.no_grad()
    def step(self, actions: torch.Tensor):
        from axon.models.wm import sample_mdn

        log_pi, mu, log_sigma, reward, self.state = self.mdn(self.z[:, None], actions[:, None].float(), self.state)
        self.z = sample_mdn(log_pi[:, 0], mu[:, 0], log_sigma[:, 0], self.temperature, self.gen)
        return self.z, self.mdn.hidden_of(self.state), reward[:, 0]


@torch.no_grad()
def population_returns(controller, flats: torch.Tensor | None, world, episodes: int, horizon: int, seed) -> torch.Tensor:
    """Mean return (P,) of P candidate controllers (flats (P, n); None: the uniform random policy,
    P = 1), each over ``episodes`` episodes of ``world`` (built for P x episodes environments)."""
    P = 1 if flats is None else flats.size(0)
    z, h = world.reset(seed)
    rng = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(2)[1]))
    total = torch.zeros(P * episodes, dtype=torch.float64)
    A = controller.config.action_dim
    for _ in range(horizon):
        if flats is None:
            a = torch.rand(P * episodes, A, generator=rng) * 2 - 1
        else:
            a = controller.act_population(flats, z.view(P, episodes, -1), h.view(P, episodes, -1)).reshape(P * episodes, A)
        z, h, r = world.step(a)
        total += r.double()
    return total.view(P, episodes).mean(1)


class CMAObjective:
    """One trainer step = one CMA-ES generation (module docstring); evaluation batches: the mean
    controller's real return over ``world_model.eval_episodes`` fixed episodes (loss = minus it)."""

    def __init__(self, cfg, vae, mdn, starts: torch.Tensor):
        self.cfg, self.w, self.vae, self.mdn, self.starts = cfg, cfg.world_model, vae, mdn, starts
        self.last: dict[str, float] = {}

    def world(self, kind: str, n: int):
        if kind == "real":
            return RealWorld(self.vae, self.mdn, n, self.w.frame_size, self.w.horizon, self.w.env)
        return DreamWorld(self.mdn, self.starts, n, self.w.temperature)

    def returns(self, controller, flats, kind: str, episodes: int, seed) -> torch.Tensor:
        P = 1 if flats is None else flats.size(0)
        return population_returns(controller, flats, self.world(kind, P * episodes), episodes, self.w.horizon, seed)

    def __call__(self, model, batch):
        c = unwrap(model)
        kind = int(batch[0][0])
        zero = 0 * (c.weight.sum() + c.bias.sum())  # the graph the trainer's backward needs; its gradient is 0
        if kind == EVAL:
            ret = self.returns(c, c.flat()[None], "real", self.w.eval_episodes, [EVAL_SEED, 0])[0]
            return -ret.detach(), {"ce": -float(ret), "count": 1}
        gen = int(batch[1][0])
        if int(c.es.generation) != gen:
            raise ValueError(f"the CMA-ES state holds generation {int(c.es.generation)}, the batch names {gen}")
        seed = [self.cfg.train.seed, gen]
        g = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        x = c.es.ask(batch[0].size(0), g)  # (P, n)
        fit = self.returns(c, x, self.w.fitness, self.w.rollouts, seed)  # (P,) mean returns
        c.es.tell(x, -fit)  # CMA-ES minimises
        c.set_flat(c.es.mean)
        steps = (gen + 1) * x.size(0) * self.w.rollouts * self.w.horizon if self.w.fitness == "real" else 0
        self.last = {"return_mean": float(fit.mean()), "return_best": float(fit.max()), "sigma": float(c.es.sigma),
                     "real_env_steps": float(steps)}  # steps of the real environment C has been trained on
        return zero - fit.mean().float(), {"ce": -fit.mean()}

    def metrics(self) -> dict[str, float]:
        return dict(self.last)


class Generations:
    """Batches naming the generation: (kind (B,), generation (B,)); B is the population size."""

    def get_batch(self, step, batch_size, block_size, seed, micro_step=0):
        return torch.full((batch_size,), TRAIN), torch.full((batch_size,), step)

    def iter_eval_batches(self, batch_size, block_size, max_batches=None):
        yield torch.full((1,), EVAL), torch.zeros(1, dtype=torch.long)


@torch.no_grad()
def controller_strip(objective: CMAObjective, c, path: Path, steps: int = 16) -> Path:
    """Three rows: a real episode of C (every 2nd frame), V's reconstructions of those frames, and a
    dream of C from the same first frame, decoded by V."""
    w = objective.w
    real = RealWorld(objective.vae, objective.mdn, 1, w.frame_size, w.horizon, w.env)
    z, h = real.reset([EVAL_SEED, 7])
    zs_real = [z]
    dream = DreamWorld(objective.mdn, z.clone(), 1, w.temperature)
    dz, dh = dream.reset([EVAL_SEED, 8])
    zs_dream = [dz]
    for _ in range(2 * steps - 1):
        z, h, _ = real.step(c(z, h))
        dz, dh, _ = dream.step(c(dz, dh))
        zs_real.append(z)
        zs_dream.append(dz)
    frames = to_float(np.concatenate(real.frames[::2]))
    recon = objective.vae.decode(torch.cat(zs_real[::2]))
    dreamed = objective.vae.decode(torch.cat(zs_dream[::2]))
    return save_strip([frames, recon, dreamed], path)


def plot_returns(run_dir: Path) -> Path | None:
    """``returns.png``: the population's mean and best return per generation (in the world it was
    trained in) and the mean controller's evaluations in the real environment and in the dream."""
    from axon.train.logging import read_metrics

    records = read_metrics(Path(run_dir) / "metrics.jsonl")
    rows = [r for r in records if "return_mean" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["return_mean"] for r in rows], label="population mean (fitness world)", linewidth=1.0)
    ax.plot(steps, [r["return_best"] for r in rows], label="population best (fitness world)", linewidth=1.0)
    for key, label in (("val_real_return", "C in the real environment"), ("val_dream_return", "C in the dream")):
        val = [(r["step"], r[key]) for r in records if key in r]
        if val:
            ax.plot(*zip(*val), "o-", label=label, linewidth=1.5)
    ax.set_xlabel("generation")
    per_gen = rows[-1].get("real_env_steps", 0.0) / rows[-1]["step"]  # real steps one generation uses
    if per_gen > 0:
        top = ax.secondary_xaxis("top", functions=(lambda g: g * per_gen, lambda s: s / per_gen))
        top.set_xlabel("real environment steps used by the search")
    else:
        ax.text(0.02, 0.97, "trained in the dream: 0 real environment steps", transform=ax.transAxes,
                va="top", fontsize=8)
    ax.set_ylabel("return per episode")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(Path(run_dir).name, fontsize=10)
    fig.tight_layout()
    out = Path(run_dir) / RETURNS_PLOT
    fig.savefig(out)
    plt.close(fig)
    return out


def wm_controller_task(cfg, device: torch.device) -> "TaskSetup":
    from axon.tasks.base import TaskSetup

    w = cfg.world_model
    if cfg.model.family != "wm_controller":
        raise ConfigError(f"task wm_controller trains a wm_controller model, got model.family={cfg.model.family}")
    if cfg.train.grad_accum != 1:
        raise ConfigError("train.grad_accum: one step is one CMA-ES generation; set it to 1 "
                          "(train.batch_size is the population)")
    if cfg.train.batch_size < 4:
        raise ConfigError(f"train.batch_size is CMA-ES's population and needs at least 4, got {cfg.train.batch_size}")
    _check_action_dim(cfg)
    mdn_cfg, mdn = _run_of(w.mdn_run, "world_model.mdn_run", "wm_mdnrnn")
    _same_env(cfg, mdn_cfg, "world_model.mdn_run")
    if not w.vae_run:
        w.vae_run = mdn_cfg.world_model.vae_run  # M's own V, recorded in its run
    vae_cfg, vae = _run_of(w.vae_run, "world_model.vae_run", "wm_vae")
    if mdn_cfg.model.z_dim != vae_cfg.model.z_dim:
        raise ConfigError(f"world_model.mdn_run: M reads z of {mdn_cfg.model.z_dim} dims, V writes {vae_cfg.model.z_dim}")
    for name, value in (("z_dim", vae_cfg.model.z_dim), ("hidden", mdn_cfg.model.hidden)):
        if getattr(cfg.model, name) is None:
            setattr(cfg.model, name, value)
        elif getattr(cfg.model, name) != value:
            raise ConfigError(f"model.{name}={getattr(cfg.model, name)} differs from the runs' {value}")
    if mdn_cfg.world_model.frame_size != w.frame_size or vae_cfg.model.frame_size != w.frame_size:
        raise ConfigError(f"world_model.frame_size={w.frame_size} differs from V's frames ({vae_cfg.model.frame_size})")
    data = _load_npz(Path(w.vae_run) / ROLLOUTS_FILE, "world_model.vae_run")
    starts = encode_frames(vae, data["frames"][:, 0])[0]  # the dream starts from encoded real first frames
    objective = CMAObjective(cfg, vae, mdn, torch.from_numpy(starts))

    def eval_fn(model, step, run_dir):
        controller_strip(objective, model, Path(run_dir) / STRIP_FILE)
        dream = objective.returns(model, model.flat()[None], "dream", w.eval_episodes, [EVAL_SEED, 1])[0]
        real = objective.returns(model, model.flat()[None], "real", w.eval_episodes, [EVAL_SEED, 0])[0]
        return {"real_return": float(real), "dream_return": float(dream)}

    def model_metrics(model, split):
        out = {}
        for kind in ("real", "dream"):
            seed = [EVAL_SEED, 0 if kind == "real" else 1]
            out[f"{kind}_return"] = float(objective.returns(model, model.flat()[None], kind, w.eval_episodes, seed)[0])
            out[f"random_{kind}_return"] = float(objective.returns(model, None, kind, w.eval_episodes, seed)[0])
        return out

    return TaskSetup(train_data=Generations(), val_data=Generations(), objective=objective, eval_fn=eval_fn,
                     model_metrics=model_metrics, plots={RETURNS_PLOT: plot_returns})


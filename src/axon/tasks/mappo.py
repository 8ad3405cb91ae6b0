"""The ``mappo`` task: cooperative multi-agent PPO with a shared actor and a centralised critic
(MAPPO: Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games"),
or with local critics (independent PPO) -- the ``marl`` family's ``critic`` field picks.

    E environments (axon.agents.marl.envs), N agents each, a team reward
        |  reset with seeds (train.seed, rollout k, copy e); actions sampled from one generator
        |  seeded (train.seed, "rollout", k)
        v
    rollout k: obs (E, H, N, D), actions, log pi_old, V_old (E, H, N), rewards (E, H)
        |  every agent's reward is the team's; GAE(gamma, lam) per agent over each episode
        |  (V after the last step = 0: the time t / H is in the observation, so H ends the state)
        v
    advantages (whitened over the rollout), returns = A + V_old   -> the model's RolloutStore
        |
        +--> `epochs` epochs of minibatch updates, each the clipped surrogate + value loss - entropy:
             loss = policy_loss + value_coef * value_loss - entropy_coef * entropy   (axon.objectives.ppo)

One trainer step is one minibatch update of ``train.batch_size x train.grad_accum`` environment
steps of the rollout, each with all N agents' rows. A rollout is ``mappo.envs x mappo.horizon``
environment steps, so ``steps_per_rollout = epochs x envs x horizon / (batch_size x grad_accum)``
(which must divide). The trainer's batches are indices (``axon.data.prompts.RolloutSchedule``:
which rollout, which of its steps); the objective (:class:`MAPPO`) samples rollout k with the
current weights at the first step that names it, and keeps it with its advantages in the model's
buffers (``axon.models.actor_critic.RolloutStore``), so a rollout is a pure function of the
weights and k, and a run stopped anywhere resumes bit for bit (tests/agents/test_marl_mappo.py).

Logged with every record (the model's metrics): the held rollout's mean ``episode_return`` (the
team reward summed over an episode), ``env_steps`` (environment steps sampled so far), the
policy's entropy and the critic's explained variance. Validation: ``mappo.eval_episodes``
episodes from fixed seeds, actions sampled from a fixed generator; the validation loss is minus
their mean return (``val_return`` in result.json), and each evaluation adds the same figure for
the uniformly random policy (``val_random_return``). Each evaluation draws ``rollout.gif`` and
``rollout.png`` (a frame strip) of the first validation episode(s); at the end ``returns.png``
plots the return against environment steps.

One process: several (torchrun) are refused -- a CPU run of this size gains nothing from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from axon.data.prompts import EVAL, TRAIN, RolloutSchedule
from axon.errors import ConfigError
from axon.models.base import unwrap
from axon.objectives.ppo import entropy_from_logits, explained_variance, gae, masked_mean, policy_loss, value_loss, whiten
from axon.tasks.base import TaskSetup
from axon.tasks.ppo import generator

EVAL_SEED = 20240607  # validation episodes start from seeds (EVAL_SEED, i), their actions from a fixed generator
GIF, STRIP, PLOT = "rollout.gif", "rollout.png", "returns.png"
MAX_SIDE = 240  # frames larger than this (pixels) are scaled down to it in the GIF and the strip


def make_env(cfg, n_envs: int, render: bool = False):
    """``n_envs`` copies of the environment ``mappo`` names (``axon.agents.marl.envs``); a one-line
    ConfigError when simple_spread's package is missing."""
    from axon.agents.marl.envs import make_env as build

    m = cfg.mappo
    try:
        return build(m.env, n_envs, m.n_agents, m.size, m.horizon, m.view, render=render)
    except ImportError as e:
        raise ConfigError(f"mappo.env: {m.env} needs mpe2 and pettingzoo ({e}); pip install axon-lab[agents], "
                          "or use mappo.env=cover") from None


@torch.no_grad()
def play(model, env, seeds, gen: torch.Generator, uniform: bool = False, frames: int = 0) -> dict:
    """Run ``env``'s copies for one episode from ``seeds`` with the model's policy (actions sampled
    from ``gen``; ``uniform``: every action equally likely, the random baseline). Returns obs
    (E, H, N, D), actions, logp, values, entropy (E, H, N), rewards (E, H), and with ``frames`` the
    RGB frames of the first ``frames`` copies (a list per copy, H + 1 each)."""
    policy = unwrap(model)
    p = next(policy.parameters())
    obs = env.reset(seeds)
    out = {k: [] for k in ("obs", "actions", "logp", "values", "entropy", "rewards")}
    pictures = [[env.render(e)] for e in range(frames)]
    was = policy.training
    policy.eval()
    try:
        for _ in range(env.horizon):
            o = torch.from_numpy(obs).to(p.device, p.dtype)  # (E, N, D)
            logits, values = policy(o)  # (E, N, A), (E, N)
            if uniform:
                logits = torch.zeros_like(logits)
            logp_all = F.log_softmax(logits.float(), -1)
            E, N, A = logp_all.shape
            a = torch.multinomial(logp_all.exp().reshape(E * N, A), 1, generator=gen).reshape(E, N)
            obs_next, reward = env.step(a.cpu().numpy())
            for k, v in (("obs", o), ("actions", a), ("logp", logp_all.gather(-1, a[..., None]).squeeze(-1)),
                         ("values", values.float()), ("entropy", entropy_from_logits(logits)),
                         ("rewards", torch.from_numpy(reward).to(p.device, torch.float32))):
                out[k].append(v)
            for e in range(frames):
                pictures[e].append(env.render(e))
            obs = obs_next
    finally:
        policy.train(was)
    result = {k: torch.stack(v, 1) for k, v in out.items()}  # (E, H, ...)
    if frames:
        result["frames"] = pictures
    return result


class EpisodeBatches:
    """Evaluation batches: one batch (kind EVAL, episode index) of every validation episode."""

    def __init__(self, episodes: int):
        self.episodes = episodes

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        index = torch.arange(self.episodes, dtype=torch.int64)
        yield torch.full_like(index, EVAL), index


class RolloutSteps(RolloutSchedule):
    """The training batches (``RolloutSchedule``: which rollout, which of its environment steps);
    ``axon eval --split train`` plays the validation episodes, as there is no fixed training set."""

    def __init__(self, rows: int, epochs: int, grad_accum: int, episodes: int):
        super().__init__(1, rows, epochs, grad_accum)
        self.episodes = EpisodeBatches(episodes)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        return self.episodes.iter_eval_batches(batch_size, block_size, max_batches)


class MAPPO:
    """(model, batch) -> (loss, parts) for the ``mappo`` task: a minibatch update on a training
    batch (the rollout it names sampled first), the validation episodes' return on an evaluation
    batch (module docstring)."""

    def __init__(self, cfg, schedule: RolloutSchedule):
        self.cfg, self.m, self.schedule = cfg, cfg.mappo, schedule
        self.env = make_env(cfg, cfg.mappo.envs)
        self.rows = cfg.mappo.envs * cfg.mappo.horizon

    def __call__(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        kind = int(batch[0][0])
        if kind == EVAL:
            return self.evaluate(model, batch)
        if kind != TRAIN:
            raise ValueError(f"unknown MAPPO batch kind {kind}")
        return self.update(model, batch)

    def rollout(self, model, k: int) -> None:
        """Sample rollout ``k`` with the current weights and store it, its advantages and returns
        and its statistics in the model (module docstring)."""
        policy = unwrap(model)
        m, seed = self.m, self.cfg.train.seed
        seeds = [(seed, k, e) for e in range(m.envs)]
        r = play(model, self.env, seeds, generator(policy, seed, "rollout", k))
        E, H, N = r["values"].shape
        rewards = r["rewards"][:, None, :].expand(E, N, H).reshape(E * N, H)  # the team's reward, per agent
        values = r["values"].permute(0, 2, 1).reshape(E * N, H)
        ones = torch.ones_like(values)
        adv, ret = gae(rewards, values, ones, m.gamma, m.lam)  # (E N, H)
        if m.whiten_advantages:
            adv = whiten(adv, ones)
        per_step = lambda x: x.reshape(E, N, H).permute(0, 2, 1).reshape(E * H, N)  # noqa: E731
        from axon.models.marl import ROLLOUT_STATS

        stats = dict(episode_return=float(r["rewards"].sum(1).mean()), env_steps=float((k + 1) * E * H),
                     rollout_entropy=float(r["entropy"].mean()),
                     explained_variance=float(explained_variance(values, ret, ones)))
        policy.rollout.store(index=torch.tensor(k), obs=r["obs"].reshape(E * H, N, -1),
                             actions=r["actions"].reshape(E * H, N), logp=r["logp"].reshape(E * H, N),
                             values=r["values"].reshape(E * H, N), advantages=per_step(adv), returns=per_step(ret),
                             stats=torch.tensor([stats[n] for n in ROLLOUT_STATS], dtype=torch.float64))

    def update(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """One minibatch's loss on the held rollout (sampled first if this batch names another)."""
        m = self.m
        st = unwrap(model).rollout
        k = int(batch[1][0])
        if st.held != k:
            self.rollout(model, k)
        if st.obs.size(0) != self.rows:
            raise ConfigError(f"mappo.envs: the checkpoint's rollout holds {st.obs.size(0)} environment steps, the "
                              f"config says {m.envs} x {m.horizon} = {self.rows}; resume with the run's own mappo section")
        rows = batch[2].to(st.obs.device)
        logits, values = model(st.obs[rows])  # through the wrapper (DDP hooks, compile): (B, N, A), (B, N)
        logp = F.log_softmax(logits.float(), -1).gather(-1, st.actions[rows][..., None]).squeeze(-1)  # (B, N)
        ones = torch.ones_like(logp)
        pg, pg_info = policy_loss(logp, st.logp[rows], st.advantages[rows], ones, m.clip)
        vclip = float("inf") if m.value_clip is None else m.value_clip
        vf, vf_info = value_loss(values.float(), st.values[rows], st.returns[rows], ones, vclip)
        entropy = masked_mean(entropy_from_logits(logits), ones)
        loss = pg + m.value_coef * vf - m.entropy_coef * entropy
        return loss, {"ce": loss.detach(), "policy_loss": pg.detach(), "value_loss": vf.detach(),
                      "entropy": entropy.detach(), **pg_info, **vf_info}

    def episodes(self, model, n: int, uniform: bool = False, frames: int = 0) -> dict:
        """The first ``n`` validation episodes (fixed seeds, a fixed generator)."""
        env = make_env(self.cfg, n, render=frames > 0)
        gen = generator(unwrap(model), EVAL_SEED, "random" if uniform else "eval")
        return play(model, env, [(EVAL_SEED, i) for i in range(n)], gen, uniform, frames)

    def evaluate(self, model, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """Minus the mean return of the validation episodes (the validation loss)."""
        n = int(batch[1].max()) + 1
        ret = self.episodes(model, n)["rewards"].sum(1).mean().double()
        return -ret, {"ce": -ret, "count": n}


def save_frames(episodes: list[list[np.ndarray]], run_dir: Path, step: int) -> None:
    """``rollout.gif`` (every step of each episode, one after the other) and ``rollout.png`` (a strip
    of at most 9 frames of each episode, one row per episode), at most MAX_SIDE pixels a side,
    written aside then renamed."""
    from PIL import Image

    from axon.atomic import written_aside

    side = max(episodes[0][0].shape[:2])
    if side > MAX_SIDE:  # simple_spread renders 700 x 700
        size = lambda f: (round(f.shape[1] * MAX_SIDE / side), round(f.shape[0] * MAX_SIDE / side))  # noqa: E731
        episodes = [[np.asarray(Image.fromarray(f).resize(size(f), Image.BILINEAR)) for f in frames] for frames in episodes]
    gif = [Image.fromarray(f) for frames in episodes for f in frames]
    with written_aside(run_dir / GIF, ".gif") as tmp:
        gif[0].save(tmp, save_all=True, append_images=gif[1:], duration=200, loop=0)
    rows = []
    for frames in episodes:
        pick = np.unique(np.linspace(0, len(frames) - 1, min(9, len(frames))).round().astype(int))
        pad = np.full((frames[0].shape[0], 4, 3), 128, np.uint8)  # grey: simple_spread draws on white
        rows.append(np.concatenate([x for i in pick for x in (frames[i], pad)][:-1], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=128) for r in rows]
    with written_aside(run_dir / STRIP, ".png") as tmp:
        Image.fromarray(np.concatenate(rows, 0)).save(tmp)


def val_returns(records: list[dict]) -> list[tuple[float, float]]:
    """(environment steps, validation return) of each evaluation; the final one, logged in a record
    of its own, at the environment steps of the last training record."""
    out, steps = [], None
    for r in records:
        steps = r.get("env_steps", steps)
        if "val_loss" in r and steps is not None:
            out.append((steps, -r["val_loss"]))
    return out


def plot_returns(run_dir: Path) -> Path | None:
    """``returns.png``: the training rollouts' mean episode return against environment steps, the
    validation episodes' at each evaluation, and the random policy's as a line. None when nothing
    was logged."""
    from axon.train.logging import read_metrics

    records = read_metrics(Path(run_dir) / "metrics.jsonl")
    train = [(r["env_steps"], r["episode_return"]) for r in records if "episode_return" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from axon.atomic import written_aside

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(*zip(*train), linewidth=1.0, alpha=0.8, label="training rollouts")
    val = val_returns(records)
    if val:
        ax.plot(*zip(*val), "o-", linewidth=1.5, label="validation episodes")
    randoms = [r["val_random_return"] for r in records if "val_random_return" in r]
    if randoms:
        ax.axhline(randoms[-1], color="grey", linestyle=":", label="random policy")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return (team)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with written_aside(Path(run_dir) / PLOT, ".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(run_dir) / PLOT


def fill_model(cfg, env) -> None:
    """Set the model's null sizes from the environment; refuse ones that differ, in one line."""
    want = {"obs_dim": env.obs_dim, "n_agents": env.n_agents, "n_actions": env.n_actions}
    for name, value in want.items():
        have = getattr(cfg.model, name)
        if have is None:
            setattr(cfg.model, name, value)
        elif have != value:
            raise ConfigError(f"model.{name}: {have}, but the {cfg.mappo.env} environment has {value} (set by "
                              f"mappo.env, mappo.n_agents, mappo.view); leave it null and the task fills it")


def mappo_task(cfg, device: torch.device) -> TaskSetup:
    """The ``mappo`` task (module docstring)."""
    from axon.model_configs.marl import MARLConfig
    from axon.train.distributed import process_dist

    m, tc = cfg.mappo, cfg.train
    if not isinstance(cfg.model, MARLConfig):
        raise ConfigError(f"task: mappo trains model.family=marl, got {cfg.model.family}")
    if process_dist(device, tc.parallel).enabled:
        raise ConfigError("mappo runs on one process (its rollouts are stepped on the CPU); run without torchrun")
    rows, minibatch = m.envs * m.horizon, tc.batch_size * tc.grad_accum
    if rows % minibatch:
        raise ConfigError(f"mappo.envs: a rollout of {m.envs} x {m.horizon} = {rows} environment steps does not split "
                          f"into minibatches of train.batch_size x train.grad_accum = {minibatch}; make "
                          f"envs x horizon a multiple of {minibatch}")
    if tc.init_from:
        raise ConfigError("train.init_from: mappo trains from scratch (a checkpoint of a marl run resumes with "
                          "axon train --resume RUN)")
    schedule = RolloutSteps(rows, m.epochs, tc.grad_accum, m.eval_episodes)
    objective = MAPPO(cfg, schedule)
    fill_model(cfg, objective.env)
    random_return: list[float] = []  # computed once: the uniform policy does not change

    def eval_fn(model, step: int, run_dir: Path) -> dict:
        if not random_return:
            random_return.append(float(objective.episodes(model, m.eval_episodes, uniform=True)["rewards"].sum(1).mean()))
        if m.frames:
            save_frames(objective.episodes(model, m.frames, frames=m.frames)["frames"], Path(run_dir), step)
        return {"random_return": random_return[0]}

    return TaskSetup(train_data=schedule, val_data=EpisodeBatches(m.eval_episodes), objective=objective,
                     summarize=lambda loss, split: {"return": -loss}, eval_fn=eval_fn, plots={PLOT: plot_returns})

"""gymnasium's CarRacing-v3 with the interface World Models' tasks use (Chase's: batched, seeded).

    C's output a = tanh(...) in [-1, 1]^3             CarRacing's action (the paper's map)
        a[0] ----------------------------------->   steer  a[0]              in [-1, 1]
        a[1] ---- (a + 1) / 2 ------------------->   gas    (a[1] + 1) / 2    in [0, 1]
        a[2] ---- clip(a, 0, 1) ----------------->   brake  max(a[2], 0)      in [0, 1]

    reset(seed): n tracks (one seed each, spawned from ``seed``); the camera's zoom-in (the first
                 ZOOM_STEPS steps, 1 s at 50 fps) is played with a = 0 and not counted
    step(a (n, 3)) -> frames (n, S, S, 3) uint8, rewards (n,) float32, done (t >= horizon)
    frames: the 96 x 96 state pixels (the speed/steering bar at the bottom included), resized to
            S x S by area averaging (an exact 3 x 3 mean at S = 32; torch's area interpolation else)
    reward: CarRacing's own, -0.1 per step + 1000 / N per new track tile (N ~ 250-300 tiles), -100
            once for leaving the playfield. An environment that ends early (lap done, or off the
            field) is frozen: its last frame repeats and its reward is 0 until ``horizon``.

Each ``CarRacing`` is a pure function of its reset seed and actions (Box2D is deterministic). One
step costs ~5-10 ms on one core, mostly rendering: a batch of n environments is n steps in a loop.
Box2D is optional (the ``agents`` extra); this module imports gymnasium's CarRacing only when an
environment is built, and nothing the core imports loads it.
"""

from __future__ import annotations

import numpy as np
import torch

ZOOM_STEPS = 50  # CarRacing's camera zooms in over its first second (t < 1 s at 50 fps)
ACTION_DIM = 3
NATIVE = 96  # CarRacing's state pixels, a side


def to_env_action(a: np.ndarray) -> np.ndarray:
    """C's tanh outputs (..., 3) in [-1, 1] -> CarRacing's (steer, gas, brake), as the paper maps them."""
    a = np.clip(np.asarray(a, dtype=np.float64), -1.0, 1.0)
    return np.stack([a[..., 0], (a[..., 1] + 1.0) / 2.0, np.maximum(a[..., 2], 0.0)], -1).astype(np.float32)


def downsample(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 frames (n, 96, 96, 3) -> (n, size, size, 3) uint8 by area averaging."""
    if size == frames.shape[1]:
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (n, 3, 96, 96)
    y = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _seeds(seed, n: int) -> list[int]:
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [int(c.generate_state(1)[0]) for c in ss.spawn(n)]


class CarRacing:
    """``n`` CarRacing-v3 environments stepped together (module docstring); Chase's interface:
    ``reset(seed)`` -> frames (n, S, S, 3) uint8; ``step(actions (n, 3))`` -> (frames, rewards, done)."""

    def __init__(self, n: int, size: int = 64, horizon: int = 250):
        from gymnasium.envs.box2d.car_racing import CarRacing as Env  # needs Box2D

        self.n, self.size, self.horizon = n, size, horizon
        self.envs = [Env(continuous=True) for _ in range(n)]
        self.t = 0

    def reset(self, seed) -> np.ndarray:
        obs = []
        idle = np.zeros(ACTION_DIM, dtype=np.float32)
        for env, s in zip(self.envs, _seeds(seed, self.n)):
            o, _ = env.reset(seed=s)
            for _ in range(ZOOM_STEPS):
                o, *_ = env.step(idle)
            obs.append(o)
        self.frames = downsample(np.stack(obs), self.size)
        self.done = np.zeros(self.n, dtype=bool)
        self.t = 0
        return self.frames

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, bool]:
        act = to_env_action(np.asarray(actions, dtype=np.float64).reshape(self.n, ACTION_DIM))
        rewards = np.zeros(self.n, dtype=np.float32)
        live = np.flatnonzero(~self.done)
        obs = []
        for i in live:
            o, r, terminated, truncated, _ = self.envs[i].step(act[i])
            obs.append(o)
            rewards[i] = r
            self.done[i] = terminated or truncated
        if len(live):
            self.frames = self.frames.copy()
            self.frames[live] = downsample(np.stack(obs), self.size)
        self.t += 1
        return self.frames, rewards, self.t >= self.horizon

    def close(self) -> None:
        for env in self.envs:
            env.close()


def random_actions(rng: np.random.Generator, n: int, steps: int, hold: int = 8) -> np.ndarray:
    """(steps, n, 3) actions of the data-collecting policy in C's space: uniform in [-1, 1]^3, each
    held for ``hold`` steps (so the car turns and speeds up rather than jittering in place)."""
    draws = rng.uniform(-1.0, 1.0, ((steps + hold - 1) // hold, n, ACTION_DIM))
    return np.repeat(draws, hold, axis=0)[:steps].astype(np.float32)


def collect(episodes: int, size: int, horizon: int, seed: int) -> dict[str, np.ndarray]:
    """Random-policy rollouts, Chase's ``collect`` format: frames (E, T + 1, S, S, 3) uint8 (after the
    zoom-in), actions (E, T, 3) float32 in C's space, rewards (E, T) float32. A pure function of its
    arguments; the episodes run one at a time (n environments' tracks would all be in memory)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    acts = random_actions(rng, episodes, horizon)  # (T, E, 3)
    frames, rewards = [], []
    for e, s in enumerate(np.random.SeedSequence([seed, 0]).spawn(episodes)):
        env = CarRacing(1, size, horizon)
        fs, rs = [env.reset(s)[0]], []
        for t in range(horizon):
            f, r, _ = env.step(acts[t, e][None])
            fs.append(f[0])
            rs.append(r[0])
        env.close()
        frames.append(np.stack(fs))
        rewards.append(np.array(rs, dtype=np.float32))
    return {"frames": np.stack(frames), "actions": acts.transpose(1, 0, 2).copy(), "rewards": np.stack(rewards)}

"""Chase and World Models' worlds as ``gymnasium.Env`` subclasses (gymnasium is optional: only this
module imports it, and nothing in the core imports this module).

    ChaseEnv     the real environment on pixels: obs (S, S, 3) uint8, action (1,) in [-1, 1]
    LatentEnv    the real environment seen through V and M: obs [z, h] (Z + H,) float32
    DreamEnv     M's dream: obs [z, h], z_{t+1} sampled from M at a temperature, reward from M's head

LatentEnv and DreamEnv share observation and action spaces, so one controller (or any gymnasium
agent) runs unchanged in either; both wrap the batched worlds the wm_controller task trains with
(``axon.agents.worldmodels.tasks.RealWorld`` / ``DreamWorld``) at n = 1. Episodes end by
truncation after ``horizon`` steps.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from axon.agents.worldmodels.env import Chase
from axon.agents.worldmodels.tasks import DreamWorld, RealWorld


class ChaseEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, size: int = 32, horizon: int = 64, render_mode: str | None = "rgb_array"):
        self.env, self.render_mode = Chase(1, size, horizon), render_mode
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._frame = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._frame = self.env.reset(int(self.np_random.integers(2**63)))[0]
        return self._frame, {}

    def step(self, action):
        frames, reward, done = self.env.step(np.asarray(action, dtype=np.float64).reshape(1))
        self._frame = frames[0]
        return self._frame, float(reward[0]), False, bool(done), {}

    def render(self):
        return self._frame


class _WorldEnv(gym.Env):
    def __init__(self, world, z_dim: int, hidden: int, horizon: int):
        self.world, self.horizon = world, horizon
        self.observation_space = spaces.Box(-np.inf, np.inf, (z_dim + hidden,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        z, h = self.world.reset(int(self.np_random.integers(2**63)))
        return torch.cat([z, h], -1)[0].numpy().astype(np.float32), {}

    def step(self, action):
        z, h, r = self.world.step(torch.as_tensor(np.asarray(action, dtype=np.float32)).view(1, 1))
        self.t += 1
        return torch.cat([z, h], -1)[0].numpy().astype(np.float32), float(r[0]), False, self.t >= self.horizon, {}


class LatentEnv(_WorldEnv):
    """The real Chase, observed as [z, h]: V's mean of the frame, M's state (``vae``, ``mdn``: the models)."""

    def __init__(self, vae, mdn, size: int = 32, horizon: int = 64):
        super().__init__(RealWorld(vae, mdn, 1, size, horizon), vae.config.z_dim, mdn.config.hidden, horizon)


class DreamEnv(_WorldEnv):
    """M's dream, from ``starts`` (N, Z): V's means of real first frames; sampled at ``temperature``."""

    def __init__(self, mdn, starts: torch.Tensor, temperature: float = 1.15, horizon: int = 64):
        super().__init__(DreamWorld(mdn, starts, 1, temperature), mdn.config.z_dim, mdn.config.hidden, horizon)

"""Chase: a pixel environment that trains in CPU minutes, generated with numpy (World Models' stand-in
for CarRacing, which needs box2d).

    32 x 32 RGB frame (uint8)                 a ball (red, 5x5) bounces around the square with a
    +--------------------------------+        constant speed (|vx|, |vy| in [0.02, 0.05] per step);
    |            ##                  |        a paddle (green, 9x3) slides along the bottom row:
    |            ##   ball           |            px <- clip(px + 0.08 * a, 0, 1),  a in [-1, 1]
    |                                |        reward per step: max(0, 1 - |bx - px| / 0.25), 1 when
    |                                |        the paddle is under the ball, 0 a quarter-screen off;
    |       =======   paddle         |        an episode is ``horizon`` steps (no early end).
    +--------------------------------+

The paddle (0.08 per step) is faster than the ball sideways (at most 0.05), so a controller that
reads where both are from the frame can stay under the ball: return ~= horizon. A random policy
scores about a third of that. Positions live in [0, 1]; the frame draws them at the nearest pixel.

:class:`Chase` steps ``n`` environments at once (the CMA-ES population's rollouts are one batched
call); it is a pure function of its reset seed and the actions. ``axon.agents.worldmodels.gym_env``
wraps one of them as a ``gymnasium.Env`` (gymnasium is optional; nothing here imports it).
"""

from __future__ import annotations

import numpy as np

PADDLE_SPEED = 0.08  # per step at |a| = 1
BALL_SPEED = (0.02, 0.05)  # |vx|, |vy| drawn uniformly from this range
REWARD_WIDTH = 0.25  # reward falls linearly to 0 at this horizontal distance
BALL, PADDLE = (230, 40, 40), (40, 220, 60)
BACKGROUND = (20, 20, 30)


class Chase:
    """``n`` Chase environments stepped together (module docstring). ``reset(seed)`` -> frames
    (n, S, S, 3) uint8; ``step(actions (n,))`` -> (frames, rewards (n,) float32, done: bool)."""

    def __init__(self, n: int, size: int = 32, horizon: int = 64):
        if size < 8:
            raise ValueError(f"Chase frames need at least 8 pixels a side, got {size}")
        self.n, self.size, self.horizon = n, size, horizon
        self.t = 0

    def reset(self, seed: int | np.random.SeedSequence) -> np.ndarray:
        rng = np.random.default_rng(seed)
        n = self.n
        self.bx, self.by = rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.6, n)
        speed = rng.uniform(*BALL_SPEED, (2, n)) * rng.choice([-1.0, 1.0], (2, n))
        self.vx, self.vy = speed
        self.px = rng.uniform(0.1, 0.9, n)
        self.t = 0
        return self.render()

    def reward(self) -> np.ndarray:
        return np.maximum(0.0, 1.0 - np.abs(self.bx - self.px) / REWARD_WIDTH).astype(np.float32)

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, bool]:
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.n), -1.0, 1.0)
        self.px = np.clip(self.px + PADDLE_SPEED * a, 0.0, 1.0)
        self.bx, self.vx = _bounce(self.bx + self.vx, self.vx)
        self.by, self.vy = _bounce(self.by + self.vy, self.vy)
        self.t += 1
        return self.render(), self.reward(), self.t >= self.horizon

    def render(self) -> np.ndarray:
        S = self.size
        frames = np.empty((self.n, S, S, 3), dtype=np.uint8)
        frames[:] = BACKGROUND
        grid = np.arange(S)
        cx = np.rint(self.bx * (S - 1))[:, None]  # (n, 1) pixel centres
        cy = np.rint(self.by * (S - 4))[:, None]  # the ball stays above the paddle's rows
        ball = (np.abs(grid[None, :, None] - cy[:, :, None]) <= 2) & (np.abs(grid[None, None, :] - cx[:, :, None]) <= 2)
        frames[ball] = BALL  # ball: (n, S, S)
        px = np.rint(self.px * (S - 1))[:, None]  # (n, 1)
        paddle = np.abs(grid[None, :] - px) <= 4  # (n, S)
        rows = frames[:, S - 3 :]  # (n, 3, S, 3), a view
        rows[np.broadcast_to(paddle[:, None, :], rows.shape[:3])] = PADDLE
        return frames


def _bounce(pos: np.ndarray, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reflect positions that left [0, 1] back inside, and their velocities."""
    low, high = pos < 0, pos > 1
    pos = np.where(low, -pos, np.where(high, 2 - pos, pos))
    return pos, np.where(low | high, -vel, vel)


def random_actions(rng: np.random.Generator, n: int, steps: int, hold: int = 8) -> np.ndarray:
    """(steps, n) actions of the data-collecting policy: uniform in [-1, 1], each held for ``hold``
    steps (a jittering paddle would barely leave its start; held actions visit the whole row)."""
    draws = rng.uniform(-1.0, 1.0, ((steps + hold - 1) // hold, n))
    return np.repeat(draws, hold, axis=0)[:steps].astype(np.float32)


def collect(episodes: int, size: int, horizon: int, seed: int) -> dict[str, np.ndarray]:
    """Rollouts of the random policy: frames (E, T + 1, S, S, 3) uint8 (the reset frame first),
    actions (E, T) float32, rewards (E, T) float32 (reward t follows action t). A pure function of
    its arguments."""
    env = Chase(episodes, size, horizon)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    frames = [env.reset(np.random.SeedSequence([seed, 0]))]
    acts = random_actions(rng, episodes, horizon)
    rewards = []
    for t in range(horizon):
        f, r, _ = env.step(acts[t])
        frames.append(f)
        rewards.append(r)
    return {"frames": np.stack(frames, 1), "actions": acts.T.copy(), "rewards": np.stack(rewards, 1)}

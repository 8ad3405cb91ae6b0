"""The generalist's three tasks, each with a scripted expert (a control rule of a few lines) and
a random baseline. gymnasium is imported when an environment is made, never at import.

    name          observation (tokens)                 actions  steps  expert
    cartpole      4 floats: x, x', theta, theta'  (4)  2        200    push toward where the pole is falling
    mountaincar   2 floats: position, velocity    (2)  3        200    push along the velocity (energy pumping)
    gridmaze      2 ints: row, column             (2)  4        50     the first move of a BFS shortest path

CartPole-v1 is cut at 200 steps (CartPole-v0's limit) to keep evaluation cheap on a CPU; its
return is the steps survived. MountainCar-v0's return is -1 per step until the flag. ``gridmaze``
is ours: a 7 x 7 maze with walls, a random free start cell and the goal in the bottom-right
corner; reward ``1 - 0.9 t / 50`` on reaching it at step t (MiniGrid's), 0 otherwise.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

MAZE = [
    "#########",
    "#...#...#",
    "#.#.#.#.#",
    "#.#...#.#",
    "#.###.#.#",
    "#...#.#.#",
    "###.#.#.#",
    "#.....#G#",
    "#########",
]
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left


class GridMaze:
    """A 7 x 7 maze (inside a wall border) with the gymnasium API: reset(seed) -> (obs, info);
    step(a) -> (obs, reward, terminated, truncated, info); obs = [row, col] of the agent."""

    max_steps = 50

    def __init__(self, render_mode: str | None = None):
        self.grid = np.array([list(r) for r in MAZE])
        self.goal = tuple(int(v) for v in np.argwhere(self.grid == "G")[0])
        self.free = [tuple(int(v) for v in p) for p in np.argwhere(self.grid != "#") if tuple(p) != self.goal]
        self.render_mode = render_mode
        self.pos, self.t = self.free[0], 0

    def reset(self, seed: int | None = None):
        rng = np.random.default_rng(seed)
        self.pos, self.t = self.free[int(rng.integers(len(self.free)))], 0
        return np.array(self.pos, dtype=np.int64), {}

    def step(self, action: int):
        dr, dc = MOVES[int(action)]
        r, c = self.pos[0] + dr, self.pos[1] + dc
        if self.grid[r, c] != "#":
            self.pos = (r, c)
        self.t += 1
        done = self.pos == self.goal
        reward = 1.0 - 0.9 * self.t / self.max_steps if done else 0.0
        return np.array(self.pos, dtype=np.int64), reward, done, self.t >= self.max_steps and not done, {}

    def expert(self, obs) -> int:
        """The first move of a shortest path to the goal (breadth-first search from the goal)."""
        dist = self.distances()
        r, c = int(obs[0]), int(obs[1])
        return int(min(range(4), key=lambda a: dist.get((r + MOVES[a][0], c + MOVES[a][1]), 1 << 30)))

    def distances(self) -> dict:
        if not hasattr(self, "_dist"):
            dist, queue = {self.goal: 0}, deque([self.goal])
            while queue:
                r, c = queue.popleft()
                for dr, dc in MOVES:
                    n = (r + dr, c + dc)
                    if self.grid[n] != "#" and n not in dist:
                        dist[n] = dist[(r, c)] + 1
                        queue.append(n)
            self._dist = dist
        return self._dist

    def render(self) -> np.ndarray:
        """An RGB frame, 16 pixels a cell: walls dark, the goal green, the agent red."""
        colours = {"#": (40, 40, 60), ".": (235, 235, 235), "G": (60, 180, 75)}
        img = np.array([[colours[ch] for ch in row] for row in self.grid], dtype=np.uint8)
        img[self.pos] = (220, 40, 40)
        return np.kron(img, np.ones((16, 16, 1), dtype=np.uint8))

    def close(self):
        pass


def cartpole_expert(obs) -> int:
    """Push toward the side the pole is falling to, with a little centring of the cart."""
    x, x_dot, theta, theta_dot = (float(v) for v in obs)
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


def mountaincar_expert(obs) -> int:
    """Pump energy: push in the direction of the velocity (right when at rest)."""
    return 2 if float(obs[1]) >= 0 else 0


@dataclass(frozen=True)
class EnvSpec:
    name: str
    obs_dim: int
    continuous_obs: bool
    n_actions: int
    max_steps: int
    make: Callable  # (render_mode) -> env with the gymnasium API
    expert: Callable  # (env, obs) -> action

    @property
    def tokens_per_step(self) -> int:
        return self.obs_dim + 2  # obs, '|', one action token


def _gym(name: str, steps: int):
    def make(render_mode=None):
        import gymnasium as gym

        return gym.make(name, max_episode_steps=steps, render_mode=render_mode)

    return make


SPECS: dict[str, EnvSpec] = {
    "cartpole": EnvSpec("cartpole", 4, True, 2, 200, _gym("CartPole-v1", 200), lambda env, o: cartpole_expert(o)),
    "mountaincar": EnvSpec("mountaincar", 2, True, 3, 200, _gym("MountainCar-v0", 200),
                           lambda env, o: mountaincar_expert(o)),
    "gridmaze": EnvSpec("gridmaze", 2, False, 4, GridMaze.max_steps, lambda render_mode=None: GridMaze(render_mode),
                        lambda env, o: env.expert(o)),
}


@dataclass
class Episode:
    obs: np.ndarray  # (N, obs_dim) the observation each action was taken on
    actions: np.ndarray  # (N,)
    rewards: np.ndarray  # (N,)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


def run_episode(spec: EnvSpec, seed: int, policy: str = "expert") -> Episode:
    """One episode from ``env.reset(seed=seed)``, acting with the expert or uniformly at random
    (a generator seeded from ``seed``)."""
    env = spec.make()
    rng = np.random.default_rng([seed, 1])
    obs, _ = env.reset(seed=seed)
    rows, acts, rews = [], [], []
    for _ in range(spec.max_steps):
        a = spec.expert(env.unwrapped if hasattr(env, "unwrapped") else env, obs) if policy == "expert" \
            else int(rng.integers(spec.n_actions))
        rows.append(np.asarray(obs, dtype=np.float64 if spec.continuous_obs else np.int64))
        acts.append(a)
        obs, r, term, trunc, _ = env.step(a)
        rews.append(float(r))
        if term or trunc:
            break
    env.close()
    return Episode(np.stack(rows), np.asarray(acts, dtype=np.int64), np.asarray(rews, dtype=np.float64))

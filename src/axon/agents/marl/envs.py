"""Cooperative environments for the ``mappo`` task: E copies of an N-agent task with a shared
(team) reward, stepped together, behind one interface (:class:`VecEnv`).

    reset(seeds: E ints)        -> obs (E, N, D) float32
    step(actions (E, N) int64)  -> obs (E, N, D), reward (E,) float64, the team's
    render(e)                   -> an RGB frame (H, W, 3) uint8 of copy e

Every episode lasts ``horizon`` steps (no early end), so a rollout is E x horizon steps and GAE
needs no masks. The last entry of every observation is the time t / horizon: with it the end of
an episode at ``horizon`` is part of the state, and treating it as terminal (V after the last
step = 0, as ``axon.objectives.ppo.gae`` does) is exact rather than a truncation.

``cover`` (:class:`CoverGrid`, ours, numpy): N agents and N landmarks on a G x G grid, each
placed uniformly at random (seeded). Actions: stay, up, down, left, right (a move off the grid
stays). The team's reward each step is minus the mean, over landmarks, of the Manhattan distance
from the landmark to the nearest agent, divided by G: 0 once every landmark has an agent on it,
which needs the agents to split the landmarks between them (simple_spread's reward, on a grid).
Agent i observes its own position / G, then each landmark's and each other agent's position
relative to its own / G, each with a flag that is 1 when it lies within ``view`` cells
(Chebyshev distance; null: everything is seen), else the entry is 0 and the flag 0. With a small
view one agent cannot see where the others are, while MAPPO's critic, reading every agent's
observation, can: what a centralised critic is for.

``simple_spread`` (:class:`SimpleSpread`): ``mpe2``'s simple_spread_v3 (PettingZoo's parallel
API, discrete actions, 25 steps), one environment object per copy, imported only when used. The
team reward is the mean of the agents' rewards (each is local_ratio x its own collision penalty +
(1 - local_ratio) x the shared coverage term).
"""

from __future__ import annotations

import numpy as np

# stay, up, down, left, right as (row, column) moves
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)
ENVS = ("cover", "simple_spread")


class VecEnv:
    """E copies of one cooperative task (module docstring)."""

    n_agents: int
    n_actions: int
    obs_dim: int
    horizon: int

    def reset(self, seeds) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def render(self, e: int = 0) -> np.ndarray:
        raise NotImplementedError


class CoverGrid(VecEnv):
    """``cover`` (module docstring): N agents must stand on N landmarks of a G x G grid."""

    n_actions = 5

    def __init__(self, n_envs: int, n_agents: int = 2, size: int = 5, horizon: int = 16, view: int | None = None):
        self.E, self.n_agents, self.size, self.horizon, self.view = n_envs, n_agents, size, horizon, view
        N = n_agents
        self.obs_dim = 2 + 3 * N + 3 * (N - 1) + 1  # own position, landmarks (dx, dy, seen), others, time
        self.pos = np.zeros((n_envs, N, 2), np.int64)
        self.marks = np.zeros((n_envs, N, 2), np.int64)
        self.t = 0

    def reset(self, seeds) -> np.ndarray:
        """Place every copy's agents and landmarks from its own seed (a sequence of E ints or tuples)."""
        for e, s in enumerate(seeds):
            rng = np.random.default_rng(np.random.SeedSequence(list(s) if isinstance(s, (tuple, list)) else [int(s)]))
            cells = rng.choice(self.size * self.size, size=2 * self.n_agents, replace=False)
            xy = np.stack(np.divmod(cells, self.size), -1)
            self.pos[e], self.marks[e] = xy[: self.n_agents], xy[self.n_agents :]
        self.t = 0
        return self.observe()

    def _relative(self, other: np.ndarray) -> np.ndarray:
        """other (E, M, 2) seen from each agent: (E, N, M, 3) of (dy, dx) / G and the seen flag."""
        d = other[:, None, :, :] - self.pos[:, :, None, :]  # (E, N, M, 2)
        seen = np.ones(d.shape[:-1], bool) if self.view is None else np.abs(d).max(-1) <= self.view
        return np.concatenate([d / self.size * seen[..., None], seen[..., None]], -1)

    def observe(self) -> np.ndarray:
        E, N = self.E, self.n_agents
        marks = self._relative(self.marks).reshape(E, N, 3 * N)
        others = self._relative(self.pos)  # (E, N, N, 3): drop each agent's own column
        keep = ~np.eye(N, dtype=bool)
        others = others[:, keep].reshape(E, N, 3 * (N - 1))
        t = np.full((E, N, 1), self.t / self.horizon)
        return np.concatenate([self.pos / self.size, marks, others, t], -1).astype(np.float32)

    def reward(self) -> np.ndarray:
        """Minus the mean over landmarks of the distance to the nearest agent, / G: (E,)."""
        d = np.abs(self.marks[:, :, None, :] - self.pos[:, None, :, :]).sum(-1)  # (E, landmark, agent)
        return -d.min(-1).mean(-1) / self.size

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.pos = np.clip(self.pos + MOVES[np.asarray(actions)], 0, self.size - 1)
        self.t += 1
        return self.observe(), self.reward()

    def render(self, e: int = 0, cell: int = 24) -> np.ndarray:
        """Copy e as an RGB frame: grey grid, landmarks as dark squares, agents as coloured discs."""
        G = self.size
        img = np.full((G * cell, G * cell, 3), 235, np.uint8)
        img[::cell], img[:, ::cell] = 200, 200
        yy, xx = np.mgrid[0:cell, 0:cell]
        disc = (yy - cell / 2 + 0.5) ** 2 + (xx - cell / 2 + 0.5) ** 2 <= (cell * 0.35) ** 2
        for r, c in self.marks[e]:
            img[r * cell + 4 : (r + 1) * cell - 3, c * cell + 4 : (c + 1) * cell - 3] = (60, 60, 60)
        for i, (r, c) in enumerate(self.pos[e]):
            colour = np.array(AGENT_COLOURS[i % len(AGENT_COLOURS)], np.uint8)
            block = img[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
            block[disc] = colour
        return img


AGENT_COLOURS = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (23, 190, 207)]


class SimpleSpread(VecEnv):
    """``simple_spread`` (module docstring): E mpe2 simple_spread_v3 parallel environments."""

    n_actions = 5

    def __init__(self, n_envs: int, n_agents: int = 3, horizon: int = 25, local_ratio: float = 0.5,
                 render: bool = False):
        from mpe2 import simple_spread_v3

        self.E, self.n_agents, self.horizon = n_envs, n_agents, horizon
        mode = dict(render_mode="rgb_array") if render else {}
        self.envs = [simple_spread_v3.parallel_env(N=n_agents, local_ratio=local_ratio, max_cycles=horizon,
                                                   continuous_actions=False, **mode) for _ in range(n_envs)]
        self.names = list(self.envs[0].possible_agents)
        self.obs_dim = int(self.envs[0].observation_space(self.names[0]).shape[0]) + 1
        self.t = 0

    def _stack(self, obs: list[dict]) -> np.ndarray:
        t = np.full((self.E, self.n_agents, 1), self.t / self.horizon)
        raw = np.stack([np.stack([o[a] for a in self.names]) for o in obs])  # (E, N, D - 1)
        return np.concatenate([raw, t], -1).astype(np.float32)

    def reset(self, seeds) -> np.ndarray:
        self.t = 0
        obs = []
        for env, s in zip(self.envs, seeds):
            seed = int(np.random.SeedSequence(list(s) if isinstance(s, (tuple, list)) else [int(s)]).generate_state(1)[0])
            obs.append(env.reset(seed=seed)[0])
        return self._stack(obs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs, reward = [], np.zeros(self.E)
        self.t += 1
        for e, env in enumerate(self.envs):
            o, r, _, _, _ = env.step({a: int(actions[e, i]) for i, a in enumerate(self.names)})
            reward[e] = np.mean([r[a] for a in self.names])
            # the last step ends the episode: pettingzoo then returns no observations; keep zeros
            obs.append(o if o else {a: np.zeros(self.obs_dim - 1, np.float32) for a in self.names})
        return self._stack(obs), reward

    def render(self, e: int = 0) -> np.ndarray:
        return np.asarray(self.envs[e].render(), np.uint8)


def make_env(name: str, n_envs: int, n_agents: int, size: int, horizon: int, view: int | None,
             render: bool = False) -> VecEnv:
    """The environment ``mappo.env`` names, E = ``n_envs`` copies."""
    if name == "cover":
        return CoverGrid(n_envs, n_agents, size, horizon, view)
    if name == "simple_spread":
        return SimpleSpread(n_envs, n_agents, horizon, render=render)
    raise ValueError(f"unknown environment {name!r}; choose one of: {', '.join(ENVS)}")

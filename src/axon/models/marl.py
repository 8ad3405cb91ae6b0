"""A multi-agent actor-critic: MAPPO's shared actor and centralised critic (Yu et al. 2022, "The
Surprising Effectiveness of PPO in Cooperative Multi-Agent Games"), or independent PPO's local
critics, over N agents with discrete actions::

    obs (B, N, D): agent i's observation o_i, for each of B environment steps
        |
        +-- actor (shared: one MLP for all agents)  [o_i, onehot(i)] (D + N) -> MLP -> logits_i (A)
        |                                            -> logits (B, N, A)
        |   (share_actor: false -- agent i's own MLP on o_i (D) -> logits_i)
        |
        +-- critic: central (MAPPO)  [o_1, ..., o_N, onehot(i)] (N D + N) -> MLP -> V_i   -> values (B, N)
                    local (IPPO)     [o_i, onehot(i)]           (D + N)   -> MLP -> V_i

The central critic's input is the concatenation of every agent's observation, in agent order (the
same for every i), with i's id so the value may differ per agent; its parameters are shared by
the agents, as the actor's are. Changing o_j changes the central V_i for every i, but a local
V_i only for i = j (tests/agents/test_marl_mappo.py). Each MLP is n_layer tanh hidden layers of
n_embd (MAPPO's MPE networks), orthogonally initialised, the actor's last layer with gain 0.01
(near-uniform first policy) and the critic's with gain 1 (the PPO implementation details of
Huang et al. 2022, which MAPPO follows).

What the ``mappo`` task must carry across a checkpoint besides the weights lives here as
persistent buffers (``rollout``, an ``axon.models.actor_critic.RolloutStore`` with this task's
names): the last rollout's observations, actions, old log-probabilities, values, advantages and
returns, its index and statistics. The losses are in ``axon.objectives.ppo``; the task is
``axon.tasks.mappo``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from axon.errors import ConfigError
from axon.model_configs.marl import PRESETS, MARLConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.actor_critic import RolloutStore
from axon.models.base import Model

#: The buffers of a MAPPO rollout (R = E x horizon environment steps, N agents, D observation).
#: obs (R, N, D) float32; actions (R, N) int64; logp, values, advantages, returns (R, N) float32.
ROLLOUT_BUFFERS = ("index", "obs", "actions", "logp", "values", "advantages", "returns", "stats")
#: The statistics kept with a rollout (float64, in this order) and logged while it is trained on:
#: the mean episode return (the team reward summed over an episode), the environment steps taken
#: so far (this rollout's included), the policy's mean entropy, the critic's explained variance.
ROLLOUT_STATS = ("episode_return", "env_steps", "rollout_entropy", "explained_variance")


def mlp(sizes: list[int], last_gain: float) -> nn.Sequential:
    """Linear-tanh layers of ``sizes``, the last Linear without tanh; orthogonal weights (gain
    sqrt(2) inside, ``last_gain`` last), zero biases."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(lin.weight, last_gain if last else math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin] if last else [lin, nn.Tanh()]
    return nn.Sequential(*layers)


class MultiAgentActorCritic(Model):
    def __init__(self, cfg: MARLConfig):
        super().__init__()
        for name in ("obs_dim", "n_agents", "n_actions"):
            if getattr(cfg, name) is None:
                raise ConfigError(f"model.{name} is null: the mappo task fills it from its environment (or set it)")
        self.config = cfg
        N, D, A, H = cfg.n_agents, cfg.obs_dim, cfg.n_actions, cfg.n_embd
        hidden = [H] * cfg.n_layer
        if cfg.share_actor:
            self.actor = mlp([D + N, *hidden, A], 0.01)
        else:
            self.actors = nn.ModuleList([mlp([D, *hidden, A], 0.01) for _ in range(N)])
        self.critic = mlp([(N * D if cfg.critic == "central" else D) + N, *hidden, 1], 1.0)
        self.register_buffer("eye", torch.eye(N), persistent=False)
        self.rollout = RolloutStore(ROLLOUT_BUFFERS, ROLLOUT_STATS)

    def critic_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """What agent i's critic reads: (B, N, N D + N) central, (B, N, D + N) local."""
        B, N, D = obs.shape
        ids = self.eye.to(obs.dtype).expand(B, N, N)
        seen = obs.reshape(B, 1, N * D).expand(B, N, N * D) if self.config.critic == "central" else obs
        return torch.cat([seen, ids], -1)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, N, D) -> action logits (B, N, A)."""
        B, N, _ = obs.shape
        if self.config.share_actor:
            return self.actor(torch.cat([obs, self.eye.to(obs.dtype).expand(B, N, N)], -1))
        return torch.stack([actor(obs[:, i]) for i, actor in enumerate(self.actors)], 1)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, N, D) -> V (B, N): agent i's value of the state."""
        return self.critic(self.critic_inputs(obs)).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (B, N, D) -> (logits (B, N, A), values (B, N))."""
        return self.logits(obs), self.values(obs)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per environment step (all N agents; the config's block_size is 1): 6 per
        Linear weight, per agent for the shared networks (each reads every agent's row)."""
        per_agent = sum(m.weight.numel() for m in [*self.critic.modules(), *(self.actor.modules() if
                        self.config.share_actor else [])] if isinstance(m, nn.Linear))
        own = 0 if self.config.share_actor else sum(p.numel() for n, p in self.actors.named_parameters() if "weight" in n)
        return 6.0 * (per_agent * self.config.n_agents + own)

    def metrics(self) -> dict[str, float]:
        """The held rollout's statistics (ROLLOUT_STATS) and its index."""
        st = self.rollout
        if st.held < 0 or st.stats.numel() != len(ROLLOUT_STATS):
            return {}
        return {**dict(zip(ROLLOUT_STATS, st.stats.tolist())), "rollout": float(st.held)}


__all__ = ["PRESETS", "MARLConfig", "MultiAgentActorCritic", "ROLLOUT_BUFFERS", "ROLLOUT_STATS"]

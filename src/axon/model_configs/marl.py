"""The multi-agent actor-critic's config and named sizes (the model: ``axon.models.marl``; the
task: ``axon.tasks.mappo``).

``critic: central`` is MAPPO's (Yu et al. 2022): the critic reads every agent's observation,
concatenated (their "global state" as the concatenation of local observations); ``local`` gives
independent PPO (IPPO, de Witt et al. 2020): each agent's critic reads its own observation only.
``share_actor``: one actor for every agent, the agent's id appended one-hot to its observation
(parameter sharing); false: one actor per agent. The environment's sizes (``obs_dim``,
``n_agents``, ``n_actions``) are filled in by the task from its environment when null.

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class MARLConfig:
    family: Literal["marl"] = "marl"
    preset: str | None = None  # the named size this config started from, for the record
    obs_dim: int | None = None  # one agent's observation (null: the task's environment sets it)
    n_agents: int | None = None  # (null: mappo.n_agents)
    n_actions: int | None = None  # discrete actions per agent (null: the environment's)
    n_embd: int = 64  # hidden width of the actor's and the critic's MLPs
    n_layer: int = 2  # hidden layers of each MLP (tanh)
    critic: Literal["central", "local"] = "central"  # central: MAPPO; local: independent PPO
    share_actor: bool = True  # one actor with the agent id one-hot appended (false: one actor per agent)

    def __post_init__(self):
        check_fields(self, "model.")
        for name in ("obs_dim", "n_agents", "n_actions"):
            value = getattr(self, name)
            check(value is None or value > 0, f"model.{name}", f"must be positive (or null: the environment's), got {value}")
        check(self.n_agents is None or self.n_agents >= 2, "model.n_agents",
              f"must be >= 2 (one agent is single-agent PPO), got {self.n_agents}")
        check(self.n_embd > 0, "model.n_embd", f"must be positive, got {self.n_embd}")
        check(self.n_layer >= 1, "model.n_layer", f"must be >= 1, got {self.n_layer}")

    @property
    def block_size(self) -> int:
        """The trainer counts batch_size * block_size "tokens" per micro-batch; here one token is one
        environment step of the rollout (all agents'), so its throughput is in environment steps."""
        return 1


# Named sizes; tests/agents/test_marl_mappo.py checks the counts (cover, 2 agents, view 1, obs_dim 12).
PRESETS: dict[str, dict] = {
    "tiny": dict(params="774 (MAPPO, 2 agents, obs 12)", source="for tests", config=dict(n_embd=16, n_layer=1)),
    "small": dict(params="11,398 (MAPPO, 2 agents, obs 12)",
                  source="MAPPO's MPE actor and critic are 64-wide MLPs of two hidden layers (Yu et al. 2022, "
                         "table 13); trains on one CPU thread in minutes",
                  config=dict(n_embd=64, n_layer=2)),
}

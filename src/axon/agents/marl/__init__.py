"""Cooperative multi-agent PPO with a shared critic (MAPPO, Yu et al. 2022): the environments
(``axon.agents.marl.envs``: the ``cover`` grid, numpy only, and an adapter for mpe2's
simple_spread, imported when used). The model is the ``marl`` family (``axon.models.marl``), the
task ``mappo`` (``axon.tasks.mappo``); docs/multi-agent.md tells the whole story."""

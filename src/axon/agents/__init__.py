"""Agents (issue 24): World Models (``axon.agents.worldmodels``), a Gato-style generalist decoder
(``axon.agents.gato``) and cooperative multi-agent PPO (``axon.agents.marl``). The environments
come from the optional ``agents`` extra (gymnasium, pettingzoo with mpe2, cma as CMA-ES's
reference): ``pip install axon-lab[agents]``. Nothing here is imported by the core package."""

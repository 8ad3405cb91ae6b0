"""World Models (Ha & Schmidhuber 2018) at CPU size; docs/world-models.md.

    env.py      Chase, the numpy pixel environment (batched, seeded) and the random-policy collector
    carracing.py  gymnasium's CarRacing-v3 behind Chase's interface (world_model.env: carracing; Box2D)
    cma_es.py   CMA-ES from Hansen's tutorial, its state as tensors (exact resume)
    tasks.py    the tasks wm_vae (V), wm_mdn (M), wm_controller (C by CMA-ES, in the dream or for real)
    gym_env.py  ChaseEnv, LatentEnv, DreamEnv as gymnasium environments (imports gymnasium; optional)

The models (V: ConvVAE, M: MDNRNN, C: LinearController) are the families ``wm_vae``,
``wm_mdnrnn`` and ``wm_controller`` in ``axon.models.wm``. Nothing here but gym_env.py (and carracing.py,
when it builds an environment) imports an optional package.
"""

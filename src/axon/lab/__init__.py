"""The lab: many runs at once, and what to conclude from them.

    runner.py   run a set of `axon train` jobs as parallel subprocesses, resumably
    compare.py  `axon compare`: variants x seeds under a matched budget -> results table + report
    fit.py      scaling-law fits (numpy/scipy only): Kaplan L(N), L(D); Chinchilla L(N, D); IsoFLOP minima
    scaling.py  `axon scaling`: plan a sweep (IsoFLOP or N x D grid), run it, fit, report, predict
    labels.py   `axon label`: comparisons of a chat run's own samples by simulated labellers (RLHF data)
    pipeline.py `axon pipeline`: InstructGPT's SFT -> label -> reward model -> PPO, each an ordinary run

Training FLOPs per token and parameter counts of any family's model config (the one definition)
are ``axon.models.flops``; filling a config's null vocab_size from its task is
``axon.tasks.resolve_vocab``.
"""

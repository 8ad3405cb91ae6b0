"""Our CMA-ES (axon.agents.worldmodels.cma_es) against the ``cma`` package (Hansen's own) on the
same planted quadratic, same population and start: both improve it, and ours reaches the target
within a budget no worse than twice what cma needs."""

import numpy as np
import pytest
import torch

cma = pytest.importorskip("cma")

from axon.agents.worldmodels.cma_es import CMAES  # noqa: E402

N, POP, TARGET = 10, 10, 1e-6
CENTRE = np.linspace(-1, 1, N)
SCALES = np.logspace(0, 2, N)


def f(x):
    return float(((np.asarray(x) - CENTRE) ** 2 * SCALES).sum())


def generations_to_target(step_fn, best_fn, budget=400):
    for gen in range(budget):
        step_fn()
        if best_fn() < TARGET:
            return gen + 1
    return None


def test_ours_and_cma_both_reach_the_target_on_a_quadratic():
    start = f(np.zeros(N))
    ref = cma.CMAEvolutionStrategy(np.zeros(N), 0.5, {"popsize": POP, "seed": 3, "verbose": -9, "CMA_active": False})

    def ref_step():
        xs = ref.ask()
        ref.tell(xs, [f(x) for x in xs])

    theirs = generations_to_target(ref_step, lambda: f(ref.mean))
    es, g = CMAES(N, 0.5), torch.Generator().manual_seed(3)

    def our_step():
        x = es.ask(POP, g)
        es.tell(x, torch.tensor([f(r) for r in x.numpy()], dtype=torch.float64))

    ours = generations_to_target(our_step, lambda: f(es.mean.numpy()))
    assert theirs is not None and ours is not None, (theirs, ours, start)
    assert ours <= 2 * theirs, (ours, theirs)

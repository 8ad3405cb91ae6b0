"""Which layer may import which: axon.config depends on nothing above it, nn/ knows no model family.

The import rules are read statically (every ``import`` statement of src/axon, function-local ones
included), so a forbidden import fails here even when no test happens to execute it. The values
the lower layers keep as copies so as not to import upwards (optimizer names, ...) are checked
against their originals.
"""

from __future__ import annotations

from axon.config import OPTIMIZER_NAMES


# --------------------------------------------------------------------------------------------
# Copies kept below the layers they describe agree with their originals


def test_optimizer_names_are_the_trainers():
    from axon.train.optim import OPTIMIZERS

    assert set(OPTIMIZER_NAMES) == set(OPTIMIZERS)
    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)  # same order: the error message lists them

import math

import pytest
import torch
from numerics import assert_close_orders

from axon.objectives import IGNORE_INDEX, causal_lm_loss


@pytest.mark.numerics
def test_cross_entropy_by_hand():
    logits = torch.randn(2, 3, 5)
    targets = torch.randint(0, 5, (2, 3))
    loss, parts = causal_lm_loss(logits, targets)
    expected = -logits.log_softmax(-1).gather(-1, targets[..., None]).mean()
    # F.cross_entropy's mean against a plain mean: a log-softmax over 5, then a mean over 6 targets
    assert_close_orders(loss, expected, n=6, depth=2)
    assert set(parts) == {"ce"}


def test_z_loss_adds_mean_squared_log_normaliser():
    logits = torch.randn(2, 4, 7) * 3
    targets = torch.randint(0, 7, (2, 4))
    targets[0, 0] = IGNORE_INDEX  # padding counts in neither term
    ce, _ = causal_lm_loss(logits, targets)
    loss, parts = causal_lm_loss(logits, targets, z_loss=1e-2)
    keep = targets != IGNORE_INDEX
    log_z = torch.logsumexp(logits[keep], dim=-1)
    assert torch.equal(parts["z_loss"], 1e-2 * log_z.pow(2).mean())  # the same operations on the same rows
    assert torch.equal(loss, ce + parts["z_loss"])


@pytest.mark.numerics
def test_ignored_targets_do_not_count():
    logits = torch.randn(1, 4, 3)
    targets = torch.tensor([[0, 1, IGNORE_INDEX, IGNORE_INDEX]])
    loss, _ = causal_lm_loss(logits, targets)
    part, _ = causal_lm_loss(logits[:, :2], targets[:, :2])
    # 4 targets (2 ignored, adding exact zeros) against 2: a log-softmax over 3, a mean over 2 losses,
    # each on kernels that may block differently for another number of rows
    assert_close_orders(loss, part, n=3, depth=2)


def test_uniform_logits_give_log_vocab():
    loss, _ = causal_lm_loss(torch.zeros(1, 2, 65), torch.tensor([[3, 9]]))
    assert loss.item() == pytest.approx(math.log(65))

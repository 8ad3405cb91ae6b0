"""Label-smoothed cross-entropy for seq2seq (Szegedy et al. 2016; Vaswani et al. 2017, eps = 0.1)."""

import math

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close_orders, order_tol

from axon.objectives import Seq2SeqLoss, label_smoothed_loss

PAD = 5


@pytest.mark.numerics
def test_label_smoothing_against_a_hand_computation():
    logits = torch.tensor([[[2.0, 0.0, -1.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 3.0, -2.0]]])  # (1, 2, 6)
    targets = torch.tensor([[0, 4]])
    eps = 0.1
    expected, plain = 0.0, 0.0
    for t, y in enumerate([0, 4]):
        row = logits[0, t].tolist()
        log_z = math.log(sum(math.exp(v) for v in row))
        logp = [v - log_z for v in row]
        # q' = (1 - eps) onehot(y) + eps / V: the cross-entropy H(q', p)
        q = [(1 - eps) * (k == y) + eps / 6 for k in range(6)]
        expected += -sum(qk * lk for qk, lk in zip(q, logp)) / 2
        plain += -logp[y] / 2
    loss, ce, count = label_smoothed_loss(logits, targets, eps, ignore_index=-100)
    # Against a float64 hand computation, exact to float32's rounding: only the float32 side errs, so
    # half the two-sided bound. It does a log-softmax over 6, then (smoothed) a mean over the 6
    # classes, then a mean over the 2 targets.
    assert abs(loss.item() - expected) <= order_tol(torch.float32, n=6, depth=3, scale=max(1.0, expected)) / 2
    assert abs(ce.item() - plain) <= order_tol(torch.float32, n=6, depth=2, scale=max(1.0, plain)) / 2
    assert count.item() == 2
    assert loss.item() > ce.item()  # smoothing costs on a confident, correct prediction


@pytest.mark.numerics
def test_pad_targets_are_ignored_and_match_torch():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7)
    targets = torch.randint(0, 5, (3, 4))
    targets[0, 2:] = PAD
    targets[2, 1:] = PAD
    loss, ce, count = label_smoothed_loss(logits, targets, 0.1, ignore_index=PAD)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, label_smoothing=0.1)
    # torch's implementation against ours: a log-softmax over 7 classes, (smoothed) a mean over them,
    # then a mean over the 7 real targets (the 5 ignored add exact zeros)
    assert_close_orders(loss, ref, n=7, depth=3)
    assert_close_orders(ce, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD), n=7, depth=2)
    assert count.item() == 12 - 2 - 3
    # What the logits say at pad positions does not matter.
    changed = logits.clone()
    changed[targets == PAD] = torch.randn(5, 7) * 10
    assert torch.equal(label_smoothed_loss(changed, targets, 0.1, PAD)[0], loss)  # the same rows, row by row
    zero = label_smoothed_loss(logits, targets, 0.0, PAD)
    assert torch.equal(zero[0], zero[1])  # no smoothing: the loss is the cross-entropy itself


def test_objective_masks_the_source_and_reports_parts():
    calls = {}

    def model(src, tgt_in, src_mask):
        calls["mask"] = src_mask
        logits = torch.zeros(*tgt_in.shape, 8)
        logits[..., 3] = 5.0  # always predicts token 3
        return logits

    src = torch.tensor([[1, 2, PAD], [1, PAD, PAD]])
    tgt_in = torch.tensor([[6, 3, 3], [6, 2, PAD]])
    tgt_out = torch.tensor([[3, 3, 7], [2, 7, PAD]])
    loss, parts = Seq2SeqLoss(PAD, label_smoothing=0.1)(model, (src, tgt_in, tgt_out))
    assert torch.equal(calls["mask"], src != PAD)
    assert parts["count"].item() == 5 and parts["correct"].item() == 2
    assert parts["ce"].item() < loss.item()
    with pytest.raises(ValueError, match="label_smoothing"):
        Seq2SeqLoss(PAD, 1.0)

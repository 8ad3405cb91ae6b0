"""Label-smoothed cross-entropy for seq2seq (Szegedy et al. 2016; Vaswani et al. 2017, eps = 0.1)."""

import math

import pytest
import torch
import torch.nn.functional as F

from axon.objectives import Seq2SeqLoss, label_smoothed_loss

PAD = 5


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
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert ce.item() == pytest.approx(plain, rel=1e-6)
    assert count.item() == 2
    assert loss.item() > ce.item()  # smoothing costs on a confident, correct prediction


def test_pad_targets_are_ignored_and_match_torch():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7)
    targets = torch.randint(0, 5, (3, 4))
    targets[0, 2:] = PAD
    targets[2, 1:] = PAD
    loss, ce, count = label_smoothed_loss(logits, targets, 0.1, ignore_index=PAD)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, label_smoothing=0.1)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(ce, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD))
    assert count.item() == 12 - 2 - 3
    # What the logits say at pad positions does not matter.
    changed = logits.clone()
    changed[targets == PAD] = torch.randn(5, 7) * 10
    torch.testing.assert_close(label_smoothed_loss(changed, targets, 0.1, PAD)[0], loss)
    zero = label_smoothed_loss(logits, targets, 0.0, PAD)
    torch.testing.assert_close(zero[0], zero[1])


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

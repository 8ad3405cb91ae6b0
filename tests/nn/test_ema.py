"""axon.nn.ema and the model contract's keep_ema: the average is the hand computation, covers the
trainable parameters and nothing else (buffers untouched: lucidrains/denoising-diffusion-pytorch
#136), swapping in and out restores the weights bit for bit, and a model that keeps one hands the
trainer its update and evaluates with the averages."""

import pytest
import torch
from torch import nn

from axon.models.base import EMAUpdate, Model, keep_ema
from axon.nn.ema import ParameterEMA


class Tiny(Model):
    def __init__(self, decay=None):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)  # running statistics: buffers
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        self.register_buffer("schedule", torch.linspace(0.1, 0.9, 5))  # the buffer #136 clobbered
        keep_ema(self, decay)

    def forward(self, x):
        return self.norm(self.lin(x)) * self.frozen


def test_the_average_is_the_hand_computation_with_its_warm_up():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    ema = ParameterEMA({"p": p}, decay=0.9)
    expected = p.detach().clone()
    for k, value in enumerate([3.0, 5.0, -1.0, 0.5] + [2.0] * 86, start=1):
        with torch.no_grad():
            p.fill_(value)
        d = min(0.9, (1 + k) / (10 + k))
        assert ema.rate() == pytest.approx(d)
        ema.update({"p": p})
        expected = d * expected + (1 - d) * p.detach()
        assert torch.allclose(ema.shadow.get_buffer("p"), expected, atol=1e-6)
    assert int(ema.steps) == 90 and ema.rate() == 0.9  # the warm-up has ended: (1 + 91) / 101 > 0.9
    with pytest.raises(ValueError, match="decay must be in"):
        ParameterEMA({"p": p}, decay=1.0)


def test_buffers_and_frozen_parameters_are_never_averaged_nor_overwritten():
    torch.manual_seed(0)
    m = Tiny(decay=0.5)
    assert sorted(m.ema.names) == ["lin.bias", "lin.weight", "norm.bias", "norm.weight"]  # trainable only
    m.train()
    m(torch.randn(8, 3))  # moves the running statistics
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(1.0)
    buffers = {n: b.clone() for n, b in m.named_buffers() if not n.startswith("ema.")}
    m.callbacks()[0].after_step(1)
    with m.averaged():
        for n, b in m.named_buffers():
            if not n.startswith("ema."):
                assert torch.equal(b, buffers[n]), n
        assert torch.equal(m.frozen, torch.ones(2))
    assert all(torch.equal(b, buffers[n]) for n, b in m.named_buffers() if not n.startswith("ema."))


def test_swapping_in_uses_the_averages_and_restores_the_weights_exactly():
    torch.manual_seed(0)
    m = Tiny(decay=0.9)
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    with torch.no_grad():
        m.lin.weight.mul_(3.0)
    trained = {n: p.detach().clone() for n, p in m.named_parameters()}
    m.ema.update(dict(m.named_parameters()))
    d = min(0.9, 2 / 11)
    with m.averaged():
        assert torch.allclose(m.lin.weight, d * start["lin.weight"] + (1 - d) * trained["lin.weight"])
        assert torch.equal(m.lin.bias, start["lin.bias"])  # unchanged weights average to themselves
    for n, p in m.named_parameters():
        assert torch.equal(p, trained[n]), n


def test_a_model_without_an_ema_has_no_hook_and_evaluates_with_its_own_weights():
    m = Tiny(decay=None)
    assert m.callbacks() == [] and "ema" not in m._modules
    before = m.lin.weight.clone()
    with m.averaged():
        assert torch.equal(m.lin.weight, before)
    keeper = Tiny(decay=0.99)
    assert [type(cb) for cb in keeper.callbacks()] == [EMAUpdate] and not keeper.callbacks()[0].shardable
    assert any(k.startswith("ema.shadow.") for k in keeper.state_dict())  # checkpoints carry the average
    assert "ema.steps" in keeper.state_dict()
    assert not any(n.startswith("ema") for n, _ in keeper.named_parameters())  # no optimizer ever sees it

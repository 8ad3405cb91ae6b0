"""FTRL-Proximal (axon.train.optim.FTRL) against a hand computation, its L1 zeros, a planted convex
problem and the checkpoint round trip; ``gd`` as plain gradient descent."""

import math

import pytest
import torch
from torch import nn

from axon.config import OptimConfig
from axon.errors import ConfigError
from axon.train.checkpoint import load_checkpoint, save_checkpoint
from axon.train.optim import FTRL, build_optimizers


def _step(opt, w, g):
    w.grad = torch.tensor(g, dtype=w.dtype)
    opt.step()


def _reference(w0, grads, alpha, beta, l1, l2):
    """Algorithm 1 of McMahan et al. 2013, one coordinate at a time in plain floats."""
    w, z, n = list(w0), [0.0] * len(w0), [0.0] * len(w0)
    for g in grads:
        for i, gi in enumerate(g):
            sigma = (math.sqrt(n[i] + gi * gi) - math.sqrt(n[i])) / alpha
            z[i] += gi - sigma * w[i]
            n[i] += gi * gi
            if abs(z[i]) <= l1:
                w[i] = 0.0
            else:
                w[i] = -(z[i] - math.copysign(l1, z[i])) / ((beta + math.sqrt(n[i])) / alpha + l2)
    return w


def test_first_two_steps_match_a_hand_computation():
    alpha, beta, l1, l2 = 0.5, 1.0, 0.1, 0.2
    w = nn.Parameter(torch.tensor([0.2, -0.1, 0.0], dtype=torch.float64))
    opt = FTRL([w], lr=alpha, beta=beta, l1=l1, l2=l2)
    g1, g2 = [1.0, -2.0, 0.05], [0.5, 1.0, -0.3]
    _step(opt, w, g1)
    # By hand: coordinate 0: sigma = 1/0.5 = 2, z = 1 - 2*0.2 = 0.6, n = 1, w = -(0.6-0.1)/((1+1)/0.5+0.2) = -0.5/4.2
    #          coordinate 1: sigma = 2/0.5 = 4, z = -2 + 4*0.1 = -1.6, n = 4, w = 1.5/((1+2)/0.5+0.2) = 1.5/6.2
    #          coordinate 2: z = 0.05, |z| <= lambda1 = 0.1: exactly 0
    assert w.tolist() == pytest.approx([-0.5 / 4.2, 1.5 / 6.2, 0.0], abs=1e-12)
    assert w[2].item() == 0.0
    assert opt.state[w]["z"].tolist() == pytest.approx([0.6, -1.6, 0.05], abs=1e-12)
    assert opt.state[w]["n"].tolist() == pytest.approx([1.0, 4.0, 0.0025], abs=1e-12)
    _step(opt, w, g2)
    # coordinate 0 again: n = 1.25, sigma = (sqrt(1.25) - 1)/0.5, z = 0.6 + 0.5 - sigma * (-0.5/4.2)
    sigma = (math.sqrt(1.25) - 1) / 0.5
    z0 = 1.1 + sigma * 0.5 / 4.2
    assert w[0].item() == pytest.approx(-(z0 - 0.1) / ((1 + math.sqrt(1.25)) / 0.5 + 0.2), abs=1e-12)
    assert w.tolist() == pytest.approx(_reference([0.2, -0.1, 0.0], [g1, g2], alpha, beta, l1, l2), abs=1e-12)
    assert w[2].item() != 0.0  # z = 0.05 - 0.3 = -0.25: past lambda1 now


def test_l1_zeroes_exactly_the_coordinates_with_small_z():
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(200))
    opt = FTRL([w], lr=0.3, l1=0.5)
    for _ in range(3):
        w.grad = torch.randn(200) * 0.4
        opt.step()
    z = opt.state[w]["z"]
    small = z.abs() <= 0.5
    assert small.any() and (~small).any()
    assert torch.equal(w[small], torch.zeros(int(small.sum())))  # exactly zero, not merely small
    assert (w[~small] != 0).all()
    assert torch.equal(torch.sign(w[~small]), -torch.sign(z[~small]))


def test_reduces_a_planted_convex_loss_and_finds_the_sparse_weights():
    """Logistic regression whose labels depend on 3 of 20 features, trained online as in the paper
    (one pass, one example a step: lambda1 then weighs the whole data set's loss): the loss falls,
    and with L1 most of the 17 irrelevant weights are exactly zero; without it none is."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 20, generator=gen)
    true = torch.zeros(20)
    true[:3] = torch.tensor([3.0, -2.0, 2.5])
    y = (torch.rand(2000, generator=gen) < torch.sigmoid(x @ true)).float()

    def fit(l1):
        w = nn.Parameter(torch.zeros(20))
        opt = FTRL([w], lr=0.3, l1=l1, l2=1.0)
        for xi, yi in zip(x, y):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(xi @ w, yi).backward()
            opt.step()
        return w.detach(), nn.functional.binary_cross_entropy_with_logits(x @ w, y).item()

    w, loss = fit(20.0)
    assert loss < 0.35 < math.log(2)  # from log 2 at w = 0
    assert (w[:3] != 0).all() and torch.equal(torch.sign(w[:3]), torch.sign(true[:3]))
    assert (w[3:] == 0).sum() >= 13, w[3:]
    dense, _ = fit(0.0)
    assert (dense != 0).all()


def test_state_survives_the_trainers_checkpoint(tmp_path):
    def setup():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
        return model, build_optimizers(model, OptimConfig(name="ftrl", lr=0.1, ftrl_l1=0.01, ftrl_l2=0.1))

    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def train(model, opts, steps):
        for _ in range(steps):
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            for o in opts:
                o.step()
                o.zero_grad()

    model, opts = setup()
    assert isinstance(opts[0], FTRL)
    train(model, opts, 3)
    path = save_checkpoint(tmp_path, 3, model, opts, {"step": 3, "tokens": 48})
    train(model, opts, 2)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, opts2 = setup()
    load_checkpoint(path, model2, opts2)
    z = opts2[0].state[next(model2.parameters())]["z"]
    assert z.abs().sum() > 0  # the accumulators came back, not fresh zeros
    train(model2, opts2, 2)
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b)


def test_ftrl_options_reach_the_optimizer_and_bad_ones_are_one_line():
    (opt,) = build_optimizers(nn.Linear(2, 2), OptimConfig(name="ftrl", lr=0.2, ftrl_beta=0.5, ftrl_l1=0.3, ftrl_l2=0.4))
    assert {(g["lr"], g["beta"], g["l1"], g["l2"]) for g in opt.param_groups} == {(0.2, 0.5, 0.3, 0.4)}
    for field in ("ftrl_beta", "ftrl_l1", "ftrl_l2"):
        with pytest.raises(ConfigError, match=f"optim.{field}: must be >= 0") as e:
            OptimConfig(name="ftrl", **{field: -1.0})
        assert "\n" not in str(e.value)


def test_gd_is_plain_gradient_descent():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    # momentum 0.9 in the config (sgd's default) does not reach gd: two steps are w -= lr * g each
    (opt,) = build_optimizers(model, OptimConfig(name="gd", lr=0.1, momentum=0.9, weight_decay=0.0))
    assert all(g["momentum"] == 0.0 and not g["nesterov"] for g in opt.param_groups)
    x = torch.randn(5, 3)
    for _ in range(2):
        model(x).sum().backward()  # the gradient of a linear map's sum does not depend on its weights
        opt.step()
    grads = [p.grad / 2 for p in model.parameters()]  # accumulated over the two backward passes
    for b, p, g in zip(before, model.parameters(), grads):
        # step 1: w -= lr g; step 2 (grad not zeroed: 2g): w -= lr 2g
        assert torch.allclose(p, b - 0.1 * g - 0.1 * 2 * g, atol=1e-6)
    with pytest.raises(ConfigError, match="optim.nesterov: gd is plain gradient descent"):
        OptimConfig(name="gd", nesterov=True)

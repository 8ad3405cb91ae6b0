"""The MoE layer: batched dispatch against a per-token reference loop, capacity dropping, the
auxiliary losses, shared experts, routing statistics.

The batched dispatch and the loop are the same mathematics in another summation order
(tests/numerics.py, kind 2): n the longest reduction (an expert's hidden width), depth 3 (the
expert's up and down projections, then the gated sum over the chosen experts and the shared one)."""

import math

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close_orders, order_tol
from torch import nn

from axon.nn.moe import MoE, aux_losses, routing_metrics



def reference(moe: MoE, x: torch.Tensor, capacity: int | None) -> torch.Tensor:
    """Token by token: route, then serve assignments in priority order (every first choice in
    token order, then every second choice), skipping those beyond an expert's capacity."""
    xs = x.reshape(-1, moe.dim)
    N, E, k = xs.size(0), moe.n_experts, moe.top_k
    out = torch.zeros_like(xs)
    probs = (xs @ moe.router.weight.t()).softmax(-1)
    used = [0] * E
    for j in range(k):
        for n in range(N):
            p, e = probs[n].topk(k)
            g = p / p.sum() if moe.normalize else p
            ex = int(e[j])
            if capacity is not None and used[ex] >= capacity:
                continue
            used[ex] += 1
            out[n] += g[j] * expert(moe, ex, xs[n])
    if moe.shared is not None:
        out = out + moe.shared(xs)
    return out.view(x.shape)


def expert(moe: MoE, e: int, v: torch.Tensor) -> torch.Tensor:
    if moe.mlp == "swiglu":
        h = moe.gate_up[e] @ v + (moe.fc_bias[e] if moe.fc_bias is not None else 0)
        gate, up = h.chunk(2)
        h = F.silu(gate) * up
    else:
        h = F.gelu(moe.fc[e] @ v + (moe.fc_bias[e] if moe.fc_bias is not None else 0), approximate="tanh")
    return moe.proj[e] @ h + (moe.proj_bias[e] if moe.proj_bias is not None else 0)


def make(mlp="swiglu", k=2, E=4, cf=None, normalize=True, shared=0, bias=False, C=16, H=24):
    torch.manual_seed(0)
    moe = MoE(C, H, E, k, mlp=mlp, capacity_factor=cf, normalize=normalize, n_shared=shared, bias=bias)
    with torch.no_grad():
        moe.router.weight.normal_(0, 1.0)  # decisive routing so ties never decide the test
        for p in moe.parameters():
            if p.dim() == 1 or p.dim() == 2 and p is not moe.router.weight:
                p.normal_(0, 0.3)
    return moe


@pytest.mark.numerics
@pytest.mark.parametrize("mlp", ["swiglu", "gelu"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("cf", [None, 0.75])
def test_batched_dispatch_equals_the_per_token_loop(mlp, k, cf):
    moe = make(mlp, k, cf=cf, normalize=k > 1, bias=mlp == "gelu", shared=1 if k == 2 else 0)
    x = torch.randn(3, 7, 16)
    y = moe(x)  # training mode: capacity applies
    assert y.shape == x.shape
    cap = None if cf is None else math.ceil(cf * 21 * k / 4)
    assert_close_orders(y, reference(moe, x, cap), n=moe.hidden, depth=3)
    moe.eval()  # evaluation never drops
    assert_close_orders(moe(x), reference(moe, x, None), n=moe.hidden, depth=3)


def test_capacity_drops_exactly_the_overflow_in_token_order():
    # Every token's first coordinate is positive, so the router sends all 8 to expert 0.
    moe = MoE(4, 8, 2, 1, capacity_factor=1.0, normalize=False, aux_loss=0.0, z_loss=0.0)
    with torch.no_grad():
        moe.router.weight.copy_(torch.tensor([[5.0, 0, 0, 0], [-5.0, 0, 0, 0]]))
    x = torch.randn(8, 4)
    x[:, 0] = x[:, 0].abs() + 1
    assert moe.capacity(8) == 4  # ceil(1.0 * 8 tokens * 1 / 2 experts)
    y = moe(x.unsqueeze(0)).squeeze(0)
    assert (y[:4].abs().sum(-1) > 0).all()  # the first 4 tokens fit
    assert torch.equal(y[4:], torch.zeros(4, 4))  # the rest pass through the residual only
    assigned, dropped = moe.statistics()
    assert assigned.tolist() == [8.0, 0.0] and float(dropped) == 4.0
    holder = nn.ModuleList([moe])
    m = routing_metrics(holder)
    assert m["moe_dropped_frac"] == 0.5 and m["moe_expert0_frac"] == 1.0 and m["moe_max_load"] == 2.0
    assert routing_metrics(holder) == {}  # counters reset by the call
    moe.eval()
    assert (moe(x.unsqueeze(0)).squeeze(0).abs().sum(-1) > 0).all()  # no dropping in eval
    assert routing_metrics(holder) == {}  # eval forwards are not counted


@pytest.mark.numerics
def test_second_choices_only_take_space_first_choices_left():
    # Tokens 0-3 prefer expert 0 then 1; tokens 4-7 prefer 1 then 0. Capacity 4 = ceil(1.0*8*2/4).
    moe = MoE(4, 8, 4, 2, capacity_factor=1.0, aux_loss=0.0, z_loss=0.0)
    with torch.no_grad():
        moe.router.weight.copy_(torch.tensor([[4.0, 0, 0, 0], [-4.0, 0, 0, 0], [0, 0, 0, -5.0], [0, 0, 0, -9.0]]))
    x = torch.zeros(8, 4)
    x[:4, 0], x[4:, 0] = 1.0, -1.0
    x[:, 3] = 1.0  # experts 2 and 3 are never a choice
    y = moe(x.unsqueeze(0)).squeeze(0)
    # The outputs are ~5e-5 (default N(0, 0.02) experts): assert_close_orders' floor of 1 on the
    # scale would make its bound meaningless here, so the scale is the outputs' own.
    ref = reference(moe, x, 4)
    assert (y - ref).abs().max() <= order_tol(torch.float32, n=moe.hidden, depth=3, scale=ref.abs().max().item())
    assert float(moe.statistics()[1]) == 8.0  # second choices: experts 0 and 1 are full with first choices


def test_balance_loss_matches_a_hand_computation():
    # Router = identity on 2 dims; x = (ln 3, 0) gives probabilities (3/4, 1/4), logsumexp ln 4.
    moe = MoE(2, 4, 2, 1, normalize=False, aux_loss=1.0, z_loss=1.0)
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(2))
    both_first = torch.tensor([[[math.log(3), 0.0], [math.log(3), 0.0]]])
    moe(both_first)
    # f = (1, 0) (both tokens to expert 0), P = (3/4, 1/4): E * sum f P = 2 * 3/4
    torch.testing.assert_close(moe.last_aux["moe_balance"], torch.tensor(1.5))
    torch.testing.assert_close(moe.last_aux["moe_z"], torch.tensor(math.log(4) ** 2))
    moe(torch.tensor([[[math.log(3), 0.0], [0.0, math.log(3)]]]))  # one token each: f = P = (1/2, 1/2)
    torch.testing.assert_close(moe.last_aux["moe_balance"], torch.tensor(1.0))


def test_balance_loss_is_one_for_uniform_routing_and_larger_when_skewed():
    moe = MoE(8, 8, 4, 2, aux_loss=1.0, z_loss=0.0)
    x = torch.randn(2, 32, 8)
    with torch.no_grad():
        moe.router.weight.zero_()  # every probability 1/E
    moe(x)
    torch.testing.assert_close(moe.last_aux["moe_balance"], torch.tensor(1.0))
    with torch.no_grad():
        moe.router.weight.copy_(torch.randn(4, 8) * 3)
        moe.router.weight[0] = x.mean((0, 1)) * 50  # expert 0 takes most of the mass
    moe(x)
    assert moe.last_aux["moe_balance"] > 1.2


def test_aux_losses_scale_with_their_coefficients_and_have_gradients():
    moe = make(k=2)
    moe.aux_coef, moe.z_coef = 0.01, 0.001
    x = torch.randn(2, 5, 16)
    moe(x)
    raw = MoE(16, 24, 4, 2, aux_loss=1.0, z_loss=1.0)
    raw.load_state_dict(moe.state_dict())
    raw(x)
    # The same forward, and each coefficient multiplies the same rounded value once (E = 4 is a
    # power of two: the module's (0.01 * E) * s rounds as 0.01 * (E * s)): bit for bit.
    assert torch.equal(moe.last_aux["moe_balance"], 0.01 * raw.last_aux["moe_balance"])
    assert torch.equal(moe.last_aux["moe_z"], 0.001 * raw.last_aux["moe_z"])
    sum(aux_losses(nn.ModuleList([moe])).values()).backward()
    assert moe.router.weight.grad.abs().sum() > 0


def test_switch_gate_gives_the_router_a_gradient_from_the_output():
    moe = make(k=1, normalize=False)
    moe.aux_coef = moe.z_coef = 0.0
    moe(torch.randn(2, 6, 16)).pow(2).sum().backward()
    assert moe.router.weight.grad.abs().sum() > 0  # gate = p(x): differentiable
    moe = make(k=1, normalize=True)  # renormalised top-1 has gate 1: no gradient from the output
    moe(torch.randn(2, 6, 16)).pow(2).sum().backward()
    assert moe.router.weight.grad is None or moe.router.weight.grad.abs().max() < 1e-9  # p / p = 1, up to rounding


def test_shared_experts_always_run():
    moe = make(k=1, shared=2)
    assert moe.shared.proj.in_features == 2 * 24  # two shared experts as one MLP of twice the width
    with torch.no_grad():
        moe.proj.zero_()  # routed experts now add nothing
    x = torch.randn(2, 5, 16)
    assert torch.equal(moe(x), moe.shared(x))  # the routed part is exactly 0; the same shared MLP kernels
    # active = everything except the E - k routed experts a token skips; shared ones all count
    per_expert = 3 * 16 * 24
    assert moe.expert_params() == per_expert and moe.inactive_params() == 3 * per_expert


def test_bad_arguments():
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, 8, 2, 3)

import pytest
import torch
from numerics import assert_close_orders

from axon.nn import RMSNorm, SwiGLU, build_mlp, build_norm


@pytest.mark.numerics
def test_rmsnorm_formula():
    x = torch.randn(4, 7)
    norm = RMSNorm(7, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, 7))
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert_close_orders(norm(x), expected, n=7)  # the module's kernel against the formula: a mean over 7


def test_layernorm_bias_optional():
    assert build_norm("layernorm", 8, bias=False).bias is None
    assert build_norm("layernorm", 8, bias=True).bias is not None
    with pytest.raises(ValueError):
        build_norm("batchnorm", 8)


@pytest.mark.numerics
def test_swiglu_formula():
    mlp = SwiGLU(6, 10)
    x = torch.randn(3, 6)
    gate, up = mlp.gate_up.weight[:10], mlp.gate_up.weight[10:]
    expected = (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ mlp.proj.weight.T
    assert_close_orders(mlp(x), expected, n=10, depth=2)  # fused gate/up over 6 inputs, then proj over 10


def test_swiglu_gradients_equal_autograds_bit_for_bit():
    """The fused backward writes d_gate and d_up into one tensor; the values are autograd's own."""
    from axon.nn.mlp import swiglu

    torch.manual_seed(0)
    gate_up = torch.randn(2, 5, 12, requires_grad=True)
    g = torch.randn(2, 5, 6)
    fused = swiglu(gate_up)
    (d_fused,) = torch.autograd.grad(fused, gate_up, g)
    gate, up = gate_up.chunk(2, dim=-1)
    ref = torch.nn.functional.silu(gate) * up
    (d_ref,) = torch.autograd.grad(ref, gate_up, g)
    assert torch.equal(fused, ref) and torch.equal(d_fused, d_ref)


def test_gelu_mlp_shapes():
    assert build_mlp("gelu", 8, 32, True, 0.0)(torch.randn(2, 3, 8)).shape == (2, 3, 8)

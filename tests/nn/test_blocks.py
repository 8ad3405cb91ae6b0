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


def test_gelu_mlp_shapes():
    assert build_mlp("gelu", 8, 32, True, 0.0)(torch.randn(2, 3, 8)).shape == (2, 3, 8)

"""Attention and RoPE. The SDPA kernel, the reference path, GQA and a hand-written loop compute the
same mathematics in other summation orders (tests/numerics.py, kind 2): bounds from n, the longest
reduction (n_embd 32 of the projections, 11 keys, head_dim 8), and depth, the reductions in
sequence after the two paths part."""

import math

import pytest
import torch
from numerics import assert_close_orders, order_tol

from axon.nn import CausalSelfAttention, RotaryEmbedding, apply_rotary, reference_attention
from axon.nn.positional import rotary


def make(n_head=4, n_kv_head=4, n_embd=32, **kw):
    return CausalSelfAttention(n_embd, n_head, n_kv_head, **kw)


@pytest.mark.numerics
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])  # MHA, GQA, MQA
@pytest.mark.parametrize("qk_norm", [None, "rmsnorm"])
def test_sdpa_matches_reference(n_kv_head, qk_norm):
    attn = make(n_kv_head=n_kv_head, qk_norm=qk_norm).eval()
    x = torch.randn(3, 11, 32)
    rope = RotaryEmbedding(8, 16)(0, 11)
    y_sdpa = attn(x, rope)
    attn.impl = "reference"
    # scores over head_dim 8, the weighted sum over 11 keys, the output projection over n_embd 32
    assert_close_orders(attn(x, rope), y_sdpa, n=32, depth=3)


@pytest.mark.numerics
def test_reference_is_softmax_qkt_v():
    """The reference path against a by-hand loop over query positions."""
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    out = reference_attention(q, k, v)
    for t in range(5):
        w = torch.softmax(q[..., t : t + 1, :] @ k[..., : t + 1, :].transpose(-1, -2) / math.sqrt(4), dim=-1)
        # scores over 4 dims, then a sum over <= 5 keys
        assert_close_orders(out[..., t : t + 1, :], w @ v[..., : t + 1, :], n=5, depth=2)


@pytest.mark.numerics
def test_gqa_with_all_kv_heads_equals_mha():
    """n_kv_head == n_head is plain multi-head attention; and a GQA layer whose kv heads are
    copies equals the MHA layer with those copies spelled out."""
    mha = make(n_head=4, n_kv_head=4).eval()
    gqa = make(n_head=4, n_kv_head=2).eval()
    hs, C = 8, 32
    with torch.no_grad():
        wq, wk, wv = mha.qkv.weight.split([C, C, C])
        # GQA kv head j serves query heads 2j and 2j+1: give MHA identical k/v rows for them.
        gk, gv = torch.randn(2 * hs, C), torch.randn(2 * hs, C)
        gqa.qkv.weight.copy_(torch.cat([wq, gk, gv]))
        rep = lambda w: w.view(2, hs, C).repeat_interleave(2, dim=0).reshape(4 * hs, C)  # noqa: E731
        mha.qkv.weight.copy_(torch.cat([wq, rep(gk), rep(gv)]))
        gqa.qkv.bias.copy_(torch.cat([mha.qkv.bias[:C], torch.zeros(4 * hs)]))
        mha.qkv.bias[C:].zero_()
        gqa.proj.load_state_dict(mha.proj.state_dict())
    x = torch.randn(2, 9, C)
    # qkv projections of other shapes (over C = 32), scores, the sum over 9 keys, the output projection
    assert_close_orders(gqa(x), mha(x), n=C, depth=4)


def test_causality_future_tokens_do_not_change_past_outputs():
    attn = make(n_kv_head=2).eval()
    x = torch.randn(1, 10, 32)
    y = attn(x)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(1, 4, 32)
    y2 = attn(x2)
    assert torch.equal(y2[:, :6], y[:, :6])  # the same kernels on the same shapes: masked keys weigh exactly 0
    assert not torch.allclose(y2[:, 6:], y[:, 6:])


@pytest.mark.numerics
def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(16, 64, theta=10000.0)
    q, k = torch.randn(16), torch.randn(16)

    def score(m, n):
        cos_m, sin_m = rope(m, 1)
        cos_n, sin_n = rope(n, 1)
        return (apply_rotary(q.view(1, 1, 1, 16), cos_m, sin_m) * apply_rotary(k.view(1, 1, 1, 16), cos_n, sin_n)).sum()

    # The same sum of 16 products of rotated channels, from other roundings of cos and sin (fp64
    # angles rounded to fp32): kind 2 with n = 16, at the scale of sum |q_i k_i| <= |q| |k|, not of
    # the score, which may cancel.
    tol = order_tol(torch.float32, n=16, scale=(q.norm() * k.norm()).item())
    assert (score(7, 3) - score(40, 36)).abs() <= tol
    assert (score(0, 0) - score(50, 50)).abs() <= tol
    assert not torch.allclose(score(7, 3), score(7, 4))
    # Rotation preserves norms (a sum of 16 squares of rounded rotations).
    cos, sin = rope(13, 1)
    assert_close_orders(apply_rotary(q.view(1, 1, 1, 16), cos, sin).norm(), q.norm(), n=16)


def test_rope_theta_changes_frequencies():
    a, b = RotaryEmbedding(8, 10, theta=10000.0), RotaryEmbedding(8, 10, theta=500000.0)
    assert torch.equal(a.cos[0], b.cos[0])  # position 0 is the identity for every theta
    assert not torch.allclose(a.cos[5], b.cos[5])


@pytest.mark.parametrize("per_sequence", [False, True])
def test_fused_rotary_equals_the_formula_bit_for_bit(per_sequence):
    """rotary() on the (B, T, n, hs) layout gives apply_rotary's values and gradients exactly: the
    same products and sums in the same order, so no tolerance (on any kernel path)."""
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, 32)
    positions = torch.randint(0, 32, (3, 7)) if per_sequence else torch.arange(5, 12)
    cos, sin = rope(positions)
    x = torch.randn(3, 7, 4, 16, requires_grad=True)  # (B, T, n, hs)
    g = torch.randn(3, 7, 4, 16)
    fused = rotary(x, cos, sin)
    (dx_fused,) = torch.autograd.grad(fused, x, g)
    ref = apply_rotary(x.transpose(1, 2), cos, sin).transpose(1, 2)  # the formula on (B, n, T, hs)
    (dx_ref,) = torch.autograd.grad(ref, x, g)
    assert torch.equal(fused, ref) and torch.equal(dx_fused, dx_ref)


def test_fused_rotary_keeps_the_input_dtype_of_the_gradient():
    """As the formula: a bf16 input with fp32 tables promotes the output to fp32, and the input's
    gradient comes back in bf16."""
    cos, sin = RotaryEmbedding(8, 4)(0, 4)
    x = torch.randn(1, 4, 2, 8, dtype=torch.bfloat16, requires_grad=True)
    y = rotary(x, cos, sin)
    y.sum().backward()
    assert y.dtype == torch.float32 and x.grad.dtype == torch.bfloat16

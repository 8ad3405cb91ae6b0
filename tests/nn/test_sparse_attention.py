"""Sliding-window and block-sparse attention: the masks by hand, parity with a naive masked
attention for both impls (with GQA), causality and learning of a whole decoder, config errors.

Parity between impls is the same mathematics in another summation order (tests/numerics.py,
kind 2); a prefix computed with other tokens after it runs the same kernels on the same shapes
and is compared bit for bit."""

import math

import pytest
import torch
from numerics import assert_close_orders

from axon.errors import ConfigError
from axon.models.decoder import Decoder, DecoderConfig
from axon.nn.attention import CausalSelfAttention
from axon.nn.masks import causal_pattern_mask, pattern_mask

from cache_checks import reductions

PATTERNS = {
    "sliding": dict(attention="sliding", attn_window=3),
    "block_sparse": dict(attention="block_sparse", attn_block=4, attn_summary=2),
    "sliding-alternate": dict(attention="sliding", attn_window=3, attn_layers=[0]),
}


def rows(text: str) -> torch.Tensor:
    """A mask written as rows of x (attend) and . (masked)."""
    return torch.tensor([[c == "x" for c in line.split()] for line in text.strip().splitlines()])


def test_sliding_window_mask_by_hand():
    expected = rows("""
        x . . . . .
        x x . . . .
        x x x . . .
        . x x x . .
        . . x x x .
        . . . x x x
    """)
    assert torch.equal(causal_pattern_mask("sliding", 6, window=3), expected)
    assert torch.equal(causal_pattern_mask("sliding", 6, window=1), torch.eye(6, dtype=torch.bool))
    assert torch.equal(causal_pattern_mask("sliding", 6, window=6), torch.ones(6, 6, dtype=torch.bool).tril())


def test_sliding_window_matches_hugging_face_semantics():
    # transformers' masking_utils: sliding_window_overlay is kv_idx > q_idx - sliding_window, and'ed with causal.
    masking_utils = pytest.importorskip("transformers.masking_utils")
    fn = masking_utils.sliding_window_causal_mask_function(3)
    t = torch.tensor
    hf = torch.tensor([[bool(fn(t(0), t(0), t(q), t(k))) for k in range(7)] for q in range(7)])
    assert torch.equal(causal_pattern_mask("sliding", 7, window=3), hf)


def test_block_sparse_mask_by_hand():
    # block 3, summary 1: own block causally + the last position of every earlier block.
    expected = rows("""
        x . . . . . . . .
        x x . . . . . . .
        x x x . . . . . .
        . . x x . . . . .
        . . x x x . . . .
        . . x x x x . . .
        . . x . . x x . .
        . . x . . x x x .
        . . x . . x x x x
    """)
    assert torch.equal(causal_pattern_mask("block_sparse", 9, block=3, summary=1), expected)
    # summary 2: the last two positions of earlier blocks; summary == block is dense causal.
    got = causal_pattern_mask("block_sparse", 9, block=3, summary=2)
    assert got[8].tolist() == [False, True, True, False, True, True, True, True, True]
    assert torch.equal(causal_pattern_mask("block_sparse", 9, block=3, summary=3), torch.ones(9, 9, dtype=torch.bool).tril())


def test_masks_from_positions_of_a_continued_sequence():
    # Queries at positions 4, 5 over keys 0..5 (a cache holding 0..3): the rows 4, 5 of the full mask.
    full = causal_pattern_mask("sliding", 6, window=3)
    assert torch.equal(pattern_mask("sliding", torch.tensor([4, 5]), torch.arange(6), window=3), full[4:])
    # Per-sequence positions (B, T) x (B, S) give (B, T, S).
    q, k = torch.tensor([[2], [5]]), torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert pattern_mask("sliding", q, k, window=2).tolist() == [[[False, True, True]], [[False, True, True]]]


def naive_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(d) masked) v, k/v expanded to the query heads by hand."""
    rep = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


@pytest.mark.numerics
@pytest.mark.parametrize("impl", ["sdpa", "reference"])
@pytest.mark.parametrize("kind,kw", [("sliding", dict(window=4)), ("block_sparse", dict(block=4, summary=1))])
def test_pattern_attention_equals_naive_reference_with_gqa(impl, kind, kw):
    attn = CausalSelfAttention(32, n_head=4, n_kv_head=2, impl=impl)
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 2, 10, 8), torch.randn(2, 2, 10, 8)
    mask = causal_pattern_mask(kind, 10, **kw)
    got = attn.attend(q, k, v, mask)
    assert_close_orders(got, naive_attention(q, k, v, mask), n=10, depth=2)  # scores over 8 dims, sums over <= 10 keys
    # and it is not dense attention (which moves outputs of size ~1 by ~0.1: 1e-3 is far above rounding)
    assert (got - naive_attention(q, k, v, torch.ones(10, 10, dtype=torch.bool).tril())).abs().max() > 1e-3


def tiny(pattern, **kw):
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=40, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, **{**PATTERNS[pattern], **kw})
    return Decoder(cfg)


@pytest.mark.numerics
@pytest.mark.parametrize("impl", ["sdpa", "reference"])
@pytest.mark.parametrize("pattern", PATTERNS)
@torch.no_grad()
def test_decoder_is_causal_and_impls_agree(pattern, impl):
    model = tiny(pattern, attn_impl=impl).eval()
    idx = torch.randint(0, 40, (2, 16))
    out = model(idx)
    for t in (3, 9, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 40
        assert torch.equal(model(changed)[:, :t], out[:, :t])  # same kernels, same shapes: bit for bit
        assert (model(changed)[:, t] - out[:, t]).abs().max() > 1e-6  # changed at all (rounding alone: 0 here)
    other = tiny(pattern, attn_impl="reference" if impl == "sdpa" else "sdpa").eval()
    n, depth = reductions(model, 16)
    assert_close_orders(other(idx), out, n=n, depth=depth)


@torch.no_grad()
def test_sliding_window_really_forgets():
    # One sliding layer of window 3: the logit at t depends on tokens t-2..t only; with two
    # layers, on t-4..t (receptive field L * (W - 1) + 1).
    for n_layer, reach in [(1, 3), (2, 5)]:
        torch.manual_seed(0)
        cfg = DecoderConfig(vocab_size=40, block_size=16, n_layer=n_layer, n_head=2, n_embd=16, attention="sliding", attn_window=3)
        model = Decoder(cfg).eval()
        idx = torch.randint(0, 40, (1, 16))
        changed = idx.clone()
        changed[0, 4] = (changed[0, 4] + 1) % 40
        diff = (model(changed) - model(idx)).abs().amax(-1)[0]  # (T,)
        assert (diff[4 : 4 + reach] > 1e-6).all()  # changed at all: outside the reach it is exactly 0
        assert (diff[4 + reach :] == 0).all() and (diff[:4] == 0).all()


@pytest.mark.parametrize("pattern", ["sliding", "block_sparse"])
def test_overfits_one_batch(pattern):
    model = tiny(pattern)
    idx = torch.randint(0, 40, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        logits = model(idx[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 40), idx[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


@pytest.mark.parametrize("kw,field", [
    (dict(attention="sliding"), "model.attn_window"),
    (dict(attention="sliding", attn_window=0), "model.attn_window"),
    (dict(attention="sliding", attn_window=17), "model.attn_window"),  # window larger than context
    (dict(attn_window=4), "model.attn_window"),  # given with attention=dense
    (dict(attention="sliding", attn_window=4, attn_block=4), "model.attn_block"),
    (dict(attention="block_sparse"), "model.attn_block"),
    (dict(attention="block_sparse", attn_block=32), "model.attn_block"),
    (dict(attention="block_sparse", attn_block=4, attn_summary=5), "model.attn_summary"),
    (dict(attn_summary=2), "model.attn_summary"),
    (dict(attn_layers=[0]), "model.attn_layers"),
    (dict(attention="sliding", attn_window=4, attn_layers=[2]), "model.attn_layers"),
    (dict(attention="sliding", attn_window=4, attn_layers=[0, 0]), "model.attn_layers"),
    (dict(attention="sliding", attn_window=4, attn_layers=[]), "model.attn_layers"),
    (dict(attention="local"), "model.attention"),
])
def test_config_errors(kw, field):
    from axon.config import from_dict

    with pytest.raises(ConfigError, match=field):
        from_dict(DecoderConfig, dict(block_size=16, n_layer=2, **kw), "model")


def test_context_limit():
    base = dict(block_size=16, n_layer=2)
    assert DecoderConfig(**base).context_limit == 16
    assert DecoderConfig(**base, attention="sliding", attn_window=4).context_limit is None  # RoPE slides on
    assert DecoderConfig(**base, attention="sliding", attn_window=4, pos="learned").context_limit == 16
    assert DecoderConfig(**base, attention="sliding", attn_window=4, attn_layers=[0]).context_limit == 16
    assert DecoderConfig(**base, attention="sliding", attn_window=4, attn_layers=[1, 0]).context_limit is None
    assert DecoderConfig(**base, attention="block_sparse", attn_block=4).context_limit == 16

"""Column-major weights for batch-1 CPU decoding change the layout, never the values.

The logits with the relaid weights are another kernel's (a transposed-operand GEMM, free to block
its sums differently): the same mathematics in another order, tests/numerics.py kind 2. The
weights themselves are compared bit for bit."""

import pytest
import torch

from axon.generate import generate
from axon.generate.layout import column_major_linears
from axon.models.decoder import Decoder, DecoderConfig

from cache_checks import assert_same_logits


def model(**kw):
    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=40, block_size=32, n_layer=2, n_head=4, n_embd=32, **kw))


@pytest.mark.numerics
@pytest.mark.parametrize("tie", [True, False])
def test_layout_changes_strides_not_values_and_is_restored(tie):
    m = model(tie_embeddings=tie)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    params = dict(m.named_parameters())
    idx = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        ref = m(idx)
    with column_major_linears(m):
        assert not m.lm_head.weight.is_contiguous() and m.lm_head.weight.t().is_contiguous()
        assert not m.blocks[0].attn.qkv.weight.is_contiguous()
        with torch.no_grad():
            assert_same_logits(m, m(idx), ref, steps=12)
    for n, p in m.named_parameters():
        assert p is params[n] and p.is_contiguous() and torch.equal(p, before[n]), n
    assert (m.lm_head.weight is m.wte.weight) == tie


def test_layout_is_restored_after_an_error():
    m = model()
    with pytest.raises(RuntimeError, match="boom"), column_major_linears(m):
        raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in m.parameters())


def test_layout_refuses_inference_mode():
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        with column_major_linears(model()):
            pass


def test_batch_one_generation_leaves_a_trainable_model():
    """generate() relays weights out for a single prompt on CPU; afterwards training works."""
    m = model()
    prompt = torch.randint(0, 40, (1, 5))
    greedy = generate(m, prompt, 10, temperature=0).tokens
    with torch.no_grad():  # the same greedy tokens as a plain loop over full forwards
        seq = prompt.clone()
        for _ in range(10):
            seq = torch.cat([seq, m(seq)[:, -1:].argmax(-1)], 1)
    assert greedy == seq[:, 5:].tolist()
    assert all(p.is_contiguous() and not p.is_inference() for p in m.parameters())
    m.train()
    loss = m(prompt).logsumexp(-1).mean()
    loss.backward()  # would fail on inference tensors
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)

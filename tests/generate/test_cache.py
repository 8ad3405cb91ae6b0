"""The KV cache computes what a full forward pass computes, up to summation order (the cache runs
other shapes: tests/numerics.py, kind 2, bounded by cache_checks.assert_same_logits)."""

import pytest
import torch

from axon.generate.cache import KVCache
from axon.models.decoder import Decoder, DecoderConfig

from cache_checks import assert_same_logits, check_left_padded_batch

pytestmark = pytest.mark.numerics

VARIANTS = {
    "mha-rope": dict(pos="rope"),
    "gqa-rope": dict(pos="rope", n_kv_head=2),
    "mqa-rope": dict(pos="rope", n_kv_head=1),
    "mha-learned": dict(pos="learned", mlp="gelu", norm="layernorm", bias=True),
    "gqa-learned-qknorm": dict(pos="learned", n_kv_head=2, qk_norm=True),
}


def model_for(variant, impl="sdpa"):
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=50, block_size=24, n_layer=2, n_head=4, n_embd=32, attn_impl=impl, **VARIANTS[variant])
    return Decoder(cfg).eval()


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_prefill_then_decode_equals_full_forward(variant, impl):
    model = model_for(variant, impl)
    idx = torch.randint(0, 50, (3, 20))
    full = model(idx)  # (B, T, V)
    cache = model.make_cache(3)
    out = [model(idx[:, :7], cache=cache)]  # prefill
    for t in range(7, 20):  # one token at a time
        out.append(model(idx[:, t : t + 1], cache=cache))
    assert_same_logits(model, torch.cat(out, 1), full, steps=20)
    assert cache.length == 20


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_chunks_of_several_tokens(variant):
    """Speculative decoding verifies several tokens at once on top of a cache."""
    model = model_for(variant)
    idx = torch.randint(0, 50, (2, 18))
    cache = model.make_cache(2)
    chunks = [model(idx[:, a:b], cache=cache) for a, b in [(0, 5), (5, 9), (9, 10), (10, 18)]]
    assert_same_logits(model, torch.cat(chunks, 1), model(idx), steps=18)


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_left_padded_batch_matches_each_sequence_alone(variant):
    model = model_for(variant)
    check_left_padded_batch(model, 50)


@torch.no_grad()
def test_crop_and_reorder():
    model = model_for("gqa-rope")
    idx = torch.randint(0, 50, (2, 12))
    cache = model.make_cache(2)
    model(idx[:, :8], cache=cache)
    model(torch.randint(0, 50, (2, 3)), cache=cache)  # tokens that get rejected
    cache.crop(8)
    assert_same_logits(model, model(idx[:, 8:], cache=cache), model(idx)[:, 8:], steps=12)
    cache = model.make_cache(2)
    model(idx[:, :8], cache=cache)
    cache.reorder(torch.tensor([1, 1, 0]))  # beams: sequence 1 twice, then 0
    out = model(idx[[1, 1, 0], 8:9], cache=cache)
    assert_same_logits(model, out, model(idx[[1, 1, 0], :9])[:, 8:], steps=9)


def test_cache_stores_only_kv_heads():
    mha, gqa, mqa = (model_for(v).make_cache(1) for v in ("mha-rope", "gqa-rope", "mqa-rope"))
    assert mha.k.numel() == 2 * gqa.k.numel() == 4 * mqa.k.numel()
    assert KVCache.bytes_per_token(n_layer=2, n_kv_head=4, head_dim=8) == 2 * 2 * 4 * 8 * 4


@torch.no_grad()
def test_overflowing_the_context_is_an_error():
    model = model_for("mha-rope")
    cache = model.make_cache(1)
    model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="exceed block_size"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


@torch.no_grad()
def test_crop_and_reorder_keep_padded_positions():
    """After padding, positions are per sequence: crop and reorder must keep them right."""
    model = model_for("gqa-rope")
    lengths = [7, 3]
    seqs = [torch.randint(1, 50, (n + 4,)) for n in lengths]
    prompts = torch.zeros(2, 7, dtype=torch.long)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    for b, (s, n) in enumerate(zip(seqs, lengths)):
        prompts[b, 7 - n :] = s[:n]
        pad[b, 7 - n :] = True
    cache = model.make_cache(2)
    model(prompts, cache=cache, pad_mask=pad)
    model(torch.randint(0, 50, (2, 3)), cache=cache)  # rejected draft tokens
    cache.crop(7)
    cache.reorder(torch.tensor([1, 0, 1]))
    nxt = torch.stack([seqs[b][lengths[b] : lengths[b] + 4] for b in (1, 0, 1)])  # (3, 4)
    got = model(nxt, cache=cache)
    for row, b in enumerate((1, 0, 1)):
        alone = model(seqs[b][None])[0]
        assert_same_logits(model, got[row], alone[lengths[b] :], steps=lengths[b] + 4)


@torch.no_grad()
def test_a_pad_mask_without_padding_keeps_the_cheap_path():
    model = model_for("mha-learned")
    idx = torch.randint(0, 50, (2, 10))
    cache = model.make_cache(2)
    out = [model(idx[:, :6], cache=cache, pad_mask=torch.ones(2, 6, dtype=torch.bool))]
    out += [model(idx[:, t : t + 1], cache=cache) for t in range(6, 10)]
    assert not cache.padded  # every slot real: positions are slot numbers, no mask bookkeeping
    assert_same_logits(model, torch.cat(out, 1), model(idx), steps=10)


def test_make_cache_is_capped_at_the_context():
    model = model_for("mha-rope")  # block_size 24
    assert model.make_cache(1, 10).max_len == 10
    assert model.make_cache(1, 100).max_len == model.make_cache(1).max_len == 24

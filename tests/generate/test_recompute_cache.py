"""RecomputeCache: decoding by re-running a model's full causal forward is exact, up to the
summation order of other shapes (tests/numerics.py, kind 2, bounded by
cache_checks.assert_same_logits). Checked on the convolution-attention model (which decodes only
this way) against full forwards, and on a decoder wrapped to decode this way against the same
decoder's own KV cache."""

import pytest
import torch
from torch import nn

from axon.generate import beam_search, generate, speculative_generate
from axon.generate.recompute import RecomputeCache
from axon.models.conv_attention import ConvAttention, ConvAttentionConfig
from axon.models.decoder import Decoder, DecoderConfig

from cache_checks import assert_same_logits, logprob_tol

V = 31



def conv(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=V, block_size=24, n_embd=16, n_head=2, shorten=3, inner_embd=24, inner_head=2,
                n_inner_layer=1, init_std=0.2)
    return ConvAttention(ConvAttentionConfig(**{**base, **kw})).eval()


class RecomputedDecoder(nn.Module):
    """A decoder that decodes through a RecomputeCache instead of its KV cache."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.inner, self.config = decoder, decoder.config

    def make_cache(self, batch_size, max_len=None):
        return RecomputeCache(batch_size, min(max_len or self.config.block_size, self.config.block_size))

    def forward(self, idx, cache=None, pad_mask=None, last_only=False):
        if cache is not None:
            return cache.forward(self, idx, pad_mask, last_only)
        return self.inner(idx, last_only=last_only)


def decoder(seed=0):
    torch.manual_seed(seed)
    return Decoder(DecoderConfig(vocab_size=V, block_size=24, n_layer=2, n_head=2, n_embd=16, init_std=0.2)).eval()


@pytest.mark.numerics
@torch.no_grad()
def test_prefill_then_steps_equal_the_full_forward():
    model = conv()
    idx = torch.randint(0, V, (3, 20))
    full = model(idx)
    cache = model.make_cache(3)
    out = [model(idx[:, :7], cache=cache)] + [model(idx[:, t : t + 1], cache=cache) for t in range(7, 20)]
    assert_same_logits(model, torch.cat(out, 1), full, steps=20)
    assert cache.length == 20
    cache = model.make_cache(3)
    chunks = [model(idx[:, a:b], cache=cache) for a, b in [(0, 5), (5, 9), (9, 20)]]
    assert_same_logits(model, torch.cat(chunks, 1), full, steps=20)
    cache = model.make_cache(3)
    assert_same_logits(model, model(idx[:, :11], cache=cache, last_only=True), full[:, 10:11], steps=11)


@pytest.mark.numerics
@torch.no_grad()
def test_left_padded_batch_gives_each_sequence_its_own_logits():
    model = conv()
    seqs = [torch.randint(0, V, (n,)) for n in (9, 4, 6)]
    idx = torch.zeros(3, 9, dtype=torch.long)
    pad = torch.zeros(3, 9, dtype=torch.bool)
    for b, s in enumerate(seqs):
        idx[b, 9 - len(s):], pad[b, 9 - len(s):] = s, True
    cache = model.make_cache(3)
    prefill = model(idx, cache=cache, pad_mask=pad)
    nxt = torch.randint(0, V, (3, 1))
    step = model(nxt, cache=cache)[:, 0]
    for b, s in enumerate(seqs):
        alone = model(torch.cat([s, nxt[b]])[None])[0]
        assert_same_logits(model, prefill[b, 9 - len(s):], alone[: len(s)], steps=10)
        assert_same_logits(model, step[b], alone[-1], steps=10)
        assert (prefill[b, : 9 - len(s)] == 0).all()  # padding slots: zeros


def test_generate_left_padded_batch_equals_separate_calls_and_full_forwards():
    model = conv()
    prompts = [[3, 4, 5, 6, 7, 8, 9], [5, 1], [2, 2, 30, 4]]
    out = generate(model, prompts, 10, temperature=0)
    with torch.no_grad():
        for p, toks in zip(prompts, out.tokens):
            assert toks == generate(model, [p], 10, temperature=0).tokens[0]
            seq = list(p)
            for _ in range(10):
                seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
            assert toks == seq[len(p):]
    sampled = [generate(model, prompts, 10, temperature=1.0, generator=torch.Generator().manual_seed(3)).tokens
               for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_generate_stops_at_the_context_and_too_many_tokens_are_an_error():
    model = conv()
    out = generate(model, [[1, 2, 3]], 40, temperature=0)
    assert out.finish_reasons == ["context"] and len(out.tokens[0]) == 24 - 3 + 1
    cache = model.make_cache(1)
    model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="cache holds 24 positions"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="cannot crop"):
        cache.crop(21)


@pytest.mark.numerics
def test_the_recompute_path_of_a_decoder_equals_its_kv_cache():
    """An independent reference: the decoder's KV cache (with its own padding masks) decodes the
    same tokens, greedy, sampled and by beam search."""
    dec = decoder()
    rec = RecomputedDecoder(dec).eval()
    prompts = [[3, 4, 5, 6, 7, 8, 9], [5, 1], [2, 2, 30, 4]]
    assert generate(rec, prompts, 12, temperature=0).tokens == generate(dec, prompts, 12, temperature=0).tokens
    kw = dict(temperature=0.8, top_k=10)
    a = generate(rec, prompts, 12, generator=torch.Generator().manual_seed(1), **kw).tokens
    b = generate(dec, prompts, 12, generator=torch.Generator().manual_seed(1), **kw).tokens
    assert a == b
    for h_rec, h_dec in zip(beam_search(rec, [1, 2, 3], 8, num_beams=4, num_return=4),
                            beam_search(dec, [1, 2, 3], 8, num_beams=4, num_return=4)):
        with torch.no_grad():
            scale = dec(torch.tensor([[1, 2, 3] + h_dec.tokens])).abs().max().item()
        tol = logprob_tol(dec, len(h_dec.tokens), 3 + len(h_dec.tokens), scale)
        assert h_rec.tokens == h_dec.tokens and h_rec.logprob == pytest.approx(h_dec.logprob, abs=tol)


@pytest.mark.numerics
def test_beam_search_width_one_is_greedy_and_scores_are_full_forward_log_probs():
    model = conv()
    prompt = [2, 9, 4, 4, 17]
    greedy = generate(model, [prompt], 12, temperature=0).tokens[0]
    (best,) = beam_search(model, prompt, 12, num_beams=1)
    assert best.tokens == greedy
    hyps = beam_search(model, prompt, 6, num_beams=3, num_return=3, length_penalty=0.0)
    assert len({tuple(h.tokens) for h in hyps}) == 3
    with torch.no_grad():
        for h in hyps:  # reorder() kept each beam's own tokens
            seq = torch.tensor([prompt + h.tokens])
            logits = model(seq)[0, len(prompt) - 1 : -1]
            logp = torch.log_softmax(logits, -1)
            tol = logprob_tol(model, len(h.tokens), seq.size(1), logits.abs().max().item())
            assert h.logprob == pytest.approx(logp.gather(1, torch.tensor(h.tokens)[:, None]).sum().item(), abs=tol)


def test_speculative_decoding_crops_and_reproduces_the_target():
    target = conv(seed=0)
    draft = conv(seed=1, n_inner_layer=1, inner_embd=12, inner_head=2)
    prompt = [5, 6, 7]
    res = speculative_generate(target, draft, prompt, 15, num_draft=3, temperature=0)
    assert res.tokens == generate(target, [prompt], 15, temperature=0).tokens[0]
    same = speculative_generate(target, target, prompt, 15, num_draft=3, temperature=0)
    assert same.tokens == res.tokens and same.acceptance_rate == 1.0


def test_reorder_and_crop():
    cache = RecomputeCache(2, 10)
    model = lambda ids: torch.nn.functional.one_hot(ids, V).float()  # "logits" = the token itself
    cache.forward(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), pad_mask=torch.tensor([[0, 1, 1], [1, 1, 1]]))
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.batch_size == 3 and cache.tokens.tolist() == [[4, 5, 6], [4, 5, 6], [1, 2, 3]]
    cache.crop(2)
    out = cache.forward(model, torch.tensor([[7], [8], [9]]))
    assert cache.length == 3 and out.argmax(-1).tolist() == [[7], [8], [9]]
    assert cache.valid.tolist() == [[True, True, True], [True, True, True], [False, True, True]]

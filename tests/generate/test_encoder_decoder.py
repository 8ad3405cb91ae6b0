"""Decoding an encoder-decoder through axon.generate: the conditioned decoder and its cache
(decoder self-attention K/V + cross-attention K/V computed once).

Cached steps against a full forward are the same mathematics in another summation order
(tests/numerics.py, kind 2): ``cache_checks.reductions`` gives the bound's n and depth."""

import pytest
import torch
from cache_checks import reductions
from numerics import assert_close_orders, order_tol

from axon.errors import ConfigError
from axon.generate import beam_search, generate
from axon.generate.encoder_decoder import EncoderDecoderCache
from axon.models.seq2seq import Transformer, TransformerConfig

V, BOS, EOS = 40, 38, 39


def model(norm_first=False, seed=0) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=V, block_size=12, n_layer=2, n_head=2, n_embd=32, mlp_hidden=64,
                            dropout=0.1, norm_first=norm_first)
    m = Transformer(cfg).eval()
    for p in m.parameters():  # a peaked, varied distribution: greedy and beam paths differ
        torch.nn.init.normal_(p, 0.0, 0.4)
    return m


def sources():
    src = torch.randint(0, 30, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    return src, mask


@pytest.mark.numerics
@pytest.mark.parametrize("norm_first", [False, True])
@torch.no_grad()  # caches are for inference (generate and beam_search run under inference_mode)
def test_cached_steps_equal_the_full_decoder(norm_first):
    """Token by token through the cache, every step's logits equal a full teacher-forced forward."""
    m = model(norm_first)
    src, mask = sources()
    dec = m.conditioned(src, mask)
    cache = dec.make_cache(3, 12)
    assert isinstance(cache, EncoderDecoderCache) and len(cache.cross) == 2
    tgt = torch.cat([torch.full((3, 1), BOS), torch.randint(0, 30, (3, 11))], dim=1)  # (3, 12)
    full = m(src, tgt, mask)  # (3, 12, V)
    # A 3-token prefill, then one token at a time. Both encode src with the same batch: only the
    # decoder's sums are ordered differently.
    n, depth = reductions(m, m.config.block_size)
    step = dec(tgt[:, :3], cache=cache)
    assert_close_orders(step, full[:, :3], n=n, depth=depth)
    for t in range(3, 12):
        step = dec(tgt[:, t : t + 1], cache=cache)
        assert_close_orders(step[:, 0], full[:, t], n=n, depth=depth)
    assert cache.length == 12
    with pytest.raises(ValueError, match="exceed block_size"):
        dec(tgt[:, :1], cache=cache)


@torch.no_grad()
def test_greedy_generate_equals_argmax_of_the_full_forward():
    m = model()
    src, mask = sources()
    gen = generate(m.conditioned(src, mask), [[BOS]] * 3, 8, temperature=0.0)
    for b in range(3):
        seq = [BOS]
        for _ in range(8):
            logits = m(src[b : b + 1, : int(mask[b].sum())], torch.tensor([seq]))
            seq.append(int(logits[0, -1].argmax()))
        assert gen.tokens[b] == seq[1:]


@pytest.mark.numerics
def test_beam_width_one_is_greedy_and_beam_scores_are_the_models_log_probs():
    m = model(seed=2)
    src, mask = sources()
    for b in range(3):
        one = m.conditioned(src[b : b + 1], mask[b : b + 1])
        greedy = generate(one, [[BOS]], 10, temperature=0.0, stop_tokens=[EOS]).tokens[0]
        assert beam_search(one, [BOS], 10, num_beams=1, eos_token_id=EOS)[0].tokens == greedy
        # Every hypothesis of a 4-beam search (whose cache was reordered at each step) has the
        # log-probability that a full forward of the model gives its tokens.
        for h in beam_search(one, [BOS], 10, num_beams=4, eos_token_id=EOS, num_return=4):
            with torch.no_grad():
                logits = m(src[b : b + 1], torch.tensor([[BOS] + h.tokens[:-1]]), mask[b : b + 1])
            logp = logits.log_softmax(-1)
            # a sum of len(h.tokens) log-probs, each a logit through a log-softmax over V: their errors add
            n, depth = reductions(m, m.config.block_size)
            tol = order_tol(torch.float32, n=max(n, V), depth=len(h.tokens) * (depth + 1),
                            scale=max(1.0, logits.abs().max().item()))
            assert logp[0, torch.arange(len(h.tokens)), h.tokens].sum().item() == pytest.approx(h.logprob, abs=tol)


@pytest.mark.numerics
@torch.no_grad()
def test_reorder_moves_decoder_and_cross_attention_caches_together():
    m = model()
    src, mask = sources()
    dec = m.conditioned(src, mask)
    cache = dec.make_cache(3, 12)
    prefix = torch.tensor([[BOS, 5, 6]] * 3)
    dec(prefix, cache=cache)
    order = torch.tensor([2, 0, 0, 1])  # reorder, drop nothing, duplicate one: 4 rows from 3
    cache.reorder(order)
    out = dec(torch.tensor([[7]] * 4), cache=cache)[:, 0]
    expected = m(src[order], torch.tensor([[BOS, 5, 6, 7]] * 4), mask[order])[:, -1]
    n, depth = reductions(m, m.config.block_size, encoder=True)  # the expected side encodes a batch of 4, the cache one of 3
    assert_close_orders(out, expected, n=n, depth=depth)
    assert cache.memory_mask.shape == (4, 1, 1, 9)


def test_one_source_serves_many_rows_and_the_mode_is_kept():
    m = model()
    src, mask = sources()
    one = m.conditioned(src[1:2], mask[1:2])
    gen = generate(one, [[BOS]] * 4, 5, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert len(gen.tokens) == 4
    assert not m.training  # generate restored the conditioned decoder's mode, which is the model's
    m.train()
    generate(m.conditioned(src, mask), [[BOS]] * 3, 3, temperature=0.0)
    assert m.training
    with pytest.raises(ValueError, match="cannot serve a batch"):
        m.conditioned(src, mask).make_cache(2, 12)


def test_the_model_itself_has_no_prompt_cache():
    with pytest.raises(ConfigError, match="axon translate"):
        generate(model(), [[BOS]], 3)

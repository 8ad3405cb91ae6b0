"""The recurrent state cache: decoding with it computes what a full forward computes (up to
summation order: tests/numerics.py, kind 2, bounded by cache_checks.assert_same_logits), and
generate / beam_search / speculative decoding run on recurrent models through it."""

import pytest
import torch

from axon.generate import beam_search, generate, speculative_generate
from axon.generate.cache import context_limit
from axon.generate.state import RecurrentStateCache
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.rnn import RNNLM, RNNConfig

from cache_checks import assert_same_logits, check_left_padded_batch, logprob_tol

CELLS = ["rnn", "lstm", "gru"]
VOCAB = 40



def rnn(cell="lstm", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, block_size=8, cell=cell, n_layer=2, n_embd=16, n_hidden=24)
    model = RNNLM(RNNConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():  # larger head weights: peaked, varied next-token distributions
        model.lm_head.weight.mul_(20)
    return model


@pytest.mark.numerics
@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_prefill_then_steps_equal_the_full_forward(cell):
    model = rnn(cell)
    idx = torch.randint(0, VOCAB, (3, 20))  # longer than block_size 8: no context limit
    full = model(idx)
    cache = model.make_cache(3)
    out = [model(idx[:, :7], cache=cache)]
    out += [model(idx[:, t : t + 1], cache=cache) for t in range(7, 20)]
    assert_same_logits(model, torch.cat(out, 1), full, steps=20)
    assert cache.length == 20
    cache = model.make_cache(3)
    chunks = [model(idx[:, a:b], cache=cache) for a, b in [(0, 5), (5, 9), (9, 10), (10, 20)]]
    assert_same_logits(model, torch.cat(chunks, 1), full, steps=20)
    cache = model.make_cache(3)
    assert_same_logits(model, model(idx[:, :12], cache=cache, last_only=True), full[:, 11:12], steps=12)


@pytest.mark.numerics
@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_left_padded_batch_matches_each_sequence_alone(cell):
    model = rnn(cell)
    check_left_padded_batch(model, VOCAB)


@pytest.mark.numerics
@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_crop_replays_from_a_snapshot(cell):
    model = rnn(cell)
    idx = torch.randint(0, VOCAB, (2, 16))
    full = model(idx)
    cache = model.make_cache(2)
    model(idx[:, :6], cache=cache)
    model(idx[:, 6:9], cache=cache)
    model(torch.randint(0, VOCAB, (2, 4)), cache=cache)  # rejected draft tokens
    cache.crop(8)  # inside the second call: its start state is restored and token 6, 7 are pending
    assert cache.length == 8
    assert_same_logits(model, model(idx[:, 8:11], cache=cache), full[:, 8:11], steps=11)  # pending tokens are read first
    cache.crop(10)
    assert_same_logits(model, model(idx[:, 10:], cache=cache), full[:, 10:], steps=16)
    cache.crop(3)  # back into the prefill chunk
    assert_same_logits(model, model(idx[:, 3:5], cache=cache), full[:, 3:5], steps=5)


@pytest.mark.numerics
@torch.no_grad()
def test_reorder_duplicates_and_drops_sequences_also_with_pending_tokens():
    model = rnn("gru")
    idx = torch.randint(0, VOCAB, (2, 12))
    full = model(idx[[1, 1, 0]])
    cache = model.make_cache(2)
    model(idx[:, :8], cache=cache)
    cache.reorder(torch.tensor([1, 1, 0]))  # beams: sequence 1 twice, then 0
    assert cache.batch_size == 3
    assert_same_logits(model, model(idx[[1, 1, 0], 8:10], cache=cache), full[:, 8:10], steps=10)
    cache.crop(9)  # token 8 pending
    cache.reorder(torch.tensor([2, 0]))
    assert_same_logits(model, model(idx[[0, 1], 9:12], cache=cache), full[[2, 0], 9:12], steps=12)


@pytest.mark.numerics
@torch.no_grad()
def test_crop_keeps_pad_masks_of_replayed_tokens():
    model = rnn("lstm")
    seqs = [torch.randint(1, VOCAB, (n + 4,)) for n in (6, 2)]
    prompts = torch.zeros(2, 6, dtype=torch.long)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    for b, (s, n) in enumerate(zip(seqs, (6, 2))):
        prompts[b, 6 - n :] = s[:n]
        pad[b, 6 - n :] = True
    cache = model.make_cache(2)
    model(prompts, cache=cache, pad_mask=pad)
    model(torch.randint(0, VOCAB, (2, 3)), cache=cache)
    cache.crop(5)  # inside the padded prefill: the replayed slots keep their pad mask
    got = model(torch.stack([prompts[:, 5], *(torch.stack([seqs[0][6 + t], seqs[1][2 + t]]) for t in range(4))], 1),
                cache=cache)
    for b, n in enumerate((6, 2)):
        alone = model(seqs[b][None])[0]
        assert_same_logits(model, got[b], alone[n - 1 :], steps=10)  # the batch runs 6 prompt + 4 steps


def test_crop_further_back_than_the_kept_snapshots_is_a_clear_error():
    model = rnn("rnn")
    cache = RecurrentStateCache(model.make_cache(1).state, max_crop=4)
    with torch.no_grad():
        for t in range(10):
            model(torch.tensor([[t % VOCAB]]), cache=cache)
    cache.crop(6)  # 4 back: fine
    with pytest.raises(ValueError, match="can go back at most 4 tokens"):
        cache.crop(1)
    with pytest.raises(ValueError, match="cannot crop a cache of length 6 to 7"):
        cache.crop(7)


def test_kept_history_stays_bounded():
    model = rnn("lstm")
    cache = model.make_cache(2)
    with torch.no_grad():
        model(torch.randint(0, VOCAB, (2, 100)), cache=cache)
        for _ in range(200):
            model(torch.randint(0, VOCAB, (2, 1)), cache=cache)
    assert len(cache._snapshots) <= cache.max_crop + 1 and cache._tokens.size(1) <= cache.max_crop + 1


def test_context_limit():
    assert context_limit(rnn()) is None  # block_size 8 is only the training window
    decoder = Decoder(DecoderConfig(vocab_size=VOCAB, block_size=24, n_layer=1, n_head=2, n_embd=16))
    assert context_limit(decoder) == 24


@pytest.mark.parametrize("cell", CELLS)
def test_generate_greedy_equals_argmax_of_full_forwards_past_block_size(cell):
    model = rnn(cell)
    prompts = [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [5, 1]]  # the first is longer than block_size 8
    out = generate(model, prompts, 15, temperature=0)
    assert out.finish_reasons == ["length", "length"]
    with torch.no_grad():
        for p, toks in zip(prompts, out.tokens):
            seq = list(p)
            for _ in range(15):
                seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
            assert toks == seq[len(p):]


@pytest.mark.parametrize("cell", CELLS)
def test_beam_width_one_equals_greedy(cell):
    model = rnn(cell)
    prompt = [2, 9, 4, 4, 17, 1, 3, 30, 8, 8, 12]  # longer than block_size
    greedy = generate(model, [prompt], 20, temperature=0).tokens[0]
    (best,) = beam_search(model, prompt, 20, num_beams=1)
    assert best.tokens == greedy


@pytest.mark.numerics
def test_beam_search_scores_are_sequence_log_probabilities():
    model = rnn("lstm")
    prompt = [1, 2, 3]
    hyps = beam_search(model, prompt, 6, num_beams=3, num_return=3, length_penalty=0.0)
    with torch.no_grad():
        for h in hyps:
            seq = torch.tensor([prompt + h.tokens])
            logits = model(seq)[0, len(prompt) - 1 : -1]
            logp = torch.log_softmax(logits, -1)
            tol = logprob_tol(model, len(h.tokens), seq.size(1), logits.abs().max().item())
            assert h.logprob == pytest.approx(logp.gather(1, torch.tensor(h.tokens)[:, None]).sum().item(), abs=tol)


@pytest.mark.parametrize("draft_kind", ["rnn", "decoder"])
def test_speculative_greedy_reproduces_the_recurrent_target(draft_kind):
    target = rnn("lstm", seed=0)
    if draft_kind == "rnn":
        draft = rnn("gru", seed=1, n_layer=1, n_hidden=16)
    else:
        torch.manual_seed(1)
        draft = Decoder(DecoderConfig(vocab_size=VOCAB, block_size=64, n_layer=1, n_head=2, n_embd=16, init_std=0.3)).eval()
    prompt = [5, 6, 7]
    res = speculative_generate(target, draft, prompt, 30, num_draft=4, temperature=0)
    assert res.tokens == generate(target, [prompt], 30, temperature=0).tokens[0]
    assert res.target_calls < 30 or res.accepted == 0
    same = speculative_generate(target, target, prompt, 30, num_draft=4, temperature=0)
    assert same.tokens == res.tokens and same.acceptance_rate == 1.0  # crops that keep everything


def test_speculative_sampling_is_seeded_and_runs_on_recurrent_models():
    target, draft = rnn("lstm", seed=0), rnn("rnn", seed=2)
    a = speculative_generate(target, draft, [1, 2], 25, num_draft=3, temperature=1.0,
                             generator=torch.Generator().manual_seed(0))
    b = speculative_generate(target, draft, [1, 2], 25, num_draft=3, temperature=1.0,
                             generator=torch.Generator().manual_seed(0))
    assert a.tokens == b.tokens and len(a.tokens) == 25 and 0 < a.proposed

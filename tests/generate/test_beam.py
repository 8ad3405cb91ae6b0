"""Beam search: width 1 is greedy, enough width is exhaustive search, and the stopping rules.

A search's log-probabilities (cached, batched beams) against full forwards are the same
mathematics in another summation order (tests/numerics.py, kind 2): cache_checks.logprob_tol
bounds their difference. The bigram model's are float32 log-softmaxes of a table, checked against
float64 sums of its logarithms: the float32 side's rounding, bounded the same way (bigram_tol)."""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from numerics import order_tol
from torch import nn

from axon.generate.beam import BeamHypothesis, beam_search
from axon.models.decoder import Decoder, DecoderConfig

from cache_checks import logprob_tol

VARIANTS = {
    "rope": {"pos": "rope"},
    "learned": {"pos": "learned", "mlp": "gelu", "norm": "layernorm", "bias": True},
    "gqa": {"pos": "rope", "n_kv_head": 2},
}


def tiny(vocab_size=50, block_size=16, variant="rope", **kw):
    # init_std 0.5 makes the next-token distributions peaked: no near-ties between candidates.
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=4, n_embd=32,
                        init_std=0.5, **{**VARIANTS[variant], **kw})
    return Decoder(cfg).eval()


@torch.no_grad()
def logprobs_full(model, prompt, outputs):
    """Sum of log p(tokens | prompt) of each of ``outputs`` (all one length), from one full
    forward of the batch, no cache."""
    seqs = torch.tensor([list(prompt) + list(tokens) for tokens in outputs])  # (N, P + n)
    logits = model(seqs[:, :-1])[:, len(prompt) - 1 :]  # (N, n, V): the predictions of the outputs
    logp = torch.log_softmax(logits.float(), -1)
    return logp.gather(-1, seqs[:, len(prompt) :, None]).squeeze(-1).sum(-1).tolist()


def logprob_full(model, prompt, tokens):
    return logprobs_full(model, prompt, [tokens])[0]


@torch.no_grad()
def logprob_bound(model, prompt, tokens):
    """How far a search's log-probability of ``tokens`` may be from logprob_full's (kind 2)."""
    seq = list(prompt) + list(tokens)[:-1]  # the positions whose logits predict ``tokens``
    return logprob_tol(model, len(tokens), len(seq), model(torch.tensor([seq])).abs().max().item())


def exhaustive(model, prompt, n_new, V, eos=None, length_penalty=1.0):
    """Every possible output with its score, best first: sequences that stop at ``eos`` before
    ``n_new`` tokens, and every sequence of ``n_new`` tokens (eos only as its last token)."""
    other = [v for v in range(V) if v != eos]
    by_length = {n_new: [list(s) + [v] for s in itertools.product(other, repeat=n_new - 1) for v in range(V)]}
    if eos is not None:
        for n in range(1, n_new):
            by_length[n] = [list(s) + [eos] for s in itertools.product(other, repeat=n - 1)]
    scored = []
    for n, outputs in by_length.items():
        scored += [(lp / n ** length_penalty, s) for lp, s in zip(logprobs_full(model, prompt, outputs), outputs)]
    return sorted(scored, key=lambda x: -x[0])


@pytest.mark.numerics
@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_width_one_is_greedy(variant):
    model = tiny(variant=variant)
    prompt = [3, 14, 15, 9, 2]
    greedy, total = [], 0.0
    for _ in range(8):  # full forwards, no cache
        logp = torch.log_softmax(model(torch.tensor([prompt + greedy]))[0, -1], -1)
        greedy.append(int(logp.argmax()))
        total += logp.max().item()
    [hyp] = beam_search(model, prompt, 8, num_beams=1)
    assert hyp.tokens == greedy
    tol = logprob_bound(model, prompt, greedy)
    assert hyp.logprob == pytest.approx(total, abs=tol)
    assert hyp.score == pytest.approx(total / 8, abs=tol / 8)
    # A stop token ends greedy decoding there, the stop token kept.
    eos = greedy[3]
    stop = greedy.index(eos) + 1
    [hyp] = beam_search(model, torch.tensor(prompt), 8, num_beams=1, eos_token_id=eos)
    assert hyp.tokens == greedy[:stop]


@pytest.mark.numerics
@pytest.mark.parametrize("variant", ["rope", "learned"])
def test_enough_width_is_exhaustive_search(variant):
    model = tiny(vocab_size=4, variant=variant)
    prompt, n_new, V = [1, 2, 0], 4, 4
    best = exhaustive(model, prompt, n_new, V, length_penalty=0.0)  # 256 sequences
    for beams in (V ** (n_new - 1), 2 * V ** (n_new - 1)):  # every prefix stays live
        hyps = beam_search(model, prompt, n_new, num_beams=beams, length_penalty=0.0, num_return=5)
        assert [h.tokens for h in hyps] == [s for _, s in best[:5]]
        for h, (score, _) in zip(hyps, best):
            tol = logprob_bound(model, prompt, h.tokens)
            assert h.score == pytest.approx(score, abs=tol)
            assert h.logprob == pytest.approx(score, abs=tol)  # length_penalty 0: score is the sum


@pytest.mark.numerics
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0, -0.5])
def test_exhaustive_with_eos_and_length_penalty(length_penalty):
    model = tiny(vocab_size=4, variant="rope")
    prompt, n_new, V, eos = [1, 2], 3, 4, 3
    best = exhaustive(model, prompt, n_new, V, eos=eos, length_penalty=length_penalty)  # 40 outputs
    hyps = beam_search(model, prompt, n_new, num_beams=64, length_penalty=length_penalty, eos_token_id=eos,
                       num_return=8)
    assert [h.tokens for h in hyps] == [s for _, s in best[:8]]
    for h in hyps:  # the documented formula on full-forward log-probs
        lp, tol = logprob_full(model, prompt, h.tokens), logprob_bound(model, prompt, h.tokens)
        assert h.logprob == pytest.approx(lp, abs=tol)
        assert h.score == pytest.approx(lp / len(h.tokens) ** length_penalty, abs=tol / len(h.tokens) ** length_penalty)
        assert eos not in h.tokens[:-1] and (h.tokens[-1] == eos or len(h.tokens) == n_new)


@pytest.mark.numerics
def test_n_best_is_sorted_distinct_and_scored():
    model = tiny()
    prompt = [5, 6, 7]
    hyps = beam_search(model, prompt, 6, num_beams=6, num_return=6, eos_token_id=[11, 12], length_penalty=1.0)
    assert len(hyps) == 6 and all(isinstance(h, BeamHypothesis) for h in hyps)
    assert len({tuple(h.tokens) for h in hyps}) == 6
    scores = [h.score for h in hyps]
    assert scores == sorted(scores, reverse=True)
    for h in hyps:
        lp, tol = logprob_full(model, prompt, h.tokens), logprob_bound(model, prompt, h.tokens)
        assert h.logprob == pytest.approx(lp, abs=tol)
        assert h.score == pytest.approx(lp / len(h.tokens), abs=tol / len(h.tokens))
    # The best of a wider beam is never worse here than a narrower one's (up to the summation
    # order of the two searches' batches, should both find the same hypothesis).
    [narrow] = beam_search(model, prompt, 6, num_beams=1, eos_token_id=[11, 12])
    assert hyps[0].score >= narrow.score - logprob_bound(model, prompt, narrow.tokens) / len(narrow.tokens)


@pytest.mark.numerics
@pytest.mark.parametrize("prompt_len", [6, 8])
def test_stops_at_the_context_window(prompt_len):
    model = tiny(block_size=8)
    prompt = list(range(1, prompt_len + 1))
    hyps = beam_search(model, prompt, 10, num_beams=3, num_return=3)
    for h in hyps:  # the last token is predicted from a full context of block_size tokens
        assert len(h.tokens) == 8 - prompt_len + 1
        assert h.logprob == pytest.approx(logprob_full(model, prompt, h.tokens), abs=logprob_bound(model, prompt, h.tokens))


def test_errors():
    model = tiny(block_size=8)
    with pytest.raises(ValueError, match="longer than the model's context"):
        beam_search(model, list(range(9)), 2)
    with pytest.raises(ValueError, match="at least one token"):
        beam_search(model, [], 2)
    with pytest.raises(ValueError, match="num_return"):
        beam_search(model, [1], 2, num_beams=2, num_return=3)


def test_train_mode_restored_and_dropout_off_during_search():
    model = tiny(dropout=0.3)
    expected = beam_search(model, [1, 2], 5, num_beams=3, num_return=3)
    model.train()
    assert beam_search(model, [1, 2], 5, num_beams=3, num_return=3) == expected
    assert model.training


# --- stopping rules on a bigram model with hand-computed traces --------------------------------


class RowCache:
    """The cache interface with nothing cached: checks the rows the search asks for."""

    def __init__(self, rows):
        self.rows, self.length = rows, 0

    def reorder(self, index):
        assert index.max() < self.rows
        self.rows = index.numel()


class Bigram(nn.Module):
    """log p(next | last) = log P[last, next]; records the batch shape of every forward."""

    def __init__(self, P, block_size=64):
        super().__init__()
        self.logp = nn.Parameter(torch.tensor(P).log())
        self.config = SimpleNamespace(block_size=block_size)
        self.calls = []

    def make_cache(self, batch_size, max_len=None):
        return RowCache(batch_size)

    def forward(self, idx, cache=None):
        assert cache is not None and idx.size(0) == cache.rows
        self.calls.append(tuple(idx.shape))
        cache.length += idx.size(1)
        return self.logp[idx]  # (B, T, V)


EOS, A, B, C = 0, 1, 2, 3
P = [
    [0.25, 0.25, 0.25, 0.25],  # after eos (never used)
    [0.4, 0.05, 0.3, 0.25],  # after a
    [0.09, 0.005, 0.9, 0.005],  # after b: b is almost sure to repeat
    [0.6, 0.2, 0.1, 0.1],  # after c
]


def lp(*pairs):
    return sum(math.log(P[a][b]) for a, b in pairs)


def bigram_tol(terms: int, expected: float) -> float:
    """A sum of ``terms`` float32 log-probs of the bigram model against ``expected``, lp's float64
    value: each a log-softmax over the 4 ids (a reduction of 4), the terms' errors adding; the scale
    as assert_close_orders takes it, max(1, |expected|)."""
    return order_tol(torch.float32, n=4, depth=terms, scale=max(1.0, abs(expected)))


@pytest.mark.numerics
def test_vocab_limit_excludes_padded_ids():
    padded = [row + [1.0, 2.0] for row in P + [[0.25] * 4] * 2]  # ids 4 and 5 pad the vocabulary and would win
    padded = [[p / sum(row) for p in row] for row in padded]
    model = Bigram(padded)
    assert max(beam_search(model, [A], 3, num_beams=2)[0].tokens) >= 4
    hyps = beam_search(model, [A], 3, num_beams=2, num_return=2, vocab_limit=4)
    assert hyps[0].tokens == [B, B, B]  # log-probs renormalised over ids < 4: P's own numbers
    expected = lp((A, B), (B, B), (B, B))
    assert hyps[0].logprob == pytest.approx(expected, abs=bigram_tol(3, expected))
    assert all(max(h.tokens) < 4 for h in hyps)


@pytest.mark.numerics
def test_early_stopping_stops_at_num_beams_finished():
    # Step 1 from a: eos (rank 0) finishes; b, c live. Step 2: b b, c eos (rank 1) finishes: two
    # hypotheses finished = num_beams, so the search stops after one decode forward.
    model = Bigram(P)
    hyps = beam_search(model, [A], 6, num_beams=2, num_return=2, eos_token_id=EOS, early_stopping=True)
    assert [h.tokens for h in hyps] == [[EOS], [C, EOS]]
    assert hyps[0].score == pytest.approx(lp((A, EOS)), abs=bigram_tol(1, lp((A, EOS))))
    assert hyps[1].score == pytest.approx(lp((A, C), (C, EOS)) / 2, abs=bigram_tol(2, lp((A, C), (C, EOS))) / 2)
    assert model.calls == [(1, 1), (2, 1)]  # prefill, then one batched forward of both beams


@pytest.mark.numerics
@pytest.mark.parametrize("mode", [False, "never"])
def test_no_early_stopping_finds_the_long_better_hypothesis(mode):
    # Mean log-prob (length_penalty 1) rewards running b b b ...: cut at max_new_tokens it beats
    # every finished hypothesis, which early stopping never sees.
    model = Bigram(P)
    hyps = beam_search(model, [A], 6, num_beams=2, num_return=2, eos_token_id=EOS, early_stopping=mode)
    assert hyps[0].tokens == [B] * 6
    expected = lp((A, B)) + 5 * lp((B, B))
    assert hyps[0].logprob == pytest.approx(expected, abs=bigram_tol(6, expected))
    assert hyps[0].score == hyps[0].logprob / 6  # the same division
    assert hyps[1].tokens == [B] * 5 + [EOS]
    assert model.calls == [(1, 1)] + [(2, 1)] * 5  # every step one forward of all live beams


def test_hf_heuristic_stops_where_the_exact_bound_continues():
    # One beam. Step 1: eos (rank 0) finishes with score log 0.4 = -0.92; b lives with sum -1.20.
    # False scores b at its current length (-1.20 / 1) and stops; the exact bound divides by
    # the longest reachable length (-1.20 / 6) and goes on to b b b b b b (mean -0.29).
    heuristic, exact = Bigram(P), Bigram(P)
    assert beam_search(heuristic, [A], 6, num_beams=1, eos_token_id=EOS, early_stopping=False)[0].tokens == [EOS]
    assert heuristic.calls == [(1, 1)]
    assert beam_search(exact, [A], 6, num_beams=1, eos_token_id=EOS, early_stopping="never")[0].tokens == [B] * 6
    assert len(exact.calls) == 6


@pytest.mark.numerics
def test_width_one_ignores_a_stop_token_that_is_not_the_best():
    # After b, eos is the second choice (rank 1 >= num_beams): greedy never takes it, nor does
    # a beam of width 1, though it is a finished hypothesis that would fill the heap of 1.
    model = Bigram(P)
    [hyp] = beam_search(model, [B], 3, num_beams=1, eos_token_id=EOS)
    assert hyp.tokens == [B, B, B]
    assert hyp.score == pytest.approx(lp((B, B)), abs=bigram_tol(3, 3 * lp((B, B))) / 3)  # 3 log-probs, averaged


@pytest.mark.numerics
def test_stop_token_collection_and_eos_rank_rule():
    # eos ids {eos, c}, 3 beams. Step 1: eos (rank 0) and c (rank 2) finish, b and a live.
    # Step 2: b eos (rank 1) and a eos (rank 2) finish; the heap keeps the best num_beams = 3 of
    # the four (a eos, mean -1.96, goes) and, full, stops the search.
    model = Bigram(P)
    hyps = beam_search(model, [A], 6, num_beams=3, num_return=3, eos_token_id={EOS, C})
    assert [h.tokens for h in hyps] == [[EOS], [C], [B, EOS]]
    expected = [lp((A, EOS)), lp((A, C)), lp((A, B), (B, EOS)) / 2]
    for h, e, terms in zip(hyps, expected, (1, 1, 2)):  # one log-prob, or the mean of two
        assert h.score == pytest.approx(e, abs=bigram_tol(terms, terms * e) / terms)
    assert model.calls == [(1, 1), (2, 1)]

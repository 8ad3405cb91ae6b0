import pytest
import torch

from axon.generate import cut_at_stop, filter_logits, generate
from axon.generate.sampling import apply_repetition_penalty
from axon.models.decoder import Decoder, DecoderConfig


def tiny(vocab=11, **kw):
    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=16, **kw)).eval()


def greedy_by_hand(model, prompt, n):
    seq = torch.tensor([prompt])
    for _ in range(n):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    return seq[0, len(prompt):].tolist()


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[False, True, False, True, False]]


@pytest.mark.numerics
def test_top_p_keeps_the_smallest_nucleus():
    # Masses 0.5, 0.8, 0.95, 1 away from every top_p below (softmax of these logs rounds them by
    # ~1e-7, either way depending on the kernel path) ...
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    keep = lambda p: torch.isfinite(filter_logits(logits, top_p=p)).tolist()[0]  # noqa: E731
    assert keep(0.45) == [True, False, False, False]
    assert keep(0.6) == [True, True, False, False]
    assert keep(0.81) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]
    # ... and a mass that reaches top_p exactly, where every path computes it exactly: two equal
    # logits have probabilities 1/2 each, and one of them already reaches 0.5.
    assert torch.isfinite(filter_logits(torch.zeros(1, 2), top_p=0.5)).sum() == 1


@pytest.mark.numerics
def test_min_p_is_relative_to_the_top_token():
    # min_p = 0.3 keeps probabilities >= 0.3 x the top one's. The same 0.12 falls under the bar of a
    # top token of 0.5 (0.15) and clears that of a top token of 0.3 (0.09), where 0.28 and 0.12 stay
    # though below 0.3 itself. Every probability is >= 0.03 from its bar: rounding never decides.
    keep = lambda probs: torch.isfinite(filter_logits(torch.tensor([probs]).log(), min_p=0.3)).tolist()[0]  # noqa: E731
    assert keep([0.5, 0.3, 0.12, 0.08]) == [True, True, False, False]
    assert keep([0.3, 0.3, 0.28, 0.12]) == [True, True, True, True]


def test_repetition_penalty_follows_ctrl():
    logits = torch.tensor([[2.0, -2.0, 2.0]])
    seen = torch.tensor([[True, True, False]])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0]]


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_greedy_matches_full_forwards_and_batches_match_single_prompts(pos):
    model = tiny(pos=pos)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    out = generate(model, prompts, 6, temperature=0)
    for p, toks in zip(prompts, out.tokens):
        assert toks == greedy_by_hand(model, p, 6)
    assert out.finish_reasons == ["length"] * 3


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone():
    model = tiny()
    state = torch.get_rng_state()
    a = generate(model, [[1, 2]], 10, top_k=5, generator=torch.Generator().manual_seed(5)).tokens
    b = generate(model, [[1, 2]], 10, top_k=5, generator=torch.Generator().manual_seed(5)).tokens
    c = generate(model, [[1, 2]], 10, top_k=5, generator=torch.Generator().manual_seed(6)).tokens
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), state)


def test_a_generator_per_sequence_makes_each_text_independent_of_its_batch():
    # float64 logits: batch composition (other prompts, other padding) moves them by ~1e-16, far
    # below what could move a draw, so the claim is equality.
    model = tiny().double()
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 1]]
    gens = lambda rows: [torch.Generator().manual_seed(100 + r) for r in rows]  # noqa: E731
    together = generate(model, prompts, 8, temperature=1.0, generator=gens(range(4))).tokens
    for r, p in enumerate(prompts):
        assert generate(model, [p], 8, temperature=1.0, generator=gens([r])).tokens[0] == together[r]
    assert generate(model, prompts[2:], 8, temperature=1.0, generator=gens([2, 3])).tokens == together[2:]
    shared = generate(model, prompts, 8, temperature=1.0, generator=torch.Generator().manual_seed(100)).tokens
    assert shared != together  # one generator for all: a row's draws depend on the rows before it
    with pytest.raises(ValueError, match="3 generators for 4 sequences"):
        generate(model, prompts, 8, generator=gens(range(3)))


def test_stop_tokens_and_strings():
    model = tiny()
    free = generate(model, [[1]], 8, temperature=0).tokens[0]
    stop_at = free[3]
    first = free.index(stop_at)
    out = generate(model, [[1], [1]], 8, temperature=0, stop_tokens=[stop_at])
    assert out.tokens[0] == free[: first + 1] and out.finish_reasons[0] == "stop_token"
    decode = lambda ids: "".join(chr(97 + i) for i in ids)  # noqa: E731
    target = decode(free[2:4])
    out = generate(model, [[1]], 8, temperature=0, stop_strings=[target], decode=decode)
    assert out.finish_reasons == ["stop_string"] and target in decode(out.tokens[0])
    assert cut_at_stop(decode(out.tokens[0]), [target]) == decode(free)[: decode(free).find(target)]


def test_context_policy():
    model = tiny()
    with pytest.raises(ValueError, match="longer than the model's context of 16"):
        generate(model, [list(range(11)) + [0] * 6], 3)
    out = generate(model, [[1] * 14], 10, temperature=0)
    assert out.finish_reasons == ["context"] and len(out.tokens[0]) == 3  # slots 15, 16 and the last logits


def test_vocab_limit_and_streaming():
    model = tiny(vocab=32)
    with torch.no_grad():
        model.lm_head.weight[20:] = 10.0  # padded ids would be the likeliest
    seen = []
    out = generate(model, [[1]], 12, generator=torch.Generator().manual_seed(0), vocab_limit=20,
                   on_token=lambda b, t: seen.append((b, t)))
    assert max(out.tokens[0]) < 20
    assert seen == [(0, t) for t in out.tokens[0]]

"""axon.nn.crf: the forward algorithm and Viterbi against brute-force enumeration of every tag sequence."""

import itertools

import pytest
import torch

from axon.errors import ConfigError
from axon.nn.crf import CRF

K, T = 3, 4


def _crf(seed=0):
    torch.manual_seed(seed)
    crf = CRF(K).double()
    with torch.no_grad():  # larger than the init so transitions matter
        for p in crf.parameters():
            p.normal_(0, 1.0)
    return crf


def _brute_score(crf, emit, tags):
    """s(x, y) written out for one sequence (emit: (n, K), tags: n ints)."""
    s = crf.start[tags[0]] + crf.end[tags[-1]]
    for t, y in enumerate(tags):
        s = s + emit[t, y]
        if t:
            s = s + crf.transitions[tags[t - 1], y]
    return s


def _brute(crf, emit):
    """log Z and the argmax sequence over all K^n sequences."""
    seqs = list(itertools.product(range(K), repeat=emit.size(0)))
    scores = torch.stack([_brute_score(crf, emit, s) for s in seqs])
    return torch.logsumexp(scores, 0), list(seqs[int(scores.argmax())])


def test_partition_function_matches_enumeration_without_padding():
    crf = _crf()
    emissions = torch.randn(5, T, K, dtype=torch.float64)
    got = crf.log_partition(emissions)
    want = torch.stack([_brute(crf, e)[0] for e in emissions])
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


def test_partition_function_with_padding_sees_only_each_sequences_length():
    crf = _crf(1)
    lengths = [4, 3, 1, 2]
    emissions = torch.randn(len(lengths), T, K, dtype=torch.float64)
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    got = crf.log_partition(emissions, mask)
    want = torch.stack([_brute(crf, e[:n])[0] for e, n in zip(emissions, lengths)])
    assert torch.allclose(got, want, atol=1e-10, rtol=0)
    # the padded positions' emissions have no effect
    emissions2 = emissions.clone()
    emissions2[~mask] = 1e3
    assert torch.allclose(crf.log_partition(emissions2, mask), got, atol=1e-10, rtol=0)


def test_nll_is_minus_log_probability_and_probabilities_sum_to_one():
    crf = _crf(2)
    emissions = torch.randn(1, T, K, dtype=torch.float64).expand(K**T, T, K)
    tags = torch.tensor(list(itertools.product(range(K), repeat=T)))
    nll = crf.nll(emissions, tags)
    assert torch.allclose(torch.exp(-nll).sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-10)
    for i in (0, 17, 80):
        want = _brute(crf, emissions[i])[0] - _brute_score(crf, emissions[i], tags[i].tolist())
        assert abs(float((nll[i] - want).detach())) < 1e-10


def test_padded_nll_matches_the_unpadded_sequence():
    crf = _crf(3)
    emissions = torch.randn(2, T, K, dtype=torch.float64)
    tags = torch.randint(0, K, (2, T))
    mask = torch.tensor([[True] * T, [True, True, False, False]])
    got = crf.nll(emissions, tags, mask)
    alone = crf.nll(emissions[1:, :2], tags[1:, :2])
    assert abs(float((got[1] - alone[0]).detach())) < 1e-10
    assert abs(float((got[0] - crf.nll(emissions[:1], tags[:1])[0]).detach())) < 1e-10


def test_viterbi_matches_exhaustive_search_with_and_without_padding():
    crf = _crf(4)
    lengths = [4, 4, 3, 2, 1, 4, 3]
    emissions = torch.randn(len(lengths), T, K, dtype=torch.float64) * 2
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    got = crf.decode(emissions, mask)
    for path, e, n in zip(got, emissions, lengths):
        assert len(path) == n
        assert path == _brute(crf, e[:n])[1]
    assert crf.decode(emissions[:1]) == [_brute(crf, emissions[0])[1]]


def test_transitions_change_the_decoded_path():
    """Emissions alone prefer tag 1 everywhere; a heavy 1->1 penalty must make Viterbi alternate."""
    crf = CRF(K).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
        crf.transitions[1, 1] = -10.0
    emissions = torch.tensor([[[0.0, 1.0, 0.0]] * T], dtype=torch.float64)
    path = crf.decode(emissions)[0]
    assert path != [1] * T
    assert all(not (a == 1 and b == 1) for a, b in zip(path, path[1:]))


def test_nll_gradient_flows_to_every_parameter_and_the_emissions():
    crf = _crf(5)
    emissions = torch.randn(3, T, K, dtype=torch.float64, requires_grad=True)
    tags = torch.randint(0, K, (3, T))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    crf.nll(emissions, tags, mask).mean().backward()
    for p in (crf.transitions, crf.start, crf.end, emissions):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert (emissions.grad[~mask] == 0).all()  # padding gets no gradient
    # d nll / d emissions = marginals - one-hot(tags): rows of real tokens sum to zero
    assert torch.allclose(emissions.grad[mask].sum(-1), torch.zeros(int(mask.sum()), dtype=torch.float64), atol=1e-10)


def test_nll_gradient_matches_finite_differences():
    crf = _crf(6)
    emissions = torch.randn(2, 3, K, dtype=torch.float64, requires_grad=True)
    tags = torch.randint(0, K, (2, 3))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda e: crf.nll(e, tags, mask), (emissions,))


def test_bad_shapes_and_sizes_are_refused():
    with pytest.raises(ConfigError):
        CRF(0)
    crf = CRF(K)
    with pytest.raises(ValueError, match="emissions"):
        crf.decode(torch.randn(2, T, K + 1))
    with pytest.raises(ValueError, match="first token"):
        crf.decode(torch.randn(1, T, K), torch.tensor([[0, 1, 1, 1]], dtype=torch.bool))

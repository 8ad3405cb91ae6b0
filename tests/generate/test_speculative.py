"""Speculative decoding returns the target model's greedy output exactly, and its samples follow
the target's distribution whatever the draft proposes."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from axon.generate.sampling import filter_logits
from axon.generate.speculative import SpeculativeResult, speculative_generate
from axon.models.decoder import Decoder, DecoderConfig

VOCAB = 40


def decoder(seed, n_layer, n_embd, vocab=VOCAB, block_size=32, **kw):
    torch.manual_seed(seed)
    cfg = DecoderConfig(vocab_size=vocab, block_size=block_size, n_layer=n_layer, n_head=2, n_embd=n_embd, **kw)
    return Decoder(cfg).eval()


@pytest.fixture(scope="module")
def target():
    return decoder(0, n_layer=2, n_embd=32, init_std=0.3)  # larger init: peaked, varied next tokens


@pytest.fixture(scope="module")
def draft():
    return decoder(1, n_layer=1, n_embd=16, init_std=0.3)



@torch.no_grad()
def greedy_by_hand(model, prompt, n, vocab_limit=None, block_size=None):
    """The target's own greedy decoding: a full forward (no cache) per token."""
    seq = list(prompt)
    for _ in range(n):
        if block_size is not None and len(seq) >= block_size:
            break
        seq.append(int(model(torch.tensor([seq]))[0, -1, :vocab_limit].argmax()))
    return seq[len(prompt):]


def noisy_copy(model, seed, scale):
    """A draft that agrees with ``model`` often but not always."""
    copy = decoder(0, n_layer=2, n_embd=32, init_std=0.3)
    copy.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return copy


# --- greedy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_draft", [1, 3, 5])
@pytest.mark.parametrize("prompt", [[3], [5, 1, 7], [2, 9, 9, 4, 0, 11, 8]])
def test_greedy_equals_target_greedy(target, draft, prompt, num_draft):
    res = speculative_generate(target, draft, prompt, 12, num_draft=num_draft, temperature=0)
    assert res.tokens == greedy_by_hand(target, prompt, 12)
    assert 0.0 <= res.acceptance_rate <= 1.0
    assert res.accepted <= res.proposed


@pytest.mark.parametrize("num_draft", [2, 4])
def test_greedy_with_a_draft_that_partly_agrees(target, num_draft):
    draft = noisy_copy(target, seed=3, scale=0.15)
    prompt = [4, 8, 15, 16]
    res = speculative_generate(target, draft, torch.tensor(prompt), 20, num_draft=num_draft, temperature=0)
    assert res.tokens == greedy_by_hand(target, prompt, 20)
    assert 0.0 < res.acceptance_rate < 1.0  # both accepted and rejected drafts happened


def test_draft_equal_to_target_accepts_everything(target):
    prompt = [1, 2, 3]
    res = speculative_generate(target, target, prompt, 20, num_draft=4, temperature=0)
    assert res.tokens == greedy_by_hand(target, prompt, 20)
    assert res.acceptance_rate == 1.0
    assert res.target_calls == 4  # 4 drafts + 1 bonus token per target forward


def test_num_draft_zero_is_plain_cached_decoding(target, draft):
    res = speculative_generate(target, draft, [6, 6], 7, num_draft=0, temperature=0)
    assert res.tokens == greedy_by_hand(target, [6, 6], 7)
    assert (res.proposed, res.target_calls, res.draft_calls) == (0, 7, 0)
    assert res.acceptance_rate == 0.0


def test_stops_at_the_context_window(target, draft):
    prompt = list(range(28))  # block_size 32
    res = speculative_generate(target, draft, prompt, 10, num_draft=3, temperature=0)
    assert res.tokens == greedy_by_hand(target, prompt, 4)
    assert speculative_generate(target, draft, list(range(32)), 5, temperature=0).tokens == []
    with pytest.raises(ValueError, match="block_size"):
        speculative_generate(target, draft, list(range(33)), 5)


def test_a_draft_with_a_shorter_context_still_works(target):
    short = decoder(1, n_layer=1, n_embd=16, block_size=8, init_std=0.3)
    prompt = [3, 1, 4, 1, 5]
    res = speculative_generate(target, short, prompt, 12, num_draft=4, temperature=0)
    assert res.tokens == greedy_by_hand(target, prompt, 12)


def test_vocab_limit_and_eos(target, draft):
    prompt = [7, 3]
    res = speculative_generate(target, draft, prompt, 15, num_draft=3, temperature=0, vocab_limit=20)
    expected = greedy_by_hand(target, prompt, 15, vocab_limit=20)
    assert res.tokens == expected and max(res.tokens) < 20
    eos = expected[5]
    cut = speculative_generate(target, draft, prompt, 15, num_draft=3, temperature=0, vocab_limit=20, eos_token_id=eos)
    assert cut.tokens == expected[: expected.index(eos) + 1]
    g = torch.Generator().manual_seed(0)
    sampled = speculative_generate(target, draft, prompt, 30, num_draft=3, generator=g, vocab_limit=7)
    assert len(sampled.tokens) == 30 and max(sampled.tokens) < 7


def test_vocabularies_must_match(target):
    other = decoder(1, n_layer=1, n_embd=16, vocab=VOCAB + 8)
    with pytest.raises(ValueError, match="vocabular"):
        speculative_generate(target, other, [1, 2], 3)
    # A vocabulary padded beyond the tokenizer's is fine when vocab_limit cuts both to the same ids.
    res = speculative_generate(target, other, [1, 2], 5, temperature=0, vocab_limit=VOCAB)
    assert res.tokens == greedy_by_hand(target, [1, 2], 5)


def test_bad_prompts_are_value_errors(target, draft):
    for prompt in ([], torch.zeros(1, 3, dtype=torch.long), [VOCAB]):
        with pytest.raises(ValueError):
            speculative_generate(target, draft, prompt, 3)


def test_seeded_restores_modes_and_leaves_the_global_rng_alone(target, draft):
    target.train()
    state = torch.get_rng_state()
    runs = [
        speculative_generate(target, draft, [5, 2], 16, num_draft=3, temperature=0.9, top_k=10,
                             generator=torch.Generator().manual_seed(seed))
        for seed in (7, 7, 8)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    assert target.training and not draft.training
    target.eval()
    assert isinstance(runs[0], SpeculativeResult)
    assert runs[0] == runs[1]  # same seed: same tokens and counts
    assert runs[0].tokens != runs[2].tokens


# --- sampling: the target's distribution, exactly -------------------------------------------


class TrigramCache:
    """The cache interface (length, crop) over the tokens seen so far."""

    def __init__(self):
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)

    def crop(self, length: int) -> None:
        assert 0 <= length <= self.length
        del self.tokens[length:]


class Trigram(nn.Module):
    """Logits from a random table indexed by (position parity, token before last, last token).

    A stand-in family with the decoder's cache interface that costs microseconds per call, so
    the statistical test can afford thousands of samples; its dependence on two tokens and on
    position makes a cache that keeps the wrong tokens change the distribution.
    """

    def __init__(self, vocab: int, seed: int, scale: float):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(vocab_size=vocab, block_size=16)
        self.table = nn.Parameter(torch.randn(2, vocab + 1, vocab, vocab, generator=g) * scale)  # row `vocab`: no token

    def make_cache(self, batch_size: int, max_len: int | None = None) -> TrigramCache:
        assert batch_size == 1
        return TrigramCache()

    def forward(self, idx: torch.Tensor, cache: TrigramCache | None = None) -> torch.Tensor:
        seen = cache.tokens if cache is not None else []
        out = []
        for t in idx[0].tolist():
            seen.append(t)
            before = seen[-2] if len(seen) > 1 else self.config.vocab_size
            out.append(self.table[len(seen) % 2, before, t])
        return torch.stack(out)[None]  # (1, T, V)


@torch.no_grad()
def exact_joint(model, prompt, temperature, top_k, top_p):
    """p(t1) p(t2 | t1) of the processed (tempered, filtered) distributions, from full forwards."""
    V = model.config.vocab_size

    def probs(logits):
        return filter_logits(logits / temperature, top_k, top_p).softmax(-1)

    p1 = probs(model(torch.tensor([prompt]))[:, -1])[0]  # (V,)
    p2 = probs(torch.cat([model(torch.tensor([prompt + [t]]))[:, -1] for t in range(V)]))  # (V, V)
    return p1[:, None] * p2  # (V, V)


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square goodness of fit; cells with expected count < 5 are pooled so the
    chi-square approximation holds. Its survival function is the regularised upper incomplete
    gamma function: P(X > x) = Q(df / 2, x / 2)."""
    counts, probs = counts.flatten().double(), probs.flatten().double()
    if counts[probs == 0].sum() > 0:  # a token the target can never produce
        return 0.0
    expected = counts.sum() * probs
    small = (expected < 5) & (probs > 0)
    obs = torch.cat([counts[expected >= 5], counts[small].sum()[None]])
    exp = torch.cat([expected[expected >= 5], expected[small].sum()[None]])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = ((obs - exp) ** 2 / exp).sum()
    return float(torch.special.gammaincc(torch.tensor((len(obs) - 1) / 2.0, dtype=torch.double), stat / 2))


def test_chi_square_pvalue_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    counts = torch.tensor([14.0, 17.0, 33.0, 36.0])
    expected = stats.chisquare(counts.numpy(), (probs * 100).numpy()).pvalue
    # rel 1e-6: both are float64 (torch's gammaincc and scipy's), far tighter than any formula slip
    assert chi_square_pvalue(counts, probs) == pytest.approx(expected, rel=1e-6)


def sample_counts(target, draft, prompt, n, seed, **kw):
    V = target.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(V, V)
    proposed = accepted = 0
    for _ in range(n):
        res = speculative_generate(target, draft, prompt, 2, generator=g, **kw)
        counts[res.tokens[0], res.tokens[1]] += 1
        proposed, accepted = proposed + res.proposed, accepted + res.accepted
    return counts, accepted / proposed


SETTINGS = {  # num_draft 1 exercises the bonus token; 2 a second draft judged in the same forward
    "t1-k1": {"num_draft": 1, "temperature": 1.0, "top_k": None, "top_p": None},
    "t0.7-topk3-k2": {"num_draft": 2, "temperature": 0.7, "top_k": 3, "top_p": None},
    "t1.3-topp0.8-k3": {"num_draft": 3, "temperature": 1.3, "top_k": None, "top_p": 0.8},
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_samples_follow_the_target_distribution(setting):
    V, prompt, n = 5, [1, 2, 3], 3000
    target, draft = Trigram(V, seed=0, scale=1.5), Trigram(V, seed=1, scale=1.5)
    kw = SETTINGS[setting]
    exact = exact_joint(target, prompt, kw["temperature"], kw["top_k"], kw["top_p"])
    draft_exact = exact_joint(draft, prompt, kw["temperature"], kw["top_k"], kw["top_p"])
    assert 0.5 * (exact - draft_exact).abs().sum() > 0.3  # the draft is far from the target

    counts, acceptance = sample_counts(target, draft, prompt, n, seed=0, **kw)
    assert 0.1 < acceptance < 0.9  # rejections and residual draws do happen
    assert chi_square_pvalue(counts, exact) > 1e-3  # a correct sampler fails this once in 1000 seeds

    # Power: the same test rejects samples of the draft's own distribution (what speculative
    # decoding without the rejection step would return), and even a 10% admixture of it.
    g = torch.Generator().manual_seed(1)
    for wrong_dist in (draft_exact, 0.9 * exact + 0.1 * draft_exact):
        wrong = torch.multinomial(wrong_dist.flatten(), n, replacement=True, generator=g).bincount(minlength=V * V)
        assert chi_square_pvalue(wrong, exact) < 1e-6  # power: far below the 1e-3 level above


def test_samples_from_decoders_follow_the_target_distribution():
    """The same check on real decoders with KV caches (fewer samples: each costs ~4 forwards)."""
    V, prompt, n = 5, [1, 2, 3], 800
    target = decoder(0, n_layer=1, n_embd=16, vocab=V, block_size=8, init_std=0.3)
    draft = decoder(1, n_layer=1, n_embd=16, vocab=V, block_size=8, init_std=0.3)
    exact, draft_exact = exact_joint(target, prompt, 1.0, None, None), exact_joint(draft, prompt, 1.0, None, None)
    counts, acceptance = sample_counts(target, draft, prompt, n, seed=0, num_draft=1)
    assert 0.1 < acceptance < 0.9
    assert chi_square_pvalue(counts, exact) > 1e-3  # a correct sampler fails this once in 1000 seeds
    g = torch.Generator().manual_seed(1)
    wrong = torch.multinomial(draft_exact.flatten(), n, replacement=True, generator=g).bincount(minlength=V * V)
    assert chi_square_pvalue(wrong, exact) < 1e-6  # power: far below the 1e-3 level above

"""The rollout's two shortcuts compute what the plain forward does (axon.tasks.ppo, axon.tasks.grpo).

    answer_forward     the LM head at the answers' positions only: the logits (and the values of a
                       shared head or a separate critic) of the whole forward, gathered
    generate(logprobs) each new token's log-probability and its distribution's entropy, read off
                       the sampling's own (cached, left-padded) logits: a forward over prompt +
                       answer gives the same, and asking for them changes no token

The per-row draw of a rollout (one uniform per row, the inverse CDF) samples the distribution.

Tiny models with random weights; fp64 where the two paths run the same matmuls on other shapes,
fp32 for generation (its logits are fp32).
"""

import pytest
import torch

from axon.config import load_config
from axon.generate import generate
from axon.models import build_model
from axon.objectives.ppo import entropy_from_logits, token_logprobs
from axon.tasks.ppo import answer_forward, answer_logits, at_answers

VOCAB, TOKENIZER_VOCAB = 40, 37  # the model's rows, and the tokenizer's (answer_logits cuts to it)


def model(value_head: str, dtype=torch.float64):
    cfg = load_config(None, ["--task=ppo", "--model.family=actor_critic", f"--model.value_head={value_head}",
                             f"--model.vocab_size={VOCAB}", "--model.block_size=32", "--model.n_layer=1",
                             "--model.n_head=2", "--model.n_embd=16"])
    torch.manual_seed(0)
    m = build_model(cfg.model).to(dtype).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "value_head" in name:
                p.normal_(0, 0.5)  # a head built at zero would compare zeros
    return m


@pytest.mark.parametrize("value_head", ["shared", "separate", "none"])
def test_the_head_at_the_answers_only_gives_the_whole_forwards_logits_and_values(value_head):
    m = model(value_head)
    tokens = torch.randint(1, VOCAB, (3, 12), generator=torch.Generator().manual_seed(1))
    plen, R, T = torch.tensor([3, 5, 4]), 6, 0.7
    values = value_head != "none"
    with torch.no_grad():
        out = m(tokens, values=True) if values else m(tokens)
        whole, v = out if values else (out, None)
        want = answer_logits(whole, plen, R, TOKENIZER_VOCAB, T)
        logits, got_v = answer_forward(m, tokens, plen, R, TOKENIZER_VOCAB, T, values)
        assert logits.shape == (3, R, TOKENIZER_VOCAB)
        torch.testing.assert_close(logits, want, rtol=0, atol=1e-12)
        if values:
            torch.testing.assert_close(got_v, at_answers(v, plen, R), rtol=0, atol=1e-12)
        else:
            assert got_v is None
        # a hooked (wrapped) model runs whole: the same numbers by the other path
        handle = m.register_forward_hook(lambda *a: None)
        try:
            hooked, hooked_v = answer_forward(m, tokens, plen, R, TOKENIZER_VOCAB, T, values)
        finally:
            handle.remove()
        torch.testing.assert_close(hooked, want, rtol=0, atol=0)
        if values:
            torch.testing.assert_close(hooked_v, at_answers(v, plen, R), rtol=0, atol=0)


@pytest.mark.parametrize("temperature, top_k", [(0.8, None), (1.0, 5), (0.0, None)])
def test_the_sampled_log_probabilities_are_a_forwards_and_change_no_token(temperature, top_k):
    m = model("none", torch.float32)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (3, 7, 5)]  # left-padded together

    def gens():
        return [torch.Generator().manual_seed(10 + b) for b in range(3)]

    kw = {"temperature": temperature, "top_k": top_k, "vocab_limit": TOKENIZER_VOCAB}
    plain = generate(m, prompts, 6, generator=gens(), **kw)
    out = generate(m, prompts, 6, generator=gens(), logprobs=True, **kw)
    assert out.tokens == plain.tokens and plain.logprobs is None
    assert out.logprobs.shape == out.entropies.shape == (3, 6)
    for b, (p, a) in enumerate(zip(prompts, out.tokens)):
        with torch.no_grad():
            logits = m(torch.tensor([p + a]))[0, len(p) - 1 : len(p) - 1 + len(a), :TOKENIZER_VOCAB]
        if temperature:
            logits = logits / temperature
        if top_k:  # the distribution drawn from: the k largest, renormalised
            logits = logits.masked_fill(logits < logits.topk(top_k, -1).values[:, -1:], float("-inf"))
        want = token_logprobs(logits[None], torch.tensor([a]))[0]
        torch.testing.assert_close(out.logprobs[b, : len(a)], want, rtol=0, atol=2e-5)
        probs = logits.softmax(-1)
        entropy = -(probs * logits.log_softmax(-1).masked_fill(probs == 0, 0)).sum(-1)
        torch.testing.assert_close(out.entropies[b, : len(a)], entropy, rtol=0, atol=2e-5)
        if not top_k:
            torch.testing.assert_close(entropy, entropy_from_logits(logits[None])[0])


def test_a_generator_per_row_draws_from_the_distribution_and_never_a_token_of_probability_0():
    # the per-row draw (axon.generate.sampling.draw) inverts each row's cumulative distribution at
    # one uniform of the row's own generator
    from axon.generate.sampling import draw

    probs = torch.tensor([0.5, 0.0, 0.2, 0.3, 0.0])
    n = 20000
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    counts = draw(probs.expand(n, 5), gens).bincount(minlength=5).double() / n
    assert counts[1] == 0 and counts[4] == 0  # a zero inside, and one at the end
    torch.testing.assert_close(counts, probs.double(), rtol=0, atol=0.015)  # 3.5 standard errors of 0.5
    edges = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1e-30, 0.0]])
    assert draw(edges, [torch.Generator().manual_seed(i) for i in range(3)]).tolist() == [0, 2, 1]
    again = draw(probs.expand(n, 5), [torch.Generator().manual_seed(i) for i in range(n)])
    assert torch.equal(again.bincount(minlength=5).double() / n, counts)  # each row's generator decides its token

import torch

from axon.generate import filter_logits, generate
from axon.models.decoder import Decoder, DecoderConfig


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = filter_logits(logits, top_k=2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    keep = lambda p: torch.isfinite(filter_logits(logits, top_p=p)).tolist()[0]  # noqa: E731
    assert keep(0.5) == [True, False, False, False]  # 0.5 alone reaches 0.5
    assert keep(0.6) == [True, True, False, False]
    assert keep(0.81) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]


def test_greedy_is_argmax_and_sampling_is_seeded():
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    idx = torch.tensor([[1, 2, 3]])
    out = generate(model, idx, 10, temperature=0)  # longer than block_size: the window slides
    expected = idx
    for _ in range(10):
        nxt = model(expected[:, -8:])[:, -1].argmax(-1, keepdim=True)
        expected = torch.cat([expected, nxt], 1)
    assert torch.equal(out, expected)
    a = generate(model, idx, 10, generator=torch.Generator().manual_seed(5))
    b = generate(model, idx, 10, generator=torch.Generator().manual_seed(5))
    state = torch.get_rng_state()
    c = generate(model, idx, 10, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched


def test_vocab_limit_excludes_padded_ids():
    model = Decoder(DecoderConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        model.lm_head.weight[20:] = 10.0  # make padded ids the likeliest (tied: also embeddings)
    out = generate(model, torch.tensor([[1]]), 20, generator=torch.Generator().manual_seed(0), vocab_limit=20)
    assert out.max() < 20

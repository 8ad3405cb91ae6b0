"""Cached decoding of sparse-attention decoders equals their full forward (up to summation order:
tests/numerics.py, kind 2, bounded by cache_checks.assert_same_logits): the ring-buffer cache of a
sliding-window model (bounded by its window, decoding past block_size) and the normal KV cache
with a block-sparse or partly sliding model."""

import pytest
import torch

from axon.generate import beam_search, generate, speculative_generate
from axon.generate.cache import KVCache
from axon.generate.window import WindowCache
from axon.models.decoder import Decoder, DecoderConfig

from cache_checks import assert_same_logits, logprob_tol

PATTERNS = {
    "sliding": dict(attention="sliding", attn_window=5),
    "block_sparse": dict(attention="block_sparse", attn_block=4, attn_summary=2),
    "sliding-alternate": dict(attention="sliding", attn_window=5, attn_layers=[1]),
    "sliding-learned": dict(attention="sliding", attn_window=5, pos="learned"),
}
V = 40



def model_for(pattern, impl="sdpa", seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=V, block_size=24, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, attn_impl=impl, init_std=0.3)
    cfg = DecoderConfig(**{**base, **PATTERNS[pattern], **kw})
    return Decoder(cfg).eval()


def kv_cache_of(model, batch_size, max_len=None):
    """The model's weights and masks, but a plain KV cache (the pattern is then applied from positions)."""
    cfg = model.config
    return KVCache(cfg.n_layer, batch_size, cfg.kv_heads, cfg.head_dim, max_len or cfg.block_size)


@pytest.mark.numerics
@pytest.mark.parametrize("impl", ["sdpa", "reference"])
@pytest.mark.parametrize("pattern", PATTERNS)
@torch.no_grad()
def test_prefill_then_decode_equals_full_forward(pattern, impl):
    model = model_for(pattern, impl)
    idx = torch.randint(0, V, (3, 24))
    full = model(idx)
    cache = model.make_cache(3, 24)
    assert isinstance(cache, WindowCache) == (pattern in ("sliding", "sliding-learned"))
    out = [model(idx[:, :7], cache=cache)]
    for t in range(7, 24):
        out.append(model(idx[:, t : t + 1], cache=cache))
    assert_same_logits(model, torch.cat(out, 1), full, steps=24)
    assert cache.length == 24


@pytest.mark.numerics
@pytest.mark.parametrize("pattern", PATTERNS)
@torch.no_grad()
def test_padded_prompt_batch_equals_each_sequence_alone(pattern):
    model = model_for(pattern)
    seqs = [torch.randint(0, V, (n,)) for n in (20, 13, 17)]
    idx = torch.zeros(3, 20, dtype=torch.long)
    pad = torch.zeros(3, 20, dtype=torch.bool)
    for b, s in enumerate(seqs):  # left padding
        idx[b, 20 - len(s):], pad[b, 20 - len(s):] = s, True
    prompt = 8
    cache = model.make_cache(3, 24)
    out = [model(idx[:, :prompt], cache=cache, pad_mask=pad[:, :prompt])]
    for t in range(prompt, 20):
        out.append(model(idx[:, t : t + 1], cache=cache))
    out = torch.cat(out, 1)
    for b, s in enumerate(seqs):
        assert_same_logits(model, out[b, 20 - len(s):], model(s[None])[0], steps=20)


@pytest.mark.numerics
@torch.no_grad()
def test_ring_never_grows_and_matches_a_kv_cache_over_3x_window():
    model = model_for("sliding")
    W = model.config.attn_window
    ring, dense = model.make_cache(2, 24), kv_cache_of(model, 2, 24)
    size, nbytes = ring.k.shape, ring.nbytes
    assert ring.size <= W + 16 and ring.k.size(3) == ring.size
    idx = torch.randint(0, V, (2, 3 * W + 1))
    a, b = model(idx[:, :1], cache=ring), model(idx[:, :1], cache=dense)
    for t in range(1, 3 * W + 1):
        assert_same_logits(model, a, b, steps=t)
        assert ring.k.shape == size and ring.nbytes == nbytes  # O(window) memory
        a, b = model(idx[:, t : t + 1], cache=ring), model(idx[:, t : t + 1], cache=dense)
    # A small ring (window + 2 spare slots) wraps around many times and still agrees.
    small = WindowCache(2, 2, 2, 8, W, max_crop=2)
    out = [model(idx[:, :3], cache=small)] + [model(idx[:, t : t + 1], cache=small) for t in range(3, 3 * W + 1)]
    assert_same_logits(model, torch.cat(out, 1), model(idx), steps=3 * W + 1)
    assert small.k.size(3) == W + 2


@pytest.mark.numerics
@torch.no_grad()
def test_generation_goes_past_block_size_and_matches_a_longer_context_model():
    model = model_for("sliding")
    assert model.config.context_limit is None
    prompt = torch.randint(0, V, (30,)).tolist()  # longer than block_size 24 and than the ring
    gen = generate(model, [prompt], 60, temperature=0)
    assert len(gen.tokens[0]) == 60 and gen.finish_reasons == ["length"]
    # The same weights with block_size 128: a full forward over all 90 tokens, same sliding mask.
    long = model_for("sliding", block_size=128)
    long.load_state_dict(model.state_dict())
    seq = torch.tensor([prompt + gen.tokens[0]])
    full = long(seq)  # (1, 90, V)
    assert full[0, 29:-1].argmax(-1).tolist() == gen.tokens[0]  # greedy from the full forward's logits
    cache = model.make_cache(1)
    stepwise = [model(seq[:, :30], cache=cache)] + [model(seq[:, t : t + 1], cache=cache) for t in range(30, 90)]
    assert_same_logits(model, torch.cat(stepwise, 1), full, steps=90)
    with pytest.raises(ValueError, match="block_size"):
        model(seq)  # a full forward stays bounded by block_size


@torch.no_grad()
def test_learned_positions_stop_at_block_size():
    model = model_for("sliding-learned")
    assert model.config.context_limit == 24
    gen = generate(model, [[1, 2, 3]], 50, temperature=0)
    assert len(gen.tokens[0]) == 22 and gen.finish_reasons == ["context"]


@pytest.mark.parametrize("pattern", ["sliding", "block_sparse"])
def test_speculative_greedy_equals_plain_greedy(pattern):
    target, draft = model_for(pattern), model_for(pattern, seed=1, n_layer=1)
    prompt = [3, 1, 4, 1, 5]
    n = 40 if pattern == "sliding" else 15  # sliding: past block_size 24 and round the rings (21 slots)
    plain = generate(target, [prompt], n, temperature=0).tokens[0]
    res = speculative_generate(target, draft, prompt, n, num_draft=4, temperature=0)
    assert len(res.tokens) == n
    assert res.tokens == plain
    assert res.proposed > res.accepted  # some drafts were rejected, so both caches were cropped


@pytest.mark.numerics
@torch.no_grad()
def test_crop_within_the_spare_slots_and_a_clear_error_beyond():
    model = model_for("sliding")
    idx = torch.randint(0, V, (1, 40))
    cache = WindowCache(2, 1, 2, 8, window=5, max_crop=3)  # 8 slots
    model(idx[:, :30], cache=cache)
    cache.crop(26)  # back 4 = size - window + 1: keys 22..25 still in the ring
    out = model(idx[:, 26:40], cache=cache)
    assert_same_logits(model, out, model_for("sliding", block_size=64)(idx)[:, 26:], steps=40)
    with pytest.raises(ValueError, match="at most 4 tokens"):
        cache.crop(35)


@pytest.mark.numerics
@pytest.mark.parametrize("pattern", ["sliding", "block_sparse"])
@torch.no_grad()
def test_beam_search_with_ring_equals_beam_search_with_kv_cache(pattern, monkeypatch):
    model = model_for(pattern)
    prompt = [5, 6, 7, 8]
    n = 30 if pattern == "sliding" else 12  # sliding: past block_size 24, round the ring of 21 slots
    hyps = beam_search(model, prompt, n, num_beams=3, num_return=3)
    assert len(hyps) == 3 and all(len(h.tokens) == n for h in hyps)
    monkeypatch.setattr(model, "make_cache", lambda b, n=None: kv_cache_of(model, b, n))
    ref = beam_search(model, prompt, n, num_beams=3, num_return=3)
    assert [h.tokens for h in hyps] == [h.tokens for h in ref]
    for h, r in zip(hyps, ref):
        seq = torch.tensor([prompt + r.tokens])
        scale = model(seq, cache=kv_cache_of(model, 1, seq.size(1))).abs().max().item()
        tol = logprob_tol(model, len(r.tokens), seq.size(1), scale) / len(r.tokens)  # score = mean log-prob
        assert h.score == pytest.approx(r.score, abs=tol)


def test_recipe_trains_and_samples_past_block_size(tmp_path, capsys):
    """configs/sliding_window_tiny.yaml, shrunk: the loss falls, and `axon sample` writes more
    characters than block_size (the ring cache, RoPE positions counting on)."""
    import json

    from axon.cli import main

    rc = main(["train", "--config", "configs/sliding_window_tiny.yaml", "--model.n_layer=2", "--model.n_embd=64",
               "--model.block_size=32", "--model.attn_window=8", "--train.batch_size=8", "--train.max_steps=40",
               "--train.eval_interval=40", "--train.eval_batches=2", "--train.sample_tokens=0", "--log.progress=false",
               "--train.threads=1", "--schedule.warmup_steps=5", f"--out_dir={tmp_path}", "--name=sw",
               f"--data.cache_dir={tmp_path / 'cache'}"])
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "sw" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < losses[0] - 0.5  # ln(65) = 4.17 at the start
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "sw"), "--prompt", "ROMEO:", "--max-new-tokens", "100",
                 "--temperature", "0", "--no-stream"]) == 0
    assert len(capsys.readouterr().out) > 100  # prompt + 100 characters, past block_size 32

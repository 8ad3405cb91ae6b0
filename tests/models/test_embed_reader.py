"""The embedding reader (issue 23): shapes, the passage vectors conditioning the text, causality over
the text, an absent passage masked out, Decoder.hidden_states'
prefix_mask against a hand-written forward, greedy decoding against repeated full forwards, the
objective against a hand computation, FLOPs from the parts, preset counts, a planted vector -> answer
mapping learnt and decoded greedily, bad configs named in one line."""

import math

import pytest
import torch
import torch.nn.functional as F

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.embed_reader import PRESETS, EmbedReader
from axon.models.flops import count_params, flops_per_token
from axon.objectives.embed_reader import EmbeddedAnswerLM

V, D = 32, 8  # the tiny preset: passage_dim 8, slots 2, max_passages 3, n_embd 16, 16 text positions


def reader(**kw) -> EmbedReader:
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "embed_reader", "preset": "tiny", "vocab_size": V, **kw})).eval()


def vecs(n=3, K=3, seed=1):
    return torch.randn(n, K, D, generator=torch.Generator().manual_seed(seed))


def text(n=3, T=10, seed=2):
    return torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_registration():
    model = reader()
    assert model.encode_passages(vecs()).shape == (3, 3 * 2, 16)  # K * m slots of the decoder's width
    assert model(vecs(), text()).shape == (3, 10, V)  # logits for the text positions only
    assert model(vecs(K=1), text()).shape == (3, 10, V)  # fewer passages than max_passages
    assert model.decoder.config.block_size == 3 * 2 + 16
    assert FAMILIES["embed_reader"].task == "rag" and FAMILIES["embed_reader"].model is EmbedReader


def test_more_passages_than_max_or_wrong_shapes_are_refused():
    model = reader()
    with pytest.raises(ValueError, match="exceed model.max_passages=3"):
        model(vecs(K=4), text())
    with pytest.raises(ValueError, match="passage_dim=8"):
        model(torch.zeros(3, 2, 5), text())
    with pytest.raises(ValueError, match="vector_mask must be"):
        model(vecs(), text(), torch.ones(3, 2, dtype=torch.bool))


def test_the_vectors_condition_the_text_and_the_text_is_causal():
    model = reader()
    v, idx = vecs(), text()
    logits = model(v, idx)
    assert torch.equal(model(v.clone(), idx), logits)  # the same vectors: the same logits
    other = model(vecs(seed=9), idx)
    assert (logits - other).abs().amax(dim=(0, 2)).min() > 0  # other vectors: other logits at every position
    one = v.clone()
    one[:, 1] += 1.0  # change passage 1 alone
    assert (model(one, idx) - logits).abs().amax(dim=(0, 2)).min() > 0
    for j in (0, 4, 9):
        changed = idx.clone()
        changed[:, j] = (changed[:, j] + 1) % V
        after = model(v, changed)
        assert torch.equal(after[:, :j], logits[:, :j])  # nothing before the changed token moves
        assert not torch.allclose(after[:, j:], logits[:, j:])


def test_an_absent_passage_changes_nothing():
    model = reader()
    v, idx = vecs(), text()
    mask = torch.tensor([[True, True, True], [True, False, True], [True, True, False]])
    logits = model(v, idx, mask)
    w = v.clone()
    w[1, 1] = 100.0 * torch.randn(D)
    w[2, 2] = -7.0
    assert torch.equal(model(w, idx, mask), logits)  # the absent passages' vectors are never read
    assert not torch.allclose(model(w, idx), model(v, idx))  # ... and are, unmasked
    assert torch.equal(model(v, idx, torch.ones(3, 3, dtype=torch.bool)), model(v, idx))  # all present = no mask
    # every passage absent: no NaN, the text reads only itself
    none = model(v, idx, torch.zeros(3, 3, dtype=torch.bool))
    assert torch.isfinite(none).all() and torch.equal(none, model(w, idx, torch.zeros(3, 3, dtype=torch.bool)))


# ------------------------------------------------------------------------------------------------
# Decoder.hidden_states(prefix_mask=...)


def test_decoder_prefix_mask_against_a_hand_written_forward():
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32, attn_impl="reference")).eval()
    idx, prefix = text(2, 5, seed=5), torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(6))
    pmask = torch.tensor([[True, False, True], [False, False, False]])
    with torch.no_grad():
        S = 3 + 5
        allowed = torch.ones(S, S, dtype=torch.bool).tril() & torch.cat([pmask, torch.ones(2, 5, dtype=torch.bool)], 1)[:, None, None, :]
        allowed = allowed | torch.eye(S, dtype=torch.bool)  # an absent slot attends to itself alone
        x = torch.cat([prefix, model.wte(idx)], 1)
        rope = model.rope(0, S)
        for i, block in enumerate(model.blocks):
            x = block(x, rope, None, i, allowed)
        assert torch.allclose(model.hidden_states(idx, prefix=prefix, prefix_mask=pmask), model.norm_f(x), atol=1e-6)
        ones = torch.ones(2, 3, dtype=torch.bool)
        assert torch.allclose(model.hidden_states(idx, prefix=prefix, prefix_mask=ones), model.hidden_states(idx, prefix=prefix), atol=1e-6)
    with pytest.raises(ValueError, match="prefix_mask needs a prefix"):
        model.hidden_states(idx, prefix_mask=pmask)
    with pytest.raises(ValueError, match="prefix_mask must be"):
        model.hidden_states(idx, prefix=prefix, prefix_mask=pmask[:, :2])


# ------------------------------------------------------------------------------------------------
# Greedy decoding


def argmax_by_full_forwards(model, v, prompt, max_new, stop_id, mask=None):
    ids, out = list(prompt), []
    for _ in range(max_new):
        t = model(v, torch.tensor([ids]), mask)[0, -1].argmax().item()
        if t == stop_id:
            break
        out.append(t)
        if len(ids) == model.config.block_size:
            break
        ids.append(t)
    return out


def test_greedy_is_the_argmax_of_repeated_full_forwards():
    model = reader()
    with torch.no_grad():
        model.decoder.lm_head.weight.normal_(0, 1.0)  # sharper, varied argmaxes than the init's
    v = vecs()
    mask = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    prompts = [[1], [2, 3, 4, 5], [6, 7]]  # different lengths, right-padded in one batch
    for stop in (None, 3):
        got = model.greedy(v, prompts, max_new=8, stop_id=stop, vector_mask=mask)
        want = [argmax_by_full_forwards(model, v[b:b + 1], p, 8, stop, mask[b:b + 1]) for b, p in enumerate(prompts)]
        assert got == want
    assert [len(a) for a in model.greedy(v, [[1] * 14, [1], [1] * 16], max_new=10, stop_id=None)] == [3, 10, 1]  # 16 positions
    with pytest.raises(ValueError, match="at least one id"):
        model.greedy(v, [[1], [], [2]], max_new=2, stop_id=None)


# ------------------------------------------------------------------------------------------------
# The objective


def test_objective_is_the_cross_entropy_over_the_answer_tokens():
    model = reader()
    v, idx = vecs(n=2), text(n=2, T=4)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    y = torch.tensor([[-100, -100, 5, 6], [-100, 7, -100, 1]])
    loss, parts = EmbeddedAnswerLM()(model, (v, mask, idx, y))
    logp = F.log_softmax(model(v, idx, mask).double(), -1)
    hand = -(logp[0, 2, 5] + logp[0, 3, 6] + logp[1, 1, 7] + logp[1, 3, 1]) / 4
    assert loss.item() == pytest.approx(hand.item(), rel=1e-5)
    assert parts["ce"] is loss and int(parts["count"]) == 4


# ------------------------------------------------------------------------------------------------
# Counts


def test_flops_per_token_from_the_parts():
    """Per text position: (6 x the passage MLP for 3 vectors + the decoder over P + T, less the head at
    the P prefix positions) / T, written out for the tiny preset (D 8, m 2, K 3, 1 layer of 16)."""
    model = reader()
    C, H, L, m, K = 16, 64, 1, 2, 3
    P = K * m
    mlp = 6 * K * (D * C + C * m * C)
    N = L * (4 * C * C + 3 * C * H + 2 * C) + C + V * C  # attention, SwiGLU, RMSNorm gains; final norm; the head
    for T in (16, 8):
        S = P + T
        dec = S * (6 * N + 12 * L * S * C) - 6 * P * V * C
        assert model.flops_per_token(T if T != 16 else None) == pytest.approx((mlp + dec) / T, rel=1e-12)
    cfg = build_model_config({"family": "embed_reader", "preset": "tiny", "vocab_size": V})
    assert flops_per_token(cfg) == model.flops_per_token()  # from a config, on the meta device
    assert count_params(cfg) == model.num_params()


def test_preset_parameter_counts():
    """The strings say 'base + per x vocab'."""
    for name, preset in PRESETS.items():
        base, per = (int(w.replace(",", "")) for w in preset["params"].split() if w.replace(",", "").isdigit())
        for vocab in (10, 100):
            cfg = build_model_config({"family": "embed_reader", "preset": name, "vocab_size": vocab})
            assert count_params(cfg) == base + per * vocab, (name, vocab)
    small = build_model_config({"family": "embed_reader", "preset": "small", "vocab_size": V})
    assert (small.n_layer, small.n_embd, small.block_size, small.passage_dim, small.slots) == (4, 128, 128, 128, 4)


def test_null_vocabulary_is_refused():
    with pytest.raises(ConfigError, match="vocab_size"):
        flops_per_token(build_model_config({"family": "embed_reader", "preset": "tiny"}))


# ------------------------------------------------------------------------------------------------
# Learning


def test_learns_to_read_a_planted_fact_from_a_vector():
    """8 random passage vectors, each standing for one of 8 answer tokens; the question is the same
    (BOS = 0, a question token 1), EOS = 2, so only the vector tells the answer. The passage sits at a
    different rank in each example, the other ranks hold distractor vectors or nothing."""
    torch.manual_seed(0)
    model = reader().train()
    g = torch.Generator().manual_seed(3)
    facts = torch.randn(8, D, generator=g)  # fact i's vector -> answer token 10 + i
    n = 64
    which = torch.arange(n) % 8
    v = torch.randn(n, 3, D, generator=g) * 0.1  # distractors: small noise
    rank = torch.randint(0, 3, (n,), generator=g)  # the fact at any rank
    v[torch.arange(n), rank] = facts[which]
    mask = torch.rand(n, 3, generator=g) > 0.3
    mask[torch.arange(n), rank] = True
    x = torch.tensor([[0, 1, 10 + i] for i in which.tolist()])  # BOS question answer
    y = torch.tensor([[-100, 10 + i, 2] for i in which.tolist()])  # the answer, then EOS
    objective = EmbeddedAnswerLM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss, parts = objective(model, (v, mask, x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 < math.log(V) and int(parts["count"]) == 2 * n
    test = torch.randn(8, 3, D, generator=g) * 0.1
    test[torch.arange(8), torch.arange(8) % 3] = facts  # each at some rank, the others distractors
    assert model.greedy(test, [[0, 1]] * 8, max_new=4, stop_id=2) == [[10 + i] for i in range(8)]
    assert model.training  # greedy restores the mode


# ------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize("kw,field,words", [
    (dict(slots=0), "model.slots", "positive"),
    (dict(max_passages=0), "model.max_passages", "positive"),
    (dict(passage_dim=-1), "model.passage_dim", "positive"),
    (dict(block_size=0), "model.block_size", "text positions"),
    (dict(n_head=3), "model.n_embd", "not divisible"),
    (dict(norm="batchnorm"), "model.norm", ""),
])
def test_bad_configs_name_the_field_in_one_line(kw, field, words):
    with pytest.raises(ConfigError) as e:
        build_model_config({"family": "embed_reader", "preset": "tiny", **kw})
    msg = str(e.value)
    assert msg.startswith(field + ":") and words in msg and "\n" not in msg, msg


def test_the_decoder_config():
    cfg = build_model_config({"family": "embed_reader", "preset": "small", "vocab_size": V})
    dec = cfg.decoder_config()
    assert (dec.block_size, dec.n_layer, dec.n_embd, dec.vocab_size, cfg.prefix_len) == (3 * 4 + 128, 4, 128, V, 12)

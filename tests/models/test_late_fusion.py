"""The late-fusion family (MM1-style): shapes, the image prefix conditioning the text, causality, both
connectors, Decoder.hidden_states' prefix against the plain path and a hand-written one, FLOPs from
the parts, preset counts, a planted image -> caption mapping learnt and decoded greedily, bad configs
named in one line."""

import math

import pytest
import torch

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.flops import count_params, flops_per_token
from axon.models.late_fusion import PRESETS, LateFusion

V = 32


def fusion(**kw) -> LateFusion:
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "late_fusion", "preset": "tiny", "vocab_size": V, **kw})).eval()


def images(n=3, seed=1):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def text(n=3, T=10, seed=2):
    return torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("connector", ["avgpool", "cabstractor"])
def test_shapes_and_k_image_tokens(connector):
    model = fusion(connector=connector)
    assert model.encode_images(images()).shape == (3, 4, 16)  # k = 4 tokens of the decoder's width
    assert model(images(), text()).shape == (3, 10, V)  # logits for the text positions only
    assert fusion(connector=connector, image_tokens=1).encode_images(images()).shape == (3, 1, 16)
    assert fusion(connector=connector, image_tokens=16).encode_images(images()).shape == (3, 16, 16)  # s = grid
    assert model.vision.cls_token is None and model.vision.head is None  # the patch grid, no classifier
    assert FAMILIES["late_fusion"].task == "mixed_modal" and FAMILIES["late_fusion"].model is LateFusion


@pytest.mark.parametrize("connector", ["avgpool", "cabstractor"])
def test_the_image_conditions_the_text_and_the_text_is_causal(connector):
    model = fusion(connector=connector)
    if connector == "cabstractor":  # its blocks start as the identity: perturb them so they matter
        with torch.no_grad():
            for b in (model.connector.pre, model.connector.post):
                b.conv2.weight.normal_(0, 0.05)
    x, idx = images(), text()
    logits = model(x, idx)
    other = model(images(seed=9), idx)
    assert not torch.allclose(logits, other)  # another image, the same text: other logits everywhere
    assert (logits - other).abs().amax(dim=(0, 2)).min() > 0  # at every text position, the first included
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % V
    after = model(x, changed)
    assert torch.equal(after[:, :6], logits[:, :6])  # same shapes and kernels: the positions before are equal
    assert not torch.allclose(after[:, 6:], logits[:, 6:])


def test_forward_is_the_decoder_over_prefix_then_text():
    model = fusion()
    x, idx = images(), text()
    prefix = model.encode_images(x)
    h = model.decoder.hidden_states(idx, prefix=prefix)
    assert h.shape == (3, 4 + 10, 16)
    assert torch.equal(model(x, idx), model.decoder.lm_head(h[:, 4:]))


# ------------------------------------------------------------------------------------------------
# Decoder.hidden_states(prefix=...)


def decoder(**kw) -> Decoder:
    torch.manual_seed(0)
    base = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32)
    return Decoder(DecoderConfig(**{**base, **kw})).eval()


GPT2 = dict(mlp="gelu", norm="layernorm", norm_bias=True, pos="learned", bias=True)


@pytest.mark.parametrize("kw", [{}, GPT2])
def test_decoder_prefix_of_token_embeddings_is_the_longer_sequence(kw):
    """A prefix that IS wte(a) gives exactly the states of the sequence a ++ b: positions count over both."""
    model = decoder(**kw)
    a, b = text(2, 5, seed=3), text(2, 7, seed=4)
    with torch.no_grad():
        whole = model.hidden_states(torch.cat([a, b], 1))
        assert torch.equal(model.hidden_states(b, prefix=model.wte(a)), whole)
        assert torch.equal(model.hidden_states(b), model.hidden_states(b, prefix=None))
        assert torch.equal(model.lm_head(model.hidden_states(b)), model(b))  # prefix=None: forward unchanged


def test_decoder_prefix_against_a_hand_written_forward():
    model = decoder(**GPT2)
    idx, prefix = text(2, 6, seed=5), torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        x = torch.cat([prefix, model.wte(idx)], 1) + model.wpe.weight[:9]  # positions 0..8 over both
        for block in model.blocks:
            x = block(x)
        assert torch.equal(model.hidden_states(idx, prefix=prefix), model.norm_f(x))


def test_decoder_prefix_is_refused_with_a_cache_or_too_long():
    model = decoder()
    idx = text(2, 6)
    with pytest.raises(ValueError, match="without a cache"):
        model.hidden_states(idx, cache=model.make_cache(2), prefix=torch.zeros(2, 3, 32))
    with pytest.raises(ValueError, match="exceeds block_size 16"):
        model.hidden_states(idx, prefix=torch.zeros(2, 11, 32))  # 11 + 6 > 16
    with pytest.raises(ValueError, match="prefix must be"):
        model.hidden_states(idx, prefix=torch.zeros(2, 3, 8))


# ------------------------------------------------------------------------------------------------
# Counts


@pytest.mark.parametrize("connector", ["avgpool", "cabstractor"])
def test_flops_per_token_from_the_parts(connector):
    """Per text position: (ViT per image + connector + decoder over k + T, less the head at the k image
    positions) / T, written out for the tiny preset (vision 16 wide, decoder 16 wide, 1 layer each)."""
    model = fusion(connector=connector)
    Cv, Hv, g, C, H, k, L = 16, 64, 4, 16, 64, 4, 1
    vit = 6 * (1 * 2 * 2 * Cv * g * g + g * g * L * (4 * Cv * Cv + 2 * Cv * Hv)) + 12 * L * (g * g) ** 2 * Cv
    convs = 2 * Cv * Cv * 9 * (g * g + k) if connector == "cabstractor" else 0  # a block at 4x4, a block at 2x2
    conn = 6 * (convs + (Cv * C + C * C) * k)
    N = L * (4 * C * C + 3 * C * H + 2 * C) + C + V * C  # attention, SwiGLU, RMSNorm gains; final norm; the head
    for T in (16, 8):
        S = k + T
        dec = S * (6 * N + 12 * L * S * C) - 6 * k * V * C
        assert model.flops_per_token(T if T != 16 else None) == pytest.approx((vit + conn + dec) / T, rel=1e-12)
    cfg = build_model_config({"family": "late_fusion", "preset": "tiny", "vocab_size": V, "connector": connector})
    assert flops_per_token(cfg) == model.flops_per_token()  # from a config, on the meta device
    assert count_params(cfg) == model.num_params()


def test_preset_parameter_counts():
    """The strings say 'base + per x vocab (avgpool; cabstractor: base + per x vocab)'."""
    for name, preset in PRESETS.items():
        nums = [int(w.replace(",", "")) for w in preset["params"].replace("(", " ").replace(")", " ").split()
                if w.replace(",", "").isdigit()]
        base, per, cab_base, cab_per = nums
        for connector, want, per_entry in (("avgpool", base, per), ("cabstractor", cab_base, cab_per)):
            for vocab in (10, 100):
                cfg = build_model_config({"family": "late_fusion", "preset": name, "vocab_size": vocab,
                                          "connector": connector})
                assert count_params(cfg) == want + per_entry * vocab, (name, connector, vocab)


def test_null_vocabulary_is_refused():
    with pytest.raises(ConfigError, match="vocab_size"):
        flops_per_token(build_model_config({"family": "late_fusion", "preset": "tiny"}))


# ------------------------------------------------------------------------------------------------
# Learning


def test_overfits_a_planted_caption_per_image_and_greedy_decodes_it():
    """4 random images, each with a fixed 3-token caption; BOS = 0, EOS = 1."""
    torch.manual_seed(0)
    model = fusion(connector="avgpool").train()
    x = images(n=4, seed=7)
    captions = [[2, 3, 4], [2, 5, 6], [7, 3, 8], [9, 9, 2]]  # shared tokens: only the image tells them apart
    seq = torch.tensor([[0, *c, 1] for c in captions])  # BOS caption EOS
    inp, tgt = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(model(x, inp).reshape(-1, V), tgt.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 < math.log(V)
    assert model.greedy_caption(x, [0], max_new=6, stop_id=1) == captions
    assert model.training  # the helper restores the mode
    assert model.greedy_caption(x, [0], max_new=2) == [c[:2] for c in captions]  # cut at max_new, no stop id
    with pytest.raises(ValueError, match="start_ids"):
        model.greedy_caption(x, [], max_new=2)


def test_greedy_caption_stops_at_the_text_positions():
    model = fusion(block_size=5)
    out = model.greedy_caption(images(n=2), [0, 3], max_new=10, stop_id=None)
    assert [len(c) for c in out] == [4, 4]  # 2 given + 4 new = 5 positions have logits; the 6th id has none


# ------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize("kw,field,words", [
    (dict(image_tokens=5), "model.image_tokens", "perfect square"),
    (dict(image_tokens=25), "model.image_tokens", "larger than the 4x4 patch grid"),
    (dict(image_tokens=0), "model.image_tokens", "positive"),
    (dict(vision_patch_size=3), "model.vision_patch_size", "does not divide"),
    (dict(vision_n_head=3), "model.vision_n_head", "heads do not divide"),
    (dict(n_head=3), "model.n_embd", "not divisible"),
    (dict(block_size=0), "model.block_size", "text positions"),
    (dict(connector="qformer"), "model.connector", ""),
])
def test_bad_configs_name_the_field_in_one_line(kw, field, words):
    with pytest.raises(ConfigError) as e:
        build_model_config({"family": "late_fusion", "preset": "tiny", **kw})
    msg = str(e.value)
    assert msg.startswith(field + ":") and words in msg and "\n" not in msg, msg


def test_the_parts_configs():
    cfg = build_model_config({"family": "late_fusion", "preset": "digits", "vocab_size": V})
    vision, dec = cfg.vision_config(), cfg.decoder_config()
    assert (vision.num_labels, vision.pool, vision.n_embd, vision.grid) == (None, "mean", 48, 4)
    assert (dec.block_size, dec.n_layer, dec.n_embd, dec.vocab_size) == (4 + 40, 4, 64, V)
    assert (cfg.image_size, cfg.in_channels, cfg.pooled_grid) == (8, 1, 2)

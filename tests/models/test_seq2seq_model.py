"""The encoder-decoder Transformer (family seq2seq): shapes, masking, causality, overfitting,
parity with torch.nn.Transformer, presets."""

import math

import pytest
import torch
from torch import nn

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.seq2seq import PRESETS, Transformer, TransformerConfig
from axon.nn import SinusoidalPositions

from cache_checks import assert_same_logits
from numerics import order_tol

V = 50


def tiny(**kw) -> Transformer:
    cfg = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32, mlp_hidden=48, dropout=0.0)
    return Transformer(TransformerConfig(**{**cfg, **kw})).eval()


def padded_batch(B=3, S=10, T=7):
    src, tgt = torch.randint(0, V, (B, S)), torch.randint(0, V, (B, T))
    src_mask = torch.ones(B, S, dtype=torch.bool)
    src_mask[1, 6:] = False
    src_mask[2, 3:] = False
    return src, tgt, src_mask


@pytest.mark.parametrize("norm_first", [False, True])
def test_shapes(norm_first):
    m = tiny(norm_first=norm_first, n_dec_layer=3)
    src, tgt, mask = padded_batch()
    assert m.encode(src, mask).shape == (3, 10, 32)
    assert m(src, tgt, mask).shape == (3, 7, V)
    assert m(src, tgt).shape == (3, 7, V)  # no mask: every source token real
    assert len(m.encoder) == 2 and len(m.decoder) == 3


def test_registered_family_and_preset():
    cfg = build_model_config({"family": "seq2seq", "preset": "tiny", "vocab_size": 20})
    assert isinstance(cfg, TransformerConfig) and cfg.n_embd == 32 and FAMILIES["seq2seq"].task == "seq2seq"
    assert isinstance(build_model(cfg), Transformer)


def test_embeddings_shared_and_scaled():
    m = tiny()
    assert m.lm_head.weight is m.embed.weight  # source = target = output matrix (sec. 3.4)
    idx = torch.tensor([[3, 4, 5]])
    expected = m.embed.weight[idx] * math.sqrt(32) + m.pos.table[:3]
    assert torch.equal(m.embed_tokens(idx), expected)  # the same elementwise operations
    assert tiny(tie_embeddings=False).lm_head.weight is not tiny(tie_embeddings=False).embed.weight


@pytest.mark.numerics
def test_sinusoids_match_the_paper():
    pe = SinusoidalPositions(8, 20).table
    tol = order_tol(torch.float32, n=1)  # computed in float64, stored in float32: one rounding, no reduction
    for pos in (0, 3, 19):
        for i in range(4):
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=tol)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=tol)
    assert not any("pos" in k for k in tiny().state_dict())  # derived, never saved


@pytest.mark.numerics
@pytest.mark.parametrize("norm_first", [False, True])
def test_source_padding_never_leaks(norm_first):
    """Tokens at padded source positions change neither the real memory nor any target logit."""
    m = tiny(norm_first=norm_first)
    src, tgt, mask = padded_batch()
    out, memory = m(src, tgt, mask), m.encode(src, mask)
    other = torch.where(mask, src, torch.randint(0, V, src.shape))
    assert not torch.equal(other, src)
    # The same shapes and kernels; a masked key has weight exactly 0, whatever its value: equal.
    assert torch.equal(m(other, tgt, mask), out)
    assert torch.equal(m.encode(other, mask)[mask], memory[mask])
    # A padded source equals the same source alone, unpadded (other shapes: up to summation order).
    alone = m(src[2:3, :3], tgt[2:3])
    assert_same_logits(m, alone, out[2:3], steps=10, encoder=True)


@pytest.mark.numerics
def test_target_padding_never_leaks():
    """Targets are right-padded: what follows a target's end never changes its real logits (up to
    summation order: a longer target runs the decoder on other shapes; the memory is the same)."""
    m = tiny()
    src, tgt, mask = padded_batch()
    out = m(src, tgt, mask)
    longer = torch.cat([tgt, torch.randint(0, V, (3, 4))], dim=1)
    assert_same_logits(m, m(src, longer, mask)[:, :7], out, steps=11)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_is_causal_and_encoder_is_not(norm_first):
    m = tiny(norm_first=norm_first)
    src, tgt, mask = padded_batch()
    out = m(src, tgt, mask)
    for t in range(7):
        changed = tgt.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        new = m(src, changed, mask)
        assert torch.equal(new[:, :t], out[:, :t])  # the past never sees the future (same shapes: equal)
        assert (new[:, t:] - out[:, t:]).abs().amax() > 1e-4  # a real dependence: far above rounding (~1e-6)
    # The encoder is bidirectional: the last real source token changes the first position's memory.
    changed = src.clone()
    changed[0, 9] = (changed[0, 9] + 1) % V
    assert (m.encode(changed, mask)[0, 0] - m.encode(src, mask)[0, 0]).abs().amax() > 1e-4  # as above


@pytest.mark.numerics
def test_reference_attention_matches_sdpa():
    torch.manual_seed(1)
    a = tiny()
    b = tiny(attn_impl="reference")
    b.load_state_dict(a.state_dict())
    src, tgt, mask = padded_batch()
    assert_same_logits(a, b(src, tgt, mask), a(src, tgt, mask), steps=10, encoder=True)


def test_too_long_is_an_error():
    m = tiny()
    with pytest.raises(ValueError, match="source of 17 tokens exceeds block_size 16"):
        m.encode(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="target of 17 tokens"):
        m(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "kw, field",
    [(dict(n_embd=30, n_head=4), "model.n_embd"), (dict(dropout=1.0), "model.dropout"),
     (dict(n_dec_layer=0), "model.n_dec_layer"), (dict(n_embd=7, n_head=1), "model.n_embd")],
)
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        TransformerConfig(**kw)


def test_overfits_one_batch():
    torch.manual_seed(0)
    m = tiny().train()
    src, tgt, mask = padded_batch(B=4, S=8, T=6)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(150):
        loss = nn.functional.cross_entropy(m(src, tgt, mask).flatten(0, 1), tgt.roll(-1, 1).flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02
    assert torch.equal(m.eval()(src, tgt, mask).argmax(-1), tgt.roll(-1, 1))


# ---------------------------------------------------------------------------------------------
# Parity: the same weights in torch.nn.Transformer, PyTorch's implementation of the same paper


def to_torch(m: Transformer) -> nn.Transformer:
    """torch.nn.Transformer with ``m``'s weights (the embedding, positions and head stay outside)."""
    cfg = m.config
    C = cfg.n_embd
    ref = nn.Transformer(C, cfg.n_head, cfg.enc_layers, cfg.dec_layers, cfg.hidden, dropout=cfg.dropout,
                         activation=cfg.activation, layer_norm_eps=cfg.norm_eps, batch_first=True,
                         norm_first=cfg.norm_first)
    with torch.no_grad():
        for mine, theirs in zip(m.encoder, ref.encoder.layers):
            theirs.self_attn.in_proj_weight.copy_(torch.cat([mine.attn.q.weight, mine.attn.kv.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([mine.attn.q.bias, mine.attn.kv.bias]))
            theirs.self_attn.out_proj.load_state_dict(mine.attn.proj.state_dict())
            theirs.linear1.load_state_dict(mine.mlp.fc.state_dict())
            theirs.linear2.load_state_dict(mine.mlp.proj.state_dict())
            theirs.norm1.load_state_dict(mine.norm1.state_dict())
            theirs.norm2.load_state_dict(mine.norm2.state_dict())
        for mine, theirs in zip(m.decoder, ref.decoder.layers):
            theirs.self_attn.in_proj_weight.copy_(mine.self_attn.qkv.weight)  # rows [q; k; v] in both
            theirs.self_attn.in_proj_bias.copy_(mine.self_attn.qkv.bias)
            theirs.self_attn.out_proj.load_state_dict(mine.self_attn.proj.state_dict())
            theirs.multihead_attn.in_proj_weight.copy_(torch.cat([mine.cross_attn.q.weight, mine.cross_attn.kv.weight]))
            theirs.multihead_attn.in_proj_bias.copy_(torch.cat([mine.cross_attn.q.bias, mine.cross_attn.kv.bias]))
            theirs.multihead_attn.out_proj.load_state_dict(mine.cross_attn.proj.state_dict())
            theirs.linear1.load_state_dict(mine.mlp.fc.state_dict())
            theirs.linear2.load_state_dict(mine.mlp.proj.state_dict())
            for k in (1, 2, 3):
                getattr(theirs, f"norm{k}").load_state_dict(getattr(mine, f"norm{k}").state_dict())
        if cfg.norm_first:
            ref.encoder.norm.load_state_dict(m.encoder_norm.state_dict())
            ref.decoder.norm.load_state_dict(m.decoder_norm.state_dict())
        else:  # PyTorch adds a final LayerNorm even to post-LN stacks; the paper has none
            ref.encoder.norm = None
            ref.decoder.norm = None
    return ref.eval()


@pytest.mark.numerics
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_parity_with_torch_transformer(norm_first, activation):
    torch.manual_seed(3)
    m = tiny(norm_first=norm_first, activation=activation, dropout=0.1, n_dec_layer=3)  # eval: dropout off
    for p in m.parameters():  # random norms and biases too, so every mapped tensor matters
        nn.init.normal_(p, 0.0, 0.3)
    ref = to_torch(m)
    src, tgt, src_mask = padded_batch()
    tgt_mask = torch.ones(3, 7, dtype=torch.bool)
    tgt_mask[0, 5:] = False  # right-padded target
    E = m.embed.weight

    def emb(x):
        return E[x] * math.sqrt(32) + m.pos.table[: x.size(1)]

    with torch.no_grad():
        h = ref(emb(src), emb(tgt), tgt_mask=~torch.ones(7, 7, dtype=torch.bool).tril(), tgt_is_causal=True,
                src_key_padding_mask=~src_mask, memory_key_padding_mask=~src_mask, tgt_key_padding_mask=~tgt_mask)
        expected = h @ E.T
        out = m(src, tgt, src_mask)
    assert_same_logits(m, out[tgt_mask], expected[tgt_mask], steps=10, encoder=True)  # another library


def test_small_preset_counts():
    for name, vocab in (("tiny", 64), ("dates-cpu", 63)):
        cfg = build_model_config({"family": "seq2seq", "preset": name, "vocab_size": vocab})
        assert PRESETS[name]["params"].startswith(f"{Transformer(cfg).num_params():,} (vocab {vocab}")


@pytest.mark.parametrize("name", ["transformer-base", "transformer-big"])
def test_preset_parameter_counts(name):
    """Equal to torch.nn.Transformer of the same shape (without the final norms a post-LN stack
    does not have) plus the shared embedding; built on the meta device (no memory)."""
    preset = PRESETS[name]
    cfg = build_model_config({"family": "seq2seq", "preset": name})
    with torch.device("meta"):
        mine = Transformer(cfg).num_params()
        ref = nn.Transformer(cfg.n_embd, cfg.n_head, cfg.enc_layers, cfg.dec_layers, cfg.hidden, batch_first=True)
    theirs = sum(p.numel() for p in ref.parameters()) - 4 * cfg.n_embd + cfg.vocab_size * cfg.n_embd
    assert mine == theirs
    assert preset["params"].startswith(f"{mine:,}")


def test_fusion_in_decoder_reads_each_passage_encoded_alone():
    """A source of K passages (B, K, S) = each passage encoded on its own, the memories side by side."""
    torch.manual_seed(0)
    m = build_model(TransformerConfig(vocab_size=30, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)).eval()
    src = torch.randint(0, 30, (2, 3, 5))
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1, 3:] = False
    tgt = torch.randint(0, 30, (2, 4))
    memory = torch.cat([m.encode(src[:, k], mask[:, k]) for k in range(3)], 1)  # (2, 15, C)
    torch.testing.assert_close(m(src, tgt, mask), m.decode(tgt, memory, mask.reshape(2, 15)), rtol=1e-5, atol=1e-5)
    swapped = src.clone()
    swapped[:, 1] = torch.randint(0, 30, (2, 5))
    assert not torch.allclose(m(swapped, tgt, mask), m(src, tgt, mask))  # the decoder reads every passage

import pytest
import torch

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.bert import Bert, BertConfig, masked_mean, sentence_embeddings
from axon.objectives import Classification, MaskedLM

from numerics import assert_close_orders

V = 41


def tiny(**kw) -> Bert:
    base = dict(vocab_size=V, block_size=24, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    return Bert(BertConfig(**{**base, **kw}))


def reductions(model: Bert, head: int = 0) -> dict:
    """``n`` and ``depth`` of tests/numerics.py for outputs of ``model`` on the 24-token batch: the
    longest reduction (width, MLP width or the keys attended over) and the layers, plus ``head``
    for what follows them (pooling and classifier, the MLM transform and decoder, a normalisation)."""
    cfg = model.config
    return dict(n=max(cfg.n_embd, cfg.hidden, 24), depth=cfg.n_layer + head)


def padded_batch():
    """Two sequences: 24 real tokens, and 9 real tokens then padding."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, V, (2, 24), generator=g)
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 9:] = False
    return ids, mask


@pytest.mark.parametrize("head,shape", [("mlm", (2, 24, V)), ("classify", (2, 5)), ("none", (2, 24, 32))])
def test_shapes_by_head(head, shape):
    model = tiny(head=head, num_labels=5 if head == "classify" else None).eval()
    ids, mask = padded_batch()
    assert model(ids, mask).shape == shape


@pytest.mark.numerics
def test_mlm_logits_at_chosen_positions_only_equal_the_full_head():
    model = tiny().eval()
    ids, mask = padded_batch()
    chosen = torch.zeros_like(mask)
    chosen[0, [1, 7, 20]] = True
    chosen[1, 3] = True
    full = model(ids, mask)
    some = model(ids, mask, predict=chosen)
    assert some.shape == (4, V)
    # The encoder runs on the same shapes; the head on 4 rows instead of 48: its two matmuls (width
    # n_embd) may block differently.
    assert_close_orders(some, full[chosen], n=model.config.n_embd, depth=2)


@pytest.mark.numerics
@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_padding_never_leaks(pooling):
    """Neither the ids at padded positions nor the padding's length change a real token's output,
    the pooled vector or the class logits."""
    model = tiny(head="classify", num_labels=3, pooling=pooling).eval()
    ids, mask = padded_batch()
    other = ids.clone()
    other[1, 9:] = torch.randint(0, V, (15,), generator=torch.Generator().manual_seed(9))  # other pad ids
    h, h2 = model.encode(ids, mask), model.encode(other, mask)
    # The same shapes and kernels; a masked key has weight exactly 0, whatever its value: equal.
    assert torch.equal(h2[1, :9], h[1, :9])
    assert torch.equal(h2[0], h[0])
    assert torch.equal(model(other, mask), model(ids, mask))
    # Without the padding the shapes differ: equal up to summation order.
    alone = model(ids[1:, :9], mask[1:, :9])  # the short sequence without any padding
    assert_close_orders(alone, model(ids, mask)[1:], **reductions(model, head=1))  # pooling and classifier
    assert_close_orders(model.encode(ids[1:, :9])[0], h[1, :9], **reductions(model))


def test_attention_is_bidirectional():
    model = tiny(head="none").eval()
    ids, _ = padded_batch()
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % V
    h, h2 = model(ids), model(changed)
    assert not torch.allclose(h[:, 0], h2[:, 0])  # an early position sees a change at the end


def test_a_sequence_without_real_tokens_is_refused():
    model = tiny().eval()
    ids, mask = padded_batch()
    mask[1] = False
    with pytest.raises(ValueError, match="no real token"):
        model(ids, mask)


@pytest.mark.numerics
def test_sdpa_and_reference_attention_agree_with_padding():
    model = tiny(head="none").eval()
    ids, mask = padded_batch()
    fast = model(ids, mask)
    for layer in model.layers:
        layer.attn.impl = "reference"
    assert_close_orders(model(ids, mask)[mask], fast[mask], **reductions(model))


def test_token_types_matter_and_default_to_zero():
    model = tiny(head="none").eval()
    ids, mask = padded_batch()
    zeros = torch.zeros_like(ids)
    assert torch.equal(model(ids, mask, zeros), model(ids, mask))  # the same row of wtt added
    assert not torch.allclose(model(ids, mask, torch.ones_like(ids)), model(ids, mask))


def test_overfits_one_classification_batch():
    torch.manual_seed(0)
    model = tiny(head="classify", num_labels=4, pooling="mean")
    ids = torch.randint(5, V, (8, 12))
    mask = torch.ones(8, 12, dtype=torch.bool)
    mask[4:, 7:] = False
    labels = torch.arange(8) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    obj = Classification()
    for _ in range(60):
        loss, parts = obj(model, (ids, mask, labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 and int(parts["correct"]) == 8


def test_overfits_one_masked_lm_batch():
    torch.manual_seed(0)
    model = tiny()
    ids = torch.randint(5, V, (4, 16))
    labels = torch.full_like(ids, -100)
    labels[:, 3::4] = ids[:, 3::4]
    inputs = ids.clone()
    inputs[:, 3::4] = 4  # the [MASK] id
    batch = (inputs, torch.ones_like(ids, dtype=torch.bool), labels)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, parts = MaskedLM()(model, batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.1 and parts["count"] == 16, (first, loss.item())


def test_dropout_active_only_in_training():
    model = tiny(dropout=0.5, head="classify", num_labels=3)
    ids, mask = padded_batch()
    model.eval()
    assert torch.equal(model(ids, mask), model(ids, mask))
    model.train()
    assert not torch.allclose(model(ids, mask), model(ids, mask))


def test_pooler_only_where_bert_has_one():
    assert tiny().pooler is None  # BertForMaskedLM has no pooler
    assert tiny(head="none").pooler is not None  # BertModel
    assert tiny(head="classify", num_labels=2, pooling="mean").pooler is None
    assert tiny().mlm is not None and tiny(head="none").mlm is None


@pytest.mark.numerics
def test_sentence_embeddings_are_unit_mean_pooled_and_batch_independent():
    from axon.data.bert_tokens import build_bert_tokenizer

    tok = build_bert_tokenizer("char", ["abcdefgh ijk"])
    model = tiny(vocab_size=tok.vocab_size, head="none").eval()
    texts = ["abc", "a much longer text: hij gfedcba", "k"]
    together = sentence_embeddings(model, tok, texts, batch_size=3)
    alone = torch.cat([sentence_embeddings(model, tok, [t]) for t in texts])
    # A padded batch against each text alone: the layers, then the mean and the normalisation.
    assert_close_orders(together, alone, **reductions(model, head=1))
    # Unit length: a norm over n_embd of a vector divided by its norm over n_embd.
    assert_close_orders(together.norm(dim=-1), torch.ones(3), n=model.config.n_embd, depth=2)
    ids = torch.tensor([[2, *tok.encode("abc"), 3]])  # [CLS] abc [SEP]
    want = torch.nn.functional.normalize(masked_mean(model.encode(ids), None), dim=-1)
    assert_close_orders(together[:1], want, **reductions(model, head=1))


def test_config_checks_name_the_field():
    with pytest.raises(ConfigError, match="model.n_embd"):
        BertConfig(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="model.num_labels"):
        BertConfig(num_labels=1)
    with pytest.raises(ConfigError, match="model.dropout"):
        BertConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="model.head"):
        build_model_config({"family": "bert", "head": "regression"})
    with pytest.raises(ValueError, match="num_labels"):
        Bert(BertConfig(vocab_size=10, head="classify"))


def _transformers_count(cls_name, **cfg):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(**cfg)
    with torch.device("meta"):
        model = getattr(transformers, cls_name)(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset,published", [("bert-base", 109_482_240), ("minilm-l6", 22_713_216)])
def test_preset_parameter_counts(preset, published):
    """BertModel counts as published (bert-base-uncased 110M, all-MiniLM-L6-v2 22.7M) and as
    transformers builds them; the default MLM head equals BertForMaskedLM."""
    cfg = build_model_config({"family": "bert", "preset": preset})
    with torch.device("meta"):
        mlm = build_model(cfg)
        base = build_model(build_model_config({"family": "bert", "preset": preset, "head": "none"}))
    assert base.num_params() == published
    hf = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer,
              num_attention_heads=cfg.n_head, intermediate_size=cfg.mlp_hidden, max_position_embeddings=cfg.block_size)
    assert base.num_params() == _transformers_count("BertModel", **hf)
    assert mlm.num_params() == _transformers_count("BertForMaskedLM", **hf)
    assert FAMILIES["bert"].presets[preset]["params"].startswith(f"{mlm.num_params():,}")


def test_tiny_preset_builds():
    cfg = build_model_config({"family": "bert", "preset": "tiny", "vocab_size": 50})
    model = build_model(cfg).eval()
    assert model(torch.randint(0, 50, (2, 64))).shape == (2, 64, 50)
    assert model.flops_per_token() > 0

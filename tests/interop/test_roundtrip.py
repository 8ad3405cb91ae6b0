"""Axon -> Hugging Face -> Axon is exact; transformers runs the exported model as Axon does."""

import pytest
import torch
from hf_models import reductions, transformers
from numerics import assert_close_orders

import axon
from axon.data.tokenizers import BPETokenizer, CharTokenizer
from axon.generate import generate
from axon.models.decoder import Decoder, DecoderConfig

AXON_CONFIGS = {
    "gpt2": dict(pos="learned", norm="layernorm", mlp="gelu", norm_bias=True, bias=True),
    "gpt2-nobias-untied": dict(pos="learned", norm="layernorm", mlp="gelu", norm_bias=False, bias=False,
                               tie_embeddings=False, preset="nanogpt-cpu"),
    "llama-gqa": dict(n_kv_head=2, rope_theta=50000.0),
    "llama-mqa-bias-untied": dict(n_kv_head=1, bias=True, tie_embeddings=False, mlp_hidden=72),
    "llama-scaled": dict(rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8}),
}


def axon_model(variant):
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=70, block_size=48, n_layer=2, n_head=4, n_embd=32, **AXON_CONFIGS[variant]))
    with torch.no_grad():  # non-trivial norms and biases
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.numerics
@pytest.mark.parametrize("variant", AXON_CONFIGS)
def test_round_trip_is_exact_and_transformers_agrees(variant, tmp_path):
    model = axon_model(variant)
    out = axon.to_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    back, _ = axon.from_hf(out)
    assert back.config == model.config
    own, again = model.state_dict(), back.state_dict()
    assert own.keys() == again.keys() and all(torch.equal(own[k], again[k]) for k in own)

    x = torch.randint(0, 70, (2, 48), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_close_orders(hf(x).logits, model(x), **reductions(hf.config, 48))
    prompt = x[:1, :6]
    ours = generate(model, prompt, 30, temperature=0).tokens[0]
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, min_new_tokens=30,
                             do_sample=False, pad_token_id=0)[0, 6:].tolist()
    assert theirs == ours


TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. Ünïcödé 🙂\n"


@pytest.mark.parametrize("kind", ["char", "char-unk", "bpe"])
def test_tokenizer_export_gives_the_same_ids_in_transformers(kind, tmp_path):
    if kind == "bpe":
        tok = BPETokenizer.train([TEXT * 20], vocab_size=300)
    else:
        tok = CharTokenizer.from_text(TEXT, unknown="replace" if kind == "char-unk" else "error")
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    out = axon.to_hf(model, tmp_path / "hf", tokenizer=tok)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = hf_tok(TEXT, add_special_tokens=False)["input_ids"]
    assert ids == tok.encode(TEXT)
    assert hf_tok.decode(ids) == TEXT
    if kind == "char-unk":  # an unseen character maps to the replacement, as in Axon
        assert hf_tok("Zq", add_special_tokens=False)["input_ids"] == tok.encode("Zq")
    _, back = axon.from_hf(out)
    assert back.encode(TEXT) == tok.encode(TEXT) and back.decode(tok.encode(TEXT)) == TEXT

"""Converted models compute the logits of the transformers reference (fp32, up to summation order:
tests/numerics.py)."""

import pytest
import torch
from hf_models import gpt2, llama, reductions
from numerics import assert_close_orders

import axon

pytestmark = pytest.mark.numerics

GPT2_SHAPES = {
    "small": dict(),
    "untied": dict(tie=False),
    "odd": dict(vocab=61, positions=33, n_embd=36, n_layer=3, n_head=3, n_inner=100),
    "one-head": dict(n_embd=40, n_head=1, n_layer=1, vocab=50),
}
LLAMA_SHAPES = {
    "mha": dict(kv_heads=4),
    "gqa": dict(kv_heads=2),
    "mqa": dict(kv_heads=1),
    "tied": dict(tie=True),
    "bias": dict(bias=True),
    "odd": dict(vocab=83, hidden=48, inter=88, layers=3, heads=6, kv_heads=3, positions=50, eps=1e-6),
    "theta": dict(theta=500000.0),
    "llama3-scaling": dict(theta=500000.0, scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "linear-scaling": dict(scaling={"rope_type": "linear", "factor": 2.0}),
}


def check_logits(hf, model, vocab, length):
    x = torch.randint(0, vocab, (3, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close_orders(model(x), hf(x).logits, **reductions(hf.config, length))


@pytest.mark.parametrize("shape", GPT2_SHAPES)
def test_gpt2_from_memory_and_from_directory(shape, tmp_path):
    hf = gpt2(**GPT2_SHAPES[shape])
    cfg = hf.config
    model, tok = axon.from_hf(hf)
    assert tok is None and model.num_params() == sum(p.numel() for p in hf.parameters())
    check_logits(hf, model, cfg.vocab_size, cfg.n_positions)
    hf.save_pretrained(tmp_path)
    from_dir, _ = axon.from_hf(tmp_path)
    check_logits(hf, from_dir, cfg.vocab_size, cfg.n_positions)


def test_gpt2_base_model_keys_without_prefix(tmp_path):
    """The hub's gpt2 repository stores a bare GPT2Model: keys without "transformer."."""
    hf = gpt2()
    hf.transformer.save_pretrained(tmp_path)
    model, _ = axon.from_hf(tmp_path)
    check_logits(hf, model, 97, 40)


@pytest.mark.parametrize("shape", LLAMA_SHAPES)
def test_llama_from_memory_and_from_directory(shape, tmp_path):
    hf = llama(**LLAMA_SHAPES[shape])
    cfg = hf.config
    model, _ = axon.from_hf(hf)
    assert model.config.kv_heads == cfg.num_key_value_heads
    assert model.num_params() == sum(p.numel() for p in hf.parameters())
    check_logits(hf, model, cfg.vocab_size, cfg.max_position_embeddings)
    hf.save_pretrained(tmp_path)
    from_dir, _ = axon.from_hf(tmp_path)
    check_logits(hf, from_dir, cfg.vocab_size, cfg.max_position_embeddings)


def test_sharded_checkpoint(tmp_path):
    hf = llama(hidden=96, inter=160, layers=3)
    hf.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and len(list(tmp_path.glob("*.safetensors"))) > 2
    model, _ = axon.from_hf(tmp_path)
    check_logits(hf, model, 101, 64)


def test_bf16_checkpoint_loads_as_fp32(tmp_path):
    hf = gpt2()
    hf.to(torch.bfloat16).save_pretrained(tmp_path)
    model, _ = axon.from_hf(tmp_path)
    assert model.lm_head.weight.dtype == torch.float32
    check_logits(hf.float(), model, 97, 40)

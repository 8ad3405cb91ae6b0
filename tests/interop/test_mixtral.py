"""Mixtral <-> Axon: transformers' MixtralForCausalLM from a local config (random weights, no
download), converted with axon.from_hf, gives the same logits up to summation order (tests/numerics.py);
export loads back in transformers."""

import json

import pytest
import torch
from hf_models import reductions
from numerics import assert_close_orders

from axon.errors import ConfigError
from axon.interop.hf import from_hf, to_hf
from axon.nn.moe import MoE

transformers = pytest.importorskip("transformers")



def mixtral(k=2, experts=4, window=None, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.MixtralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, num_local_experts=experts, num_experts_per_tok=k,
        sliding_window=window, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = transformers.MixtralForCausalLM(cfg)
    with torch.no_grad():  # HF's init: unit norm gains and small weights; make a wrong map visible
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.1 if p.dim() == 1 else 0.2) + (1.0 if "norm" in name else 0.0))
    return model.eval()


def logits(model, x):
    with torch.no_grad():
        out = model(x)
    return getattr(out, "logits", out)


@pytest.mark.numerics
@pytest.mark.parametrize("k", [1, 2])
def test_parity_from_a_saved_directory_and_from_memory(k, tmp_path):
    hf = mixtral(k=k)
    hf.save_pretrained(tmp_path / "hf")  # the checkpoint layout: block_sparse_moe.experts.e.w1/w2/w3
    x = torch.randint(0, 97, (2, 24))
    ref = logits(hf, x)
    for source in (tmp_path / "hf", hf):  # and the in-memory layout: stacked gate_up_proj / down_proj
        model, _ = from_hf(source)
        cfg = model.config
        assert (cfg.moe_experts, cfg.moe_top_k, cfg.moe_norm_topk, cfg.moe_capacity_factor) == (4, k, True, None)
        assert all(isinstance(b.mlp, MoE) for b in model.blocks)
        assert_close_orders(logits(model, x), ref, **reductions(hf.config, x.size(1)))


@pytest.mark.numerics
def test_sliding_window_maps_to_the_sliding_attention_pattern():
    hf = mixtral(window=6)
    model, _ = from_hf(hf)
    assert (model.config.attention, model.config.attn_window) == ("sliding", 6)
    x = torch.randint(0, 97, (2, 20))  # longer than the window, so the pattern matters
    assert_close_orders(logits(model, x), logits(hf, x), **reductions(hf.config, x.size(1)))
    long_window, _ = from_hf(mixtral(window=64))  # a window as long as the context is full attention
    assert long_window.config.attention == "dense"


@pytest.mark.numerics
def test_export_loads_in_transformers_with_the_same_logits(tmp_path):
    model, _ = from_hf(mixtral(k=2))
    out = to_hf(model, tmp_path / "out")
    hf_cfg = json.loads((out / "config.json").read_text())
    assert hf_cfg["model_type"] == "mixtral" and hf_cfg["num_local_experts"] == 4
    back = transformers.MixtralForCausalLM.from_pretrained(out).eval()
    x = torch.randint(0, 97, (1, 16))
    assert_close_orders(logits(back, x), logits(model, x), **reductions(back.config, x.size(1)))
    again, _ = from_hf(out)
    assert again.config == model.config


def test_config_errors_name_the_field():
    cfg = mixtral(k=2).config.to_dict()
    with pytest.raises(ConfigError, match="num_experts_per_tok=5"):
        from axon.interop.mixtral import config_to_axon

        config_to_axon({**cfg, "num_experts_per_tok": 5})
    with pytest.raises(ConfigError, match="mixtral config: hidden_act='gelu'"):
        config_to_axon({**cfg, "hidden_act": "gelu"})

"""transformers' ViTForImageClassification / ViTModel (local config, random weights) -> Axon's ViT
through ``axon.from_hf``: the same logits and features (up to summation order: tests/numerics.py),
and what Axon cannot represent refused by name."""

import json

import pytest
import torch
from numerics import assert_close_orders

import axon
from axon.errors import ConfigError
from axon.models.vit import ViT

transformers = pytest.importorskip("transformers")


def hf_vit(cls="ViTForImageClassification", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=48, num_labels=6)
    cfg = transformers.ViTConfig(**{**cfg, **kw})
    model = getattr(transformers, cls)(cfg, **({"add_pooling_layer": False} if cls == "ViTModel" else {}))
    with torch.no_grad():  # random norms and biases, so that a wrong map shows
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def images(n=3, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def bound(cfg) -> dict:
    return dict(n=max(cfg.intermediate_size, cfg.num_channels * cfg.patch_size**2), depth=cfg.num_hidden_layers + 2)


@pytest.mark.numerics
@pytest.mark.parametrize("kw", [{}, dict(qkv_bias=False, layer_norm_eps=1e-6)], ids=["default", "no_qkv_bias"])
def test_from_hf_directory_matches_transformers(kw, tmp_path):
    hf = hf_vit(**kw)
    hf.save_pretrained(tmp_path)
    model, tok = axon.from_hf(tmp_path)
    assert isinstance(model, ViT) and tok is None
    assert (model.config.num_labels, model.config.patch_size, model.config.image_size) == (6, 4, 16)
    x = images()
    with torch.no_grad():
        want, got = hf(pixel_values=x).logits, model(x)
    assert_close_orders(got, want, **bound(hf.config))
    print(f"HF ViT {kw}: max |diff| {(got - want).abs().max().item():.2e}")


@pytest.mark.numerics
def test_headless_vit_model_gives_the_class_token_features(tmp_path):
    hf = hf_vit("ViTModel")
    hf.save_pretrained(tmp_path)
    model, _ = axon.from_hf(tmp_path)
    assert model.config.num_labels is None and model.head is None
    with torch.no_grad():
        want, got = hf(pixel_values=images()).last_hidden_state[:, 0], model(images())
    assert_close_orders(got, want, **bound(hf.config))


def test_in_memory_transformers_model_loads():
    hf = hf_vit()
    model, _ = axon.from_hf(hf)
    with torch.no_grad():
        assert_close_orders(model(images()), hf(pixel_values=images()).logits, **bound(hf.config))


def test_what_axon_lacks_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="pooler"):
        axon.from_hf(transformers.ViTModel(hf_vit().config))  # add_pooling_layer defaults to True
    hf = hf_vit()
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "hidden_act": "relu"}))
    with pytest.raises(ConfigError, match="hidden_act='relu' is not supported"):
        axon.from_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "patch_size": "4"}))
    with pytest.raises(ConfigError, match="patch_size must be an integer"):
        axon.from_hf(tmp_path)

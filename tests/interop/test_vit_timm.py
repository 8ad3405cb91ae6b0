"""timm's VisionTransformer (random init, nothing downloaded) <-> Axon's ViT: a directory written by
timm's ``save_for_hf`` loads through ``axon.from_hf`` and gives the same logits (up to summation
order: tests/numerics.py), at the checkpoint's image size and, through position resampling, at
another; the presets have timm's parameter counts. Runs where timm is installed (the parity
environment of docs/vision.md); skipped elsewhere."""

import pytest
import torch
from numerics import assert_close_orders

import axon
from axon.config import build_model_config
from axon.models import build_model
from axon.models.vit import ViT

timm = pytest.importorskip("timm")
from timm.models import save_for_hf


def timm_vit(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**args, **kw})
    with torch.no_grad():  # timm's init leaves norms at (1, 0) and biases at 0: random values expose a wrong map
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def bound(model: ViT, tokens: int) -> dict:
    """n: the longest reduction (the MLP width or the keys); depth: one per layer, the patch conv and the head."""
    cfg = model.config
    return dict(n=max(cfg.hidden, tokens, cfg.in_channels * cfg.patch_size**2), depth=cfg.n_layer + 2)


@pytest.mark.numerics
@pytest.mark.parametrize("kind", ["token", "avg", "no_qkv_bias"])
def test_from_timm_directory_matches_timm(kind, tmp_path):
    kw = {"token": {}, "avg": dict(global_pool="avg", class_token=False), "no_qkv_bias": dict(qkv_bias=False)}[kind]
    ref = timm_vit(**kw)
    save_for_hf(ref, tmp_path, safe_serialization=True)
    (tmp_path / "pytorch_model.bin").unlink(missing_ok=True)
    model, tok = axon.from_hf(tmp_path)
    assert isinstance(model, ViT) and tok is None
    assert model.config.pool == ("mean" if kind == "avg" else "cls") and model.config.num_labels == 5
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        want, got = ref(x), model(x)
    assert_close_orders(got, want, **bound(model, 17))
    print(f"timm {kind}: max |diff| {(got - want).abs().max().item():.2e}")


@pytest.mark.numerics
@pytest.mark.parametrize("size", [(48, 48), (24, 40)])
def test_position_resampling_matches_timm_dynamic_img_size(size, tmp_path):
    """Trained at 32 x 32 (a 4 x 4 grid), run at another size: both resample the learned grid bicubically."""
    ref = timm_vit(dynamic_img_size=True)
    save_for_hf(ref, tmp_path, safe_serialization=True)
    (tmp_path / "pytorch_model.bin").unlink(missing_ok=True)
    model, _ = axon.from_hf(tmp_path)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        want, got = ref(x), model(x)
    assert_close_orders(got, want, **bound(model, 1 + size[0] * size[1] // 64))
    print(f"timm at {size}: max |diff| {(got - want).abs().max().item():.2e}")


def test_in_memory_timm_model_is_refused():
    with pytest.raises(axon.errors.ConfigError, match="transformers model"):
        axon.from_hf(timm_vit())


@pytest.mark.parametrize("preset,arch", [("vit_tiny_patch16", "vit_tiny_patch16_224"),
                                         ("vit_small_patch16", "vit_small_patch16_224"),
                                         ("vit_base_patch16", "vit_base_patch16_224")])
def test_preset_parameter_counts_match_timm(preset, arch):
    with torch.device("meta"):
        ref = timm.create_model(arch, pretrained=False)
        ours = build_model(build_model_config({"family": "vit", "preset": preset, "num_labels": 1000}))
    n_ref = sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_ref
    assert {"vit_tiny_patch16": 5_717_416, "vit_small_patch16": 22_050_664, "vit_base_patch16": 86_567_656}[preset] == n_ref

"""The ViT family: shapes, position resampling (the identity at the training size, working at
others), the 2-D sine-cosine table against MAE's formula, SDPA against the written-out softmax,
preset counts, FLOPs, one batch overfitted, bad configs named."""

import math

import numpy as np
import pytest
import torch
from numerics import assert_close_orders

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.vit import PRESETS, ViT
from axon.nn.positional import resample_grid, sincos_2d


def vit(**kw) -> ViT:
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "vit", "preset": "tiny", "num_labels": 10, **kw})).eval()


def images(n=4, size=8, c=1, seed=1):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("kw", [{}, dict(pool="mean"), dict(pos="sincos"), dict(pool="mean", pos="sincos"),
                                dict(num_labels=None)])
def test_shapes(kw):
    model = vit(**kw)
    out = model(images())
    assert out.shape == ((4, 10) if kw.get("num_labels", 10) else (4, 32))
    assert model.forward_features(images()).shape == (4, 32)
    assert (model.cls_token is None) == (kw.get("pool") == "mean")
    assert ("pos_embed" in model.state_dict()) == (kw.get("pos", "learned") == "learned")  # sincos is derived


@pytest.mark.parametrize("pos", ["learned", "sincos"])
def test_positions_at_the_training_size_are_the_table_itself(pos):
    """No interpolation at the model's own size: the forward equals one written with the table as is."""
    model = vit(pos=pos)
    assert model.positions(model.grid) is model.pos_embed
    x = images()
    with torch.no_grad():
        t = model.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 16, C)
        t = torch.cat([model.cls_token.expand(4, -1, -1), t], 1) + model.pos_embed
        for block in model.blocks:
            t = block(t)
        want = model.head(model.norm(t[:, 0]))
        assert torch.equal(model(x), want)


def test_learned_positions_resample_to_another_grid():
    model = vit()
    with torch.no_grad():  # positions that vary along columns only (row-major grid 4 x 4), class token apart
        col = torch.arange(4.0).repeat(4)  # (16,)
        model.pos_embed[0, 1:] = col[:, None] * torch.linspace(-1, 1, 32)
        model.pos_embed[0, 0] = 7.0
        pos = model.positions((6, 10))  # a 12 x 20 image
    assert pos.shape == (1, 1 + 60, 32)
    assert torch.equal(pos[0, 0], torch.full((32,), 7.0))  # the class token's position is kept
    grid = pos[0, 1:].reshape(6, 10, 32)
    assert torch.allclose(grid, grid[:1].expand(6, -1, -1), atol=1e-6)  # still constant down each column
    assert (grid[0, 1:, -1] >= grid[0, :-1, -1] - 1e-6).all()  # and still increasing along a row
    assert model(images(size=12)).shape == (4, 10)
    assert model(torch.rand(2, 1, 12, 20) * 2 - 1).shape == (2, 10)
    with pytest.raises(ValueError, match="not a multiple of the patch size 2"):
        model(torch.rand(1, 1, 9, 8))


def test_resample_grid_keeps_a_constant_and_returns_the_same_grid_untouched():
    pos = torch.full((1, 9, 4), 0.5)
    assert torch.allclose(resample_grid(pos, (3, 3), (5, 7)), torch.full((1, 35, 4), 0.5), atol=1e-6)
    assert resample_grid(pos, (3, 3), (3, 3)) is pos


def mae_sincos(dim, size):
    """MAE's get_2d_sincos_pos_embed (facebookresearch/mae, util/pos_embed.py), transcribed in numpy."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gh, gw = np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)
    grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, size, size)
    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


def test_sincos_matches_mae():
    want = torch.from_numpy(mae_sincos(32, 5)).float()
    assert torch.allclose(sincos_2d(32, 5, 5), want, atol=1e-6)
    model = vit(pos="sincos")
    assert torch.equal(model.pos_embed[0, 0], torch.zeros(32))  # MAE's class token position
    assert torch.allclose(model.pos_embed[0, 1:], torch.from_numpy(mae_sincos(32, 4)).float(), atol=1e-6)
    assert torch.allclose(model.positions((6, 6))[0, 1:], sincos_2d(32, 6, 6))


@pytest.mark.numerics
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_sdpa_matches_the_written_out_softmax(pool):
    fast, ref = vit(pool=pool), vit(pool=pool, attn_impl="reference")
    ref.load_state_dict(fast.state_dict())
    with torch.no_grad():
        assert_close_orders(fast(images()), ref(images()), n=128, depth=4)


def test_preset_parameter_counts():
    for name, preset in PRESETS.items():
        labels = int(preset["params"].split("(")[1].split()[0])
        with torch.device("meta"):
            model = build_model(build_model_config({"family": "vit", "preset": name, "num_labels": labels}))
        assert f"{model.num_params():,}" == preset["params"].split(" ")[0], name
    assert FAMILIES["vit"].task == "image_classify"


def test_flops_hand_count():
    model = vit()
    C, T, L, H = 32, 17, 2, 128
    per_block = 4 * C * C + 2 * C * H  # q, kv (2 C x C), proj; fc, proj
    want = 6 * (1 * 4 * C * 16 + T * L * per_block + C * 10) + 12 * L * T * T * C
    assert model.flops_per_token() == want


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = vit().train()
    x, y = images(n=16, seed=3), torch.arange(16) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 < math.log(10)
    assert (model(x).argmax(1) == y).all()


@pytest.mark.parametrize("kw,field", [(dict(patch_size=3), "model.patch_size"), (dict(n_head=5), "model.n_head"),
                                      (dict(num_labels=1), "model.num_labels"),
                                      (dict(pos="sincos", n_embd=30, n_head=2), "model.n_embd")])
def test_bad_configs_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        build_model_config({"family": "vit", "preset": "tiny", **kw})


# ------------------------------------------------------------------------------------------------
# The hybrid: a ResNet's feature map as the tokens


def hybrid(**kw):
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "vit_hybrid", "preset": "tiny", "num_labels": 10, **kw})).eval()


@pytest.mark.parametrize("kw", [{}, dict(pool="mean", pos="sincos"), dict(num_labels=None)])
def test_hybrid_shapes_and_tokens_from_the_backbone(kw):
    model = hybrid(**kw)
    assert model(images()).shape == ((4, 10) if kw.get("num_labels", 10) else (4, 32))
    assert model.grid == (4, 4) and model.backbone.head is None  # the tiny ResNet's 4x4 map, no ResNet head
    feats = model.backbone.forward_features(images())  # (4, 16, 4, 4)
    tokens, grid = model.patchify(images())
    assert grid == (4, 4) and torch.equal(tokens, model.patch_embed(feats).flatten(2).transpose(1, 2))
    assert model(images(size=12)).shape[0] == 4  # 12 x 12 -> a 6 x 6 map: positions resampled


def test_hybrid_counts():
    model = hybrid()
    for name, preset in __import__("axon.models.vit_hybrid", fromlist=["PRESETS"]).PRESETS.items():
        m = build_model(build_model_config({"family": "vit_hybrid", "preset": name, "num_labels": 10}))
        assert f"{m.num_params():,}" == preset["params"].split(" ")[0], name
    vit_part = build_model(build_model_config({"family": "vit", "preset": "tiny", "num_labels": 10}))
    backbone = model.backbone.flops_per_token() + 6 * 16 * 32 * 16  # the ResNet + the 1x1 projection at 16 pixels
    patch = 6 * 4 * 32 * 16  # the ViT's 2x2 patch conv, replaced
    assert model.flops_per_token() == vit_part.flops_per_token() - patch + backbone  # same 17 tokens after that
    assert FAMILIES["vit_hybrid"].task == "image_classify"
    with pytest.raises(ConfigError, match="model.image_size"):  # the backbone's own check, named
        build_model_config({"family": "vit_hybrid", "preset": "tiny", "backbone_stem": "imagenet", "backbone_layers": [1, 1, 1]})

"""The Vision Mamba family: shapes, the middle class token where the docstring puts it, both scan
directions reaching it, position resampling, the scans' two implementations, preset counts, FLOPs,
one batch overfitted, bad configs named."""

import pytest
import torch
from numerics import assert_close_orders

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.vision_mamba import PRESETS, VisionMamba


def vim(**kw) -> VisionMamba:
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "vision_mamba", "preset": "tiny", "num_labels": 10, **kw})).eval()


def images(n=4, size=8, seed=1):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("kw", [{}, dict(pool="mean"), dict(num_labels=None)])
def test_shapes(kw):
    model = vim(**kw)
    assert model(images()).shape == ((4, 10) if kw.get("num_labels", 10) else (4, 32))
    assert model.forward_features(images()).shape == (4, 32)
    assert model(images(size=12)).shape[0] == 4  # another size: the learned grid is resampled
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        model(torch.rand(1, 1, 7, 8))


def test_the_class_token_sits_in_the_middle():
    """16 patches: the first block sees [p0..p7, CLS, p8..p15] (index 8 = 16 // 2), and the head reads index 8."""
    model = vim()
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    model.norm_f.register_forward_hook(lambda m, args, out: seen.update(final=out))
    x = images()
    feats = model.forward_features(x)
    patches = model.patch_embed(x).flatten(2).transpose(1, 2) + model.pos_embed[:, 1:]  # (B, 16, C)
    assert seen["x"].shape == (4, 17, 32) and VisionMamba.cls_index(16) == 8
    assert torch.equal(seen["x"][:, 8], (model.cls_token + model.pos_embed[:, :1]).expand(4, -1, -1)[:, 0])
    assert torch.equal(seen["x"][:, :8], patches[:, :8]) and torch.equal(seen["x"][:, 9:], patches[:, 8:])
    assert torch.equal(feats, seen["final"][:, 8])
    assert [VisionMamba.cls_index(n) for n in (1, 4, 9, 196)] == [0, 2, 4, 98]


def test_both_scan_directions_reach_the_class_token(monkeypatch):
    """Changing the last patch moves the class token's output only through the backward scan, the
    first patch only through the forward one: with that direction silenced, nothing moves."""
    model = vim()
    x = images(n=1)
    first, last = x.clone(), x.clone()
    first[..., :2, :2] += 1.0  # patch 0
    last[..., -2:, -2:] += 1.0  # patch 15
    with torch.no_grad():
        base = model(x)
        assert not torch.allclose(model(first), base) and not torch.allclose(model(last), base)
        for direction, moved in (("bwd", last), ("fwd", first)):
            for block in model.blocks:
                monkeypatch.setattr(getattr(block.mixer, direction), "forward", lambda t: torch.zeros_like(t))
            assert torch.equal(model(moved), model(x)), direction
            monkeypatch.undo()


@pytest.mark.numerics
def test_chunked_scan_matches_the_sequential_one():
    seq, chunk = vim(scan_impl="sequential"), vim(scan_impl="chunked", scan_chunk=4)
    chunk.load_state_dict(seq.state_dict())
    with torch.no_grad():
        assert_close_orders(chunk(images()), seq(images()), n=64, depth=4)


def test_preset_parameter_counts_and_registration():
    for name, preset in PRESETS.items():
        labels = int(preset["params"].split("(")[1].split()[0])
        with torch.device("meta"):
            model = build_model(build_model_config({"family": "vision_mamba", "preset": name, "num_labels": labels}))
        assert f"{model.num_params():,}" == preset["params"].split(" ")[0], name
    assert FAMILIES["vision_mamba"].task == "image_classify"


def test_flops_hand_count():
    model = vim()
    C, D, S, R, K, L, T = 32, 64, 8, 2, 4, 2, 17
    per_token = C * 2 * D + 2 * (D * (R + 2 * S) + R * D) + D * C
    want = 6 * (4 * C * 16 + L * T * per_token + C * 10) + 3 * L * T * 2 * (2 * D * K + 8 * D * S)
    assert model.flops_per_token() == want


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = vim().train()
    x, y = images(n=16, seed=3), torch.arange(16) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == y).all(), loss.item()


@pytest.mark.parametrize("kw,field", [(dict(patch_size=3), "model.patch_size"), (dict(num_labels=1), "model.num_labels"),
                                      (dict(d_state=0), "model.d_state"), (dict(dt_min=1.0), "model.dt_min")])
def test_bad_configs_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        build_model_config({"family": "vision_mamba", "preset": "tiny", **kw})

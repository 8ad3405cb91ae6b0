"""DETR on a ViT or a Vision Mamba backbone (``model.backbone``, axon.models.detr): output shapes;
the feature map against one computed here from the backbone's own modules; every parameter
trained by the set loss; bad specs end in one-line ConfigErrors; FLOPs as the backbone's own plus
DETR's transformer; a 30-step run of vit-tiny on the detect task lowers the loss and reloads from
its checkpoint."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from axon.config import build_model_config
from axon.data.detection import pad_targets, shapes
from axon.errors import ConfigError
from axon.models import build_model
from axon.models.detr import DETR
from axon.models.vision_mamba import VisionMamba
from axon.models.vit import ViT

PRESETS = {"vit": "vit-tiny", "vision_mamba": "vim-tiny"}


def detr(preset: str, **kw) -> DETR:
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "detr", "preset": preset, "num_labels": 3, **kw}))


def images(n=2, size=16, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("family", ["vit", "vision_mamba"])
def test_shapes(family):
    model = detr(PRESETS[family], dec_layers=2).eval()
    assert type(model.backbone) is {"vit": ViT, "vision_mamba": VisionMamba}[family]
    assert model.backbone.head is None and model.config.backbone_family == family
    logits, boxes = model(images())
    assert logits.shape == (2, 2, 6, 4) and boxes.shape == (2, 2, 6, 4)  # (layers, B, queries, labels + 1 / box)
    assert ((boxes > 0) & (boxes < 1)).all()
    assert model.forward_features(images()).shape == (2, 32, 8, 8)  # 2x2 patches of 16x16: the 8x8 grid, 32 wide
    assert model.feature_size == 8 and model.input_proj.in_channels == 32
    assert model.forward_features(images(size=32)).shape == (2, 32, 16, 16)  # another size: positions resampled
    assert model(images(size=32))[0].shape == (2, 2, 6, 4)


def vit_patches(vit: ViT, x: torch.Tensor) -> torch.Tensor:
    """The ViT's patch outputs written out from its modules: (B, C, h, w)."""
    t = vit.patch_embed(x)  # (B, C, h, w)
    B, C, h, w = t.shape
    t = t.reshape(B, C, h * w).permute(0, 2, 1)
    t = torch.cat([vit.cls_token.expand(B, 1, C), t], dim=1) + vit.pos_embed
    for block in vit.blocks:
        t = block(t)
    t = vit.norm(t)[:, 1:]  # the class token is the first row
    return t.permute(0, 2, 1).reshape(B, C, h, w)


def vim_patches(vim: VisionMamba, x: torch.Tensor) -> torch.Tensor:
    """The Vision Mamba's patch outputs written out from its modules: (B, C, h, w)."""
    t = vim.patch_embed(x)
    B, C, h, w = t.shape
    t = t.reshape(B, C, h * w).permute(0, 2, 1) + vim.pos_embed[:, 1:]
    m = (h * w) // 2  # Vim's middle class token
    t = torch.cat([t[:, :m], (vim.cls_token + vim.pos_embed[:, :1]).expand(B, 1, C), t[:, m:]], dim=1)
    for block in vim.blocks:
        t = block(t)
    t = vim.norm_f(t)
    t = torch.cat([t[:, :m], t[:, m + 1:]], dim=1)
    return t.permute(0, 2, 1).reshape(B, C, h, w)


@pytest.mark.parametrize("family", ["vit", "vision_mamba"])
def test_the_feature_map_is_the_backbones_patch_outputs(family):
    model = detr(PRESETS[family]).double().eval()
    x = images().double()
    oracle = {"vit": vit_patches, "vision_mamba": vim_patches}[family]
    with torch.no_grad():
        f = model.forward_features(x)
        assert torch.allclose(f, oracle(model.backbone, x), atol=1e-12, rtol=0)
        # the class token matters: it is an input to the patches, not just a dropped row
        cls = model.backbone.cls_token
        cls += torch.randn(cls.shape, generator=torch.Generator().manual_seed(0), dtype=cls.dtype)  # not a constant: LN
        assert not torch.allclose(model.forward_features(x), f, atol=1e-6)
        # forward_features (the classifier's path) is unchanged: the class token's normalised row
        tokens = model.backbone.forward_features(x)
        assert tokens.shape == (2, 32)


@pytest.mark.parametrize("family", ["vit", "vision_mamba"])
def test_every_parameter_gets_a_gradient_from_the_set_loss(family):
    from axon.objectives.detr import SetCriterion

    x, targets = shapes(4, 3, image_size=16, max_objects=2)
    labels, boxes = pad_targets(targets, 2)
    model = detr(PRESETS[family]).train()
    loss, _ = SetCriterion()(model, (x, labels, boxes))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == [], missing
    assert any(n.startswith("backbone.cls_token") for n, _ in model.named_parameters())


@pytest.mark.parametrize("backbone,match", [
    ("resnet:tiny", r"model\.backbone: 'resnet:tiny': the ResNet backbone takes no spec"),
    ("decoder:tiny", r"model\.backbone: 'decoder' is not a backbone family"),
    ("foo:tiny", r"model\.backbone: unknown family 'foo' .*a backbone is one of: vit, vision_mamba"),
    ("vit:huge", r"model\.backbone: unknown vit preset 'huge'"),
    ("vit:tiny image_size=32", r"model\.backbone: image_size cannot be set .*model\.image_size"),
    ("vision_mamba in_channels=1", r"model\.backbone: in_channels cannot be set"),
    ("vit:tiny num_labels=10", r"model\.backbone: num_labels cannot be set .*no head"),
    ("vit:tiny depth=3", r"model\.backbone: vit has no field 'depth'"),
    ("vit:tiny n_layer=two", r"model\.backbone\.n_layer: expected an integer"),
    ("vit:tiny patch_size=3", r"model\.backbone: 'vit:tiny patch_size=3': model\.patch_size: 3 does not divide"),
    ("vit:tiny n_layer", r"model\.backbone: 'n_layer' in .* is not key=value"),
    ("  ", r"model\.backbone: is empty"),
])
def test_bad_specs_end_in_one_line(backbone, match):
    with pytest.raises(ConfigError, match=match) as e:
        build_model_config({"family": "detr", "preset": "vit-tiny", "backbone": backbone})
    assert "\n" not in str(e.value)


def test_a_resnet_field_beside_another_backbone_is_refused():
    with pytest.raises(ConfigError, match=r"model\.backbone_width: is 8 .*model\.backbone is 'vit:tiny'") as e:
        build_model_config({"family": "detr", "preset": "vit-tiny", "backbone_width": 8})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"model\.backbone_layers"):  # tiny's ResNet fields under a ViT
        build_model_config({"family": "detr", "preset": "tiny", "backbone": "vit:tiny"})
    # the shapes preset's ResNet fields are the defaults: the recipes put a ViT / Vim under it
    assert build_model_config({"family": "detr", "preset": "shapes", "backbone": "vit patch_size=8"}).backbone_family == "vit"
    # "resnet" is today's DETR: the same parameters as before
    assert detr("tiny", backbone="resnet").config.backbone_family == "resnet"


@pytest.mark.parametrize("family", ["vit", "vision_mamba"])
def test_flops_are_the_backbones_own_plus_the_transformers(family):
    model = detr(PRESETS[family])
    # the same backbone, built on its own from the spec's family config, without a head
    own = {"vit": ViT, "vision_mamba": VisionMamba}[family](model.config.backbone_config())
    assert own.head is None
    with_head = {"vit": ViT, "vision_mamba": VisionMamba}[family](
        build_model_config({"family": family, "preset": "tiny", "image_size": 16, "in_channels": 3, "num_labels": 10}))
    assert own.flops_per_token() == with_head.flops_per_token() - 6 * with_head.head.weight.numel()
    # DETR's transformer part, by hand as tests/models/test_detr.py counts it: the tiny preset's widths
    C, H, N, S, K1, C_bb = 32, 64, 6, 64, 4, 32
    encoder = (4 * C * C + 2 * C * H) * S
    decoder = (4 * C * C + 2 * C * C + 2 * C * H) * N + 2 * C * C * S
    heads = (C * K1 + 2 * C * C + 4 * C) * N
    attention = S * S * C + N * (N + S) * C
    rest = 6 * (C_bb * C * S + encoder + decoder + heads) + 12 * attention
    assert model.flops_per_token() == own.flops_per_token() + rest
    # the ResNet DETR of the same transformer: the same rest over its own backbone (16 channels)
    resnet = detr("tiny")
    assert resnet.flops_per_token() - resnet.backbone.flops_per_token() == rest - 6 * (C_bb - 16) * C * S


def test_recipes_have_about_the_resnets_flops():
    import dataclasses

    from axon.config import load_config

    recipes = {name: Path("configs/vision") / f"{name}.yaml" for name in ("detr_shapes", "detr_vit_shapes", "detr_vim_shapes")}
    flops = {}
    for name, path in recipes.items():
        with torch.device("meta"):
            flops[name] = build_model(dataclasses.replace(load_config(path).model, num_labels=3)).flops_per_token()
    assert flops["detr_vit_shapes"] == pytest.approx(flops["detr_shapes"], rel=0.03)
    assert flops["detr_vim_shapes"] == pytest.approx(flops["detr_shapes"], rel=0.03)
    for name in ("detr_vit_shapes", "detr_vim_shapes"):  # the three figures each recipe's comment gives
        text = recipes[name].read_text()
        assert all(f"{f / 1e6:.1f} M" in text for f in flops.values()), name


def test_thirty_steps_of_vit_tiny_lower_the_loss_and_reload(tmp_path):
    from axon.cli import main
    from axon.train.checkpoint import list_checkpoints
    from axon.train.logging import read_metrics
    from axon.train.run import load_run

    assert main(["train", "--config", "configs/vision/detr_shapes.yaml", "--model.preset=vit-tiny",
                 "--detect.train_images=64", "--detect.val_images=16", "--detect.samples=2", "--train.batch_size=8",
                 "--train.eval_batches=1", "--train.log_interval=1", "--log.progress=false", "--train.threads=1",
                 "--schedule.warmup_steps=2", "--train.max_steps=30", "--train.eval_interval=30",
                 "--train.checkpoint_interval=30", "--optim.lr=3e-3", f"--out_dir={tmp_path}", "--name=vit"]) == 0
    run = tmp_path / "vit"
    losses = [r["train_loss"] for r in read_metrics(run / "metrics.jsonl") if "train_loss" in r]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, losses  # seed 1337: 7.07 -> 5.25 (0.74)
    cfg, model, _ = load_run(run, device="cpu")
    assert cfg.model.backbone == "vit:tiny" and isinstance(model.backbone, ViT)
    saved = load_file(str(list_checkpoints(run / "checkpoints")[0] / "model.safetensors"))
    state = model.state_dict()
    assert saved.keys() <= state.keys() and all(torch.equal(state[k], v) for k, v in saved.items())
    assert any(k.startswith("backbone.blocks.") for k in saved)

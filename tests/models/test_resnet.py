"""The ResNet family (axon.models.resnet): torchvision's parameter counts, shapes through every
preset, the small-image stem, the feature map other families read, batch norm's two modes,
FLOPs against torch's counter, learning, and one-line refusals of bad configs. Parity of the
logits with torchvision and transformers: tests/interop/test_resnet.py."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.flops import count_params
from axon.models.resnet import PRESETS, ResNet, ResNetConfig


def resnet(preset="tiny", **over):
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "resnet", "preset": preset, "num_labels": 10, **over}))


def images(cfg, B=4, size=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = size or cfg.image_size
    return torch.rand(B, cfg.in_channels, size, size, generator=g) * 2 - 1  # in [-1, 1]


def test_registered_as_an_image_classifier():
    assert FAMILIES["resnet"].config is ResNetConfig and FAMILIES["resnet"].model is ResNet
    assert FAMILIES["resnet"].task == "image_classify"
    assert build_model_config({"family": "resnet", "preset": "tiny"}).block_size == 1  # one image is one "token"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_parameter_counts(preset):
    labels = int(PRESETS[preset]["params"].split("(")[1].split()[0])
    cfg = build_model_config({"family": "resnet", "preset": preset, "num_labels": labels})
    assert f"{count_params(cfg):,}" == PRESETS[preset]["params"].split(" (")[0]  # on the meta device


def test_torchvisions_counts_at_1000_labels():
    counts = {p: count_params(build_model_config({"family": "resnet", "preset": p, "num_labels": 1000}))
              for p in ("resnet18", "resnet34", "resnet50")}
    assert counts == {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


@pytest.mark.parametrize("preset, size, feature", [
    ("tiny", 8, (16, 4)), ("digits", 8, (64, 2)),
    ("resnet18", 32, (512, 1)), ("resnet34", 32, (512, 1)), ("resnet50", 64, (2048, 2)),
])
def test_shapes_through_every_preset(preset, size, feature):
    model = resnet(preset, image_size=size).eval()
    x = images(model.config, B=2)
    with torch.no_grad():
        logits, fmap = model(x), model.forward_features(x)
    channels, side = feature
    assert logits.shape == (2, 10) and logits.isfinite().all()
    assert fmap.shape == (2, channels, side, side) and model.feature_channels == channels == model.config.feature_channels
    assert model.feature_size == side


def test_the_small_stem_keeps_the_resolution_and_the_imagenet_stem_divides_it_by_4():
    small = resnet("resnet18", stem="small", image_size=16).eval()
    big = resnet("resnet18", image_size=64).eval()
    assert small.config.downsampling == 8 and big.config.downsampling == 32
    with torch.no_grad():
        assert small.pool(small.stem(images(small.config))).shape[-1] == 16  # 3x3 stride 1, no pool
        assert big.pool(big.stem(images(big.config))).shape[-1] == 16  # 7x7 stride 2, pool stride 2
        assert small.forward_features(images(small.config)).shape[-2:] == (2, 2)
    assert small.stem[0].kernel_size == (3, 3) and isinstance(small.pool, torch.nn.Identity)
    assert big.stem[0].kernel_size == (7, 7) and isinstance(big.pool, torch.nn.MaxPool2d)


def test_the_bottleneck_strides_in_its_3x3():
    """v1.5: the first block of stage 2 halves the map in its 3x3, so its 1x1 sees every pixel."""
    block = resnet("resnet50", image_size=64).stages[1][0]
    assert block.conv1[0].stride == (1, 1) and block.conv2[0].stride == (2, 2) and block.conv3[0].stride == (1, 1)
    assert block.shortcut[0].stride == (2, 2) and block.shortcut[0].kernel_size == (1, 1)


def test_a_backbone_without_labels_gives_features_and_refuses_logits():
    model = build_model(build_model_config({"family": "resnet", "preset": "tiny"}))
    assert model.head is None
    x = images(model.config)
    assert model.forward_features(x).shape == (4, 16, 4, 4)
    with pytest.raises(ValueError, match="num_labels"):
        model(x)


def test_batch_norm_trains_on_the_batch_and_evaluates_with_running_averages():
    model = resnet()
    x = images(model.config, B=8)
    buffers = {n for n, _ in model.named_buffers()}
    assert {n for n in buffers if n.endswith("running_mean")}  # checkpoints carry the statistics
    before = model.stem[1].running_mean.clone()
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    assert not torch.equal(before, model.stem[1].running_mean)  # the training forward updated them
    assert (train_out - eval_out).abs().max() > 1e-3
    with torch.no_grad():  # eval mode: an image's logits do not depend on the rest of the batch
        assert torch.allclose(model(x[:3]), eval_out[:3], atol=1e-6, rtol=0)


def test_zero_init_residual_makes_every_block_start_as_its_shortcut():
    model = resnet("digits", zero_init_residual=True).eval()
    x = torch.relu(torch.randn(2, 16, 8, 8))  # a block's input is a ReLU's output
    with torch.no_grad():
        assert torch.equal(model.stages[0][0](x), x)  # relu(0 + x) = x
    assert all(block.last_norm().weight.abs().sum() == 0 for stage in model.stages for block in stage)


def test_gradients_reach_every_parameter():
    model = resnet("resnet50", image_size=32, layers=(1, 1, 1, 1)).train()
    model(images(model.config)).logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("preset, over", [("tiny", {}), ("digits", {}), ("resnet50", dict(image_size=64)),
                                          ("resnet18", dict(image_size=40))])
def test_flops_per_image_are_the_flop_counters(preset, over):
    """flops_per_token counts per image (block_size 1): 6 x the multiply-accumulates of every conv
    and the head; torch's FlopCounterMode counts the forward's 2 x MACs: x3 for training."""
    model = resnet(preset, **over).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images(model.config, B=1))
    assert model.flops_per_token() == 3 * counter.get_total_flops()


def test_overfits_one_batch_of_digits():
    """Real learning: the tiny ResNet memorises 32 of scikit-learn's digits: the loss falls 20-fold
    and every training image is classified right."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images[:32], dtype=torch.float32).unsqueeze(1) / 8 - 1  # (32, 1, 8, 8) in [-1, 1]
    y = torch.tensor(digits.target[:32])
    model = resnet().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20, losses[::10]
    with torch.no_grad():
        assert (model.train()(x).argmax(-1) == y).all()


@pytest.mark.parametrize("over, field", [
    (dict(image_size=0), "model.image_size"),
    (dict(image_size=4, stem="imagenet"), "model.image_size"),  # two stages after the 7x7 and the pool: / 8
    (dict(in_channels=0), "model.in_channels"),
    (dict(num_labels=1), "model.num_labels"),
    (dict(layers=()), "model.layers"),
    (dict(layers=(1, 0)), "model.layers"),
    (dict(base_width=0), "model.base_width"),
    (dict(block="wide"), "model.block"),
    (dict(stem="cifar"), "model.stem"),
    (dict(vocab_size=10), "model.vocab_size"),
])
def test_bad_configs_name_the_field(over, field):
    with pytest.raises(ConfigError) as e:
        build_model_config({"family": "resnet", "preset": "tiny", **over})
    msg = str(e.value)
    assert field in msg and "\n" not in msg, msg

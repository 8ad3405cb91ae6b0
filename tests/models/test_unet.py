"""The diffusion U-Net (axon.models.unet): the paper's parameter count, parity with diffusers'
UNet2DModel, conditioning on the timestep and the class (with the null class), gradients, FLOPs,
a batch overfitted, and one-line refusals of bad configs."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.flops import count_params
from axon.models.unet import PRESETS, UNet, UNetConfig

from numerics import assert_close_orders


def unet(preset="tiny", **over):
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "unet", "preset": preset, **over}))


@pytest.fixture(scope="module")
def tiny_cond():
    return unet(num_classes=3).eval()


def batch(cfg, B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    return x, torch.randint(0, 1000, (B,), generator=g)


def test_registered_as_a_diffusion_family():
    assert FAMILIES["unet"].config is UNetConfig and FAMILIES["unet"].model is UNet
    assert FAMILIES["unet"].task == "diffusion"
    assert build_model_config({"family": "unet", "preset": "tiny"}).block_size == 1  # one image is one "token"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_parameter_counts(preset):
    cfg = build_model_config({"family": "unet", "preset": preset})
    assert f"{count_params(cfg):,}" == PRESETS[preset]["params"]  # on the meta device: no memory, no init


def test_cifar10_has_the_papers_35_7m_parameters_and_diffusers_count():
    n = count_params(build_model_config({"family": "unet", "preset": "cifar10"}))
    assert n == 35_746_307 and round(n / 1e6, 1) == 35.7  # Ho et al. 2020, appendix B: "35.7 million"
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):  # google/ddpm-cifar10-32's architecture, built locally (nothing downloaded)
        ref = diffusers.UNet2DModel(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=32,
            attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, dropout=0.1)
    assert sum(p.numel() for p in ref.parameters()) == n


@pytest.mark.parametrize("preset", ["tiny", "digits"])
@pytest.mark.parametrize("learn_sigma", [False, True])
def test_forward_shapes(preset, learn_sigma):
    model = unet(preset, learn_sigma=learn_sigma).eval()
    x, t = batch(model.config, B=2)
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == (2, x.size(1) * (2 if learn_sigma else 1), *x.shape[2:]) and out.isfinite().all()


def test_no_buffers_so_an_ema_cannot_touch_a_schedule(tiny_cond):
    assert list(tiny_cond.buffers()) == []
    assert set(tiny_cond.state_dict()) == {n for n, _ in tiny_cond.named_parameters()}


def test_the_class_changes_the_output_and_none_is_the_null_class(tiny_cond):
    x, t = batch(tiny_cond.config)
    with torch.no_grad():
        outs = [tiny_cond(x, t, torch.full((4,), c)) for c in range(4)]  # 3 classes + the null class
        none = tiny_cond(x, t, None)
    assert torch.equal(none, outs[3])  # same computation: y=None is row num_classes
    for a in range(4):
        for b in range(a):
            assert (outs[a] - outs[b]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="without classes"):
        unet()(x, t, torch.zeros(4, dtype=torch.long))


def test_the_timestep_changes_the_output(tiny_cond):
    x, _ = batch(tiny_cond.config)
    with torch.no_grad():
        a = tiny_cond(x, torch.full((4,), 10))
        b = tiny_cond(x, torch.full((4,), 500))
        shared = tiny_cond(x, torch.tensor(10))  # one scalar timestep for the whole batch
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(shared, a)


def test_gradients_reach_every_parameter():
    model = unet(num_classes=3, learn_sigma=True, dropout=0.1).train()
    x, t = batch(model.config)
    model(x, t, torch.tensor([0, 1, 2, 3])).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.numerics
def test_parity_with_diffusers_unet2dmodel():
    """The same weights in diffusers' UNet2DModel (the layout of google/ddpm-cifar10-32 at the tiny
    size, with a class table) give the same output: fp64, so the bound is ~1e-12."""
    diffusers = pytest.importorskip("diffusers")
    model = unet(num_classes=3).double().eval()
    cfg = model.config
    torch.manual_seed(1)
    ref = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(4, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=2, attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1,
        num_class_embeds=cfg.num_classes + 1).double().eval()
    ours = dict(model.named_parameters())

    def res(prefix, mine):
        yield from ((f"{prefix}.{a}", f"{mine}.{b}") for a, b in [
            ("norm1", "norm1"), ("conv1", "conv1"), ("time_emb_proj", "emb_proj"), ("norm2", "norm2"),
            ("conv2", "conv2"), ("conv_shortcut", "skip")])

    pairs = [("time_embedding.linear_1", "embed.fc1"), ("time_embedding.linear_2", "embed.fc2"),
             ("class_embedding", "embed.class_emb"), ("conv_in", "conv_in"), ("conv_norm_out", "norm_out"),
             ("conv_out", "conv_out"),
             *res("down_blocks.0.resnets.0", "down.0.res"), ("down_blocks.0.downsamplers.0.conv", "down.1.conv"),
             *res("down_blocks.1.resnets.0", "down.2.res"), *res("mid_block.resnets.0", "mid.0.res"),
             *res("mid_block.resnets.1", "mid.1.res"),
             *res("up_blocks.0.resnets.0", "up.0.res"), *res("up_blocks.0.resnets.1", "up.1.res"),
             ("up_blocks.0.upsamplers.0.conv", "up.2.conv"),
             *res("up_blocks.1.resnets.0", "up.3.res"), *res("up_blocks.1.resnets.1", "up.4.res")]
    attns = [("down_blocks.1.attentions.0", "down.2.attn"), ("mid_block.attentions.0", "mid.0.attn"),
             ("up_blocks.0.attentions.0", "up.0.attn"), ("up_blocks.0.attentions.1", "up.1.attn")]
    theirs = dict(ref.named_parameters())
    assert len(ours) == len(theirs) - 4 * len(attns)  # diffusers' q, k, v: 6 tensors; our fused qkv: 2
    done = set()
    with torch.no_grad():
        for a, b in pairs:
            for kind in ("weight", "bias"):
                if f"{b}.{kind}" in ours:
                    ours[f"{b}.{kind}"].copy_(theirs[f"{a}.{kind}"])
                    done.add(f"{b}.{kind}")
        for a, b in attns:
            for kind in ("weight", "bias"):
                ours[f"{b}.qkv.{kind}"].copy_(torch.cat([theirs[f"{a}.to_{n}.{kind}"] for n in "qkv"]))
                ours[f"{b}.proj.{kind}"].copy_(theirs[f"{a}.to_out.0.{kind}"])
                ours[f"{b}.norm.{kind}"].copy_(theirs[f"{a}.group_norm.{kind}"])
                done |= {f"{b}.qkv.{kind}", f"{b}.proj.{kind}", f"{b}.norm.{kind}"}
    assert done == set(ours)  # every parameter came from diffusers
    x, t = batch(cfg)
    x = x.double()
    y = torch.tensor([0, 1, 2, 3])  # 3: the null class
    with torch.no_grad():
        got = model(x, t, y)
        want = ref(x, t, class_labels=y).sample
    # n: the widest reduction, a 3x3 conv over the 16 channels of an up block's input; depth: every
    # conv and Linear, plus the two products of each attention, as if all were in sequence
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    n = max(m.weight[0].numel() for m in layers)
    assert n == 9 * 16
    assert_close_orders(got, want, n=n, depth=len(layers) + 2 * len(attns))


def test_flops_per_image_are_the_flop_counters():
    """flops_per_token counts per image (block_size 1); torch's FlopCounterMode, with SDPA written
    out as matmuls, counts the forward: x3 for training."""
    for model in (unet(), unet("digits")):
        x, t = batch(model.config, B=3)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, t)
        assert model.flops_per_token() * 3 == 3 * counter.get_total_flops()


def test_overfits_one_batch_of_noise_prediction_targets():
    """Real learning: the tiny U-Net fits the noise of 8 noisy digits at fixed timesteps (DDPM's
    forward process with the paper's linear betas written out here), the loss falling 20-fold."""
    from sklearn.datasets import load_digits

    model = unet()
    x0 = torch.tensor(load_digits().images[:8], dtype=torch.float32).unsqueeze(1) / 8 - 1  # (8, 1, 8, 8) in [-1, 1]
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (8,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()[t].view(-1, 1, 1, 1)
    xt = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = (model(xt, t) - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20, losses[::10]


@pytest.mark.parametrize("over, field", [
    (dict(image_size=12, channel_mult=(1, 2, 2, 2)), "model.image_size"),
    (dict(attn_resolutions=(2,)), "model.attn_resolutions"),
    (dict(channel_mult=()), "model.channel_mult"),
    (dict(channel_mult=(1, 0)), "model.channel_mult"),
    (dict(norm_groups=3), "model.norm_groups"),
    (dict(base_channels=2, norm_groups=1), "model.base_channels"),
    (dict(num_res_blocks=0), "model.num_res_blocks"),
    (dict(in_channels=0), "model.in_channels"),
    (dict(dropout=1.0), "model.dropout"),
    (dict(num_classes=0), "model.num_classes"),
    (dict(learn_sigma="yes"), "model.learn_sigma"),
    (dict(vocab_size=10), "model.vocab_size"),
])
def test_bad_configs_name_the_field(over, field):
    with pytest.raises(ConfigError) as e:
        build_model_config({"family": "unet", "preset": "tiny", **over})
    msg = str(e.value)
    assert field in msg and "\n" not in msg, msg

"""The MLP denoiser for 2-D toy data (axon.models.mlp_denoiser): shapes, conditioning on the
timestep and the class (with the null class), gradients, FLOPs, a batch overfitted, and one-line
refusals of bad configs."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.flops import count_params
from axon.models.mlp_denoiser import PRESETS, MLPDenoiser, MLPDenoiserConfig


def mlp(preset="tiny", **over):
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "mlp_denoiser", "preset": preset, **over}))


@pytest.fixture(scope="module")
def tiny_cond():
    return mlp(num_classes=3).eval()


def batch(B=6, D=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randint(0, 1000, (B,), generator=g)


def test_registered_as_a_diffusion_family():
    assert FAMILIES["mlp_denoiser"].config is MLPDenoiserConfig and FAMILIES["mlp_denoiser"].model is MLPDenoiser
    assert FAMILIES["mlp_denoiser"].task == "diffusion"
    assert build_model_config({"family": "mlp_denoiser", "preset": "tiny"}).block_size == 1  # one point, one "token"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_parameter_counts(preset):
    cfg = build_model_config({"family": "mlp_denoiser", "preset": preset})
    assert f"{count_params(cfg):,}" == PRESETS[preset]["params"]


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("learn_sigma", [False, True])
def test_forward_shapes(preset, learn_sigma):
    model = mlp(preset, learn_sigma=learn_sigma, data_dim=3).eval()
    x, t = batch(D=3)
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == (6, 6 if learn_sigma else 3) and out.isfinite().all()
    assert list(model.buffers()) == []  # parameters only: no schedule an EMA could overwrite


def test_the_class_changes_the_output_and_none_is_the_null_class(tiny_cond):
    x, t = batch()
    with torch.no_grad():
        outs = [tiny_cond(x, t, torch.full((6,), c)) for c in range(4)]  # 3 classes + the null class
        none = tiny_cond(x, t)
    assert torch.equal(none, outs[3])
    assert all((outs[a] - outs[b]).abs().max() > 1e-3 for a in range(4) for b in range(a))
    with pytest.raises(ValueError, match="without classes"):
        mlp()(x, t, torch.zeros(6, dtype=torch.long))


def test_the_timestep_changes_the_output(tiny_cond):
    x, _ = batch()
    with torch.no_grad():
        a, b = tiny_cond(x, torch.full((6,), 3)), tiny_cond(x, torch.full((6,), 900))
        assert torch.equal(tiny_cond(x, torch.tensor(3)), a)  # one scalar timestep for the whole batch
    assert (a - b).abs().max() > 1e-3


def test_gradients_reach_every_parameter():
    model = mlp(num_classes=2, learn_sigma=True, dropout=0.1).train()
    x, t = batch()
    model(x, t, torch.tensor([0, 1, 2, 0, 1, 2])).pow(2).mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def test_flops_per_point_are_the_flop_counters():
    model = mlp()
    x, t = batch(B=5)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t)
    assert model.flops_per_token() * 5 == 3 * counter.get_total_flops()  # training: 3x the forward


def test_overfits_one_batch_of_noise_prediction_targets():
    """The tiny denoiser fits the noise of 32 noisy points of two classes at fixed timesteps: the
    loss falls 100-fold (the linear-beta forward process written out here)."""
    model = mlp(num_classes=2)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    x0 = torch.randn(32, 2, generator=g) * 0.1 + torch.stack([y * 2.0 - 1, 1 - y * 2.0], 1)  # two blobs
    t = torch.randint(0, 1000, (32,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()[t, None]
    xt = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = (model(xt, t, y) - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 100, losses[::25]


@pytest.mark.parametrize("over, field", [
    (dict(data_dim=0), "model.data_dim"),
    (dict(n_layer=0), "model.n_layer"),
    (dict(n_embd=2), "model.n_embd"),
    (dict(dropout=-0.1), "model.dropout"),
    (dict(num_classes=-1), "model.num_classes"),
    (dict(n_embd=1.5), "model.n_embd"),
    (dict(block_size=8), "model.block_size"),
])
def test_bad_configs_name_the_field(over, field):
    with pytest.raises(ConfigError) as e:
        build_model_config({"family": "mlp_denoiser", "preset": "tiny", **over})
    assert field in str(e.value) and "\n" not in str(e.value), str(e.value)

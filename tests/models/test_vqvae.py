"""The VQ-VAE family (axon.models.vqvae): shapes, a round trip on a planted codebook, gradients
through the quantiser, an overfit batch, preset counts, the FLOPs rule and bad configs."""

import pytest
import torch
from torch import nn

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.vqvae import PRESETS, VQVAE


def model(**fields) -> VQVAE:
    return build_model(build_model_config({"family": "vqvae", "preset": "tiny", **fields}))


def test_shapes_encode_decode_and_forward_agree():
    torch.manual_seed(0)
    for downsample, tokens in ((0, 64), (1, 16), (2, 4)):
        m = model(downsample=downsample).eval()
        x = torch.rand(3, 1, 8, 8) * 2 - 1
        recon, loss, codes = m(x)
        assert recon.shape == x.shape and codes.shape == (3, tokens) and codes.dtype == torch.int64
        assert loss.dim() == 0 and recon.abs().max() <= 1
        assert torch.equal(m.encode(x), codes)
        torch.testing.assert_close(m.decode(codes), recon)  # z + (z_q - z) is z_q up to rounding
        assert m.tokens_per_image == tokens and m.codebook_size == 16


def identity_like(m: VQVAE) -> None:
    """Encoder z = x and decoder tanh(z_q), through the ReLUs as x = relu(x) - relu(-x) (downsample 0)."""
    C, H = m.config.in_channels, m.config.hidden
    with torch.no_grad():
        for conv in (m.encoder[0], m.encoder[2], m.decoder[0], m.decoder[2]):
            conv.weight.zero_()
            conv.bias.zero_()
        centre = m.encoder[0].weight.shape[-1] // 2
        for c in range(C):
            m.encoder[0].weight[2 * c, c, centre, centre] = 1.0  # relu(x_c)
            m.encoder[0].weight[2 * c + 1, c, centre, centre] = -1.0  # relu(-x_c)
            m.encoder[2].weight[c, 2 * c] = 1.0
            m.encoder[2].weight[c, 2 * c + 1] = -1.0  # z_c = x_c
            m.decoder[0].weight[2 * c, c] = 1.0
            m.decoder[0].weight[2 * c + 1, c] = -1.0
            m.decoder[2].weight[c, 2 * c, 1, 1] = 1.0
            m.decoder[2].weight[c, 2 * c + 1, 1, 1] = -1.0  # tanh(z_q)
    assert H >= 2 * C


def test_round_trip_on_a_planted_codebook():
    """Images built exactly from codebook vectors (one code per pixel, 2 channels) encode to the
    planted codes; decoding gives the images back (through the final tanh), and encoding those
    (after atanh) gives the same codes again."""
    torch.manual_seed(0)
    m = model(downsample=0, in_channels=2, code_dim=2, hidden=4).eval()
    identity_like(m)
    book = torch.rand(16, 2) * 1.6 - 0.8  # 16 distinct codes inside (-1, 1)
    m.quantizer.codebook.copy_(book)
    planted = torch.randint(0, 16, (5, 64))
    images = book[planted].reshape(5, 8, 8, 2).permute(0, 3, 1, 2)  # (5, 2, 8, 8)
    assert torch.equal(m.encode(images), planted)
    out = m.decode(planted)
    torch.testing.assert_close(out, torch.tanh(images))
    assert torch.equal(m.encode(torch.atanh(out)), planted)
    recon, loss, codes = m(images)
    assert torch.equal(codes, planted) and float(loss.detach()) < 1e-12


def test_gradient_reaches_the_encoder_through_the_quantiser():
    torch.manual_seed(0)
    for update in ("ema", "gradient"):
        m = model(codebook_update=update)
        x = torch.rand(4, 1, 8, 8) * 2 - 1
        recon, loss, _ = m(x)
        (((recon - x) ** 2).mean() + loss).backward()
        assert m.encoder[0].weight.grad.abs().sum() > 0 and m.decoder[-2].weight.grad.abs().sum() > 0
        assert isinstance(m.quantizer.codebook, nn.Parameter) == (update == "gradient")  # EMA: a buffer
        assert ("quantizer.cluster_size" in m.state_dict()) == (update == "ema")  # checkpoints carry the averages


def test_overfits_one_batch():
    torch.manual_seed(0)
    m = model(codebook_size=64)
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        recon, loss, _ = m(x)
        mse = ((recon - x) ** 2).mean()
        first = first if first is not None else float(mse.detach())
        opt.zero_grad()
        (mse + loss).backward()
        opt.step()
    assert float(mse.detach()) < 0.25 * first, (first, float(mse.detach()))


def test_presets_registration_and_flops_hand_count():
    assert FAMILIES["vqvae"].task == "vq" and FAMILIES["vqvae"].model is VQVAE
    for name, preset in PRESETS.items():
        m = model(preset=name)
        assert f"{sum(p.numel() for p in m.parameters()):,}" == preset["params"].split()[0]
    m = model()  # tiny: hidden 8, D 8, K 16, 8x8 -> 4x4
    macs = (1 * 8 * 9) * 64 + (8 * 8 * 16) * 16 + (8 * 8) * 16  # conv3x3, conv4x4 s2, conv1x1 (encoder)
    macs += (8 * 8) * 16 + (8 * 8 * 16) * 16 + (8 * 1 * 9) * 64  # conv1x1, conv-transpose at its 4x4 input, conv3x3
    assert m.flops_per_token() == 6 * macs + 2 * 16 * 16 * 8


def test_bad_configs_name_the_field():
    cases = [({"codebook_size": 1}, "model.codebook_size"), ({"downsample": 4}, "model.downsample"),
             ({"ema_decay": 1.0}, "model.ema_decay"), ({"codebook_update": "kmeans"}, "model.codebook_update"),
             ({"dead_code_steps": -1}, "model.dead_code_steps"), ({"beta": -0.5}, "model.beta")]
    for fields, name in cases:
        with pytest.raises(ConfigError, match=name.replace(".", r"\.")) as e:
            build_model_config({"family": "vqvae", "preset": "tiny", **fields})
        assert len(str(e.value).splitlines()) == 1

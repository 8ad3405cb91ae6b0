import pytest
import torch

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.decoder import Decoder, DecoderConfig
from axon.objectives import causal_lm_loss

from cache_checks import reductions
from numerics import assert_close_orders

GPT2 = dict(mlp="gelu", norm="layernorm", norm_bias=True, pos="learned", bias=True)
LLAMA = dict(mlp="swiglu", norm="rmsnorm", pos="rope", bias=False, n_kv_head=2, tie_embeddings=False)
VARIANTS = {
    "gpt2": GPT2,
    "llama-gqa": LLAMA,
    "llama-mqa": {**LLAMA, "n_kv_head": 1},
    "qk-norm": {**LLAMA, "qk_norm": True},
    "gpt2-untied-nobias": {**GPT2, "bias": False, "norm_bias": False, "tie_embeddings": False},
}


def tiny(**kw):
    base = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)
    return Decoder(DecoderConfig(**{**base, **kw}))


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_and_causality(variant):
    model = tiny(**VARIANTS[variant]).eval()
    idx = torch.randint(0, 37, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 37)
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 37
    logits2 = model(changed)
    assert torch.equal(logits2[:, :10], logits[:, :10])  # the same shapes and kernels: the prefix is equal
    assert not torch.allclose(logits2[:, 10:], logits[:, 10:])


@pytest.mark.numerics
@pytest.mark.parametrize("variant", VARIANTS)
def test_sdpa_and_reference_paths_agree(variant):
    model = tiny(**VARIANTS[variant]).eval()
    idx = torch.randint(0, 37, (2, 16))
    fast = model(idx)
    for block in model.blocks:
        block.attn.impl = "reference"
    n, depth = reductions(model, steps=16)  # the widest of width, MLP and keys; the layers + the head
    assert_close_orders(model(idx), fast, n=n, depth=depth)


@pytest.mark.parametrize("variant", ["gpt2", "llama-gqa"])
def test_overfits_one_batch(variant):
    torch.manual_seed(0)
    model = tiny(**VARIANTS[variant])
    idx = torch.randint(0, 37, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, _ = causal_lm_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.1, (first, loss.item())


def test_tied_embeddings_share_storage():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    assert tied.lm_head.weight is tied.wte.weight
    assert untied.num_params() - tied.num_params() == 37 * 32


def test_dropout_active_only_in_training():
    model = tiny(dropout=0.5)
    idx = torch.randint(0, 37, (1, 16))
    model.eval()
    assert torch.equal(model(idx), model(idx))
    model.train()
    assert not torch.allclose(model(idx), model(idx))


def test_too_long_sequence_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(n_embd=30, n_head=4), "model.n_embd"),  # not divisible
        (dict(n_head=4, n_kv_head=3), "model.n_kv_head"),  # not a whole group
        (dict(n_embd=12, n_head=4, pos="rope"), "model.n_embd"),  # head_dim 3 is odd
        (dict(dropout=1.0), "model.dropout"),
        (dict(n_layer=0), "model.n_layer"),
    ],
)
def test_invalid_configs_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        DecoderConfig(**kw)


def test_odd_head_dim_is_fine_with_learned_positions():
    DecoderConfig(n_embd=12, n_head=4, pos="learned")


# Published parameter counts (Hugging Face configs / papers) for every preset with one.
PUBLISHED = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "smollm-135m": 134_515_008,
    "tinyllama-1.1b": 1_100_048_384,
    "llama-3.2-1b": 1_235_814_400,
    "llama2-7b": 6_738_415_616,
}


@pytest.mark.parametrize("preset", PUBLISHED)
def test_preset_parameter_counts(preset):
    cfg = build_model_config({"preset": preset})
    with torch.device("meta"):  # counts without allocating gigabytes
        model = build_model(cfg)
    assert model.num_params() == PUBLISHED[preset]
    assert FAMILIES["decoder"].presets[preset]["params"] == f"{PUBLISHED[preset]:,}"


def test_flops_per_token_hand_count():
    cfg = DecoderConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=4, mlp="gelu",
                        norm="layernorm", norm_bias=False, bias=False, pos="learned")
    model = Decoder(cfg)
    # N: qkv 4*12 + proj 4*4 + fc 4*16 + proj 16*4 = 192 matrix weights, 3 LayerNorm gains of 4,
    # and the (tied) head's 10*4 matmul. 6N + attention 12 * n_layer * T * C = 12 * 1 * 8 * 4.
    assert model.flops_per_token() == 6 * (192 + 12 + 40) + 12 * 1 * 8 * 4

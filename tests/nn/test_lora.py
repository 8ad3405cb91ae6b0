"""LoRA (axon.nn.lora): the layer's maths, pattern matching and its errors, freezing, dropout,
exact merge/unmerge, adapter files, and every model family.

A merged weight W0 + (alpha/r) B A computes the adapted layer's mathematics in another order (one
product with the sum against two products summed): tests/numerics.py, kind 2, bounded with n the
longest reduction and depth the reductions in sequence from the first adapted layer to the output.
Unmerging restores the very tensors, so everything after it is compared bit for bit."""

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close_orders
from torch import nn

from axon.config import build_model_config
from axon.errors import ConfigError, DataError
from axon.models import FAMILIES, build_model
from axon.nn.lora import (
    LoRALinear,
    apply_lora,
    count_parameters,
    load_adapters,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_and_unload,
    merge_lora,
    save_adapters,
    unmerge_lora,
)

from cache_checks import reductions



def randomize_adapters(model, std=0.05):
    """B = 0 at init makes every adapter a no-op; tests of the adapted path need B != 0."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, m in lora_layers(model):
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * std)


# --------------------------------------------------------------------------------------------
# The layer


def test_from_linear_shares_the_base_and_starts_as_the_base_layer():
    base = nn.Linear(12, 20)
    x = torch.randn(3, 5, 12)
    lora = LoRALinear.from_linear(base, rank=4, alpha=8.0)
    assert lora.weight is base.weight and lora.bias is base.bias  # shared Parameters, no copy
    assert lora.lora_A.shape == (4, 12) and lora.lora_B.shape == (20, 4)
    assert torch.count_nonzero(lora.lora_B) == 0 and torch.count_nonzero(lora.lora_A) > 0
    assert torch.equal(lora(x), base(x))
    other = LoRALinear.from_linear(base, rank=4, alpha=8.0)  # two adapters over one base matrix
    assert other.weight is lora.weight and other.lora_A is not lora.lora_A
    assert [n for n, _ in lora.named_parameters()] == ["weight", "bias", "lora_A", "lora_B"]
    no_bias = LoRALinear.from_linear(nn.Linear(4, 4, bias=False), 2, 2.0)
    assert no_bias.bias is None


@pytest.mark.numerics
def test_forward_is_base_plus_scaled_low_rank_update():
    lora = LoRALinear(6, 10, rank=3, alpha=12.0)
    randomize_adapters(lora, std=1.0)
    x = torch.randn(7, 6)
    expected = x @ lora.weight.T + lora.bias + (12.0 / 3) * (x @ lora.lora_A.T @ lora.lora_B.T)
    assert_close_orders(lora(x), expected, n=6, depth=2)  # addmm vs mm + bias over 6 inputs; x A then B
    # the same matmul on the same shapes; scaling by 4 = 2^2 is exact on either side of it
    assert torch.equal(lora.delta_weight(), 4.0 * lora.lora_B @ lora.lora_A)


def test_bad_hyperparameters_are_config_errors():
    for kw, field in (({"rank": 0, "alpha": 1.0}, "rank"), ({"rank": 2, "alpha": 0.0}, "alpha"),
                      ({"rank": 2, "alpha": 1.0, "dropout": 1.0}, "dropout")):
        with pytest.raises(ConfigError, match=field):
            LoRALinear.from_linear(nn.Linear(4, 4), **kw)


def test_dropout_acts_on_the_adapter_input_in_training_only():
    torch.manual_seed(0)
    lora = LoRALinear.from_linear(nn.Linear(16, 16), rank=4, alpha=4.0, dropout=0.5)
    randomize_adapters(lora, std=1.0)
    x = torch.randn(8, 16)
    lora.train()
    a, b = lora(x), lora(x)
    assert not torch.equal(a, b)  # a fresh mask each call
    lora.eval()
    expected = F.linear(x, lora.weight, lora.bias) + lora.scaling * (x @ lora.lora_A.T @ lora.lora_B.T)
    assert torch.equal(lora(x), expected)  # eval: dropout is the identity, the same kernels on the same shapes
    assert torch.equal(lora(x), lora(x))
    # the base path never sees dropout: with B = 0 training output equals the base output
    plain = LoRALinear.from_linear(nn.Linear(16, 16), rank=4, alpha=4.0, dropout=0.5).train()
    assert torch.equal(plain(x), F.linear(x, plain.weight, plain.bias))


@pytest.mark.numerics
def test_merge_equals_adapted_forward_and_unmerge_restores_bit_for_bit():
    lora = LoRALinear.from_linear(nn.Linear(32, 24), rank=8, alpha=16.0)
    randomize_adapters(lora)
    x = torch.randn(5, 32)
    adapted = lora(x)
    w0, w0_bits = lora.weight, lora.weight.detach().clone()
    lora.merge()
    assert lora.merged and lora.weight is not w0
    assert_close_orders(lora(x), adapted, n=32, depth=2)  # x W' over 32 inputs against x W + (x A) B
    assert torch.equal(lora.weight, w0_bits + lora.delta_weight())
    assert [n for n, _ in lora.named_parameters()] == ["weight", "bias", "lora_A", "lora_B"]  # stash unregistered
    lora.unmerge()
    assert lora.weight is w0 and torch.equal(lora.weight, w0_bits)
    assert torch.equal(lora(x), adapted)


# --------------------------------------------------------------------------------------------
# Models


# The Toy model's merged-vs-adapted bound: its longest reduction is an LSTM gate (W_ih x + W_hh h,
# 8 + 8 inputs); from blocks.0.qkv the error passes 2 blocks, the LSTM's 6 steps (6-token inputs)
# and the head.
TOY_N, TOY_DEPTH = 16, 2 + 6 + 1


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.blocks = nn.ModuleList(nn.ModuleDict({"qkv": nn.Linear(8, 24), "proj": nn.Linear(8, 8)}) for _ in range(2))
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, idx):
        x = self.emb(idx)
        for b in self.blocks:
            x = x + b["proj"](b["qkv"](x)[..., :8])
        return self.head(self.rnn(x)[0])


def test_apply_lora_matches_names_and_keeps_parameter_names():
    model = Toy()
    before = {n for n, _ in model.named_parameters()}
    names = apply_lora(model, ["blocks.*.qkv", "head"], rank=2, alpha=4.0)
    assert names == ["blocks.0.qkv", "blocks.1.qkv", "head"]
    assert isinstance(model.blocks[1]["qkv"], LoRALinear) and not isinstance(model.blocks[1]["proj"], LoRALinear)
    after = {n for n, _ in model.named_parameters()}
    assert after - before == {f"{n}.lora_{x}" for n in names for x in "AB"}
    assert model.head.weight is model.emb.weight  # the tie survives


def test_pattern_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"'\*\.nope' matches no module; linear layers: blocks\.0\.qkv"):
        apply_lora(Toy(), ["*.qkv", "*.nope"], rank=2, alpha=2.0)
    with pytest.raises(ConfigError, match=r"matches only non-Linear modules: rnn \(LSTM\).*LSTM's gate matrices are not Linear"):
        apply_lora(Toy(), ["rnn"], rank=2, alpha=2.0)
    with pytest.raises(ConfigError, match="has no nn.Linear layers"):
        apply_lora(nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4)), ["*"], rank=2, alpha=2.0)
    model = Toy()
    apply_lora(model, ["head"], rank=2, alpha=2.0)
    with pytest.raises(ConfigError, match="already has LoRA"):
        apply_lora(model, ["head"], rank=2, alpha=2.0)
    with pytest.raises(ConfigError, match="MultiheadAttention"):
        apply_lora(nn.Sequential(nn.MultiheadAttention(8, 2)), ["*.out_proj"], rank=2, alpha=2.0)


def test_mark_only_lora_trainable_with_also_patterns():
    model = Toy()
    apply_lora(model, ["*.qkv"], rank=2, alpha=2.0)
    mark_only_lora_trainable(model, also=["blocks.1.proj.*"])
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["blocks.0.qkv.lora_A", "blocks.0.qkv.lora_B", "blocks.1.proj.bias", "blocks.1.proj.weight",
                         "blocks.1.qkv.lora_A", "blocks.1.qkv.lora_B"]
    mark_only_lora_trainable(model, also=["head.weight"])  # tied: trainable through either name
    assert model.emb.weight.requires_grad
    with pytest.raises(ConfigError, match="'nothing.*' matches no parameter"):
        mark_only_lora_trainable(model, also=["nothing.*"])


@pytest.mark.numerics
def test_merging_a_tied_head_leaves_the_embedding_alone():
    model = Toy().eval()
    apply_lora(model, ["head", "*.qkv"], rank=2, alpha=2.0)
    randomize_adapters(model)
    idx = torch.randint(0, 10, (2, 6))
    adapted, emb = model(idx), model.emb.weight.detach().clone()
    assert merge_lora(model) == 3
    assert torch.equal(model.emb.weight, emb)
    assert_close_orders(model(idx), adapted, n=TOY_N, depth=TOY_DEPTH)
    unmerge_lora(model)
    assert model.head.weight is model.emb.weight


def test_save_and_load_adapters_round_trip(tmp_path):
    torch.manual_seed(1)
    a, b = Toy().eval(), Toy().eval()
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        apply_lora(m, ["*.qkv"], rank=2, alpha=2.0)
    randomize_adapters(a)
    idx = torch.randint(0, 10, (2, 6))
    assert not torch.equal(a(idx), b(idx))
    path = save_adapters(a, tmp_path / "ad.safetensors", extra={"blocks.0.proj.bias": a.blocks[0]["proj"].bias},
                         metadata={"rank": 2})
    assert set(lora_state_dict(a)) == {f"blocks.{i}.qkv.lora_{x}" for i in (0, 1) for x in "AB"}
    assert load_adapters(b, path) == {"rank": "2"}
    assert torch.equal(a(idx), b(idx))
    with pytest.raises(ConfigError, match="adapters do not fit this model: .*missing blocks.0.head"):
        c = Toy()
        apply_lora(c, ["*.qkv", "head"], rank=2, alpha=2.0)
        c.blocks[0].add_module("head", LoRALinear(8, 8, rank=2))
        load_adapters(c, path)
    d = Toy()
    apply_lora(d, ["*.qkv"], rank=3, alpha=2.0)
    with pytest.raises(ConfigError, match=r"has shape \(2, 8\), the model expects \(3, 8\)"):
        load_adapters(d, path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="not a readable safetensors"):
        load_adapters(b, tmp_path / "bad.safetensors")
    with pytest.raises(DataError, match="not found"):
        load_adapters(b, tmp_path / "missing.safetensors")


@pytest.mark.numerics
def test_merge_and_unload_gives_plain_linears():
    model = Toy().eval()
    apply_lora(model, ["*.qkv"], rank=2, alpha=2.0)
    randomize_adapters(model)
    idx = torch.randint(0, 10, (2, 6))
    adapted = model(idx)
    assert merge_and_unload(model) == ["blocks.0.qkv", "blocks.1.qkv"]
    assert not lora_layers(model) and type(model.blocks[0]["qkv"]) is nn.Linear
    assert_close_orders(model(idx), adapted, n=TOY_N, depth=TOY_DEPTH)


# --------------------------------------------------------------------------------------------
# Every family: (model overrides, targets, inputs)

V = 40
LM = lambda: (torch.randint(0, V, (2, 12)),)
CLS = lambda: (torch.randint(0, V, (2, 12)), torch.ones(2, 12, dtype=torch.bool))
SEQ2SEQ = lambda: (torch.randint(0, V, (2, 10)), torch.randint(0, V, (2, 8)))
REWARD = lambda: (torch.randint(0, V, (2, 12)), torch.tensor([12, 7]))  # ids, real lengths
IMAGES = lambda: (torch.randn(2, 1, 8, 8), torch.tensor([3, 700]))  # noisy 8x8 images, timesteps
POINTS = lambda: (torch.randn(4, 2), torch.tensor([0, 3, 500, 999]))  # noisy 2-D points, timesteps
CASES = {
    "decoder": ({}, ["*.qkv", "*.attn.proj", "*.mlp.*", "lm_head"], LM),
    "bert": ({"head": "classify", "num_labels": 3}, ["layers.*.attn.*", "layers.*.mlp.*"], CLS),
    "seq2seq": ({}, ["*attn.q", "*attn.kv", "*attn.qkv", "*.mlp.fc", "lm_head"], SEQ2SEQ),
    "rnn_seq2seq": ({}, ["attn.*", "readout", "lm_head"], SEQ2SEQ),
    "rnn": ({}, ["lm_head"], LM),
    "rnn_classifier": ({"num_labels": 3}, ["head"], CLS),
    "progressive": ({}, ["*.qkv", "*.mlp.*"], LM),
    "conv_attention": ({}, ["*.qkv", "down", "up"], LM),
    "mamba": ({}, ["*.in_proj", "*.x_proj", "*.dt_proj", "*.out_proj"], LM),
    "reward": ({}, ["*.qkv", "*.mlp.*", "reward_head"], REWARD),
    "unet": ({}, ["*.qkv", "*.attn.proj", "*.emb_proj", "embed.*"], IMAGES),  # denoisers: no vocabulary
    "mlp_denoiser": ({}, ["blocks.*.fc*", "in_proj", "out_proj"], POINTS),
}


def merge_reductions(family, model, T=12):
    """(n, depth) for merged against adapted outputs of a CASES model on T tokens: n the longest
    reduction (MLP widths, gate inputs, positions), depth the layers from the first adapted one to
    the output, the head included."""
    cfg = model.config
    if family in ("decoder", "conv_attention", "mamba", "reward"):  # adapters from the first block on
        return reductions(model, T)
    if family == "rnn_seq2seq":  # the attention and readout at every decoder step: the recurrence's bound
        return reductions(model, T)
    if family == "progressive":
        return max(cfg.n_embd, cfg.hidden, T), len(model.blocks) + 1
    if family == "bert":  # + the pooler and the classifier
        return max(cfg.n_embd, cfg.hidden, T), cfg.n_layer + 2
    if family == "seq2seq":  # from the first encoder layer: every encoder and decoder layer, the head
        return max(cfg.n_embd, cfg.hidden, T), cfg.enc_layers + cfg.dec_layers + 1
    if family == "rnn":  # only the head is adapted: one reduction over the state
        return cfg.hidden, 1
    if family == "rnn_classifier":  # only the head, over the pooled state of both directions
        return cfg.hidden * (2 if cfg.bidirectional else 1), 1
    if family in ("unet", "mlp_denoiser"):  # from the timestep MLP on: every conv and Linear, and each
        # attention's two products, as if all were in sequence; n: the widest (a 3x3 conv: 9 x channels)
        from axon.models.unet import SpatialAttention

        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        attention = [m for m in model.modules() if isinstance(m, SpatialAttention)]
        keys = max((m.resolution**2 for m in attention), default=1)  # the positions one query sees
        return max(keys, *(m.weight[0].numel() for m in layers)), len(layers) + 2 * len(attention)
    raise ValueError(family)


def family_model(family):
    if family not in FAMILIES:
        pytest.skip(f"family {family} not in this tree")
    over, targets, inputs = CASES[family]
    torch.manual_seed(0)
    vocab = {"vocab_size": V} if family not in ("unet", "mlp_denoiser") else {}
    model = build_model(build_model_config({"family": family, "preset": "tiny", **vocab, **over})).eval()
    return model, targets, inputs()


@pytest.mark.numerics
@pytest.mark.parametrize("family", list(CASES))
def test_lora_on_every_family(family):
    model, targets, x = family_model(family)
    base_out = model(*x).detach()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    names = apply_lora(model, targets, rank=2, alpha=4.0)
    assert names
    assert torch.equal(model(*x), base_out)  # B = 0: unchanged at init
    # (checked before freezing: some models take another, equally exact, kernel path when
    # nothing upstream requires grad, which moves the last bits)
    mark_only_lora_trainable(model)
    trainable, total = count_parameters(model)
    assert trainable == sum(m.lora_A.numel() + m.lora_B.numel() for _, m in lora_layers(model)) < total

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for step in range(3):
        opt.zero_grad()
        out = model(*x)
        out.float().pow(2).mean().backward()
        if step == 0:  # only adapter tensors receive gradients (B's first, A's once B != 0)
            got = {n for n, p in model.named_parameters() if p.grad is not None}
            assert got and all(n.endswith(("lora_A", "lora_B")) for n in got)
            assert any(n.endswith("lora_B") for n in got)
        opt.step()
    state = model.state_dict()
    for k, v in base_state.items():
        assert torch.equal(state[k], v), f"{k} changed"
    assert any(not torch.equal(m.lora_B, torch.zeros_like(m.lora_B)) for _, m in lora_layers(model))

    randomize_adapters(model)
    adapted = model(*x).detach()
    assert not torch.allclose(adapted, base_out)
    bases = {n: m.weight for n, m in lora_layers(model)}
    merge_lora(model)
    n, depth = merge_reductions(family, model)
    assert_close_orders(model(*x), adapted, n=n, depth=depth)
    unmerge_lora(model)
    for n, m in lora_layers(model):
        assert m.weight is bases[n]
    for k, v in base_state.items():
        assert torch.equal(model.state_dict()[k], v)
    assert torch.equal(model(*x), adapted)


def test_word2vec_error_says_it_has_no_linear():
    if "word2vec" not in FAMILIES:
        pytest.skip("no word2vec family")
    model = build_model(build_model_config({"family": "word2vec", "preset": "tiny", "vocab_size": V}))
    with pytest.raises(ConfigError, match="Word2Vec has no nn.Linear layers"):
        apply_lora(model, ["*"], rank=2, alpha=2.0)


def test_lstm_pattern_error_on_the_rnn_family():
    model = build_model(build_model_config({"family": "rnn", "preset": "tiny", "vocab_size": V}))
    lstm = next(n for n, m in model.named_modules() if isinstance(m, nn.LSTM))
    with pytest.raises(ConfigError, match=rf"matches only non-Linear modules: {lstm} \(LSTM\)"):
        apply_lora(model, [lstm], rank=2, alpha=2.0)

"""The decoder's MLP choices (axon.nn.mlp.MLPS): shapes, each activation and gate against a hand
computation, the hidden widths and the FLOPs that follow from them."""

import math

import pytest
import torch

from axon.errors import ConfigError
from axon.models.decoder import Decoder, DecoderConfig
from axon.model_configs.progressive import block_linears
from axon.nn.mlp import GATED, MLPS, build_mlp


def test_every_choice_is_a_config_choice():
    from typing import get_args, get_type_hints

    assert set(get_args(get_type_hints(DecoderConfig)["mlp"])) == set(MLPS)
    assert set(GATED) == {"swiglu", "reglu", "geglu"}


@pytest.mark.parametrize("name", MLPS)
def test_shapes_and_the_linears_lora_may_name(name):
    cfg = DecoderConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=24, mlp=name)
    mlp = build_mlp(name, 24, cfg.hidden, bias=False, dropout=0.0)
    x = torch.randn(2, 5, 24)
    assert mlp(x).shape == (2, 5, 24)
    linears = {f"mlp.{n}" for n, m in mlp.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears == set(block_linears(cfg)[2:])
    model = Decoder(cfg)
    assert model(torch.randint(0, 11, (2, 8))).shape == (2, 8, 11)


def _hand(u: float, act: str) -> float:
    """The activations in plain floats."""
    sig = 1 / (1 + math.exp(-u))
    return {"relu": max(0.0, u), "sigmoid": sig, "silu": u * sig,
            "gelu_tanh": 0.5 * u * (1 + math.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3))),
            "gelu_erf": 0.5 * u * (1 + math.erf(u / math.sqrt(2)))}[act]


@pytest.mark.parametrize("name,act", [("gelu", "gelu_tanh"), ("relu", "relu"), ("sigmoid", "sigmoid"), ("silu", "silu")])
def test_plain_activation_against_a_hand_computation(name, act):
    """With fc and proj set by hand (identity-like), the block returns act(u) coordinate by coordinate."""
    mlp = build_mlp(name, 3, 3, bias=False, dropout=0.0).double()
    with torch.no_grad():
        mlp.fc.weight.copy_(torch.eye(3))
        mlp.proj.weight.copy_(torch.eye(3))
    x = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64)
    assert mlp(x).tolist() == pytest.approx([_hand(u, act) for u in x.tolist()], abs=1e-12)


@pytest.mark.parametrize("name,act", [("swiglu", "silu"), ("reglu", "relu"), ("geglu", "gelu_erf")])
def test_each_gate_against_a_hand_computation(name, act):
    """gate_up = [W_gate; W_up] set by hand: out = proj(act(x W_gate) * (x W_up)) in plain floats."""
    mlp = build_mlp(name, 2, 2, bias=False, dropout=0.0).double()
    w_gate = [[1.0, -2.0], [0.5, 1.0]]
    w_up = [[2.0, 0.0], [-1.0, 3.0]]
    w_proj = [[1.0, 1.0], [0.0, -1.0]]
    with torch.no_grad():
        mlp.gate_up.weight.copy_(torch.tensor(w_gate + w_up))
        mlp.proj.weight.copy_(torch.tensor(w_proj))
    x = [0.7, -0.4]
    gate = [sum(w * xi for w, xi in zip(row, x)) for row in w_gate]  # [1.5, -0.05]
    up = [sum(w * xi for w, xi in zip(row, x)) for row in w_up]  # [1.4, -1.9]
    h = [_hand(g, act) * u for g, u in zip(gate, up)]
    out = [sum(w * hi for w, hi in zip(row, h)) for row in w_proj]
    got = mlp(torch.tensor(x, dtype=torch.float64)).tolist()
    assert got == pytest.approx(out, abs=1e-12)
    # ReGLU's negative gate (-0.05) closes its unit exactly; SwiGLU's and GeGLU's let a little through
    assert (h[1] == 0.0) == (name == "reglu")


def test_hidden_widths_and_flops_follow_the_matrices():
    """Gated blocks are 8/3 C wide (three matrices), plain ones 4 C (two): the same weights and so
    the same training FLOPs per token within each kind."""
    def cfg(mlp):
        return DecoderConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=96, mlp=mlp)

    assert {cfg(m).hidden for m in GATED} == {256}
    assert {cfg(m).hidden for m in MLPS if m not in GATED} == {384}
    flops = {m: Decoder(cfg(m)).flops_per_token() for m in MLPS}
    assert len({flops[m] for m in GATED}) == 1 and len({flops[m] for m in MLPS if m not in GATED}) == 1
    # per layer: gated 3 * C * 256 = 73,728 weights, plain 2 * C * 384 = 73,728: equal, as the rule intends
    # (96 * 8 / 3 = 256 exactly); at a width where rounding to 32 differs, so do the FLOPs, by 6 per weight
    wide = {m: DecoderConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=104, mlp=m) for m in ("relu", "reglu")}
    dense = {m: Decoder(c).flops_per_token() for m, c in wide.items()}
    assert dense["reglu"] - dense["relu"] == 6 * 2 * (3 * 104 * wide["reglu"].hidden - 2 * 104 * 416)


def test_moe_refuses_the_new_choices_in_one_line():
    with pytest.raises(ConfigError, match="model.mlp: MoE experts are gelu or swiglu MLPs, got reglu") as e:
        DecoderConfig(vocab_size=50, n_embd=32, n_head=2, mlp="reglu", moe_experts=4)
    assert "\n" not in str(e.value)

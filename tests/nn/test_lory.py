"""Lory's soft-merged MoE (axon.nn.lory) and the decoder built with it (moe_kind=lory): the merge
against a hand-written weighted sum, causality at every position, the auxiliary losses and
loads, config errors, the parameter and FLOP counts, and recomputed decoding."""

import pytest
import torch
import torch.nn.functional as F

from axon.errors import ConfigError
from axon.models.decoder import Decoder, DecoderConfig
from axon.nn.lory import LoryMoE
from axon.nn.moe import aux_losses, routing_metrics
from axon.objectives import CausalLM

from cache_checks import assert_same_logits
from numerics import assert_close_orders

BASE = dict(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32)


def layer(mlp="swiglu", bias=False, segment=4, E=3) -> LoryMoE:
    torch.manual_seed(0)
    m = LoryMoE(8, 12, E, segment, mlp=mlp, bias=bias)
    with torch.no_grad():
        for b in (m.fc_bias, m.proj_bias):
            if b is not None:
                b.normal_()
        m.first_logits.normal_()
    return m


@pytest.mark.parametrize("mlp, bias", [("swiglu", False), ("gelu", True)])
def test_merge_equals_a_hand_computed_weighted_sum(mlp, bias):
    m = layer(mlp, bias).double()
    x = torch.randn(2, 10, 8, dtype=torch.double)  # segments [0:4], [4:8], [8:10] (padded)
    y = m(x)
    for b in range(2):
        for k, (lo, hi) in enumerate([(0, 4), (4, 8), (8, 10)]):
            logits = m.first_logits if k == 0 else m.router(x[b, lo - 4 : lo].mean(0))  # previous segment's mean
            p = logits.softmax(-1)
            w_in = sum(p[e] * (m.gate_up[e] if mlp == "swiglu" else m.fc[e]) for e in range(3))
            w_out = sum(p[e] * m.proj[e] for e in range(3))
            h = x[b, lo:hi] @ w_in.t()
            if bias:
                h = h + sum(p[e] * m.fc_bias[e] for e in range(3))
            if mlp == "swiglu":
                g, u = h.chunk(2, -1)
                h = F.silu(g) * u
            else:
                h = F.gelu(h, approximate="tanh")
            out = h @ w_out.t()
            if bias:
                out = out + sum(p[e] * m.proj_bias[e] for e in range(3))
            assert torch.allclose(y[b, lo:hi], out, atol=1e-12), (b, k)


def test_every_output_depends_on_earlier_positions_only():
    """Change position j: every output at a position < j is unchanged -- in earlier segments, and
    in j's own segment (whose merge reads the previous segment only); later segments change."""
    m = layer().double()
    x = torch.randn(1, 16, 8, dtype=torch.double)
    for j in (0, 3, 5, 9, 15):
        x2 = x.clone()
        x2[0, j] += 1.0
        y, y2 = m(x), m(x2)
        assert torch.equal(y[0, :j], y2[0, :j]), j  # the same arithmetic on the same values: exact
        assert not torch.allclose(y[0, j], y2[0, j])
        nxt = (j // 4 + 1) * 4  # the next segment's merge reads j's segment
        if nxt < 16:
            assert not torch.allclose(y[0, nxt:nxt + 4], y2[0, nxt:nxt + 4])


def test_aux_losses_and_soft_loads():
    m = layer(E=4)
    m.train()
    x = torch.randn(3, 8, 8)
    m(x)
    aux = aux_losses(m)
    assert set(aux) == {"moe_balance", "moe_z"}
    # balance = coef * E * sum P_i^2 over the 3 rows x 2 segments' merge weights: >= coef (uniform: coef)
    with torch.no_grad():
        P = m.merge_weights(x.view(3, 2, 4, 8))[1].reshape(-1, 4).mean(0)
    assert aux["moe_balance"].item() == pytest.approx(0.01 * 4 * float((P * P).sum()), rel=1e-6)
    assert aux["moe_balance"].item() >= 0.01 * (1 - 1e-6)
    loads = routing_metrics(m)
    assert sum(loads[f"moe_expert{i}_frac"] for i in range(4)) == pytest.approx(1.0)
    assert loads["moe_expert0_frac"] == pytest.approx(float(P[0]), rel=1e-5) and loads["moe_dropped_frac"] == 0
    assert routing_metrics(m) == {}  # counters reset


def test_balance_loss_gradient_reaches_the_router_and_the_first_logits():
    m = layer()
    m(torch.randn(2, 12, 8))
    aux_losses(m)["moe_balance"].backward()
    assert m.router.weight.grad.abs().sum() > 0 and m.first_logits.grad.abs().sum() > 0


# -- the decoder with moe_kind=lory ------------------------------------------------------------

def lory_model(**kw) -> Decoder:
    torch.manual_seed(0)
    return Decoder(DecoderConfig(**{**BASE, "moe_experts": 4, "moe_kind": "lory", "lory_segment": 4, **kw}))


@pytest.mark.parametrize("kw, field, words", [
    (dict(moe_kind="lory"), "model.moe_kind", "moe_experts > 0"),
    (dict(lory_segment=4), "model.lory_segment", "only used by moe_kind=lory"),
    (dict(moe_experts=2, moe_kind="lory", lory_segment=0), "model.lory_segment", "[1, block_size=32]"),
    (dict(moe_experts=2, moe_kind="lory", lory_segment=33), "model.lory_segment", "[1, block_size=32]"),
    (dict(moe_experts=2, moe_kind="lory", moe_capacity_factor=1.0), "model.moe_capacity_factor", "drops no token"),
    (dict(moe_experts=2, moe_kind="lory", moe_norm_topk=True), "model.moe_norm_topk", "no top-k gates"),
])
def test_impossible_lory_settings_are_config_errors(kw, field, words):
    with pytest.raises(ConfigError) as e:
        DecoderConfig(**{**BASE, **kw})
    assert field in str(e.value) and words in str(e.value)


def test_cli_reports_a_bad_lory_setting_in_one_line(capsys):
    from axon.cli import main

    assert main(["config", "--model.lory_segment=8"]) == 2
    err = capsys.readouterr().err
    assert "model.lory_segment" in err and len(err.strip().splitlines()) == 1


def test_active_parameters_and_flops_count_one_merged_expert_and_the_merge():
    dense = Decoder(DecoderConfig(**BASE))
    m = lory_model(moe_experts=4, moe_top_k=3)  # top_k is not used by a merge
    assert all(isinstance(b.mlp, LoryMoE) for b in m.blocks)
    C, H, L, E, S = 32, dense.config.hidden, 2, 4, 4
    expert, router = 3 * C * H, E * C + E  # the router's matrix and the first segment's logits
    assert m.num_params() == dense.num_params() + L * ((E - 1) * expert + router)
    assert m.active_params() == dense.num_params() + L * router
    assert m.flops_per_token() == pytest.approx(dense.flops_per_token() + 6 * L * router + L * 6 * E * expert / S)


def test_a_future_token_never_changes_a_past_logit():
    m = lory_model()
    for mode in (m.eval, m.train):
        mode()
        x = torch.randint(0, 40, (2, 16))
        for j in (2, 5, 13):
            y = x.clone()
            y[:, j:] = (y[:, j:] + 1) % 40
            assert_same_logits(m, m(x)[:, :j], m(y)[:, :j], steps=16)


def test_trains_with_its_aux_losses_and_overfits_one_batch():
    m = lory_model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randint(0, 40, (4, 32))
    for _ in range(40):
        loss, parts = CausalLM()(m, (x[:, :-1], x[:, 1:]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(parts) == {"ce", "moe_balance", "moe_z"}
    assert parts["ce"].item() < 0.3
    assert m.metrics()["moe_dropped_frac"] == 0


@pytest.mark.numerics
def test_decoding_recomputes_and_equals_the_full_forward():
    from axon.generate import generate
    from axon.generate.recompute import RecomputeCache

    m = lory_model(moe_shared_experts=1).eval()
    x = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        full = m(x)
        cache = m.make_cache(2, 20)
        assert isinstance(cache, RecomputeCache)
        steps = [m(x[:, :7], cache=cache)] + [m(x[:, t:t + 1], cache=cache) for t in range(7, 20)]
    assert_close_orders(torch.cat(steps, 1), full, n=32, depth=3)
    with pytest.raises(ValueError, match="no KV cache"):
        from axon.generate.cache import KVCache

        m.hidden_states(x, cache=KVCache(2, 2, 2, 16, 20))
    out = generate(m, [[1, 2, 3], [4, 5]], 6, temperature=0.0)  # left-padded prompts, recomputed
    for prompt, tokens in zip([[1, 2, 3], [4, 5]], out.tokens):
        ids = torch.tensor([prompt])
        for t in tokens:
            with torch.no_grad():
                assert int(m(ids)[0, -1].argmax()) == t
            ids = torch.cat([ids, torch.tensor([[t]])], 1)


def test_hf_export_refuses_lory(tmp_path):
    from axon.interop.hf import to_hf

    with pytest.raises(ConfigError, match="moe_kind=lory"):
        to_hf(lory_model(), tmp_path / "a")

"""Decoders with MoE feed-forwards: config checks, parameter and FLOP counts, causality, the
objective's auxiliary losses, overfitting, cached decoding, and the metrics of a training run."""

import json

import pytest
import torch

from axon.cli import main
from axon.errors import ConfigError
from axon.eval import evaluate
from axon.models.decoder import Decoder, DecoderConfig
from axon.nn.mlp import SwiGLU
from axon.nn.moe import MoE
from axon.objectives import CausalLM

from cache_checks import assert_same_logits

BASE = dict(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32)


def moe_model(**kw) -> Decoder:
    torch.manual_seed(0)
    return Decoder(DecoderConfig(**{**BASE, "moe_experts": 4, "moe_top_k": 2, **kw}))


@pytest.mark.parametrize("kw, field, words", [
    (dict(moe_experts=4, moe_top_k=5), "model.moe_top_k", "larger than moe_experts=4"),
    (dict(moe_experts=4, moe_top_k=0), "model.moe_top_k", ">= 1"),
    (dict(moe_experts=-1), "model.moe_experts", ">= 0"),
    (dict(moe_experts=4, moe_every=0), "model.moe_every", ">= 1"),
    (dict(moe_experts=4, moe_every=3), "model.moe_every", "leaves no MoE layer"),
    (dict(moe_experts=4, moe_capacity_factor=-1.0), "model.moe_capacity_factor", "positive"),
    (dict(moe_shared_experts=1), "model.moe_shared_experts", "moe_experts > 0"),
    (dict(moe_experts=4, moe_hidden=0), "model.moe_hidden", "positive"),
    (dict(moe_experts=4, moe_aux_loss=-0.1), "model.moe_aux_loss", ">= 0"),
])
def test_impossible_settings_are_config_errors(kw, field, words):
    with pytest.raises(ConfigError) as e:
        DecoderConfig(**{**BASE, **kw})
    assert field in str(e.value) and words in str(e.value)


def test_cli_reports_a_bad_moe_setting_in_one_line(capsys):
    assert main(["config", "--model.moe_experts=2", "--model.moe_top_k=3"]) == 2
    err = capsys.readouterr().err
    assert "model.moe_top_k" in err and len(err.strip().splitlines()) == 1


def test_moe_every_places_experts_in_every_kth_layer():
    m = moe_model(n_layer=4, moe_every=2)
    assert [type(b.mlp) for b in m.blocks] == [SwiGLU, MoE, SwiGLU, MoE]
    m = moe_model(mlp="gelu", moe_top_k=1)
    assert all(isinstance(b.mlp, MoE) and b.mlp.mlp == "gelu" and not b.mlp.normalize for b in m.blocks)


def test_total_and_active_parameters_and_flops():
    dense = Decoder(DecoderConfig(**BASE))
    moe = moe_model(moe_experts=8, moe_top_k=1)
    C, H, L, E = 32, dense.config.hidden, 2, 8
    expert, router = 3 * C * H, E * C
    assert moe.num_params() == dense.num_params() + L * ((E - 1) * expert + router)
    assert moe.active_params() == dense.active_params() + L * router == dense.num_params() + L * router
    # 6 N_active per token: the same attention term, plus the routers' matmuls
    assert moe.flops_per_token() == pytest.approx(dense.flops_per_token() + 6 * L * router)
    top2 = moe_model(moe_experts=8, moe_top_k=2, moe_shared_experts=1)
    assert top2.active_params() == dense.num_params() + L * (2 * expert + router)


@pytest.mark.numerics
def test_a_future_token_never_changes_a_past_logit():
    # The later tokens route elsewhere, so each expert runs on another number of rows (other shapes,
    # possibly other blockings): the prefix is equal up to summation order.
    m = moe_model(moe_capacity_factor=None)
    for mode in (m.eval, m.train):  # no dropping: per-token routing cannot leak across positions
        mode()
        x = torch.randint(0, 40, (2, 16))
        y = x.clone()
        y[:, 10:] = (y[:, 10:] + 1) % 40
        assert_same_logits(m, m(x)[:, :10], m(y)[:, :10], steps=16)
    m = moe_model(moe_capacity_factor=1.0).eval()  # evaluation ignores the capacity factor
    assert_same_logits(m, m(x)[:, :10], m(y)[:, :10], steps=16)


def test_objective_adds_aux_losses_but_reports_cross_entropy():
    m = moe_model(moe_capacity_factor=1.25)
    x, y = torch.randint(0, 40, (2, 16)), torch.randint(0, 40, (2, 16))
    loss, parts = CausalLM()(m, (x, y))
    assert set(parts) == {"ce", "moe_balance", "moe_z"}
    assert torch.equal(loss, parts["ce"] + parts["moe_balance"] + parts["moe_z"])  # the same additions, in order
    assert parts["moe_balance"] > 0.02 * 0.99  # two layers, each >= 0.01 * 1
    m.eval()
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(m(x).flatten(0, 1), y.flatten())
    # the same forward and cross-entropy on the same shapes (no_grad both), times and over 32 targets: equal
    assert evaluate(m, CausalLM(), [(x, y)])["loss"] == float(ce)
    dense = Decoder(DecoderConfig(**BASE))
    loss, parts = CausalLM()(dense, (x, y))
    assert set(parts) == {"ce"} and loss is parts["ce"]


def test_overfits_one_batch():
    m = moe_model(moe_capacity_factor=1.5)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randint(0, 40, (4, 32))
    batch = (x[:, :-1], x[:, 1:])
    for _ in range(40):
        loss, parts = CausalLM()(m, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["ce"].item() < 0.3
    assert m.metrics()["moe_dropped_frac"] < 0.5


@pytest.mark.numerics
def test_cached_decoding_equals_the_full_forward():
    m = moe_model(moe_capacity_factor=1.0, moe_shared_experts=1).eval()
    x = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        full = m(x)
        cache = m.make_cache(2, 20)
        steps = [m(x[:, :8], cache=cache)] + [m(x[:, t:t + 1], cache=cache) for t in range(8, 20)]
    assert_same_logits(m, torch.cat(steps, 1), full, steps=20)  # other shapes: up to summation order


def test_hf_export_refuses_what_mixtral_cannot_hold(tmp_path):
    from axon.interop.hf import to_hf

    with pytest.raises(ConfigError, match="moe_shared_experts=1"):
        to_hf(moe_model(moe_shared_experts=1), tmp_path / "a")
    with pytest.raises(ConfigError, match="moe_every=2"):
        to_hf(moe_model(n_layer=2, moe_every=2), tmp_path / "b")


def test_training_run_logs_expert_loads_and_reports_active_params(tmp_path, capsys):
    args = ["--model.preset=tiny", "--model.moe_experts=4", "--model.moe_top_k=1", "--model.moe_capacity_factor=1.0",
            "--train.batch_size=32", "--train.max_steps=4", "--train.log_interval=2", "--train.eval_interval=100",
            "--train.eval_batches=1", "--train.sample_tokens=0", "--log.progress=false", "--train.threads=1",
            "--schedule.warmup_steps=1", f"--out_dir={tmp_path}", "--name=run", f"--data.cache_dir={tmp_path / 'cache'}"]
    import re

    assert main(["train", *args]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    total, active = (int(n.replace(",", "")) for n in re.search(r"params ([\d,]+) \(([\d,]+) active per token\)", line).groups())
    assert active < total
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "train_loss" in r]
    assert len(logged) == 2
    for r in logged:
        shares = [r[f"moe_expert{i}_frac"] for i in range(4)]
        assert sum(shares) == pytest.approx(1.0) and 0.0 <= r["moe_dropped_frac"] < 1.0
        assert 1.0 <= r["moe_max_load"] <= 4.0 and r["moe_balance"] > 0 and r["moe_z"] > 0

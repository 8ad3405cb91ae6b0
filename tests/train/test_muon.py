"""Muon's orthogonalisation dtype: bf16 (torch's own, bit for bit) or float32 (for CPUs without
native bf16), both within their precision of a float64 Newton-Schulz; ``auto`` follows a probe."""

import pytest
import torch
from numerics import order_tol
from torch.optim._muon import _zeropower_via_newtonschulz

from axon.config import load_config
from axon.models import build_model
from axon.train import optim as O

SHAPES = [(7, 5), (6, 12), (16, 16), (64, 256)]  # tall, wide, square, an MLP matrix
COEFFS, STEPS, EPS = (3.4445, -4.7750, 2.0315), 5, 1e-7


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bf16_newton_schulz_is_torchs_bit_for_bit(shape):
    g = torch.randn(*shape)
    assert torch.equal(O.newton_schulz(g, COEFFS, STEPS, EPS, torch.bfloat16), _zeropower_via_newtonschulz(g, COEFFS, STEPS, EPS))


@pytest.mark.numerics
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_both_dtypes_agree_with_a_float64_newton_schulz(shape, dtype):
    g = torch.randn(*shape)
    exact = O.newton_schulz(g.double(), COEFFS, STEPS, EPS, torch.float64)
    got = O.newton_schulz(g, COEFFS, STEPS, EPS, dtype).double()
    # Each iteration is three products over at most max(shape) terms: 15 reductions deep; the
    # iterate's entries stay below ~1.2 (its singular values are driven into [0.7, 1.2]).
    tol = order_tol(dtype, n=max(shape), depth=3 * STEPS, scale=1.2)
    assert (got - exact).abs().max().item() <= tol
    # and it orthogonalises: singular values in Muon's band
    s = torch.linalg.svdvals(got)
    assert s.min() > 0.5 and s.max() < 1.3


def _steps(opt, params, grads):
    for g in grads:
        for p, gp in zip(params, g):
            p.grad = gp.clone()
        opt.step()


def test_muon_in_bf16_steps_exactly_as_torchs_muon():
    gen = torch.Generator().manual_seed(0)
    whole = [torch.randn(*s, generator=gen) for s in SHAPES]
    grads = [[torch.randn(*s, generator=gen) for s in SHAPES] for _ in range(3)]
    a = [torch.nn.Parameter(w.clone()) for w in whole]
    b = [torch.nn.Parameter(w.clone()) for w in whole]
    _steps(torch.optim.Muon(a, lr=0.05, weight_decay=0.1), a, grads)
    _steps(O.Muon(b, lr=0.05, weight_decay=0.1, ns_dtype=torch.bfloat16), b, grads)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_auto_follows_the_probe(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(O, "bf16_speed_ratio", lambda device_type: 95.0)  # an AVX2 CPU
    dtype, why = O.muon_dtype("auto", cpu)
    assert dtype == torch.float32 and "95x" in why and "no native bf16" in why
    monkeypatch.setattr(O, "bf16_speed_ratio", lambda device_type: 0.6)  # AMX / AVX512-BF16
    assert O.muon_dtype("auto", cpu)[0] == torch.bfloat16
    assert O.muon_dtype("auto", torch.device("cuda"))[0] == torch.bfloat16
    assert O.muon_dtype("float32", cpu) == (torch.float32, "optim.muon_dtype=float32")
    assert O.muon_dtype("bfloat16", cpu)[0] == torch.bfloat16


def test_the_probe_measures_something():
    ratio = O.bf16_speed_ratio("cpu")
    assert ratio > 0 and ratio == O.bf16_speed_ratio("cpu")  # measured once per process


def test_build_optimizers_hands_the_choice_to_muon(monkeypatch):
    monkeypatch.setattr(O, "bf16_speed_ratio", lambda device_type: 95.0)
    cfg = load_config(None, ["--model.preset=tiny", "--model.vocab_size=65"])
    muon, adamw = O.build_optimizers(build_model(cfg.model), cfg.optim)
    assert isinstance(muon, O.Muon) and muon.ns_dtype == torch.float32 and "no native bf16" in muon.ns_dtype_reason
    cfg = load_config(None, ["--model.preset=tiny", "--model.vocab_size=65", "--optim.muon_dtype=bfloat16"])
    assert O.build_optimizers(build_model(cfg.model), cfg.optim)[0].ns_dtype == torch.bfloat16


def test_a_bad_muon_dtype_is_one_line():
    from axon.errors import ConfigError

    with pytest.raises(ConfigError, match="muon_dtype"):
        load_config(None, ["--optim.muon_dtype=fp16"])


def test_the_run_log_names_the_dtype_and_why(tmp_path, cache_dir, monkeypatch, capsys):
    from axon.train.run import train

    monkeypatch.setattr(O, "bf16_speed_ratio", lambda device_type: 95.0)
    train(load_config(None, ["--model.preset=tiny", "--model.block_size=16", "--train.batch_size=2", "--train.max_steps=1",
                             "--train.eval_interval=100", "--train.sample_tokens=0", "--log.progress=false",
                             f"--out_dir={tmp_path}", "--name=m", f"--data.cache_dir={cache_dir}"]))
    out = capsys.readouterr()
    assert "muon: Newton-Schulz in float32 (auto: a bf16 matrix product takes 95x an fp32 one on this CPU (no native bf16))" in out.out + out.err


def test_ranks_agree_on_one_dtype(monkeypatch):
    """A rank whose probe said float32 makes every rank use it (a DDP replica must not round its
    updates differently). Two ranks simulated: the all-reduce returns the other rank's vote."""
    from axon.train import distributed as D

    class TwoRanks(D.Dist):
        enabled = property(lambda self: True)

        def all_reduce(self, values, op="sum"):
            return torch.tensor([1.0])  # the other rank chose float32

    cfg = load_config(None, ["--model.preset=tiny", "--model.vocab_size=65"])
    muon, _ = O.build_optimizers(build_model(cfg.model), cfg.optim)
    muon.ns_dtype, muon.ns_dtype_reason = torch.bfloat16, "auto: fast here"
    TwoRanks().agree_on_dtype([muon])
    assert muon.ns_dtype == torch.float32 and "another rank chose it" in muon.ns_dtype_reason

"""Mamba: the scans against the recurrence, shapes, causality, padding, the state cache through
axon.generate, learning, presets against transformers, config errors, the tiny recipe."""

import json

import pytest
import torch
import torch.nn.functional as F

from axon.cli import main
from axon.config import build_model_config, load_config
from axon.errors import ConfigError
from axon.generate import beam_search, generate, speculative_generate
from axon.generate.cache import context_limit
from axon.models import FAMILIES, build_model
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.mamba import PRESETS, Mamba, MambaConfig
from axon.nn.ssm import scan_chunked, scan_sequential, selective_step

from cache_checks import assert_same_logits, check_left_padded_batch, reductions
from numerics import assert_close_orders

VOCAB = 40


def mamba(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, block_size=8, n_embd=16, n_layer=2, d_state=4, scan_chunk=4)
    model = Mamba(MambaConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():  # larger head (tied: the embedding too) and varied dt: peaked, context-dependent outputs
        model.wte.weight.mul_(20)
    return model


# ----------------------------------------------------------------------------------------------
# The scan
#
# A scan is an elementwise linear recurrence, h_t = dA_t h_{t-1} + dB_t x_t: a decayed sum over the
# steps, so (tests/numerics.py, the convention of cache_checks.reductions) a reduction of length T,
# as is y_t = C_t . h_t over the N states. Two scans, or a scan and the recurrence, agree up to
# summation order with n = max(T, N), depth 1.


def recurrence(x, dt, A, Bm, Cm, h):
    """The paper's equations, one step and one (batch, channel) at a time: the slowest reference."""
    Bsz, T, D = x.shape
    y = torch.zeros(Bsz, T, D, dtype=torch.float64)
    h = h.double().clone()
    for b in range(Bsz):
        for t in range(T):
            for d in range(D):
                h[b, d] = torch.exp(dt[b, t, d] * A[d]) * h[b, d] + dt[b, t, d] * Bm[b, t] * x[b, t, d]
                y[b, t, d] = (Cm[b, t] * h[b, d]).sum()
    return y, h


def random_ssm(Bsz, T, D, N, seed=0, big_dt=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(Bsz, T, D, generator=g)
    dt = torch.rand(Bsz, T, D, generator=g) * (5.0 if big_dt else 0.2)  # big: dA down to exp(-5 * 30): underflows to 0
    A = -torch.rand(D, N, generator=g) * 30 - 0.1
    Bm, Cm = torch.randn(Bsz, T, N, generator=g), torch.randn(Bsz, T, N, generator=g)
    h0 = torch.randn(Bsz, D, N, generator=g)
    return x, dt, A, Bm, Cm, h0


@pytest.mark.numerics
def test_sequential_scan_is_the_recurrence():
    x, dt, A, Bm, Cm, h0 = random_ssm(1, 7, 3, 4)
    y, h = scan_sequential(x, dt, A, Bm, Cm, h0)
    y_ref, h_ref = recurrence(x.double(), dt.double(), A.double(), Bm.double(), Cm.double(), h0)
    # the float32 scan against the float64 recurrence (exact next to it): float32's bound
    assert_close_orders(y, y_ref.float(), n=7)
    assert_close_orders(h, h_ref.float(), n=7)


@pytest.mark.numerics
@pytest.mark.parametrize("T, chunk, big_dt", [(1, 16, False), (37, 4, False), (37, 16, False), (37, 64, False),
                                              (1000, 16, False), (300, 32, True), (48, 16, False)])
def test_chunked_scan_equals_the_step_by_step_recurrence(T, chunk, big_dt):
    """Chunk sizes that do and do not divide T, one chunk longer than T, a long sequence, and
    steps so large that the decay over a chunk underflows: the same numbers, no inf or nan."""
    x, dt, A, Bm, Cm, h0 = random_ssm(2, T, 5, 6, seed=T, big_dt=big_dt)
    for start in (None, h0):
        y_ref, h_ref = scan_sequential(x, dt, A, Bm, Cm, start)
        y, h = scan_chunked(x, dt, A, Bm, Cm, start, chunk)
        assert torch.isfinite(y).all()
        assert_close_orders(y, y_ref, n=max(T, 6))
        assert_close_orders(h, h_ref, n=max(T, 6))


@pytest.mark.numerics
def test_chunked_scan_gradients_equal_the_recurrence():
    inputs = random_ssm(2, 23, 4, 3)
    grads = []
    for scan in (scan_sequential, lambda *a: scan_chunked(*a, chunk=5)):
        leaves = [t.clone().requires_grad_() for t in inputs]
        y, h = scan(*leaves)
        (y.square().sum() + h.sum()).backward()
        grads.append([t.grad for t in leaves])
    # The backward pass is a second scan, in reverse, fed by the first: depth 2. The longest reduction
    # is A's gradient, a sum over the batch and the steps: 2 x 23.
    for a, b in zip(*grads):
        assert_close_orders(a, b, n=2 * 23, depth=2)


@pytest.mark.numerics
def test_one_step_is_one_step_of_the_scan():
    x, dt, A, Bm, Cm, h0 = random_ssm(3, 1, 5, 4)
    y, h = selective_step(x[:, 0], dt[:, 0], A, Bm[:, 0], Cm[:, 0], h0)
    y_ref, h_ref = scan_sequential(x, dt, A, Bm, Cm, h0)
    # other kernels (einsum / bmm, mul + add / addcmul): y reduces over the N = 4 states; h is elementwise
    assert_close_orders(y, y_ref[:, 0], n=4)
    assert_close_orders(h, h_ref, n=1)


# ----------------------------------------------------------------------------------------------
# The model


@pytest.mark.numerics
def test_shapes_last_only_and_scan_impls_agree():
    model = mamba()
    idx = torch.randint(0, VOCAB, (3, 11))
    logits = model(idx)
    assert logits.shape == (3, 11, VOCAB)
    # last_only: the same blocks, then the final norm and the head (width n_embd) on 3 rows instead of 33
    assert_close_orders(model(idx, last_only=True), logits[:, -1:], n=model.config.n_embd)
    model.config.scan_impl = "sequential"  # what auto runs on a CPU: the same computation
    assert torch.equal(model(idx), logits)
    model.config.scan_impl = "chunked"  # the same mathematics in another order
    n, depth = reductions(model, steps=11)
    assert_close_orders(model(idx), logits, n=n, depth=depth)
    mixer = model.blocks[0].mixer
    D, N, R = 32, 4, 1  # expand 2 * 16; dt_rank ceil(16 / 16)
    assert mixer.in_proj.weight.shape == (2 * D, 16) and mixer.conv1d.weight.shape == (D, 1, 4)
    assert mixer.x_proj.weight.shape == (R + 2 * N, D) and mixer.dt_proj.weight.shape == (D, R)
    # S4D-real; exp(log k): two roundings, no reduction
    assert_close_orders(-torch.exp(mixer.A_log[0]), -torch.arange(1.0, N + 1), n=1, depth=2)
    dt = F.softplus(mixer.dt_proj.bias)
    assert 1e-3 <= dt.min() and dt.max() <= 0.1  # log-uniform in [dt_min, dt_max]
    assert model.lm_head.weight is model.wte.weight


@pytest.mark.parametrize("impl", ["chunked", "sequential"])
@torch.no_grad()
def test_a_future_token_never_changes_a_past_logit(impl):
    model = mamba(scan_impl=impl)
    idx = torch.randint(0, VOCAB, (2, 13))
    base = model(idx)
    for t in (0, 4, 5, 12):  # chunk boundaries of scan_chunk=4 too
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 7) % VOCAB
        out = model(changed)
        assert torch.equal(out[:, :t], base[:, :t])  # the same shapes and kernels: equal
        assert not torch.allclose(out[:, t], base[:, t])


@pytest.mark.numerics
@pytest.mark.parametrize("impl", ["chunked", "sequential"])
@torch.no_grad()
def test_padding_anywhere_never_changes_the_state(impl):
    """Pads (left, middle, right) leave a row's conv window and SSM state as if they were absent."""
    model = mamba(scan_impl=impl)
    seq = torch.randint(1, VOCAB, (1, 7))
    alone = model(seq)[0]
    for layout in ([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]):
        mask = torch.tensor([layout], dtype=torch.bool)
        idx = torch.randint(0, VOCAB, mask.shape)
        idx[mask] = seq[0]
        out = model(idx, pad_mask=mask)[0]
        n, depth = reductions(model, steps=10)  # 10 columns against 7: other shapes
        assert_close_orders(out[mask[0]], alone, n=n, depth=depth)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = Mamba(MambaConfig(vocab_size=20, n_embd=32, n_layer=2, d_state=8))
    x = torch.randint(0, 20, (4, 17))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(120):
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, 20), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


# ----------------------------------------------------------------------------------------------
# Generation through axon.generate with the recurrent state cache


@pytest.mark.numerics
@pytest.mark.parametrize("impl", ["chunked", "sequential"])
@torch.no_grad()
def test_prefill_then_steps_equal_the_full_forward(impl):
    model = mamba(scan_impl=impl)
    idx = torch.randint(0, VOCAB, (3, 20))  # longer than block_size 8: no context limit
    full = model(idx)
    cache = model.make_cache(3)
    out = [model(idx[:, :7], cache=cache)]
    out += [model(idx[:, t : t + 1], cache=cache) for t in range(7, 20)]
    assert_same_logits(model, torch.cat(out, 1), full, steps=20)
    assert cache.length == 20 and cache.state[0].shape == (2, 3, 32, 4) and cache.state[1].shape == (2, 3, 32, 4)
    cache = model.make_cache(3)
    chunks = [model(idx[:, a:b], cache=cache) for a, b in [(0, 2), (2, 9), (9, 10), (10, 20)]]  # prompts shorter than d_conv too
    assert_same_logits(model, torch.cat(chunks, 1), full, steps=20)


def test_a_single_token_step_does_not_run_a_scan(monkeypatch):
    model = mamba()
    cache = model.make_cache(2)
    with torch.no_grad():
        model(torch.randint(0, VOCAB, (2, 5)), cache=cache)

        def refuse(*a, **k):
            raise AssertionError("a scan ran for one token")

        monkeypatch.setattr("axon.models.mamba.scan_chunked", refuse)
        monkeypatch.setattr("axon.models.mamba.scan_sequential", refuse)
        model(torch.randint(0, VOCAB, (2, 1)), cache=cache)


@torch.no_grad()
def test_left_padded_batch_matches_each_sequence_alone():
    model = mamba()
    check_left_padded_batch(model, VOCAB, lengths=(9, 2, 6), new_tokens=6)


@pytest.mark.numerics
@torch.no_grad()
def test_crop_and_reorder():
    model = mamba()
    idx = torch.randint(0, VOCAB, (2, 16))
    full = model(idx)
    cache = model.make_cache(2)
    model(idx[:, :6], cache=cache)
    model(idx[:, 6:9], cache=cache)
    model(torch.randint(0, VOCAB, (2, 4)), cache=cache)  # rejected draft tokens
    cache.crop(8)
    out = model(idx[:, 8:11], cache=cache)  # token 6, 7 pending, read first
    assert_same_logits(model, out, full[:, 8:11], steps=11)
    cache.reorder(torch.tensor([1, 1, 0]))
    assert_same_logits(model, model(idx[[1, 1, 0], 11:], cache=cache), full[[1, 1, 0], 11:], steps=16)


def test_generate_beam_and_speculative_decoding():
    model = mamba()
    assert context_limit(model) is None
    prompts = [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [5, 1]]  # the first longer than block_size 8
    out = generate(model, prompts, 12, temperature=0)
    with torch.no_grad():
        for p, toks in zip(prompts, out.tokens):
            seq = list(p)
            for _ in range(12):
                seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
            assert toks == seq[len(p):]
    (best,) = beam_search(model, prompts[0], 10, num_beams=1)
    assert best.tokens == out.tokens[0][:10]
    assert len(beam_search(model, prompts[1], 6, num_beams=3, num_return=3)) == 3
    torch.manual_seed(1)
    decoder = Decoder(DecoderConfig(vocab_size=VOCAB, block_size=64, n_layer=1, n_head=2, n_embd=16, init_std=0.3)).eval()
    for target, draft in ((model, mamba(seed=3, n_layer=1)), (model, decoder), (model, model)):
        res = speculative_generate(target, draft, [5, 6, 7], 20, num_draft=4, temperature=0)
        assert res.tokens == generate(target, [[5, 6, 7]], 20, temperature=0).tokens[0]
    draft_for_decoder = speculative_generate(decoder, model, [5, 6, 7], 20, num_draft=3, temperature=0)  # Mamba drafts
    assert draft_for_decoder.tokens == generate(decoder, [[5, 6, 7]], 20, temperature=0).tokens[0]


# ----------------------------------------------------------------------------------------------
# Config: presets, errors, registration


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_match_transformers(name):
    transformers = pytest.importorskip("transformers")
    c, vocab = PRESETS[name]["config"], PRESETS[name]["config"].get("vocab_size", 65)
    with torch.device("meta"):  # no memory for the large ones
        model = build_model(build_model_config({"family": "mamba", "preset": name, "vocab_size": vocab}))
        hf = transformers.MambaForCausalLM(transformers.MambaConfig(
            vocab_size=vocab, hidden_size=c["n_embd"], num_hidden_layers=c["n_layer"], state_size=c["d_state"]))
    n = model.num_params()
    assert n == sum(p.numel() for p in hf.parameters())
    assert f"{n:,}" == PRESETS[name]["params"].split(" ")[0]


@pytest.mark.parametrize("kw, message", [
    (dict(d_state=0), "model.d_state: must be at least 1"),
    (dict(expand=0), "model.expand: must be positive"),
    (dict(d_conv=0), "model.d_conv: must be at least 1"),
    (dict(dt_rank=0), "model.dt_rank: must be positive"),
    (dict(dt_min=0.5, dt_max=0.1), "model.dt_min: need 0 < dt_min <= dt_max"),
    (dict(scan_chunk=0), "model.scan_chunk: must be positive"),
    (dict(scan_impl="parallel"), "choose one of: auto, chunked, sequential"),
    (dict(preset="huge"), "unknown preset 'huge'"),
])
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_model_config({"family": "mamba", **kw})


def test_registered_with_the_lm_task_and_no_context_limit():
    assert FAMILIES["mamba"].task == "lm"
    cfg = load_config("configs/mamba_tiny.yaml")
    assert cfg.model.family == "mamba" and cfg.model.context_limit is None and cfg.model.scan_impl == "auto"
    assert MambaConfig(n_embd=100).rank == 7  # "auto": ceil(100 / 16)


def test_flops_per_token_counts_the_projections_head_conv_and_scan():
    model = mamba()
    C, D, N, R, V = 16, 32, 4, 1, VOCAB
    matmul = 2 * (C * 2 * D + D * (R + 2 * N) + R * D + D * C) + V * C
    assert model.flops_per_token() == 3 * (2 * matmul + 2 * (2 * D * 4 + 8 * D * N))


# ----------------------------------------------------------------------------------------------
# The tiny recipe through the command line: train, eval, sample past block_size


@pytest.fixture(scope="module")
def mamba_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mamba")
    rc = main(["train", "--config", "configs/mamba_tiny.yaml", "--model.preset=tiny", "--train.max_steps=60",
               "--optim.lr=1e-2", "--train.batch_size=8", "--train.eval_interval=60", "--train.eval_batches=2",
               "--schedule.warmup_steps=5", "--train.sample_tokens=10", "--log.progress=false", "--train.threads=1",
               f"--out_dir={root}", "--name=run", f"--data.cache_dir={root / 'cache'}"])
    assert rc == 0
    return root / "run"


def test_tiny_recipe_learns_and_samples(mamba_run, capsys):
    assert main(["eval", str(mamba_run), "--json", "--max-batches", "3"]) == 0
    loss = json.loads(capsys.readouterr().out)["loss"]
    assert loss < 3.3  # chance is ln(65) = 4.17; character frequencies alone give 3.31
    prompt = "ROMEO: " * 6  # 42 characters, past block_size 32
    assert main(["sample", str(mamba_run), "--prompt", prompt, "--max-new-tokens", "20", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(prompt) and len(out) == len(prompt) + 20 + 1

"""Recurrent language models (RNN, LSTM, GRU): shapes, causality, padding, learning, errors, CLI."""

import pytest
import torch
import torch.nn.functional as F

from axon.cli import main
from axon.config import build_model_config, load_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.rnn import PRESETS, RNNLM, RNNConfig, masked_recurrence

from cache_checks import reductions
from numerics import assert_close_orders

CELLS = ["rnn", "lstm", "gru"]


def model_for(cell, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=30, block_size=16, cell=cell, n_layer=2, n_embd=16, n_hidden=24)
    return RNNLM(RNNConfig(**{**cfg, **kw})).eval()


@pytest.mark.numerics
@pytest.mark.parametrize("cell", CELLS)
def test_shapes_and_last_only(cell):
    model = model_for(cell)
    idx = torch.randint(0, 30, (3, 11))
    logits = model(idx)
    assert logits.shape == (3, 11, 30)
    # last_only: the same recurrence, then the head (over the hidden width) on 3 rows instead of 33
    assert_close_orders(model(idx, last_only=True), logits[:, -1:], n=model.config.hidden, depth=1)
    assert isinstance(model.rnn, {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell])
    assert model.rnn.nonlinearity == "tanh" if cell == "rnn" else True


@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_a_future_token_never_changes_a_past_logit(cell):
    model = model_for(cell)
    idx = torch.randint(0, 30, (2, 12))
    base = model(idx)
    for t in (0, 5, 11):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 7) % 30
        out = model(changed)
        assert torch.equal(out[:, :t], base[:, :t])  # the same shapes and kernels: equal
        assert not torch.allclose(out[:, t], base[:, t])  # and the changed token itself does matter


@pytest.mark.numerics
@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_padding_never_changes_the_state(cell):
    """Pads anywhere in a row (left, middle, right) leave its state as if they were not there."""
    model = model_for(cell)
    seq = torch.randint(1, 30, (1, 7))
    alone = model(seq)[0]  # (7, V)
    for layout in ([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]):
        mask = torch.tensor([layout], dtype=torch.bool)
        idx = torch.randint(0, 30, mask.shape)  # pads hold random ids
        idx[mask] = seq[0]
        out = model(idx, pad_mask=mask)[0]
        # step by step (and on 10 columns) against one fused call on 7: up to summation order
        n, depth = reductions(model, steps=7)  # the 7 real steps; a pad step keeps the state as it is
        assert_close_orders(out[mask[0]], alone, n=n, depth=depth)


def reference_logits(model, idx):
    """The cells written from their papers' equations (module docstring of axon.models.rnn), with
    torch's weight layout: gates stacked as (i, f, g, o) for the LSTM and (r, z, n) for the GRU."""
    cfg, rnn = model.config, model.rnn
    x = model.wte(idx)  # (B, T, C)
    for layer in range(cfg.n_layer):
        w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        h = c = torch.zeros(idx.size(0), cfg.hidden)
        outs = []
        for t in range(idx.size(1)):
            gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            if cfg.cell == "rnn":
                h = torch.tanh(gi + gh)
            elif cfg.cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                (ri, zi, ni), (rh, zh, nh) = gi.chunk(3, -1), gh.chunk(3, -1)
                r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
                h = (1 - z) * torch.tanh(ni + r * nh) + z * h
            outs.append(h)
        x = torch.stack(outs, 1)
    return model.lm_head(x)


@pytest.mark.numerics
@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_parity_with_the_equations(cell):
    model = model_for(cell)
    idx = torch.randint(0, 30, (2, 9))
    n, depth = reductions(model, steps=9)
    assert_close_orders(model(idx), reference_logits(model, idx), n=n, depth=depth)


@pytest.mark.numerics
def test_masked_recurrence_keeps_lstm_cell_state():
    rnn = torch.nn.LSTM(4, 5, num_layers=2, batch_first=True)
    x = torch.randn(2, 6, 4)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    _, (h, c) = masked_recurrence(rnn, x, None, mask)
    _, (h0, c0) = rnn(x[:1, 2:])
    # A batch of 2 against 1: a gate sums 4 (or 5) inputs and 5 state entries, over 2 layers x 4 real steps.
    n, depth = 5 + 5, 2 * 4
    assert_close_orders(h[:, :1], h0, n=n, depth=depth)
    assert_close_orders(c[:, :1], c0, n=n, depth=depth)


@pytest.mark.parametrize("cell", CELLS)
def test_overfits_one_batch(cell):
    torch.manual_seed(0)
    model = RNNLM(RNNConfig(vocab_size=20, block_size=16, cell=cell, n_layer=1, n_embd=32))
    x = torch.randint(0, 20, (4, 17))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, 20), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_tied_head_and_dropout():
    model = RNNLM(RNNConfig(vocab_size=30, n_embd=16, tie_embeddings=True, dropout=0.5, n_layer=2))
    assert model.lm_head.weight is model.wte.weight
    assert model.rnn.dropout == 0.5
    idx = torch.randint(0, 30, (2, 8))
    model.train()
    assert not torch.equal(model(idx), model(idx))  # dropout is active in training
    model.eval()
    assert torch.equal(model(idx), model(idx))


def test_lstm_forget_bias_starts_at_one():
    model = model_for("lstm")
    H = model.config.hidden
    for layer in range(2):
        b = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.all(b[H : 2 * H] == 1.0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts(name):
    cfg = build_model_config({"family": "rnn", "preset": name, "vocab_size": 65})
    model = build_model(cfg)
    assert f"{sum(p.numel() for p in model.parameters()):,}" == PRESETS[name]["params"].split(" ")[0]


def test_flops_per_token_counts_cell_and_head_matmuls():
    model = RNNLM(RNNConfig(vocab_size=65, n_layer=2, n_embd=128, cell="lstm"))
    cell = 2 * 4 * 128 * (128 + 128)  # four gates, input and recurrent matrices, two layers
    assert model.flops_per_token() == 6 * (cell + 65 * 128)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(cell="lstmm"), "choose one of: rnn, lstm, gru"),
        (dict(tie_embeddings=True, n_embd=32, n_hidden=64), "n_hidden (64) must equal n_embd (32)"),
        (dict(dropout=1.0), "model.dropout: must be in [0, 1)"),
        (dict(n_layer=0), "model.n_layer: must be positive"),
        (dict(preset="huge"), "unknown preset 'huge'; choose one of: tiny, char-rnn, char-rnn-large"),
    ],
)
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_model_config({"family": "rnn", **kw})


def test_registered_with_the_lm_task_and_no_context_limit():
    assert FAMILIES["rnn"].task == "lm"
    cfg = load_config("configs/char_rnn.yaml")
    assert cfg.model.family == "rnn" and cfg.model.cell == "lstm" and cfg.model.context_limit is None


# ----------------------------------------------------------------------------------------------
# The tiny recipe through the command line: train, sample (past block_size), beams, eval.


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rnn")
    rc = main(["train", "--config", "configs/char_rnn.yaml", "--model.preset=tiny", "--train.max_steps=200", "--optim.lr=2e-2",
               "--train.batch_size=16", "--train.eval_interval=100", "--train.eval_batches=2", "--schedule.warmup_steps=5",
               "--train.sample_tokens=20", "--log.progress=false", "--train.threads=1", f"--out_dir={root}",
               "--name=run", f"--data.cache_dir={root / 'cache'}"])
    assert rc == 0
    return root / "run"


def test_tiny_recipe_learns(rnn_run, capsys):
    assert main(["eval", str(rnn_run), "--json", "--max-batches", "5"]) == 0
    import json

    loss = json.loads(capsys.readouterr().out)["loss"]
    # Chance is ln(65) = 4.17 nats; the character frequencies alone give 3.31: below that, it reads context.
    assert loss < 3.05


def test_sample_an_rnn_run_past_its_training_window(rnn_run, capsys):
    prompt = "ROMEO: " * 10  # 70 characters, longer than block_size 32: a recurrent model has no context limit
    assert main(["sample", str(rnn_run), "--prompt", prompt, "--max-new-tokens", "50", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(prompt) and len(out) == len(prompt) + 50 + 1
    assert main(["sample", str(rnn_run), "--prompt", "JULIET:", "--beams", "3", "--num-samples", "2",
                 "--max-new-tokens", "10"]) == 0
    assert capsys.readouterr().out.count("--- beam") == 2

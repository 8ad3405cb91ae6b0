"""The convolution-attention model (causal hourglass): shapes, causality for every position,
parity with a Conv1d / ConvTranspose1d reference, overfitting, FLOPs hand count, config errors,
and a few steps of the recipe through the trainer."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from axon.config import build_model_config, load_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.conv_attention import PRESETS, ConvAttention, ConvAttentionConfig
from axon.objectives import causal_lm_loss

from cache_checks import reductions
from numerics import assert_close_orders

V = 29
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "conv_attention_tiny.yaml"



def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=V, block_size=12, n_embd=16, n_head=2, n_pre_layer=1, n_post_layer=1, shorten=3,
                inner_embd=24, inner_head=2, n_inner_layer=1)
    return ConvAttention(ConvAttentionConfig(**{**base, **kw})).eval()


def test_family_and_presets_build():
    assert FAMILIES["conv_attention"].config is ConvAttentionConfig and FAMILIES["conv_attention"].task == "lm"
    for name in PRESETS:
        cfg = build_model_config({"family": "conv_attention", "preset": name, "vocab_size": 65})
        model = build_model(cfg)
        assert f"{model.num_params():,}" in PRESETS[name]["params"]


@pytest.mark.numerics
@torch.no_grad()
def test_shapes_last_only_and_lengths_not_a_multiple_of_k():
    model = tiny()
    idx = torch.randint(0, V, (2, 12))
    logits = model(idx)
    assert logits.shape == (2, 12, V)
    # last_only: the same blocks, then the final norm and the head (width n_embd) on 2 rows instead of 24
    assert_close_orders(model(idx, last_only=True), logits[:, -1:], n=model.config.n_embd, depth=1)
    n, depth = reductions(model, steps=12)
    for T in (1, 2, 5, 7, 11):  # right-padded to a multiple of k inside; the prefix's logits are unchanged
        assert_close_orders(model(idx[:, :T]), logits[:, :T], n=n, depth=depth)  # other shapes: up to summation order
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.numerics
@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
@torch.no_grad()
def test_changing_token_t_never_changes_an_earlier_logit(k, seed):
    model = tiny(seed, shorten=k, init_std=0.3)  # large weights: every dependence is visible
    T = 12
    base = torch.randint(0, V, (1, T))
    # Row t of the batch changes token t only.
    changed = base.repeat(T, 1)
    changed[torch.arange(T), torch.arange(T)] = (changed[torch.arange(T), torch.arange(T)] + 1) % V
    ref, out = model(base)[0], model(changed)  # (T, V), (T, T, V)
    n, depth = reductions(model, steps=T)  # a batch of 1 against a batch of T: up to summation order
    for t in range(T):
        assert_close_orders(out[t, :t], ref[:t], n=n, depth=depth, msg=f"k={k}: token {t} leaked backwards")
        # a real dependence (init_std 0.3) moves a logit by O(1), far above rounding (~1e-6)
        assert (out[t, t] - ref[t]).abs().max() > 1e-3, f"k={k}: position {t} ignores its own token"


@pytest.mark.numerics
@pytest.mark.parametrize("pre,post", [(1, 1), (1, 0), (0, 1)])
@torch.no_grad()
def test_first_positions_before_a_whole_group_are_valid_predictions(pre, post):
    """Positions 0..k-2 are handed group 0, which holds zeros and token 0 only; their logits are
    still functions of every token up to them (not constants, not of later tokens)."""
    k = 4
    model = tiny(shorten=k, n_pre_layer=pre, n_post_layer=post, init_std=0.3)
    idx = torch.randint(0, V, (1, 12))
    ref = model(idx)[0]
    n, depth = reductions(model, steps=12)
    for t in range(k - 1):
        for s in range(t + 1):  # every token at or before t moves position t's prediction
            changed = idx.clone()
            changed[0, s] = (changed[0, s] + 5) % V
            assert (model(changed)[0, t] - ref[t]).abs().max() > 1e-3, (t, s)  # as above: far above rounding
        assert_close_orders(model(idx[:, : t + 1])[0, t], ref[t], n=n, depth=depth)  # a shorter sequence: other shapes


def reference_forward(model: ConvAttention, idx: torch.Tensor) -> torch.Tensor:
    """The same model written with torch's convolutions: shift, Conv1d(kernel=stride=k) down,
    ConvTranspose1d(kernel=stride=k) up."""
    cfg = model.config
    k, d, D = cfg.shorten, cfg.n_embd, cfg.inner_embd
    T = idx.size(1)
    x = model.wte(idx)
    rope = model.rope(0, T)
    for b in model.pre:
        x = b(x, rope)
    h = model.down_norm(x).transpose(1, 2)  # (B, d, T)
    h = F.pad(h, (k - 1, 0))[:, :, :T]  # causal shift right by k-1
    conv_w = model.down.weight.view(D, k, d).permute(0, 2, 1)  # (D, d, k)
    h = F.conv1d(h, conv_w, stride=k).transpose(1, 2)  # (B, T/k, D)
    r = model.inner_rope(0, T // k)
    for b in model.inner:
        h = b(h, r)
    # ConvTranspose1d weight (in=D, out=d, k): position jk+i gets sum_c W[c, o, i] h[j, c]
    up_w = model.up.weight.view(k, d, D).permute(2, 1, 0)  # (D, d, k)
    x = x + F.conv_transpose1d(model.up_norm(h).transpose(1, 2), up_w, stride=k).transpose(1, 2)
    for b in model.post:
        x = b(x, rope)
    return model.lm_head(model.norm_f(x))


@pytest.mark.numerics
@pytest.mark.parametrize("k", [2, 3])
@torch.no_grad()
def test_parity_with_a_conv1d_reference(k):
    model = tiny(shorten=k, init_std=0.1)
    idx = torch.randint(0, V, (3, 12))
    n, depth = reductions(model, steps=12)  # the conv as one matmul against torch's convolutions
    assert_close_orders(model(idx), reference_forward(model, idx), n=n, depth=depth)


def test_overfits_one_batch():
    model = tiny(seed=0, block_size=16, shorten=4).train()
    idx = torch.randint(0, V, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(120):
        loss, _ = causal_lm_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.1, (first, loss.item())
    with torch.no_grad():  # every position, the first k-1 included, predicts its target
        assert (model(x).argmax(-1) == y).all()


def test_flops_per_token_hand_count():
    # rmsnorm, swiglu, no bias, tied head. A block at width w with MLP hidden h:
    # attention 4 w^2, SwiGLU 3 w h, two norm gains 2 w.
    V_, T, d, D, k = 50, 24, 16, 32, 4
    model = ConvAttention(ConvAttentionConfig(vocab_size=V_, block_size=T, n_embd=d, n_head=2, n_pre_layer=2,
                                              n_post_layer=1, shorten=k, inner_embd=D, inner_head=4,
                                              n_inner_layer=3, mlp="swiglu"))
    h_out, h_in = 32 * math.ceil(8 * d / 3 / 32), 32 * math.ceil(8 * D / 3 / 32)  # 64, 96
    block = lambda w, h: 4 * w * w + 3 * w * h + 2 * w
    outer = 3 * block(d, h_out) + d + d + V_ * d  # 3 blocks, norm_f, down_norm, head matmul
    per_group = k * d * D + D + D * k * d  # down conv, up_norm, up linear: once per k tokens
    inner = 3 * block(D, h_in)
    expected = 6 * (outer + per_group / k + inner / k) + 12 * 3 * T * d + 12 * 3 * (T / k) * D / k
    assert model.flops_per_token() == pytest.approx(expected)
    assert model.flops_per_token(48) - model.flops_per_token(24) == pytest.approx(12 * 3 * 24 * d + 12 * 3 * 6 * D / k)
    total = outer - V_ * d + V_ * d + per_group + inner  # every parameter once (tied head = embedding)
    assert model.num_params() == total


def test_cheaper_per_token_than_a_dense_model_of_its_size():
    """The point of the model: the recipe's 2.28M-parameter model costs what the 0.81M default decoder does."""
    cfg = load_config(RECIPE, ["--model.vocab_size=65"]).model
    dense = load_config(RECIPE.parent / "shakespeare_char.yaml", ["--model.vocab_size=65"]).model
    conv, base = build_model(cfg), build_model(dense)
    assert conv.num_params() > 2.5 * base.num_params()
    assert conv.flops_per_token() < 1.02 * base.flops_per_token()


@pytest.mark.parametrize("override,field", [
    ({"block_size": 30, "shorten": 4}, "model.block_size"),
    ({"shorten": 0}, "model.shorten"),
    ({"n_embd": 30, "n_head": 4}, "model.n_embd"),
    ({"inner_embd": 36, "inner_head": 4}, "model.inner_embd"),  # head dim 9: odd, RoPE needs pairs
    ({"n_inner_layer": 0}, "model.n_inner_layer"),
    ({"n_pre_layer": -1}, "model.n_pre_layer"),
    ({"dropout": 1.0}, "model.dropout"),
    ({"n_pre_layer": 0, "n_post_layer": 0}, "model.n_post_layer"),  # tokens inside a group would be unseen
])
def test_impossible_settings_are_config_errors(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_model_config({"family": "conv_attention", "preset": "tiny", **override})


def test_recipe_trains_a_few_steps(tmp_path, cache_dir, capsys):
    from axon.cli import main
    from axon.generate import generate
    from axon.train.logging import read_metrics
    from axon.train.run import load_run, train

    small = ["--model.block_size=32", "--model.n_embd=32", "--model.n_head=2", "--model.inner_embd=64",
             "--model.n_inner_layer=1", "--train.batch_size=8", "--train.max_steps=40", "--train.eval_interval=40",
             "--train.eval_batches=2", "--train.sample_tokens=8", "--train.threads=1", "--train.log_interval=1",
             "--schedule.warmup_steps=5", "--log.progress=false", f"--out_dir={tmp_path}", "--name=conv",
             f"--data.cache_dir={cache_dir}"]
    result = train(load_config(RECIPE, small))
    train_loss = {r["step"]: r["train_loss"] for r in read_metrics(Path(result["run_dir"]) / "metrics.jsonl")
                  if "train_loss" in r}
    assert train_loss[40] < train_loss[1] - 0.6, train_loss
    assert result["val_loss"] < 3.6  # uniform over 65 characters is 4.17
    cfg, model, tok = load_run(result["run_dir"], device="cpu")
    assert cfg.model.family == "conv_attention" and cfg.model.shorten == 4
    assert "--- step 40 ---" in (Path(result["run_dir"]) / "samples.txt").read_text()
    out = generate(model, [tok.encode("ROMEO:")], 10, temperature=0)
    assert len(out.tokens[0]) == 10
    capsys.readouterr()  # the training run's own log lines
    assert main(["sample", result["run_dir"], "--prompt", "ROMEO:", "--max-new-tokens", "10", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:" + tok.decode(out.tokens[0]))  # the CLI decodes the same way

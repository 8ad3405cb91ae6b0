"""The reward model: a decoder body (Decoder.hidden_states) and a scalar head on the last real token.

Also here: Decoder.forward is the same computation it was before hidden_states was split out of
it (bit for bit, against the old forward kept below as the reference path)."""

import math

import pytest
import torch

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.reward import RewardConfig, RewardModel
from axon.nn.masks import forward_pattern_mask

from cache_checks import reductions
from numerics import assert_close_orders

V = 37


def old_forward(self, idx, cache=None, pad_mask=None, last_only=False):
    """Decoder.forward as it was before hidden_states existed (commit 2854114), line for line."""
    B, T = idx.shape
    if cache is None:
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        positions, mask = 0, None
    else:
        positions, mask = cache.prepare(T, pad_mask)
    x = self.wte(idx)
    shared = isinstance(positions, int)
    if self.wpe is not None:
        x = x + (self.wpe.weight[positions : positions + T] if shared else self.wpe(positions))
    rope = None
    if self.rope is not None:
        if cache is not None and cache.length + T > self.config.block_size:
            rope = self.rope.at(positions, T)
        else:
            rope = self.rope(positions, T) if shared else self.rope(positions)
    if self.training and self.config.dropout:
        x = self.drop(x)
    local = forward_pattern_mask(self.attention_pattern, cache, positions, T, mask, idx.device)
    for i, block in enumerate(self.blocks):
        x = block(x, rope, cache, i, local if self.config.uses_pattern(i) else mask)
    if cache is not None:
        cache.commit()
    if last_only:
        x = x[:, -1:]
    return self.lm_head(self.norm_f(x))


DECODERS = {
    "llama": dict(),
    "gpt2": dict(mlp="gelu", norm="layernorm", norm_bias=True, pos="learned", bias=True, tie_embeddings=False),
    "sliding": dict(attention="sliding", attn_window=5),
    "moe": dict(moe_experts=4, moe_top_k=2),
}


@pytest.mark.parametrize("variant", DECODERS)
def test_decoder_forward_is_unchanged_bit_for_bit(variant):
    model = Decoder(DecoderConfig(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32, **DECODERS[variant])).eval()
    idx = torch.randint(0, V, (3, 12))
    assert torch.equal(model(idx), old_forward(model, idx))
    assert torch.equal(model(idx, last_only=True), old_forward(model, idx, last_only=True))
    # with a cache: a left-padded prefill, then one step
    pad = torch.zeros(3, 12, dtype=torch.bool)
    pad[1, :4] = True
    new, old = model.make_cache(3, 16), model.make_cache(3, 16)
    step = torch.randint(0, V, (3, 1))
    with torch.no_grad():  # as generation runs
        assert torch.equal(model(idx, cache=new, pad_mask=pad, last_only=True), old_forward(model, idx, old, pad, True))
        assert torch.equal(model(step, cache=new), old_forward(model, step, old))
    model.train()  # training mode (dropout off here, MoE statistics on)
    assert torch.equal(model(idx), old_forward(model, idx))


def test_hidden_states_are_what_the_lm_head_reads():
    model = Decoder(DecoderConfig(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32)).eval()
    idx = torch.randint(0, V, (2, 9))
    h = model.hidden_states(idx)
    assert h.shape == (2, 9, 32)
    assert torch.equal(model.lm_head(h), model(idx))


def reward(**kw) -> RewardModel:
    cfg = build_model_config({"family": "reward", "vocab_size": V, "block_size": 16, "n_layer": 2, "n_head": 4,
                              "n_embd": 32, **kw})
    return build_model(cfg)


def test_the_score_is_the_head_on_the_last_real_tokens_state():
    model = reward().eval()
    idx = torch.randint(0, V, (3, 10))
    lengths = torch.tensor([10, 4, 7])
    r = model(idx, lengths)
    assert r.shape == (3,)
    h = model.hidden_states(idx)
    by_hand = torch.stack([model.reward_head(h[i, n - 1]).squeeze(-1) for i, n in enumerate(lengths.tolist())])
    assert torch.equal(r, by_hand)


def test_scores_do_not_depend_on_what_follows_the_last_real_token():
    model = reward().eval()
    idx = torch.randint(0, V, (3, 12))
    lengths = torch.tensor([12, 5, 8])
    r = model(idx, lengths)
    other = idx.clone()
    for i, n in enumerate(lengths.tolist()):
        other[i, n:] = torch.randint(0, V, (12 - n,))  # other padding ids, the same shapes and kernels
    assert torch.equal(model(other, lengths), r)


@pytest.mark.numerics
def test_scores_are_invariant_to_right_padding():
    model = reward().eval()
    seqs = [torch.randint(0, V, (n,)) for n in (9, 3, 6)]
    alone = torch.cat([model(s[None], torch.tensor([len(s)])) for s in seqs])
    padded = torch.zeros(3, 16, dtype=torch.long)  # right-padded far past the longest
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    batched = model(padded, torch.tensor([len(s) for s in seqs]))
    n, depth = reductions(model, steps=16)  # another batch shape: the same maths in another order
    assert_close_orders(batched, alone, n=n, depth=depth)


def test_parameter_names_are_a_decoders_without_its_lm_head():
    rm, lm = reward(), Decoder(DecoderConfig(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32))
    lm_names = set(lm.state_dict()) - {"lm_head.weight"}
    assert set(rm.state_dict()) == lm_names | {"reward_head.weight"}
    assert rm.lm_head is None
    noisy = reward(labeller_noise=True, labellers=["ann", "bob"])
    assert set(noisy.state_dict()) == lm_names | {"reward_head.weight", "labeller_theta"}


def test_the_head_starts_small_and_flip_rates_at_their_init():
    model = reward(n_embd=64, labeller_noise=True, labellers=["a", "b", "c"], labeller_eps_init=0.1)
    w = model.reward_head.weight
    assert w.shape == (1, 64) and model.reward_head.bias is None
    assert abs(w.std().item() - 1 / math.sqrt(65)) < 0.5 / math.sqrt(65)  # N(0, 1/(C+1)): 64 draws
    assert model.labeller_eps() == pytest.approx({"a": 0.1, "b": 0.1, "c": 0.1}, abs=1e-7)  # float32 logit
    assert model.labeller_theta._lr_scale == model.config.labeller_lr_scale


def test_flip_logits_are_minus_infinity_without_a_labeller():
    model = reward(labeller_noise=True, labellers=["a", "b"])
    with torch.no_grad():
        model.labeller_theta.copy_(torch.tensor([0.5, -2.0]))
    idx, lengths = torch.randint(0, V, (2, 5)), torch.tensor([5, 3])
    r, flip = model(idx, lengths, torch.tensor([1, -1, 0, 1]))
    assert torch.equal(r, model(idx, lengths))
    assert flip.tolist() == [-2.0, -math.inf, 0.5, -2.0]
    assert model.metrics() == pytest.approx({"eps/a": 1 / (1 + math.exp(-0.5)), "eps/b": 1 / (1 + math.exp(2.0))})
    _, none = reward()(idx, lengths, torch.tensor([0, -1]))
    assert none.tolist() == [-math.inf, -math.inf]  # no labeller_noise: every comparison at face value


def test_optimizers_give_the_flip_rates_their_lr_and_the_head_to_adamw():
    from axon.config import OptimConfig
    from axon.train.optim import build_optimizers

    model = reward(labeller_noise=True, labellers=["a", "b"], labeller_lr_scale=40.0)
    muon, adamw = build_optimizers(model, OptimConfig(name="muon", lr=1e-3))
    assert all(p is not model.reward_head.weight for g in muon.param_groups for p in g["params"])
    groups = {id(p): g for g in adamw.param_groups for p in g["params"]}
    assert groups[id(model.reward_head.weight)]["lr"] == 1e-3
    theta = groups[id(model.labeller_theta)]
    assert theta["lr"] == theta["base_lr"] == pytest.approx(40 * 1e-3) and theta["weight_decay"] == 0.0
    (single,) = build_optimizers(model, OptimConfig(name="adamw", lr=1e-3))
    assert [g["lr"] for g in single.param_groups] == pytest.approx([1e-3, 1e-3, 40e-3])  # matrices, vectors, theta


def test_flops_per_token_hand_count():
    model = reward(labeller_noise=True, labellers=["a"])
    cfg = model.config
    body = sum(p.numel() for p in model.blocks.parameters()) + cfg.n_embd  # blocks + norm_f gain
    assert model.flops_per_token() == 6 * body + 12 * cfg.n_layer * cfg.block_size * cfg.n_embd
    assert model.flops_per_token() < Decoder(DecoderConfig(**{k: getattr(cfg, k) for k in (
        "vocab_size", "block_size", "n_layer", "n_head", "n_embd")})).flops_per_token()  # no LM head


def test_registration_and_preset():
    assert FAMILIES["reward"].task == "reward" and FAMILIES["reward"].config is RewardConfig
    model = build_model(build_model_config({"family": "reward", "preset": "tiny", "vocab_size": 65}))
    assert FAMILIES["reward"].presets["tiny"]["params"] == f"{sum(p.numel() for p in model.parameters()):,} (vocab 65)"


def test_labeller_noise_needs_the_labellers():
    with pytest.raises(ValueError, match="labellers must be set"):
        reward(labeller_noise=True)


@pytest.mark.parametrize("kw,message", [
    (dict(labeller_eps_init=0.5), "model.labeller_eps_init: must be in \\(0, 0.5\\)"),
    (dict(labeller_eps_init=0.0), "model.labeller_eps_init: must be in \\(0, 0.5\\)"),
    (dict(labeller_lr_scale=0.0), "model.labeller_lr_scale: must be > 0"),
    (dict(labellers=["a"]), "model.labellers: names the labellers of model.labeller_noise"),
    (dict(labeller_noise=True, labellers=["a", "a"]), "model.labellers: names a labeller twice"),
    (dict(labeller_noise=True, labellers=[]), "model.labellers: is empty"),
    (dict(labeller_noise=True, labellers=["a", ""]), "model.labellers: holds an empty id"),
    (dict(labeller_noise="yes"), "model.labeller_noise: expected true or false"),
    (dict(n_embd=30), "model.n_embd: 30 is not divisible"),  # the decoder's own checks still apply
])
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        build_model_config({"family": "reward", "preset": "tiny", **kw})

"""Progressive diverging decoder: config checks, shapes and causality at every depth, exact
function preservation across growth (both diverge modes), weight sharing, divergence, FLOPs and
the KV cache at the grown depth."""

import pytest
import torch

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.progressive import GrownBlock, ProgressiveConfig, ProgressiveDecoder
from axon.objectives import causal_lm_loss

from cache_checks import assert_same_logits

V = 37


def tiny(**kw):
    base = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32, grow_at=[5, 10])
    return ProgressiveDecoder(ProgressiveConfig(**{**base, **kw}))


def batch(seed=0, B=4, T=17):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, V, (B, T), generator=g)
    return idx[:, :-1], idx[:, 1:]


def loss_of(model, xy):
    x, y = xy
    return causal_lm_loss(model(x), y)[0]


def train_steps(model, n, seed=1, lr=1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for i in range(n):
        loss = loss_of(model, batch(seed + i))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("bad, match", [
    (dict(grow_at=[10, 10]), "model.grow_at: growth steps must be strictly increasing"),
    (dict(grow_at=[20, 10]), "strictly increasing"),
    (dict(grow_at=[0]), r"model.grow_at\[0\]: must be a positive step"),
    (dict(lora_rank=0), "model.lora_rank"),
    (dict(lora_alpha=0.0), "model.lora_alpha"),
    (dict(lora_targets=["attn.nope"]), "model.lora_targets: 'attn.nope' matches no linear layer of a block; the block's linears: attn.qkv"),
    (dict(lora_targets=[]), "model.lora_targets"),
    (dict(diverge="sideways"), "model.diverge"),
    (dict(gate_gain=0.0), "model.gate_gain"),
    (dict(moe_experts=4), "model.moe_experts: the progressive model grows dense blocks only"),
    (dict(attention="sliding", attn_window=8), "model.attention: the progressive model grows dense-attention blocks only"),
])
def test_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        build_model_config({"family": "progressive", **bad})


def test_config_from_overrides_and_preset():
    cfg = build_model_config({"family": "progressive", "preset": "tiny", "grow_at": [3, 7], "diverge": "unfreeze"})
    assert isinstance(cfg, ProgressiveConfig) and cfg.grow_at == [3, 7] and cfg.final_layers == 4
    # unknown targets do not matter when the copies do not use LoRA
    build_model_config({"family": "progressive", "diverge": "unfreeze", "lora_targets": ["nope"]})


@pytest.mark.parametrize("diverge", ["lora", "unfreeze"])
def test_shapes_and_causality_at_every_depth(diverge):
    model = tiny(diverge=diverge)
    idx = torch.randint(0, V, (2, 16))
    for depth in (2, 4, 8):
        assert model.depth == depth
        train_steps(model, 2)  # open the gates a little, so copies take part
        model.eval()
        logits = model(idx)
        assert logits.shape == (2, 16, V)
        changed = idx.clone()
        changed[:, 10:] = (changed[:, 10:] + 1) % V
        logits2 = model(changed)
        assert torch.equal(logits2[:, :10], logits[:, :10])  # the same shapes and kernels: equal
        assert not torch.allclose(logits2[:, 10:], logits[:, 10:])
        model.train()
        if depth < 8:
            model.grow()


@pytest.mark.parametrize("diverge", ["lora", "unfreeze"])
def test_growth_preserves_the_function_exactly(diverge):
    """The loss on a fixed batch right before and right after each growth step is bit-identical,
    after training has made every weight (adapters and gates of earlier copies too) non-trivial."""
    model = tiny(diverge=diverge)
    xy = batch(99)
    for _ in range(2):
        train_steps(model, 5)
        before = loss_of(model, xy)
        logits = model(xy[0])
        model.grow()
        assert torch.equal(loss_of(model, xy), before)
        assert torch.equal(model(xy[0]), logits)
    assert model.depth == 8 and model.stage == 2


def test_grow_for_step_follows_the_schedule():
    model = tiny(grow_at=[5, 10])
    assert not model.grow_for_step(4) and model.depth == 2
    assert model.grow_for_step(5) and model.depth == 4
    assert not model.grow_for_step(6) and model.depth == 4
    fresh = tiny(grow_at=[5, 10])
    assert not fresh.grow_to_step(5) and fresh.depth == 2  # a checkpoint at step 5 predates growth at 5
    assert fresh.grow_to_step(11) and fresh.depth == 8  # both growths, at once
    assert not fresh.grow_to_step(100)


def test_lora_copies_share_the_base_and_own_only_adapters_and_gates():
    model = tiny(grow_at=[5])
    before = {id(p) for p in model.parameters()}
    n0 = model.num_params()
    model.grow()
    orig, copy = model.blocks[0], model.blocks[1]
    assert isinstance(copy, GrownBlock) and not isinstance(orig, GrownBlock)
    # shared: the very same Parameter objects, one storage
    for name in ("attn.qkv.weight", "attn.proj.weight", "mlp.gate_up.weight", "mlp.proj.weight", "norm1.weight"):
        a, b = orig.get_parameter(name), copy.block.get_parameter(name)
        assert a is b and a.data_ptr() == b.data_ptr()
    new = {n: p for n, p in model.named_parameters() if id(p) not in before}
    assert all(n.endswith(("lora_A", "lora_B", "gate_attn", "gate_mlp")) for n in new), sorted(new)
    assert {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in new if "lora" in n} == {
        "qkv.lora_A", "qkv.lora_B", "proj.lora_A", "proj.lora_B", "gate_up.lora_A", "gate_up.lora_B"}
    # the shared base stays trainable (it learns from both positions); everything trains
    assert all(p.requires_grad for p in model.parameters())
    # parameter count: shared weights once; each copy adds rank * (in + out) per adapted linear + 2 gates
    C, H, r = 32, ProgressiveConfig(vocab_size=V, n_embd=32, n_head=4).hidden, 8
    per_copy = r * ((C + 3 * C) + (C + C) + (C + 2 * H) + (H + C)) + 2
    assert model.num_params() == n0 + 2 * per_copy
    # a gradient through the copy reaches the shared matrix
    with torch.no_grad():
        copy.gate_attn.fill_(1.0)
    model.zero_grad()
    loss_of(model, batch()).backward()
    assert copy.block.attn.qkv.lora_B.grad.abs().sum() > 0


def test_unfreeze_copies_are_independent_clones():
    model = tiny(grow_at=[5], diverge="unfreeze")
    n0, nblock = model.num_params(), sum(p.numel() for p in model.blocks[0].parameters())
    model.grow()
    orig, copy = model.blocks[0], model.blocks[1]
    for (n, a), (_, b) in zip(orig.named_parameters(), copy.block.named_parameters()):
        assert a is not b and a.data_ptr() != b.data_ptr() and torch.equal(a, b), n
    assert model.num_params() == n0 + 2 * (nblock + 2)  # a dense model of the grown depth + 2 gates a copy
    assert not any("lora" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("diverge", ["lora", "unfreeze"])
def test_copies_diverge_from_their_originals(diverge):
    model = tiny(grow_at=[5], diverge=diverge)
    train_steps(model, 3)
    model.grow()
    x = torch.randn(2, 16, 32)
    orig, copy = model.blocks[0], model.blocks[1]
    assert torch.equal(copy.block(x), orig(x))  # born as the same function (behind closed gates)
    assert copy.gate_attn.item() == 0.0 and copy.gate_mlp.item() == 0.0
    train_steps(model, 4)
    assert copy.gate_attn.item() != 0.0 and copy.gate_mlp.item() != 0.0  # the optimizer opens them
    # the same shapes: an unchanged copy would be bit-equal (as above); 1e-6 asks for more than a last bit
    assert not torch.allclose(copy.block(x), orig(x), atol=1e-6)


def test_flops_follow_the_current_depth():
    base = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32)
    dense2, dense4 = Decoder(DecoderConfig(**base)), Decoder(DecoderConfig(**{**base, "n_layer": 4}))
    for diverge in ("unfreeze", "lora"):
        model = tiny(diverge=diverge)
        assert model.flops_per_token() == dense2.flops_per_token()
        model.grow()
        gates = 2 * 2
        if diverge == "unfreeze":
            assert model.flops_per_token() == dense4.flops_per_token() + 6 * gates
        else:  # the shared weights are multiplied twice; the adapters add their own matmuls
            adapters = sum(p.numel() for n, p in model.named_parameters() if "lora" in n)
            assert model.flops_per_token() == dense4.flops_per_token() + 6 * (gates + adapters)


@pytest.mark.numerics
@pytest.mark.parametrize("diverge", ["lora", "unfreeze"])
def test_kv_cache_has_a_slot_per_grown_layer(diverge):
    model = tiny(diverge=diverge)
    model.grow()
    train_steps(model, 3)
    model.eval()
    cache = model.make_cache(2, 16)
    assert cache.k.shape[0] == 4
    idx = torch.randint(0, V, (2, 12))
    with torch.no_grad():
        full = model(idx)
        steps = [model(idx[:, :8], cache=cache)]
        for t in range(8, 12):
            steps.append(model(idx[:, t : t + 1], cache=cache))
    assert_same_logits(model, torch.cat(steps, dim=1), full, steps=12)  # other shapes; blocks at the current depth


def test_registered_family_builds_and_rejects_moe():
    model = build_model(build_model_config({"family": "progressive", "preset": "tiny", "vocab_size": V}))
    assert isinstance(model, ProgressiveDecoder) and model.depth == 1
    with pytest.raises(ConfigError, match="model.moe_experts"):
        build_model_config({"family": "progressive", "moe_experts": 4})


def test_parity_with_the_dense_decoder():
    """Before growth the model is the decoder (same parameter names, same logits); after growth with
    every gate at 1 it is the dense decoder of twice the depth whose layer 2i+1 repeats layer 2i's
    weights, i.e. progressive stacking (Gong et al. 2019)."""
    base = dict(vocab_size=V, block_size=16, n_head=4, n_embd=32)
    model = tiny(diverge="unfreeze")
    train_steps(model, 2)
    dense = Decoder(DecoderConfig(**base, n_layer=2))
    dense.load_state_dict(model.state_dict())
    idx = torch.randint(0, V, (2, 16))
    assert torch.equal(model(idx), dense(idx))
    model.grow()
    with torch.no_grad():
        for blk in model.blocks[1::2]:
            blk.gate_attn.fill_(1.0 / blk.gain)
            blk.gate_mlp.fill_(1.0 / blk.gain)
    stacked = Decoder(DecoderConfig(**base, n_layer=4))
    sd = dense.state_dict()
    stacked.load_state_dict({
        (k.replace(f"blocks.{k.split('.')[1]}.", f"blocks.{2 * int(k.split('.')[1]) + j}.") if k.startswith("blocks.") else k): v
        for k, v in sd.items() for j in ((0, 1) if k.startswith("blocks.") else (0,))
    })
    # Every gate is exactly 1 (10 * fl(1/10) = 1 in float32), so each copy computes x + 1 * f(x) = x + f(x)
    # with the same kernels on the same shapes as the stacked block: equal.
    for blk in model.blocks[1::2]:
        assert (blk.gain * blk.gate_attn).item() == 1.0 and (blk.gain * blk.gate_mlp).item() == 1.0
    assert torch.equal(model(idx), stacked(idx))


def test_documented_parameter_counts():
    """The counts in the module docstring (recipe shape) and the tiny preset's table entry."""
    recipe = dict(vocab_size=65, block_size=128, n_head=4, n_embd=128)
    for diverge, grown in (("lora", 443_652), ("unfreeze", 812_292)):
        model = ProgressiveDecoder(ProgressiveConfig(**recipe, n_layer=2, grow_at=[300], diverge=diverge))
        assert model.num_params() == 410_368
        model.grow()
        assert model.num_params() == grown
    assert Decoder(DecoderConfig(**recipe, n_layer=4)).num_params() == 812_288
    counts = []
    for diverge in ("lora", "unfreeze"):
        model = build_model(build_model_config({"family": "progressive", "preset": "tiny", "vocab_size": 65, "diverge": diverge}))
        counts.append(model.num_params())
        model.grow()
        counts.append(model.num_params())
    assert FAMILIES["progressive"].presets["tiny"]["params"] == (
        f"{counts[0]:,} at start; {counts[1]:,} (lora) or {counts[3]:,} (unfreeze) grown (vocab 65)")


def test_the_run_lora_section_is_refused_for_a_growing_model():
    """Adapters from the lora: section would be made before growth and not follow it."""
    from axon.config import LoRAConfig
    from axon.train.lora import setup_lora

    model = build_model(build_model_config({"family": "progressive", "preset": "tiny", "vocab_size": 20}))
    with pytest.raises(ConfigError, match="lora.targets: a model that grows"):
        setup_lora(model, LoRAConfig(targets=["*.qkv"]))

import math

import pytest
import torch

from axon.errors import ConfigError

from axon.config import OptimConfig
from axon.models.decoder import Decoder, DecoderConfig
from axon.objectives import causal_lm_loss
from axon.train.optim import OPTIMIZERS, build_optimizers
from axon.train.schedule import lr_factor


def tiny_model():
    return Decoder(DecoderConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_reduces_the_loss(name):
    torch.manual_seed(0)
    model = tiny_model()
    lrs = {"sgd": 0.5, "gd": 0.5, "adagrad": 0.05, "adadelta": 20.0, "rmsprop": 3e-3, "ftrl": 0.5}
    opts = build_optimizers(model, OptimConfig(name=name, lr=lrs.get(name, 1e-2), muon_lr=0.05, momentum=0.9))
    idx = torch.randint(0, 20, (4, 9))
    losses = []
    for _ in range(40):
        loss, _ = causal_lm_loss(model(idx[:, :-1]), idx[:, 1:])
        losses.append(loss.item())
        loss.backward()
        for o in opts:
            o.step()
            o.zero_grad()
    assert losses[-1] < losses[0] - 0.3, (name, losses[0], losses[-1])


def test_weight_decay_only_on_matrices():
    model = tiny_model()
    (opt,) = build_optimizers(model, OptimConfig(name="adamw", weight_decay=0.1))
    for group in opt.param_groups:
        dims = {p.dim() for p in group["params"]}
        assert dims == ({2} if group["weight_decay"] > 0 else {1})
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == model.num_params()


def test_muon_takes_hidden_matrices_adamw_the_rest():
    model = tiny_model()
    muon, adamw = build_optimizers(model, OptimConfig(name="muon"))
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    muon_ids = {id(p) for g in muon.param_groups for p in g["params"]}
    assert id(model.wte.weight) not in muon_ids  # embedding (and tied head) stay on AdamW
    assert id(model.blocks[0].attn.qkv.weight) in muon_ids
    adam_ids = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert muon_ids.isdisjoint(adam_ids)
    assert len(muon_ids) + len(adam_ids) == len(list(model.parameters()))


def test_options_reach_torch():
    (sgd,) = build_optimizers(tiny_model(), OptimConfig(name="sgd", momentum=0.8, nesterov=True))
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.8
    (ams,) = build_optimizers(tiny_model(), OptimConfig(name="amsgrad"))
    assert ams.param_groups[0]["amsgrad"]
    (adamw,) = build_optimizers(tiny_model(), OptimConfig(name="adamw"))
    assert adamw.param_groups[0]["fused"]  # one kernel over all tensors


def test_schedules():
    kw = dict(warmup=10, min_ratio=0.1, decay_fraction=0.2)
    assert lr_factor(0, 100, "cosine", **kw) == pytest.approx(0.1)
    assert lr_factor(9, 100, "cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(10, 100, "cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(55, 100, "cosine", **kw) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert lr_factor(100, 100, "cosine", **kw) == pytest.approx(0.1)
    assert lr_factor(50, 100, "constant", **kw) == 1.0
    assert lr_factor(79, 100, "wsd", **kw) == 1.0
    assert lr_factor(90, 100, "wsd", **kw) == pytest.approx(0.55)
    assert lr_factor(100, 100, "wsd", **kw) == pytest.approx(0.1)
    values = [lr_factor(s, 100, "cosine", **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert not math.isnan(lr_factor(5, 5, "cosine", warmup=5, min_ratio=0.0, decay_fraction=0.2))


def test_muon_refuses_a_model_without_hidden_matrices():
    from axon.errors import ConfigError

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    with pytest.raises(ConfigError, match="muon needs hidden weight matrices"):
        build_optimizers(model, OptimConfig(name="muon"))


def test_mamba_dynamics_and_lora_factors_are_not_decayed_nor_given_to_muon():
    """A_log and D (Mamba's dynamics) take no weight decay and stay off Muon; LoRA's factors go
    to AdamW; an MoE's stacked 3-D experts go to AdamW (torch's Muon takes matrices only)."""
    from axon.models.mamba import Mamba, MambaConfig
    from axon.nn.lora import apply_lora, mark_only_lora_trainable

    mamba = Mamba(MambaConfig(preset="tiny", vocab_size=20))
    dynamics = {id(p) for n, p in mamba.named_parameters() if n.endswith(("A_log", "D"))}
    assert len(dynamics) == 2 * mamba.config.n_layer
    (opt,) = build_optimizers(mamba, OptimConfig(name="adamw", weight_decay=0.1))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed and dynamics.isdisjoint(decayed)
    muon, adamw = build_optimizers(mamba, OptimConfig(name="muon", weight_decay=0.1))
    assert dynamics.isdisjoint({id(p) for g in muon.param_groups for p in g["params"]})
    assert all(g["weight_decay"] == 0 for g in adamw.param_groups for p in g["params"] if id(p) in dynamics)

    model = tiny_model()
    apply_lora(model, ["*.qkv"], rank=2, alpha=4)
    mark_only_lora_trainable(model)
    with pytest.raises(ConfigError, match="LoRA factors"):  # nothing left for Muon: said, not ignored
        build_optimizers(model, OptimConfig(name="muon"))
    for p in model.blocks[0].mlp.parameters():  # with hidden matrices trainable too, Muon takes only those
        p.requires_grad_(True)
    muon, adamw = build_optimizers(model, OptimConfig(name="muon"))
    lora = {id(p) for n, p in model.named_parameters() if "lora_" in n}
    assert lora and lora <= {id(p) for g in adamw.param_groups for p in g["params"]}
    assert lora.isdisjoint({id(p) for g in muon.param_groups for p in g["params"]})

    moe = Decoder(DecoderConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16, moe_experts=4, moe_top_k=2))
    muon, adamw = build_optimizers(moe, OptimConfig(name="muon"))
    experts = [p for p in moe.parameters() if p.dim() == 3]
    assert experts and {id(p) for p in experts} <= {id(p) for g in adamw.param_groups for p in g["params"]}

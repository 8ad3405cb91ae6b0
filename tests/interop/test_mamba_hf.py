"""transformers' MambaForCausalLM (local config, random weights; its PyTorch path) <-> axon's Mamba:
the same logits both ways (up to summation order: tests/numerics.py), and unsupported settings refused
by name."""

import json

import pytest
import torch
from hf_models import reductions
from numerics import assert_close_orders
from safetensors.torch import load_file, save_file

import axon
from axon.errors import ConfigError
from axon.models.mamba import Mamba, MambaConfig

transformers = pytest.importorskip("transformers")

SHAPES = {
    "small": dict(),
    "odd": dict(use_bias=True, tie_word_embeddings=False, time_step_rank=3, use_conv_bias=False, vocab_size=53,
                hidden_size=24, num_hidden_layers=3, state_size=5, conv_kernel=3, expand=3, layer_norm_epsilon=1e-6),
}


def hf_mamba(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=61, hidden_size=16, num_hidden_layers=2, state_size=4, pad_token_id=None,
               bos_token_id=None, eos_token_id=None)
    model = transformers.MambaForCausalLM(transformers.MambaConfig(**{**cfg, **kw}))
    with torch.no_grad():  # HF's init leaves norms at 1, D at 1, biases at 0: random values make a wrong map visible
        for name, p in model.named_parameters():
            if p.dim() == 1 or name.endswith(("A_log", "conv1d.weight")):
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def logits_close(hf, model, vocab, T=40):
    x = torch.randint(0, vocab, (2, T), generator=torch.Generator().manual_seed(1))
    bound = reductions(hf.config, T)  # n: the T steps of the recurrence or the expanded width
    with torch.no_grad():
        want = hf(x).logits
        assert_close_orders(model(x), want, **bound)
        cache = model.make_cache(2)  # and the cached path, token by token after a prefill
        got = torch.cat([model(x[:, :9], cache=cache)] + [model(x[:, t : t + 1], cache=cache) for t in range(9, T)], 1)
        assert_close_orders(got, want, **bound)


@pytest.mark.numerics
@pytest.mark.parametrize("shape", list(SHAPES))
def test_from_hf_directory_matches_transformers(shape, tmp_path):
    hf = hf_mamba(**SHAPES[shape])
    hf.save_pretrained(tmp_path)
    model, tok = axon.from_hf(tmp_path)
    assert isinstance(model, Mamba) and tok is None
    cfg = hf.config
    assert (model.config.n_embd, model.config.n_layer, model.config.d_state, model.config.rank) == (
        cfg.hidden_size, cfg.num_hidden_layers, cfg.state_size, cfg.time_step_rank)
    logits_close(hf, model, cfg.vocab_size)


@pytest.mark.numerics
def test_to_hf_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Mamba(MambaConfig(vocab_size=45, n_embd=16, n_layer=2, d_state=4, preset="tiny", scan_chunk=8)).eval()
    axon.to_hf(model, tmp_path / "out")
    hf = transformers.MambaForCausalLM.from_pretrained(tmp_path / "out").eval()
    logits_close(hf, model, 45, T=20)
    back, _ = axon.from_hf(tmp_path / "out")
    assert back.config == model.config  # the recorded Axon config (preset, scan) comes back
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


@pytest.mark.numerics
def test_old_embedding_name_is_read(tmp_path):
    hf = hf_mamba()
    hf.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["backbone.embedding.weight"] = tensors.pop("backbone.embeddings.weight")
    save_file(tensors, tmp_path / "model.safetensors")
    model, _ = axon.from_hf(tmp_path)
    logits_close(hf, model, 61, T=10)


@pytest.mark.parametrize("field, value, message", [
    ("hidden_act", "gelu", "hidden_act='gelu' is not supported"),
    ("intermediate_size", 40, "intermediate_size=40 is not supported"),
    ("time_step_rank", "big", "time_step_rank='big' is not supported"),
])
def test_unsupported_config_fields_are_refused_by_name(tmp_path, field, value, message):
    hf_mamba().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg[field] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=message):
        axon.from_hf(tmp_path)


def test_a_leftover_tensor_is_refused(tmp_path):
    hf_mamba().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["backbone.layers.0.mixer.extra.weight"] = torch.zeros(2)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(Exception, match="no place in the model"):
        axon.from_hf(tmp_path)

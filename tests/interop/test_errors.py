"""Bad checkpoints and unsupported configs fail with one clear line, never a partial load."""

import json

import pytest
import torch
from hf_models import gpt2, llama, reductions
from numerics import assert_close_orders
from safetensors.torch import load_file, save_file

import axon
from axon.errors import CheckpointError, ConfigError
from axon.models.decoder import Decoder, DecoderConfig


def saved(model, path, **kw):
    model.save_pretrained(path, **kw)
    return path


def edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def edit_tensors(path, fn):
    tensors = load_file(str(path / "model.safetensors"))
    fn(tensors)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def test_missing_shard(tmp_path):
    saved(llama(hidden=96, inter=160, layers=3), tmp_path, max_shard_size="100KB")
    victim = sorted(tmp_path.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"shard {victim.name} is missing"):
        axon.from_hf(tmp_path)


def test_tensor_of_the_wrong_shape(tmp_path):
    saved(gpt2(), tmp_path)
    edit_tensors(tmp_path, lambda t: t.__setitem__("transformer.h.1.mlp.c_fc.weight", torch.zeros(48, 100)))
    with pytest.raises(CheckpointError, match=r"h\.1\.mlp\.c_fc\.weight' has shape \(48, 100\); the config needs \(48, 192\)"):
        axon.from_hf(tmp_path)


def test_unknown_model_type(tmp_path):
    saved(gpt2(), tmp_path)
    edit_config(tmp_path, model_type="falcon")
    with pytest.raises(ConfigError, match="model_type 'falcon' is not supported; Axon converts gpt2, llama"):
        axon.from_hf(tmp_path)


def test_missing_and_leftover_tensors(tmp_path):
    saved(llama(), tmp_path)
    edit_tensors(tmp_path, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match="'model.layers.1.mlp.up_proj.weight' is missing"):
        axon.from_hf(tmp_path)
    saved(llama(), tmp_path)
    edit_tensors(tmp_path, lambda t: t.__setitem__("model.layers.0.extra.weight", torch.zeros(3)))
    with pytest.raises(CheckpointError, match="no place in the model: model.layers.0.extra.weight"):
        axon.from_hf(tmp_path)


@pytest.mark.parametrize("maker,change,message", [
    (gpt2, {"activation_function": "gelu"}, "activation_function='gelu' is not supported"),
    (gpt2, {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True is not supported"),
    (llama, {"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
    (llama, {"head_dim": 32}, "head_dim=32 is not supported"),
    (llama, {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}, "rope_type='yarn' is not supported"),
    (llama, {"mlp_bias": True}, "attention_bias=False is not supported"),
])
def test_unsupported_config_fields_are_named(maker, change, message, tmp_path):
    saved(maker(), tmp_path)
    edit_config(tmp_path, **change)
    with pytest.raises(ConfigError, match=message):
        axon.from_hf(tmp_path)


@pytest.mark.parametrize("maker,change,message", [
    (gpt2, {"n_layer": "2"}, "config.json: n_layer must be an integer, got '2'"),
    (gpt2, {"n_embd": 48.0}, "config.json: n_embd must be an integer, got 48.0"),
    (gpt2, {"n_inner": "96"}, "config.json: n_inner must be an integer or null, got '96'"),
    (gpt2, {"layer_norm_epsilon": "1e-5"}, "config.json: layer_norm_epsilon must be a finite number, got '1e-5'"),
    (llama, {"num_hidden_layers": True}, "config.json: num_hidden_layers must be an integer, got True"),
    (llama, {"tie_word_embeddings": "false"}, "config.json: tie_word_embeddings must be true or false, got 'false'"),
])
def test_config_fields_of_the_wrong_type_are_named(maker, change, message, tmp_path):
    """Checked before any key map reads them: a string "2" would otherwise fail in arithmetic."""
    saved(maker(), tmp_path)
    edit_config(tmp_path, **change)
    with pytest.raises(ConfigError) as info:
        axon.from_hf(tmp_path)
    assert str(info.value) == f"{tmp_path}: {message}"


def test_pickle_only_directory_is_refused_without_loading(tmp_path):
    saved(gpt2(), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not even read")
    with pytest.raises(CheckpointError, match="Axon never unpickles"):
        axon.from_hf(tmp_path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        axon.from_hf(tmp_path)
    with pytest.raises(ConfigError, match="expected a directory path or a transformers model"):
        axon.from_hf(42)


def test_a_tied_model_whose_head_differs_is_refused(tmp_path):
    saved(gpt2(tie=False), tmp_path)
    edit_config(tmp_path, tie_word_embeddings=True)
    with pytest.raises(CheckpointError, match="differs from the token embedding"):
        axon.from_hf(tmp_path)


def test_export_of_a_model_no_transformers_class_matches(tmp_path):
    model = Decoder(DecoderConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, pos="learned"))
    with pytest.raises(ConfigError, match="no transformers architecture matches.*pos=learned"):
        axon.to_hf(model, tmp_path / "x")
    model = Decoder(DecoderConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, qk_norm=True))
    with pytest.raises(ConfigError, match="qk_norm=true"):
        axon.to_hf(model, tmp_path / "y")
    # a sliding window or block-sparse pattern has no GPT-2/Llama field: refused, never dropped
    for i, pattern in enumerate((dict(attention="sliding", attn_window=4), dict(attention="block_sparse", attn_block=4))):
        for switches in (dict(), dict(pos="learned", norm="layernorm", mlp="gelu")):
            model = Decoder(DecoderConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, **switches, **pattern))
            with pytest.raises(ConfigError, match=f"attention={pattern['attention']}"):
                axon.to_hf(model, tmp_path / f"z{i}{len(switches)}")


def test_nonzero_bias_against_a_no_bias_record(tmp_path):
    """to_hf records bias=false for an Axon GPT-2 without biases; a checkpoint edited to carry
    a real bias must not be loaded with that bias silently dropped."""
    model = Decoder(DecoderConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, pos="learned",
                                  norm="layernorm", mlp="gelu", bias=False, norm_bias=False))
    out = axon.to_hf(model, tmp_path / "hf")
    edit_tensors(out, lambda t: t["transformer.h.0.attn.c_attn.bias"].fill_(0.5))
    with pytest.raises(CheckpointError, match="c_attn.bias is not zero"):
        axon.from_hf(out)


@pytest.mark.numerics
def test_code_in_the_directory_is_never_run(tmp_path):
    """A config that points at custom modeling code (auto_map) loads as plain GPT-2; the code is not imported."""
    hf = gpt2()
    saved(hf, tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    edit_config(tmp_path, auto_map={"AutoModelForCausalLM": "modeling_evil.EvilModel"})
    model, _ = axon.from_hf(tmp_path)
    assert not marker.exists()
    x = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        assert_close_orders(model(x), hf(x).logits, **reductions(hf.config, 10))


@pytest.mark.numerics
def test_legacy_causal_mask_buffers_are_ignored(tmp_path):
    """Older GPT-2 checkpoints saved attn.bias / attn.masked_bias (derived masks) with the weights."""
    hf = gpt2()
    saved(hf.transformer, tmp_path)
    edit_tensors(tmp_path, lambda t: t.update({"h.0.attn.bias": torch.ones(1, 1, 40, 40).tril(),
                                                "h.0.attn.masked_bias": torch.tensor(-1e4)}))
    model, _ = axon.from_hf(tmp_path)
    x = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        assert_close_orders(model(x), hf(x).logits, **reductions(hf.config, 10))

"""Hugging Face checkpoints in and out: ``from_hf`` and ``to_hf``.

    HF directory (config.json, *.safetensors [+ index], tokenizer.json)  or  a transformers model
        |  config.json -> model_type -> the family's key map (interop/gpt2.py, interop/llama.py)
        v
    Axon config + every tensor renamed/fused/transposed, shapes checked, nothing left over
        |
        v
    Axon model (+ tokenizer)  --to_hf-->  config.json + model.safetensors + tokenizer files

Loading reads JSON and safetensors only: it never imports code from the directory (no
``trust_remote_code``) and never unpickles; a directory that holds only ``pytorch_model.bin``
is refused with a line saying how to convert it. Unsupported architectures and config fields
are refused by name.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from axon.config import to_dict
from axon.errors import CheckpointError, ConfigError, check_output_dir, is_int, is_real
from axon.interop import bert, gpt2, llama, mamba, mixtral, vit
from axon.interop.tensors import Source, fill
from axon.models.decoder import Decoder, DecoderConfig

#: model_type -> key map module (config_to_axon, tensors_to_axon, exportable, config_to_hf, tensors_to_hf)
# A module may name the model class it builds (MODEL; default Decoder) and complete the config from the
# checkpoint's tensors (config_from_tensors: BERT's head); only modules with `exportable` are written by to_hf.
HF_MODEL_TYPES = {gpt2.MODEL_TYPE: gpt2, llama.MODEL_TYPE: llama, bert.MODEL_TYPE: bert}
HF_MODEL_TYPES[mixtral.MODEL_TYPE] = mixtral  # Llama with sparse MoE feed-forwards (axon.interop.mixtral)
HF_MODEL_TYPES[mamba.MODEL_TYPE] = mamba  # selective state spaces (axon.interop.mamba); exports the Mamba family
HF_MODEL_TYPES[vit.MODEL_TYPE] = vit  # ViTModel / ViTForImageClassification (axon.interop.vit); import only
#: key maps of checkpoints whose config.json has no model_type (timm's: "architecture"), asked in turn
OTHER_FORMATS = (vit.TimmViT,)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


# The types of the config.json fields the key maps read (as transformers writes them), checked
# before any key map reads one: a field of the wrong type ("n_layer": "2") is refused naming it,
# instead of failing in the key map's arithmetic. "?": null allowed.
HF_FIELD_TYPES = {
    **dict.fromkeys(("vocab_size", "n_positions", "n_layer", "n_head", "n_embd", "hidden_size", "num_attention_heads",
                     "num_hidden_layers", "intermediate_size", "max_position_embeddings", "type_vocab_size",
                     "num_local_experts", "num_experts_per_tok", "state_size", "conv_kernel", "expand",
                     "image_size", "patch_size", "num_channels"), "int"),
    **dict.fromkeys(("n_inner", "num_key_value_heads", "head_dim", "sliding_window"), "int?"),
    **dict.fromkeys(("layer_norm_epsilon", "rms_norm_eps", "layer_norm_eps", "router_aux_loss_coef",
                     "hidden_dropout_prob", "time_step_min", "time_step_max", "time_step_floor"), "number"),
    **dict.fromkeys(("tie_word_embeddings", "attention_bias", "mlp_bias", "scale_attn_weights",
                     "scale_attn_by_inverse_layer_idx", "add_cross_attention", "is_decoder", "use_conv_bias",
                     "use_bias", "residual_in_fp32", "qkv_bias", "use_mask_token"), "bool"),
    **dict.fromkeys(("model_type", "activation_function", "hidden_act", "position_embedding_type"), "str"),
}
_KINDS = {"int": ("an integer", is_int), "number": ("a finite number", lambda v: is_real(v) and math.isfinite(v)),
          "bool": ("true or false", lambda v: isinstance(v, bool)), "str": ("a string", lambda v: isinstance(v, str))}


def check_hf_fields(config: dict[str, Any], origin: str) -> None:
    """Refuse a config.json field of the wrong type (HF_FIELD_TYPES), naming the field."""
    for key, kind in HF_FIELD_TYPES.items():
        if key not in config or (kind.endswith("?") and config[key] is None):
            continue
        what, ok = _KINDS[kind.rstrip("?")]
        if not ok(config[key]):
            raise ConfigError(f"{origin}: config.json: {key} must be {what}{' or null' if kind.endswith('?') else ''}, "
                              f"got {config[key]!r}")


@dataclass
class HFCheckpoint:
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    tokenizer: Any  # an Axon tokenizer, or None
    origin: str  # for messages: the directory or the model class


def read_hf_dir(path: str | Path) -> HFCheckpoint:
    """config.json, every safetensors tensor (one file or shards listed by the index) and the tokenizer."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        why = "no such directory" if not path.exists() else "not a directory"
        raise ConfigError(f"{path}: {why} (expected a Hugging Face model directory)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"{path}: no config.json (expected a Hugging Face model directory)")
    try:
        config = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{cfg_file}: expected a JSON object")

    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CheckpointError(f"{index}: not a safetensors index (no weight_map)") from None
        files = sorted(set(weight_map.values()))
    elif (path / "model.safetensors").is_file():
        weight_map, files = None, ["model.safetensors"]
    else:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{path}: weights only as pickle ({pickles[0]}); Axon never unpickles. Save them as safetensors first, "
                "in a trusted environment: model.save_pretrained(dir, safe_serialization=True)")
        raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")

    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        file = path / name
        if Path(name).name != name:  # the index names files inside this directory only
            raise CheckpointError(f"{index}: shard name {name!r} points outside the directory")
        if not file.is_file():
            raise CheckpointError(f"{path}: shard {name} is missing (listed in {index.name})")
        try:
            part = load_file(str(file))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{file}: unreadable safetensors file ({e})") from None
        tensors.update(part)
    if weight_map is not None:
        absent = sorted(k for k in weight_map if k not in tensors)
        if absent:
            raise CheckpointError(f"{path}: {absent[0]} is listed in {index.name} but in no shard")

    tokenizer = None
    if (path / "tokenizer.json").is_file():
        from axon.data.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(path / "tokenizer.json")
    return HFCheckpoint(config, tensors, tokenizer, str(path))


def _from_transformers(model) -> HFCheckpoint:
    if not (hasattr(model, "config") and hasattr(model.config, "to_dict") and hasattr(model, "state_dict")):
        raise ConfigError(f"from_hf: expected a directory path or a transformers model, got {type(model).__name__}")
    tensors = {k: v.detach() for k, v in model.state_dict().items()}
    return HFCheckpoint(model.config.to_dict(), tensors, None, type(model).__name__)


def from_hf(source, dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, Any]:
    """(Axon model, tokenizer or None) from a Hugging Face model directory or a transformers model.

    The model is in eval mode, in ``dtype`` (fp32 by default: this project's CPUs are slow in
    bf16). ``model(input_ids)`` returns logits (B, T, vocab_size); a BERT (``axon.models.bert``)
    returns what its checkpoint's head gives: MLM logits, class logits, or hidden states.
    """
    ckpt = read_hf_dir(source) if isinstance(source, (str, Path)) else _from_transformers(source)
    check_hf_fields(ckpt.config, ckpt.origin)
    model_type = ckpt.config.get("model_type")
    family = HF_MODEL_TYPES.get(model_type)
    if family is None and model_type is None:
        family = next((f for f in OTHER_FORMATS if f.accepts(ckpt.config)), None)
    if family is None:
        raise ConfigError(f"{ckpt.origin}: model_type {model_type!r} is not supported; Axon converts "
                          f"{', '.join(HF_MODEL_TYPES)} and timm's vit_* (config.json with architecture)")
    try:
        cfg = family.config_to_axon(ckpt.config)
        if hasattr(family, "config_from_tensors"):
            cfg = family.config_from_tensors(cfg, ckpt.tensors)
    except KeyError as e:
        raise ConfigError(f"{ckpt.origin}: config.json lacks {e.args[0]!r}") from None
    except ConfigError as e:
        raise ConfigError(f"{ckpt.origin}: {e}") from None
    cfg = _apply_axon_record(cfg, ckpt.config.get("axon"), family.HINT_ONLY)
    src = Source(ckpt.tensors, ckpt.origin, family.PREFIXES, family.IGNORE, dtype)
    state = family.tensors_to_axon(src, cfg)
    src.finish()
    model = getattr(family, "MODEL", Decoder)(cfg).to(dtype)
    fill(model, state, ckpt.origin)
    tok = ckpt.tokenizer
    if tok is not None and tok.vocab_size > cfg.vocab_size:
        raise ConfigError(f"{ckpt.origin}: the tokenizer has {tok.vocab_size} ids but the model only {cfg.vocab_size}")
    return model.eval(), tok


def _semantics(cfg: DecoderConfig, skip: tuple[str, ...]) -> tuple:
    """What a config means for the computation (None defaults resolved), less the ``skip`` fields."""
    fields = {"vocab_size": cfg.vocab_size, "block_size": cfg.block_size, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
              "kv_heads": cfg.kv_heads, "n_embd": cfg.n_embd, "mlp": cfg.mlp, "hidden": cfg.hidden, "norm": cfg.norm,
              "norm_eps": cfg.norm_eps, "norm_bias": cfg.norm_bias if cfg.norm == "layernorm" else None,
              "pos": cfg.pos, "rope": (cfg.rope_theta, cfg.rope_scaling) if cfg.pos == "rope" else None,
              "qk_norm": cfg.qk_norm, "bias": cfg.bias, "tie_embeddings": cfg.tie_embeddings,
              "moe": (cfg.moe_experts, cfg.moe_top_k, cfg.moe_every, cfg.moe_shared_experts, cfg.moe_hidden or cfg.hidden,
                      cfg.moe_norm_topk if cfg.moe_norm_topk is not None else cfg.moe_top_k > 1) if cfg.moe_experts else None,
              "moe_capacity_factor": cfg.moe_capacity_factor or None, "moe_aux_loss": cfg.moe_aux_loss, "moe_z_loss": cfg.moe_z_loss}
    return tuple(v for k, v in fields.items() if k not in skip)


def _apply_axon_record(cfg: DecoderConfig, record: Any, hint_only: tuple[str, ...]) -> DecoderConfig:
    """The Axon config that ``to_hf`` recorded in config.json, when it says what the Hugging Face
    fields say (so a round trip gives back the same config, preset and init included); the
    fields in ``hint_only`` are taken from the record alone. Otherwise (an edited config.json,
    a model from elsewhere) the config built from the Hugging Face fields."""
    if not isinstance(record, dict):
        return cfg
    try:
        recorded = DecoderConfig(**record)
    except (TypeError, ValueError, ConfigError):
        return cfg
    return recorded if _semantics(recorded, hint_only) == _semantics(cfg, hint_only) else cfg


def export_family(cfg: DecoderConfig):
    """The key map that can write ``cfg``, or a ConfigError saying why none can."""
    if cfg.moe_experts and cfg.moe_kind == "lory":
        raise ConfigError("no transformers architecture holds moe_kind=lory (experts merged per segment); "
                          "export a model with moe_kind=token")
    reasons = []
    for family in (f for f in HF_MODEL_TYPES.values() if hasattr(f, "exportable")):
        why = family.exportable(cfg)
        if why is None:
            return family
        reasons.append(why)
    raise ConfigError("no transformers architecture matches this model: " + "; ".join(reasons))


def to_hf(model: torch.nn.Module, out_dir: str | Path, tokenizer=None, overwrite: bool = False) -> Path:
    """Write ``model`` (and ``tokenizer``) as a directory that
    ``transformers.AutoModelForCausalLM.from_pretrained`` (and ``AutoTokenizer``) load."""
    from safetensors.torch import save_file

    from axon.interop.tokenizer import save_hf_tokenizer

    cfg = getattr(model, "config", None)
    own = [f for f in HF_MODEL_TYPES.values() if isinstance(cfg, getattr(f, "CONFIG", ()))]  # a family with its own config class (Mamba)
    if own:
        family = own[0]
    elif not isinstance(cfg, DecoderConfig):
        raise ConfigError(f"to_hf: {type(model).__name__} is not an Axon decoder; export supports {', '.join(k for k, f in HF_MODEL_TYPES.items() if hasattr(f, 'exportable'))}")
    else:
        family = export_family(cfg)
    out = Path(out_dir)
    check_output_dir("out_dir", out, empty=not overwrite)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors = family.tensors_to_hf(state, cfg)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf_config = family.config_to_hf(cfg)
    hf_config["torch_dtype"] = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    if tokenizer is not None and tokenizer.eot_id is not None:
        hf_config.update(bos_token_id=tokenizer.eot_id, eos_token_id=tokenizer.eot_id)
    hf_config["axon"] = to_dict(cfg)  # what HF's config cannot say (preset, dropped biases, init), for the way back
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, out, model_max_length=cfg.block_size)
    return out

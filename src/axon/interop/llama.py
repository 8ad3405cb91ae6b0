"""Llama (``model_type: llama``) <-> Axon's decoder with the Llama switches.

Hugging Face's Llama uses the "rotate half" RoPE layout, the one Axon's ``RotaryEmbedding``
uses, so q and k rows need no permutation. Axon fuses projections that Hugging Face keeps
apart: ``qkv`` = rows [q_proj; k_proj; v_proj] (n_head, n_kv_head, n_kv_head heads) and the
SwiGLU ``gate_up`` = rows [gate_proj; up_proj]. RoPE theta and scaling are read from the
transformers 5 ``rope_parameters`` or the older top-level ``rope_theta`` / ``rope_scaling``.
"""

from __future__ import annotations

from typing import Any

import torch

from axon.errors import ConfigError
from axon.interop.tensors import Source, head
from axon.models.decoder import DecoderConfig
from axon.nn.positional import ROPE_SCALINGS

MODEL_TYPE = "llama"
ARCHITECTURE = "LlamaForCausalLM"
PREFIXES = ("model.",)
IGNORE = (r"(model\.)?layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)  # a derived buffer in old checkpoints
HINT_ONLY = ()  # every Axon switch of a Llama has a Hugging Face field


def _rope(hf: dict[str, Any]) -> tuple[float, dict | None]:
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = params.pop("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.pop("rope_type", params.pop("type", "default"))
    if kind == "default":
        return theta, None
    if kind not in ROPE_SCALINGS:
        raise ConfigError(f"llama config: rope_type={kind!r} is not supported; Axon has default, {', '.join(ROPE_SCALINGS)}")
    wanted = ROPE_SCALINGS[kind]
    extra = sorted(k for k in params if k not in wanted and params[k] is not None)
    if extra:
        raise ConfigError(f"llama config: rope scaling field {extra[0]!r} is not supported with rope_type {kind!r}")
    return theta, {"rope_type": kind, **{k: params[k] for k in wanted if k in params}}


def config_to_axon(hf: dict[str, Any]) -> DecoderConfig:
    def unsupported(field: str, value, why: str):
        raise ConfigError(f"llama config: {field}={value!r} is not supported ({why})")

    if hf.get("hidden_act", "silu") != "silu":
        unsupported("hidden_act", hf["hidden_act"], "Axon's SwiGLU gates with silu")
    n_embd, n_head = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * n_head != n_embd:
        unsupported("head_dim", head_dim, f"Axon's head_dim is hidden_size / num_attention_heads = {n_embd // n_head}")
    attn_bias, mlp_bias = hf.get("attention_bias", False), hf.get("mlp_bias", False)
    if attn_bias != mlp_bias:
        unsupported("attention_bias", attn_bias, f"Axon's bias switch covers attention and MLP together (mlp_bias={mlp_bias})")
    theta, scaling = _rope(hf)
    return DecoderConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 2048),
        n_layer=hf["num_hidden_layers"], n_head=n_head, n_kv_head=hf.get("num_key_value_heads"), n_embd=n_embd,
        mlp="swiglu", mlp_hidden=hf["intermediate_size"], norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6),
        pos="rope", rope_theta=theta, rope_scaling=scaling, bias=attn_bias,
        tie_embeddings=hf.get("tie_word_embeddings", False),
    )


def tensors_to_axon(src: Source, cfg: DecoderConfig, mlp=None) -> dict[str, torch.Tensor]:
    """``mlp(src, out, layer, block)``, when given, maps each layer's feed-forward instead of the
    dense SwiGLU (Mixtral's experts, ``axon.interop.mixtral``)."""
    C, hs, nh, nkv, H = cfg.n_embd, cfg.head_dim, cfg.n_head, cfg.kv_heads, cfg.hidden
    out: dict[str, torch.Tensor] = {"wte.weight": src.take("embed_tokens.weight", (cfg.vocab_size, C))}

    def fused(names: list[tuple[str, int]], n_in: int, ax: str) -> None:
        out[f"{ax}.weight"] = torch.cat([src.take(f"{n}.weight", (rows, n_in)) for n, rows in names])
        if cfg.bias:
            out[f"{ax}.bias"] = torch.cat([src.take(f"{n}.bias", (rows,)) for n, rows in names])

    for i in range(cfg.n_layer):
        layer, b = f"layers.{i}", f"blocks.{i}"
        out[f"{b}.norm1.weight"] = src.take(f"{layer}.input_layernorm.weight", (C,))
        att = f"{layer}.self_attn"
        fused([(f"{att}.q_proj", nh * hs), (f"{att}.k_proj", nkv * hs), (f"{att}.v_proj", nkv * hs)], C, f"{b}.attn.qkv")
        fused([(f"{att}.o_proj", C)], nh * hs, f"{b}.attn.proj")
        out[f"{b}.norm2.weight"] = src.take(f"{layer}.post_attention_layernorm.weight", (C,))
        if mlp is not None:
            mlp(src, out, layer, b)
            continue
        fused([(f"{layer}.mlp.gate_proj", H), (f"{layer}.mlp.up_proj", H)], C, f"{b}.mlp.gate_up")
        fused([(f"{layer}.mlp.down_proj", C)], H, f"{b}.mlp.proj")
    out["norm_f.weight"] = src.take("norm.weight", (C,))
    out["lm_head.weight"] = head(src, cfg.vocab_size, C, cfg.tie_embeddings, out["wte.weight"])
    return out


def exportable(cfg: DecoderConfig) -> str | None:
    wrong = [f"{k}={getattr(cfg, k)}" for k, v in (("pos", "rope"), ("norm", "rmsnorm"), ("mlp", "swiglu"))
             if getattr(cfg, k) != v]
    if cfg.qk_norm:
        wrong.append("qk_norm=true")
    if cfg.moe_experts:
        wrong.append(f"moe_experts={cfg.moe_experts} (a mixture of experts)")
    if cfg.attention != "dense":
        wrong.append(f"attention={cfg.attention} (a sparse attention pattern)")
    return None if not wrong else "Llama needs pos=rope, norm=rmsnorm, mlp=swiglu, no qk_norm, dense attention; got " + ", ".join(wrong)


def config_to_hf(cfg: DecoderConfig) -> dict[str, Any]:
    return {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd, "intermediate_size": cfg.hidden, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.block_size, "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
        "rope_theta": cfg.rope_theta, "rope_scaling": dict(cfg.rope_scaling) if cfg.rope_scaling else None,
        "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings, "use_cache": True,
    }


def tensors_to_hf(state: dict[str, torch.Tensor], cfg: DecoderConfig, mlp=None) -> dict[str, torch.Tensor]:
    """``mlp(state, out, layer, block)``, when given, writes each layer's feed-forward instead."""
    hs, nh, nkv, H = cfg.head_dim, cfg.n_head, cfg.kv_heads, cfg.hidden
    out = {"model.embed_tokens.weight": state["wte.weight"], "model.norm.weight": state["norm_f.weight"]}

    def split(ax: str, names: list[tuple[str, int]]) -> None:
        for part in ("weight", "bias") if cfg.bias else ("weight",):
            pieces = state[f"{ax}.{part}"].split([rows for _, rows in names])
            out.update({f"{n}.{part}": p.contiguous() for (n, _), p in zip(names, pieces)})

    for i in range(cfg.n_layer):
        layer, b = f"model.layers.{i}", f"blocks.{i}"
        out[f"{layer}.input_layernorm.weight"] = state[f"{b}.norm1.weight"]
        att = f"{layer}.self_attn"
        split(f"{b}.attn.qkv", [(f"{att}.q_proj", nh * hs), (f"{att}.k_proj", nkv * hs), (f"{att}.v_proj", nkv * hs)])
        split(f"{b}.attn.proj", [(f"{att}.o_proj", cfg.n_embd)])
        out[f"{layer}.post_attention_layernorm.weight"] = state[f"{b}.norm2.weight"]
        if mlp is not None:
            mlp(state, out, layer, b)
            continue
        split(f"{b}.mlp.gate_up", [(f"{layer}.mlp.gate_proj", H), (f"{layer}.mlp.up_proj", H)])
        split(f"{b}.mlp.proj", [(f"{layer}.mlp.down_proj", cfg.n_embd)])
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return out

"""Mamba (``model_type: mamba``, transformers' ``MambaForCausalLM``) <-> Axon's ``axon.models.mamba``.

The layouts match one to one: ``backbone.embeddings`` -> ``wte``, ``backbone.layers.i`` ->
``blocks.i`` (``norm``, ``mixer.{in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj}``, same
shapes: conv1d.weight is (D, 1, d_conv), A_log (D, N)), ``backbone.norm_f`` -> ``norm_f``.
Old checkpoints name the embedding ``backbone.embedding``; both are read.

Config fields that only choose an initialisation (time_step_scale, time_step_init_scheme,
initializer_range, rescale_prenorm_residual) or a transformers code path (use_mambapy,
use_associative_scan, use_cache) do not change the function and are ignored; dt_min/dt_max/floor
are kept as Axon's dt init. Anything that would change the computation and that Axon lacks is
refused by name.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch

from axon.errors import ConfigError
from axon.interop.tensors import Source, head
from axon.models.mamba import Mamba, MambaConfig

MODEL_TYPE = "mamba"
ARCHITECTURE = "MambaForCausalLM"
MODEL = Mamba
CONFIG = MambaConfig  # to_hf picks this key map for models with this config
PREFIXES = ("backbone.",)
IGNORE = ()
HINT_ONLY = ()


def _semantics(cfg: MambaConfig) -> tuple:
    """What a config means for the computation (init and scan implementation aside)."""
    return (cfg.vocab_size, cfg.n_embd, cfg.n_layer, cfg.d_state, cfg.d_conv, cfg.d_inner, cfg.rank,
            cfg.conv_bias, cfg.bias, cfg.norm_eps, cfg.tie_embeddings)


def config_to_axon(hf: dict[str, Any]) -> MambaConfig:
    def unsupported(field: str, value, why: str):
        raise ConfigError(f"mamba config: {field}={value!r} is not supported ({why})")

    if hf.get("hidden_act", "silu") != "silu":
        unsupported("hidden_act", hf["hidden_act"], "Mamba's conv and gate use silu")
    C = hf["hidden_size"]
    expand = hf.get("expand", 2)
    D = hf.get("intermediate_size", int(expand * C))
    if D % C != 0:
        unsupported("intermediate_size", D, f"Axon's mixer width is an integer expand times hidden_size={C}")
    rank = hf.get("time_step_rank", "auto")
    if rank == "auto":
        rank = None
    elif not isinstance(rank, int):
        unsupported("time_step_rank", rank, "expected an integer or 'auto'")
    cfg = MambaConfig(
        vocab_size=hf["vocab_size"], n_embd=C, n_layer=hf["num_hidden_layers"], d_state=hf.get("state_size", 16),
        d_conv=hf.get("conv_kernel", 4), expand=D // C, dt_rank=rank, conv_bias=hf.get("use_conv_bias", True),
        bias=hf.get("use_bias", False), norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        tie_embeddings=hf.get("tie_word_embeddings", True), residual_in_fp32=hf.get("residual_in_fp32", True),
        dt_min=hf.get("time_step_min", 0.001), dt_max=hf.get("time_step_max", 0.1),
        dt_init_floor=hf.get("time_step_floor", 1e-4),
    )
    # The Axon config that to_hf recorded (preset, training window, scan), when it still says the same.
    record = hf.get("axon")
    if isinstance(record, dict) and record.get("family") == "mamba":
        names = {f.name for f in fields(MambaConfig)}
        try:
            recorded = MambaConfig(**{k: v for k, v in record.items() if k in names})
        except (TypeError, ValueError, ConfigError):
            return cfg
        if _semantics(recorded) == _semantics(cfg):
            return recorded
    return cfg


def tensors_to_axon(src: Source, cfg: MambaConfig) -> dict[str, torch.Tensor]:
    C, D, N, R, K = cfg.n_embd, cfg.d_inner, cfg.d_state, cfg.rank, cfg.d_conv
    emb = "embeddings.weight" if src.has("embeddings.weight") or not src.has("embedding.weight") else "embedding.weight"
    out: dict[str, torch.Tensor] = {"wte.weight": src.take(emb, (cfg.vocab_size, C))}
    for i in range(cfg.n_layer):
        layer, b = f"layers.{i}", f"blocks.{i}"
        out[f"{b}.norm.weight"] = src.take(f"{layer}.norm.weight", (C,))
        shapes = {"in_proj.weight": (2 * D, C), "conv1d.weight": (D, 1, K), "x_proj.weight": (R + 2 * N, D),
                  "dt_proj.weight": (D, R), "dt_proj.bias": (D,), "A_log": (D, N), "D": (D,), "out_proj.weight": (C, D)}
        if cfg.conv_bias:
            shapes["conv1d.bias"] = (D,)
        if cfg.bias:
            shapes.update({"in_proj.bias": (2 * D,), "out_proj.bias": (C,)})
        for name, shape in shapes.items():
            out[f"{b}.mixer.{name}"] = src.take(f"{layer}.mixer.{name}", shape)
    out["norm_f.weight"] = src.take("norm_f.weight", (C,))
    out["lm_head.weight"] = head(src, cfg.vocab_size, C, cfg.tie_embeddings, out["wte.weight"])
    return out


def exportable(cfg) -> str | None:
    return None if isinstance(cfg, MambaConfig) else "Mamba needs a mamba-family model"


def config_to_hf(cfg: MambaConfig) -> dict[str, Any]:
    return {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer, "state_size": cfg.d_state,
        "conv_kernel": cfg.d_conv, "expand": cfg.expand, "intermediate_size": cfg.d_inner,
        "time_step_rank": cfg.rank, "use_bias": cfg.bias, "use_conv_bias": cfg.conv_bias, "hidden_act": "silu",
        "layer_norm_epsilon": cfg.norm_eps, "residual_in_fp32": cfg.residual_in_fp32,
        "time_step_min": cfg.dt_min, "time_step_max": cfg.dt_max, "time_step_floor": cfg.dt_init_floor,
        "tie_word_embeddings": cfg.tie_embeddings, "use_cache": True,
    }


def tensors_to_hf(state: dict[str, torch.Tensor], cfg: MambaConfig) -> dict[str, torch.Tensor]:
    out = {"backbone.embeddings.weight": state["wte.weight"], "backbone.norm_f.weight": state["norm_f.weight"]}
    for k, v in state.items():
        if k.startswith("blocks."):
            out["backbone.layers." + k.removeprefix("blocks.")] = v
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return out

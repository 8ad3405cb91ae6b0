"""Mixtral (``model_type: mixtral``) <-> Axon's decoder with the Llama switches and MoE layers.

Mixtral (Jiang et al. 2024) is Llama with every MLP replaced by a sparse mixture of SwiGLU
experts: a bias-free router ``gate`` (E, C), top-k over the softmax renormalised to sum 1
(``moe_norm_topk``), no capacity limit, no shared experts. Attention, norms and RoPE map exactly
as Llama's, so this module reuses ``axon.interop.llama`` and adds only the experts:

    Hugging Face checkpoint (save_pretrained, the hub)   transformers' in-memory model
      layers.i.block_sparse_moe.gate.weight   (E, C)       layers.i.mlp.gate.weight            (E, C)
      ...experts.e.w1.weight  gate            (H, C)       layers.i.mlp.experts.gate_up_proj   (E, 2H, C)
      ...experts.e.w3.weight  up              (H, C)         rows [w1; w3] of each expert
      ...experts.e.w2.weight  down            (C, H)       layers.i.mlp.experts.down_proj      (E, C, H)

    Axon: blocks.i.mlp.router.weight (E, C), blocks.i.mlp.gate_up (E, 2H, C) rows [gate; up],
          blocks.i.mlp.proj (E, C, H)

Both Hugging Face layouts are read; export writes the checkpoint layout (transformers converts
it on load). ``sliding_window`` maps onto ``attention="sliding", attn_window`` (the same rule:
a query sees the last ``sliding_window`` keys, itself included); a window at least as long as
the context is full attention.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from axon.errors import ConfigError
from axon.interop import llama
from axon.interop.tensors import Source
from axon.models.decoder import DecoderConfig

MODEL_TYPE = "mixtral"
ARCHITECTURE = "MixtralForCausalLM"
PREFIXES = llama.PREFIXES
IGNORE = llama.IGNORE
HINT_ONLY = ("moe_capacity_factor", "moe_z_loss")  # training-only switches HF's config does not hold


def config_to_axon(hf: dict[str, Any]) -> DecoderConfig:
    hf = dict(hf)
    window = hf.pop("sliding_window", None)
    try:
        base = llama.config_to_axon(hf)
    except ConfigError as e:
        raise ConfigError(str(e).replace("llama config", "mixtral config")) from None
    n_experts, top_k = hf["num_local_experts"], hf["num_experts_per_tok"]
    if not 1 <= top_k <= n_experts:
        raise ConfigError(f"mixtral config: num_experts_per_tok={top_k} must be in [1, num_local_experts={n_experts}]")
    sliding = {}
    if window is not None and window < base.block_size:
        sliding = dict(attention="sliding", attn_window=window)
    return dataclasses.replace(
        base, moe_experts=n_experts, moe_top_k=top_k, moe_norm_topk=True, moe_capacity_factor=None,
        moe_shared_experts=0, moe_hidden=None, moe_aux_loss=float(hf.get("router_aux_loss_coef", 0.001)),
        moe_z_loss=0.0, **sliding,
    )


def tensors_to_axon(src: Source, cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    C, H, E = cfg.n_embd, cfg.hidden, cfg.moe_experts

    def experts(src: Source, out: dict, layer: str, b: str) -> None:
        if src.has(f"{layer}.mlp.gate.weight"):  # a transformers model in memory: stacked experts
            out[f"{b}.mlp.router.weight"] = src.take(f"{layer}.mlp.gate.weight", (E, C))
            out[f"{b}.mlp.gate_up"] = src.take(f"{layer}.mlp.experts.gate_up_proj", (E, 2 * H, C))
            out[f"{b}.mlp.proj"] = src.take(f"{layer}.mlp.experts.down_proj", (E, C, H))
            return
        moe = f"{layer}.block_sparse_moe"
        out[f"{b}.mlp.router.weight"] = src.take(f"{moe}.gate.weight", (E, C))
        w = [[src.take(f"{moe}.experts.{e}.{n}.weight", shape) for e in range(E)]
             for n, shape in (("w1", (H, C)), ("w3", (H, C)), ("w2", (C, H)))]
        out[f"{b}.mlp.gate_up"] = torch.stack([torch.cat([g, u]) for g, u in zip(w[0], w[1])])  # (E, 2H, C)
        out[f"{b}.mlp.proj"] = torch.stack(w[2])  # (E, C, H)

    return llama.tensors_to_axon(src, cfg, mlp=experts)


def exportable(cfg: DecoderConfig) -> str | None:
    wrong = []
    if not cfg.moe_experts:
        return "Mixtral needs moe_experts > 0"
    # the window is Mixtral's own field (checked below), so Llama is asked about the rest only
    dense = llama.exportable(dataclasses.replace(cfg, moe_experts=0, moe_shared_experts=0, attention="dense",
                                                 attn_window=None, attn_block=None, attn_summary=None, attn_layers=None))
    if dense is not None:
        wrong.append(dense.replace("Llama needs", "as Llama:"))
    if cfg.moe_every != 1:
        wrong.append(f"moe_every={cfg.moe_every} (Mixtral has experts in every layer)")
    if cfg.moe_shared_experts:
        wrong.append(f"moe_shared_experts={cfg.moe_shared_experts}")
    if cfg.moe_hidden not in (None, cfg.hidden):
        wrong.append(f"moe_hidden={cfg.moe_hidden} != mlp hidden {cfg.hidden}")
    if not (cfg.moe_norm_topk is True or (cfg.moe_norm_topk is None and cfg.moe_top_k > 1)):
        wrong.append("moe_norm_topk=false (Mixtral renormalises the top-k gates)")
    if cfg.bias:
        wrong.append("bias=true")
    if _window(cfg) is False:
        wrong.append(f"attention={getattr(cfg, 'attention', None)!r}")
    return None if not wrong else "Mixtral needs " + "; ".join(wrong)


def _window(cfg: DecoderConfig) -> int | None | bool:
    """HF's sliding_window for ``cfg``: None (full attention), the window, or False (no HF equivalent)."""
    kind = getattr(cfg, "attention", "dense")
    if kind == "dense":
        return None
    if kind == "sliding" and getattr(cfg, "attn_layers", None) is None:
        return cfg.attn_window
    return False


def config_to_hf(cfg: DecoderConfig) -> dict[str, Any]:
    out = llama.config_to_hf(dataclasses.replace(cfg, moe_experts=0, moe_shared_experts=0))
    for k in ("attention_bias", "mlp_bias"):
        out.pop(k)
    out.update(architectures=[ARCHITECTURE], model_type=MODEL_TYPE, num_local_experts=cfg.moe_experts,
               num_experts_per_tok=cfg.moe_top_k, router_aux_loss_coef=cfg.moe_aux_loss,
               router_jitter_noise=0.0, output_router_logits=False, sliding_window=_window(cfg))
    return out


def tensors_to_hf(state: dict[str, torch.Tensor], cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    H = cfg.hidden

    def experts(state: dict, out: dict, layer: str, b: str) -> None:
        moe = f"{layer}.block_sparse_moe"
        out[f"{moe}.gate.weight"] = state[f"{b}.mlp.router.weight"]
        for e, (gate_up, down) in enumerate(zip(state[f"{b}.mlp.gate_up"], state[f"{b}.mlp.proj"])):
            out[f"{moe}.experts.{e}.w1.weight"] = gate_up[:H].contiguous()
            out[f"{moe}.experts.{e}.w3.weight"] = gate_up[H:].contiguous()
            out[f"{moe}.experts.{e}.w2.weight"] = down.contiguous()

    return llama.tensors_to_hf(state, cfg, mlp=experts)

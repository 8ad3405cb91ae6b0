"""GPT-2 (``model_type: gpt2``) <-> Axon's decoder with the GPT-2 switches.

Hugging Face stores GPT-2's linears as ``Conv1D``: weight (in, out), so ``y = x W + b``. Axon's
``nn.Linear`` holds (out, in): every matrix is transposed on the way in and out. ``c_attn``'s
columns are [q | k | v], each n_embd wide, which transposed are exactly the rows of Axon's fused
``qkv``. Keys live under ``transformer.`` in ``GPT2LMHeadModel`` and at the top level in a bare
``GPT2Model`` checkpoint (the hub's ``gpt2`` repository); both load.

Axon's GPT-2 may drop biases (``bias: false``, ``norm_bias: false``, as nanoGPT can); Hugging
Face's always has them, so export writes zeros and records the Axon config under ``"axon"`` in
config.json, and import drops those biases again after checking that they are exactly zero.
"""

from __future__ import annotations

from typing import Any

import torch

from axon.errors import CheckpointError, ConfigError
from axon.interop.tensors import Source, head
from axon.models.decoder import DecoderConfig

MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
PREFIXES = ("transformer.",)
# Causal-mask buffers that older checkpoints saved with the weights: derived, not learned.
IGNORE = (r"(transformer\.)?h\.\d+\.attn\.(masked_)?bias",)
# Switches HF's GPT-2 cannot express (it always has biases): taken from the "axon" record that
# to_hf leaves in config.json, and then the checkpoint's biases must be zero.
HINT_ONLY = ("bias", "norm_bias")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def config_to_axon(hf: dict[str, Any]) -> DecoderConfig:
    def unsupported(field: str, value, why: str):
        raise ConfigError(f"gpt2 config: {field}={value!r} is not supported ({why})")

    act = hf.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        unsupported("activation_function", act, f"Axon's GPT-2 MLP is the tanh GELU: {', '.join(TANH_GELUS)}")
    if not hf.get("scale_attn_weights", True):
        unsupported("scale_attn_weights", False, "attention is always scaled by 1/sqrt(head_dim)")
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        unsupported("scale_attn_by_inverse_layer_idx", True, "no per-layer attention scaling in Axon")
    if hf.get("add_cross_attention", False):
        unsupported("add_cross_attention", True, "a decoder-only model has no cross-attention")
    return DecoderConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", 1024), n_layer=hf["n_layer"],
        n_head=hf["n_head"], n_embd=hf["n_embd"], mlp="gelu", mlp_hidden=hf.get("n_inner"),
        norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), norm_bias=True,
        pos="learned", bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
    )


def tensors_to_axon(src: Source, cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    C, H = cfg.n_embd, cfg.hidden
    out: dict[str, torch.Tensor] = {"wte.weight": src.take("wte.weight", (cfg.vocab_size, C)),
                                    "wpe.weight": src.take("wpe.weight", (cfg.block_size, C))}

    def bias(name: str, n: int, keep: bool) -> torch.Tensor | None:
        t = src.take(name, (n,))
        if keep:
            return t
        if torch.count_nonzero(t):
            raise CheckpointError(f"{src.origin}: {name} is not zero, but the config says this model has no such bias")
        return None

    def norm(hf: str, ax: str) -> None:
        out[f"{ax}.weight"] = src.take(f"{hf}.weight", (C,))
        b = bias(f"{hf}.bias", C, cfg.norm_bias)
        if b is not None:
            out[f"{ax}.bias"] = b

    def linear(hf: str, ax: str, n_in: int, n_out: int) -> None:
        out[f"{ax}.weight"] = src.take(f"{hf}.weight", (n_in, n_out)).t().contiguous()  # Conv1D (in, out)
        b = bias(f"{hf}.bias", n_out, cfg.bias)
        if b is not None:
            out[f"{ax}.bias"] = b

    for i in range(cfg.n_layer):
        h, b = f"h.{i}", f"blocks.{i}"
        norm(f"{h}.ln_1", f"{b}.norm1")
        linear(f"{h}.attn.c_attn", f"{b}.attn.qkv", C, 3 * C)
        linear(f"{h}.attn.c_proj", f"{b}.attn.proj", C, C)
        norm(f"{h}.ln_2", f"{b}.norm2")
        linear(f"{h}.mlp.c_fc", f"{b}.mlp.fc", C, H)
        linear(f"{h}.mlp.c_proj", f"{b}.mlp.proj", H, C)
    norm("ln_f", "norm_f")
    out["lm_head.weight"] = head(src, cfg.vocab_size, cfg.n_embd, cfg.tie_embeddings, out["wte.weight"])
    return out


def exportable(cfg: DecoderConfig) -> str | None:
    """None when ``cfg`` is a GPT-2, else why not."""
    wrong = [f"{k}={getattr(cfg, k)}" for k, v in (("pos", "learned"), ("norm", "layernorm"), ("mlp", "gelu"))
             if getattr(cfg, k) != v]
    if cfg.kv_heads != cfg.n_head:
        wrong.append(f"n_kv_head={cfg.n_kv_head}")
    if cfg.qk_norm:
        wrong.append("qk_norm=true")
    if cfg.moe_experts:
        wrong.append(f"moe_experts={cfg.moe_experts} (a mixture of experts)")
    if cfg.attention != "dense":
        wrong.append(f"attention={cfg.attention} (a sparse attention pattern)")
    return None if not wrong else "GPT-2 needs pos=learned, norm=layernorm, mlp=gelu, dense multi-head attention, no qk_norm; got " + ", ".join(wrong)


def config_to_hf(cfg: DecoderConfig) -> dict[str, Any]:
    return {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
        "n_inner": cfg.mlp_hidden, "activation_function": "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": cfg.tie_embeddings, "use_cache": True,
    }


def tensors_to_hf(state: dict[str, torch.Tensor], cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    C = cfg.n_embd
    out = {"transformer.wte.weight": state["wte.weight"], "transformer.wpe.weight": state["wpe.weight"]}

    def bias(ax: str, n: int) -> torch.Tensor:
        return state[ax] if ax in state else torch.zeros(n, dtype=state["wte.weight"].dtype)

    def norm(ax: str, hf: str) -> None:
        out[f"{hf}.weight"] = state[f"{ax}.weight"]
        out[f"{hf}.bias"] = bias(f"{ax}.bias", C)

    def linear(ax: str, hf: str) -> None:
        w = state[f"{ax}.weight"]
        out[f"{hf}.weight"] = w.t().contiguous()
        out[f"{hf}.bias"] = bias(f"{ax}.bias", w.size(0))

    for i in range(cfg.n_layer):
        h, b = f"transformer.h.{i}", f"blocks.{i}"
        norm(f"{b}.norm1", f"{h}.ln_1")
        linear(f"{b}.attn.qkv", f"{h}.attn.c_attn")
        linear(f"{b}.attn.proj", f"{h}.attn.c_proj")
        norm(f"{b}.norm2", f"{h}.ln_2")
        linear(f"{b}.mlp.fc", f"{h}.mlp.c_fc")
        linear(f"{b}.mlp.proj", f"{h}.mlp.c_proj")
    norm("norm_f", "transformer.ln_f")
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return out

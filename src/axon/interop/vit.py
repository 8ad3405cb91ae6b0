"""Vision Transformers -> Axon's ``vit`` family: Hugging Face's ``ViTModel`` /
``ViTForImageClassification`` (``model_type: vit``) and timm's ``VisionTransformer``
(a directory that ``timm.models.save_for_hf`` or the Hub wrote: a config.json with
``architecture`` and no ``model_type``).

    Axon                          Hugging Face (under vit.)                    timm
    patch_embed                   embeddings.patch_embeddings.projection       patch_embed.proj
    cls_token (1, 1, C)           embeddings.cls_token                         cls_token
    pos_embed (1, 1 + N, C)       embeddings.position_embeddings               pos_embed
    blocks.i.norm1 / norm2        encoder.layer.i.layernorm_before / _after    blocks.i.norm1 / norm2
    blocks.i.attn.q, attn.kv      attention.attention.query; [key; value]      blocks.i.attn.qkv rows [q; k; v]
    blocks.i.attn.proj            attention.output.dense                       blocks.i.attn.proj
    blocks.i.mlp.fc / proj        intermediate.dense / output.dense            blocks.i.mlp.fc1 / fc2
    norm                          layernorm                                    norm (fc_norm when pooling "avg")
    head                          classifier (absent: no head)                 head (absent: num_classes 0)

Axon's attention (``axon.nn.CrossAttention`` used as self-attention) keeps ``q`` apart and fuses
``kv`` with rows [key; value]: timm's fused qkv is split, Hugging Face's key and value joined.
A bare ``ViTModel``'s tanh pooler (``pooler.dense``), which ``ViTForImageClassification`` does not
have and no Axon path uses, is refused by name rather than dropped. Other image sizes: Axon
resamples learned positions as timm does (bicubic, antialiased); Hugging Face's own
``interpolate_pos_encoding`` resizes slightly differently, so the two agree at the checkpoint's
size only. Export (``to_hf``) is not implemented for this family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from axon.errors import ConfigError
from axon.interop.tensors import Source
from axon.models.vit import ViT, ViTConfig

MODEL_TYPE = "vit"
MODEL = ViT
PREFIXES = ("vit.",)
IGNORE = ()
HINT_ONLY = ()


def _unsupported(origin: str, field: str, value, why: str):
    raise ConfigError(f"{origin} config: {field}={value!r} is not supported ({why})")


def config_to_axon(hf: dict[str, Any]) -> ViTConfig:
    """A Hugging Face ViTConfig (config.json) -> ViTConfig (the head comes from the tensors)."""
    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        _unsupported("vit", "hidden_act", act, "Axon's ViT uses the exact (erf) GELU, hidden_act: gelu")
    if hf.get("use_mask_token", False):
        _unsupported("vit", "use_mask_token", True, "masked-image-modelling pretraining is not part of Axon's ViT")
    return ViTConfig(
        image_size=hf.get("image_size", 224), in_channels=hf.get("num_channels", 3), patch_size=hf.get("patch_size", 16),
        n_embd=hf["hidden_size"], n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
        mlp_hidden=hf["intermediate_size"], qkv_bias=hf.get("qkv_bias", True), pool="cls", pos="learned",
        norm_eps=hf.get("layer_norm_eps", 1e-12), num_labels=None,
    )


def config_from_tensors(cfg: ViTConfig, tensors: Mapping[str, torch.Tensor]) -> ViTConfig:
    """A ``classifier`` gives the head and its number of labels; none: a headless feature model."""
    if "pooler.dense.weight" in tensors or "vit.pooler.dense.weight" in tensors:
        raise ConfigError("vit checkpoint: a ViTModel with a pooler (pooler.dense) is not supported; "
                          "save it without one (ViTModel(config, add_pooling_layer=False)) or as ViTForImageClassification")
    if "classifier.weight" in tensors:
        n = tensors["classifier.weight"].shape[0]
        if n < 2:
            raise ConfigError(f"vit checkpoint: a classifier with {n} label(s) (regression) is not supported")
        return dataclasses.replace(cfg, num_labels=n)
    return cfg


def _common(src: Source, cfg: ViTConfig, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """The tensors both layouts share, read under the names in ``names``."""
    C, G, P, H = cfg.n_embd, cfg.grid, cfg.patch_size, cfg.hidden
    prefix = 1 if cfg.pool == "cls" else 0  # the class token and its position (none with mean pooling)
    out = {
        "patch_embed.weight": src.take(f"{names['patch']}.weight", (C, cfg.in_channels, P, P)),
        "patch_embed.bias": src.take(f"{names['patch']}.bias", (C,)),
        "pos_embed": src.take(names["pos"], (1, prefix + G * G, C)),
    }
    if prefix:
        out["cls_token"] = src.take(names["cls"], (1, 1, C))
    for ax, hf in (("weight", "weight"), ("bias", "bias")):
        out[f"norm.{ax}"] = src.take(f"{names['norm']}.{hf}", (C,))
    for i in range(cfg.n_layer):
        a = f"blocks.{i}"
        for ax_name, hf_name, shape_w, shape_b in (("norm1", "norm1", (C,), (C,)), ("norm2", "norm2", (C,), (C,)),
                                                    ("attn.proj", "proj", (C, C), (C,)),
                                                    ("mlp.fc", "fc", (H, C), (H,)), ("mlp.proj", "fc2", (C, H), (C,))):
            key = names[hf_name].format(i=i)
            out[f"{a}.{ax_name}.weight"] = src.take(f"{key}.weight", shape_w)
            out[f"{a}.{ax_name}.bias"] = src.take(f"{key}.bias", shape_b)
    return out


# transformers names a layer's tensors two ways: as checkpoints on disk have them (and save_pretrained
# still writes them), and as its in-memory modules (5.x) have them; both are read.
HF_LAYOUTS = {
    "saved": dict(layer="encoder.layer.{i}", norm1="layernorm_before", norm2="layernorm_after",
                  q="attention.attention.query", k="attention.attention.key", v="attention.attention.value",
                  proj="attention.output.dense", fc="intermediate.dense", fc2="output.dense"),
    "modules": dict(layer="layers.{i}", norm1="layernorm_before", norm2="layernorm_after", q="attention.q_proj",
                    k="attention.k_proj", v="attention.v_proj", proj="attention.o_proj", fc="mlp.fc1", fc2="mlp.fc2"),
}


def tensors_to_axon(src: Source, cfg: ViTConfig) -> dict[str, torch.Tensor]:
    C = cfg.n_embd
    lay = HF_LAYOUTS["saved" if src.has("encoder.layer.0.layernorm_before.weight") else "modules"]
    h = lay["layer"]
    out = _common(src, cfg, {
        "patch": "embeddings.patch_embeddings.projection", "cls": "embeddings.cls_token",
        "pos": "embeddings.position_embeddings", "norm": "layernorm",
        **{k: f"{h}.{lay[k]}" for k in ("norm1", "norm2", "proj", "fc", "fc2")}})
    for i in range(cfg.n_layer):
        a, s = f"blocks.{i}.attn", h.format(i=i)
        out[f"{a}.q.weight"] = src.take(f"{s}.{lay['q']}.weight", (C, C))
        out[f"{a}.kv.weight"] = torch.cat([src.take(f"{s}.{lay[n]}.weight", (C, C)) for n in ("k", "v")])
        if cfg.qkv_bias:
            out[f"{a}.q.bias"] = src.take(f"{s}.{lay['q']}.bias", (C,))
            out[f"{a}.kv.bias"] = torch.cat([src.take(f"{s}.{lay[n]}.bias", (C,)) for n in ("k", "v")])
    if cfg.num_labels is not None:
        out["head.weight"] = src.take("/classifier.weight", (cfg.num_labels, C))
        out["head.bias"] = src.take("/classifier.bias", (cfg.num_labels,))
    return out


# ------------------------------------------------------------------------------------------------
# timm

#: timm architecture -> the shape its name stands for (timm's vision_transformer.py model functions)
TIMM_ARCHITECTURES = {
    "vit_tiny_patch16_224": dict(embed_dim=192, depth=12, num_heads=3, patch_size=16, img_size=224),
    "vit_tiny_patch16_384": dict(embed_dim=192, depth=12, num_heads=3, patch_size=16, img_size=384),
    "vit_small_patch16_224": dict(embed_dim=384, depth=12, num_heads=6, patch_size=16, img_size=224),
    "vit_small_patch16_384": dict(embed_dim=384, depth=12, num_heads=6, patch_size=16, img_size=384),
    "vit_small_patch32_224": dict(embed_dim=384, depth=12, num_heads=6, patch_size=32, img_size=224),
    "vit_base_patch16_224": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16, img_size=224),
    "vit_base_patch16_384": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16, img_size=384),
    "vit_base_patch32_224": dict(embed_dim=768, depth=12, num_heads=12, patch_size=32, img_size=224),
    "vit_large_patch16_224": dict(embed_dim=1024, depth=24, num_heads=16, patch_size=16, img_size=224),
}
# model_args that do not change the computation of an inference forward
_TIMM_HARMLESS = {"num_classes", "img_size", "patch_size", "in_chans", "global_pool", "class_token", "embed_dim",
                  "depth", "num_heads", "mlp_ratio", "qkv_bias", "drop_rate", "pos_drop_rate", "attn_drop_rate",
                  "drop_path_rate", "proj_drop_rate", "dynamic_img_size", "weight_init"}


def _side(v, field: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, (list, tuple)) and len(v) == 2 and v[0] == v[1] and isinstance(v[0], int):
        return v[0]
    _unsupported("timm", field, v, "Axon's ViT takes square images and patches")


class TimmViT:
    """The key map of timm's VisionTransformer checkpoints (the same interface as a module here)."""

    MODEL = ViT
    PREFIXES = ("",)
    IGNORE = ()
    HINT_ONLY = ()

    @staticmethod
    def accepts(config: Mapping[str, Any]) -> bool:
        arch = config.get("architecture")
        return "model_type" not in config and isinstance(arch, str) and arch.startswith("vit_")

    @staticmethod
    def config_to_axon(cfg: dict[str, Any]) -> ViTConfig:
        arch = cfg["architecture"].split(".")[0]  # a pretrained tag after the dot names weights, not a shape
        if arch not in TIMM_ARCHITECTURES:
            raise ConfigError(f"timm architecture {arch!r} is not supported; Axon converts {', '.join(TIMM_ARCHITECTURES)}")
        args = {**TIMM_ARCHITECTURES[arch], **(cfg.get("model_args") or {})}
        for k, v in args.items():
            if k not in _TIMM_HARMLESS:
                _unsupported("timm", f"model_args.{k}", v, "Axon's ViT has no such option")
        pool = cfg.get("global_pool", args.get("global_pool", "token"))
        class_token = args.get("class_token", True)
        if (pool, class_token) not in (("token", True), ("avg", False)):
            _unsupported("timm", "global_pool", pool, "Axon pools the class token (token, with one) or the mean "
                         "(avg, class_token false)")
        in_size = (cfg.get("pretrained_cfg") or {}).get("input_size", [3])
        num_classes = cfg.get("num_classes", args.get("num_classes", 1000))
        mlp_ratio = args.get("mlp_ratio", 4.0)
        return ViTConfig(
            image_size=_side(args["img_size"], "img_size"), in_channels=args.get("in_chans", in_size[0]),
            patch_size=_side(args["patch_size"], "patch_size"), n_embd=args["embed_dim"], n_layer=args["depth"],
            n_head=args["num_heads"], mlp_hidden=int(args["embed_dim"] * mlp_ratio), qkv_bias=args.get("qkv_bias", True),
            pool="cls" if pool == "token" else "mean", pos="learned", norm_eps=1e-6,
            num_labels=num_classes if num_classes else None,
        )

    @staticmethod
    def tensors_to_axon(src: Source, cfg: ViTConfig) -> dict[str, torch.Tensor]:
        C = cfg.n_embd
        b = "blocks.{i}"
        names = {"patch": "patch_embed.proj", "cls": "cls_token", "pos": "pos_embed",
                 "norm": "norm" if cfg.pool == "cls" else "fc_norm", "norm1": f"{b}.norm1", "norm2": f"{b}.norm2",
                 "proj": f"{b}.attn.proj", "fc": f"{b}.mlp.fc1", "fc2": f"{b}.mlp.fc2"}
        out = _common(src, cfg, names)
        for i in range(cfg.n_layer):
            a = f"blocks.{i}.attn"
            q, k, v = src.take(f"blocks.{i}.attn.qkv.weight", (3 * C, C)).split(C)
            out[f"{a}.q.weight"], out[f"{a}.kv.weight"] = q, torch.cat([k, v])
            if cfg.qkv_bias:
                qb, kb, vb = src.take(f"blocks.{i}.attn.qkv.bias", (3 * C,)).split(C)
                out[f"{a}.q.bias"], out[f"{a}.kv.bias"] = qb, torch.cat([kb, vb])
        if cfg.num_labels is not None:
            out["head.weight"] = src.take("head.weight", (cfg.num_labels, C))
            out["head.bias"] = src.take("head.bias", (cfg.num_labels,))
        return out

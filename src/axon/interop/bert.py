"""BERT (``model_type: bert``) -> Axon's ``bert`` family: import of transformers' BertModel,
BertForMaskedLM and BertForSequenceClassification checkpoints (and models such as
all-MiniLM-L6-v2, a 6-layer BertModel).

Which model a checkpoint holds is read from its tensors (``config_from_tensors``): an MLM head
(``cls.predictions.*``) gives ``head: mlm``, a ``classifier`` gives ``head: classify`` with its
number of labels, neither gives ``head: none`` (hidden states); a pooler (``pooler.dense``)
gives ``pooling: cls`` (BERT's tanh pooler), none gives ``pooling: mean``.

Hugging Face keeps query, key and value apart; Axon's attention (``axon.nn.CrossAttention``,
used as self-attention) has ``q`` and a fused ``kv`` whose rows are [key; value]. The MLM decoder
is tied to the word embeddings (``tie_word_embeddings``); a checkpoint that lists it must hold
the same matrix, and its bias is ``cls.predictions.bias``. Keys live under ``bert.`` in the
task models and at the top level in a bare BertModel; both load. Export (``to_hf``) is not
implemented for this family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from axon.errors import CheckpointError, ConfigError
from axon.interop.tensors import Source, head
from axon.models.bert import Bert, BertConfig

MODEL_TYPE = "bert"
MODEL = Bert  # what from_hf builds for this model_type
PREFIXES = ("bert.",)
# Buffers some checkpoints save with the weights: derived, not learned.
IGNORE = (r"(bert\.)?embeddings\.(position_ids|token_type_ids)",)
HINT_ONLY = ()
MLM_KEY = "cls.predictions.transform.dense.weight"


def config_to_axon(hf: dict[str, Any]) -> BertConfig:
    def unsupported(field: str, value, why: str):
        raise ConfigError(f"bert config: {field}={value!r} is not supported ({why})")

    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        unsupported("hidden_act", act, "Axon's BERT uses the exact (erf) GELU, hidden_act: gelu")
    pos = hf.get("position_embedding_type", "absolute")
    if pos != "absolute":
        unsupported("position_embedding_type", pos, "Axon's BERT has learned absolute positions")
    if hf.get("is_decoder", False) or hf.get("add_cross_attention", False):
        unsupported("is_decoder", True, "Axon's BERT is an encoder: bidirectional, no cross-attention")
    if not hf.get("tie_word_embeddings", True):
        unsupported("tie_word_embeddings", False, "Axon's MLM decoder is the word embedding matrix")
    return BertConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 512),
        n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"], n_embd=hf["hidden_size"],
        mlp_hidden=hf["intermediate_size"], type_vocab_size=hf.get("type_vocab_size", 2),
        norm_eps=hf.get("layer_norm_eps", 1e-12), dropout=hf.get("hidden_dropout_prob", 0.1),
        head="none", pooling="mean",
    )


def config_from_tensors(cfg: BertConfig, tensors: Mapping[str, torch.Tensor]) -> BertConfig:
    """The head and pooling the checkpoint's tensors say it has (module docstring)."""
    names = set(tensors)
    pooler = any(k in names for k in ("pooler.dense.weight", "bert.pooler.dense.weight"))
    if MLM_KEY in names:
        return dataclasses.replace(cfg, head="mlm", pooling="cls" if pooler else cfg.pooling)
    if "classifier.weight" in names:
        n = tensors["classifier.weight"].shape[0]
        if n < 2:
            raise ConfigError(f"bert checkpoint: a classifier with {n} label(s) (regression) is not supported")
        return dataclasses.replace(cfg, head="classify", num_labels=n, pooling="cls" if pooler else "mean")
    return dataclasses.replace(cfg, head="none", pooling="cls" if pooler else "mean")


def tensors_to_axon(src: Source, cfg: BertConfig) -> dict[str, torch.Tensor]:
    C, H, V = cfg.n_embd, cfg.hidden, cfg.vocab_size
    out: dict[str, torch.Tensor] = {}

    def linear(hf: str, ax: str, n_in: int, n_out: int) -> None:
        out[f"{ax}.weight"] = src.take(f"{hf}.weight", (n_out, n_in))  # nn.Linear (out, in) on both sides
        out[f"{ax}.bias"] = src.take(f"{hf}.bias", (n_out,))

    def norm(hf: str, ax: str) -> None:
        out[f"{ax}.weight"] = src.take(f"{hf}.weight", (C,))
        out[f"{ax}.bias"] = src.take(f"{hf}.bias", (C,))

    out["wte.weight"] = src.take("embeddings.word_embeddings.weight", (V, C))
    out["wpe.weight"] = src.take("embeddings.position_embeddings.weight", (cfg.block_size, C))
    out["wtt.weight"] = src.take("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, C))
    norm("embeddings.LayerNorm", "emb_norm")
    for i in range(cfg.n_layer):
        h, a = f"encoder.layer.{i}", f"layers.{i}"
        linear(f"{h}.attention.self.query", f"{a}.attn.q", C, C)
        out[f"{a}.attn.kv.weight"] = torch.cat([src.take(f"{h}.attention.self.{n}.weight", (C, C)) for n in ("key", "value")])
        out[f"{a}.attn.kv.bias"] = torch.cat([src.take(f"{h}.attention.self.{n}.bias", (C,)) for n in ("key", "value")])
        linear(f"{h}.attention.output.dense", f"{a}.attn.proj", C, C)
        norm(f"{h}.attention.output.LayerNorm", f"{a}.norm1")
        linear(f"{h}.intermediate.dense", f"{a}.mlp.fc", C, H)
        linear(f"{h}.output.dense", f"{a}.mlp.proj", H, C)
        norm(f"{h}.output.LayerNorm", f"{a}.norm2")
    if cfg.has_pooler:
        linear("pooler.dense", "pooler", C, C)
    if cfg.head == "mlm":
        p = "/cls.predictions"
        linear(f"{p}.transform.dense", "mlm.dense", C, C)
        out["mlm.norm.weight"] = src.take(f"{p}.transform.LayerNorm.weight", (C,))
        out["mlm.norm.bias"] = src.take(f"{p}.transform.LayerNorm.bias", (C,))
        out["mlm.bias"] = src.take(f"{p}.bias", (V,))
        head(src, V, C, True, out["wte.weight"], name=f"{p}.decoder.weight")  # tied: must equal wte if listed
        if src.has(f"{p}.decoder.bias"):  # the same parameter as cls.predictions.bias, listed twice from memory
            if not torch.equal(src.take(f"{p}.decoder.bias", (V,)), out["mlm.bias"]):
                raise CheckpointError(f"{src.origin}: cls.predictions.decoder.bias differs from cls.predictions.bias")
    if cfg.head == "classify":
        linear("/classifier", "classifier", C, cfg.num_labels)
    return out

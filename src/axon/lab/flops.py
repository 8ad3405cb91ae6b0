"""Training FLOPs per token and parameter counts of ANY family's model config.

One entry point for the lab (compare budgets, scaling-law axes): the model is built on the meta
device (shapes only, no memory, no initialisation cost) and asked for its ``flops_per_token``,
which every family implements with the one convention documented in ``axon.models.flops``:

    6 N  +  12 * sum over attention layers of (keys per query) * d_attn

(Kaplan et al. 2020, table 1: C_forward = 2N + 2 n_layer n_ctx d_attn, training = 3x forward;
PaLM appendix B; Chinchilla appendix F). Family by family:

    decoder         N = active non-embedding params (an MoE's k routed experts + shared + router)
                    + the head matrix (tied or not); keys = seq_len, or min(seq_len, attn_window)
                    in sliding-window layers (block-sparse layers are counted dense)
    progressive     as decoder, at the FINAL depth (after every grow_at step): the cost per token
                    of the model the run ends with; a matrix used by a block and its copy counts
                    twice. (The trainer's MFU follows the current depth.)
    conv_attention  outer blocks per token; conv, upsampling and inner blocks once per k tokens,
                    inner attention over T/k groups: 6 P_inner / k + 12 n_inner (T/k) D / k
    bert            encoder weights (the MLM head runs on ~15% of positions and is left out)
    seq2seq         per (source, target) position pair: encoder + decoder + head weights;
                    keys: encoder T, decoder self T + cross T
    rnn             6 x (recurrent cell matrices + head matrix); no term grows with seq_len
    rnn_classifier  6 x recurrent cell matrices (the head runs once per sequence, not per token)
    mamba           6 x (projection and head matrices) + 3 x the conv and scan elementwise work
                    (2 D K + 8 D N per layer); no term grows with seq_len
    word2vec        per centre word: 6 n_embd (1 + negatives) per context slot (skip-gram), or
                    6 n_embd (1 + negatives + slots) (CBOW)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from axon.errors import ConfigError


def _meta_model(model_cfg) -> nn.Module:
    from axon.models import build_model

    if getattr(model_cfg, "vocab_size", 0) is None:
        raise ConfigError(f"model.vocab_size is null ({model_cfg.family}): it comes from the tokenizer; "
                          "set it, or resolve the config first (axon.lab.flops.resolve_vocab)")
    with torch.device("meta"):
        try:
            model = build_model(model_cfg)
        except ValueError as e:  # a field the task fills in (e.g. an RNN classifier's num_labels)
            raise ConfigError(f"model.family={model_cfg.family}: {e}") from None
        for callback in model.callbacks():
            callback.final_shape()  # e.g. progressive growth: the final depth
    return model


def flops_per_token(model_cfg, seq_len: int | None = None) -> float:
    """Training FLOPs per token (forward + backward) of the model ``model_cfg`` describes, at
    context ``seq_len`` (default: its block_size). See the module docstring for each family."""
    flops = _meta_model(model_cfg).flops_per_token(seq_len)
    if flops is None:
        raise ConfigError(f"model.family={model_cfg.family}: no FLOPs count for this family")
    return float(flops)


def count_params(model_cfg, non_embedding: bool = False) -> int:
    """Parameters of the model (shared tensors once), built on the meta device. ``non_embedding``
    drops the lookup tables (nn.Embedding weights: token, position, type), as Kaplan et al. do; a
    head tied to the token table goes with it. An MoE counts all its experts; progressive models
    count their final depth."""
    model = _meta_model(model_cfg)
    seen: dict[int, int] = {id(p): p.numel() for p in model.parameters()}
    n = sum(seen.values())
    if non_embedding:
        tables = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding)}
        n -= sum(v for k, v in tables.items() if k in seen)
    return int(n)


def resolve_vocab(run_cfg):
    """A copy of the run config with ``model.vocab_size`` filled from its task's tokenizer when it
    is null (as training does), so that FLOPs and parameters can be counted before the run."""
    cfg = copy.deepcopy(run_cfg)
    if getattr(cfg.model, "vocab_size", 0) is None:
        from axon.tasks import build_task

        build_task(cfg, torch.device("cpu"))  # fills cfg.model.vocab_size (set_vocab_size)
        if cfg.model.vocab_size is None:
            raise ConfigError(f"task of model.family={cfg.model.family} did not set model.vocab_size")
    return cfg


__all__ = ["count_params", "flops_per_token", "resolve_vocab"]

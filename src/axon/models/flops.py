"""FLOPs: what a model spends per training token, and what a device does per second.

Together they make MFU (model FLOPs utilisation, PaLM appendix B: FLOPs per token x tokens per
second / peak FLOP/s) and the compute axis of scaling laws. This module holds:

    transformer_flops_per_token   the convention below as a formula; each family's
                                  ``flops_per_token`` method applies it to its own shapes
    flops_per_token, count_params training FLOPs per token and parameter counts of ANY family's
                                  model config, from a model built on the meta device (shapes
                                  only, no memory, no initialisation cost): the one entry point
                                  from a config (the lab's compare budgets and scaling axes)
    peak_flops                    the denominator of MFU: the GPU's data-sheet peak, or a
                                  measured matmul peak (``matmul_peak_flops``)

The convention (the one definition):

    C_train per token = 6 N + 12 * sum over attention layers of (keys each query sees) * d_attn

- 6N: every weight that multiplies costs 2 FLOPs in the forward pass (a multiply and an add) and
  4 in the backward (the gradients of the input and of the weight): training ~ 3x forward
  (Kaplan et al. 2020, sec. 2.1 and table 1: C_forward = 2N + 2 n_layer n_ctx d_attn).
  N counts the matrices that multiply per token: the non-embedding parameters (Kaplan's N), the
  output head's matrix even when it is tied to the embedding (its matmul is real work; PaLM
  appendix B and Chinchilla appendix F count it too), an MoE's active experts only. Lookups
  (token/position embeddings) cost nothing.
- 12 L T d_attn: per layer, QK^T and the weighted sum of V are each 2 T d_attn FLOPs forward per
  query over T keys, x3 for training. Axon counts every key a query COULD see (n_ctx = T, as
  Kaplan and PaLM do), not the causal average T/2 (Chinchilla's appendix F also counts the full
  T x T scores); a sliding window of w keys sees min(T, w). So 6N + 12 n_layer T n_embd for a
  dense decoder. Chinchilla's appendix F additionally counts softmax and the embedding lookups
  and gets within a few % of 6N + attention for the model sizes here; we keep the simpler,
  more widely quoted form, so that figures compare with Kaplan's and PaLM's MFU.

Family by family (what ``flops_per_token(model_cfg)`` returns):

    decoder         N = active non-embedding params (an MoE's k routed experts + shared + router)
                    + the head matrix (tied or not); keys = seq_len, or min(seq_len, attn_window)
                    in sliding-window layers (block-sparse layers are counted dense)
    progressive     as decoder, at the FINAL depth (after every grow_at step): the cost per token
                    of the model the run ends with; a matrix used by a block and its copy counts
                    twice. (The trainer's MFU follows the current depth.)
    conv_attention  outer blocks per token; conv, upsampling and inner blocks once per k tokens,
                    inner attention over T/k groups: 6 P_inner / k + 12 n_inner (T/k) D / k
    reward          the decoder body's weights and attention, no LM head (the scalar head runs
                    once per sequence, not per token)
    bert            encoder weights (the MLM head runs on ~15% of positions and is left out)
    seq2seq         per (source, target) position pair: encoder + decoder + head weights;
                    keys: encoder T, decoder self T + cross T
    rnn_seq2seq     per (source, target) position pair: 6 x (both encoder directions, the key and
                    query projections, decoder cell, readout and head matrices), + per source key
                    6 (attn_dim + hidden) (Bahdanau: v^T tanh and the context) or 12 hidden (Luong)
    rnn             6 x (recurrent cell matrices + head matrix); no term grows with seq_len
    rnn_classifier  6 x recurrent cell matrices (the head runs once per sequence, not per token)
    rnn_tagger      6 x (recurrent cell matrices + head matrix) per word (the CRF's K^2 is left out)
    mamba           6 x (projection and head matrices) + 3 x the conv and scan elementwise work
                    (2 D K + 8 D N per layer); no term grows with seq_len
    word2vec        per centre word: 6 n_embd (1 + negatives) per context slot (skip-gram), or
                    6 n_embd (1 + negatives + slots) (CBOW)
    glove           per co-occurrence entry: 6 n_embd (one dot product; the biases are lookups)
    fasttext        per centre word: skip-gram's 6 n_embd (1 + negatives) per context slot (the sum
                    of a word's n-gram rows is a lookup)
    unet            per image (block_size is 1): 6 x every conv weight x its output pixels, + the
                    embedding MLP and per-block projections once, + 12 (H W)^2 C per attention layer
    mlp_denoiser    per point (block_size is 1): 6 x every Linear weight (the class table is a lookup)
    resnet          per image (block_size is 1): 6 x every conv weight x its output pixels, + the head
                    matrix; batch norm, pooling and the residual additions are not counted
    vit             per image: 6 x (patch conv weights x patches + block matrices x T tokens + head)
                    + 12 n_layer T^2 C (every token attends over all T, class token included)
    vit_hybrid      as vit, with the ResNet backbone's count and the 1x1 projection in place of the patch conv
    vision_mamba    per image: 6 x (patch conv x patches + per-token projections of both scan directions
                    x T + head) + 3 x the conv and scan elementwise work (2 D K + 8 D N per direction)
    detr            per image: the ResNet backbone's count, 6 x (1x1 projection x S + encoder matrices x S
                    + decoder matrices x N queries, its cross-attention keys/values x S + heads x N per
                    decoder layer) + 12 (enc_layers S^2 + dec_layers N (N + S)) d; S = H' W' tokens
    wm_vae          per frame: 6 x (each encoder and decoder convolution's weights x its output positions
                    + the mu, logvar and expand linears)
    wm_mdnrnn       per step: 6 x (the LSTM's / GRU's matmul weights + the MDN head's matrix)
    wm_controller   per step: 2 x its weights (a forward only: CMA-ES trains it, no backward)

Peak FLOP/s: a GPU's dense bf16 tensor-core peak (no sparsity) from the vendor's data sheet
(``GPU_BF16_PEAK``); an unknown GPU's measured bf16 matmul peak; a CPU's measured fp32 matmul
peak (its practical peak). ``train.peak_flops`` in a run's config overrides it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from axon.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# The convention as a formula (used by the families' flops_per_token methods)


def transformer_flops_per_token(n_params: int, n_layer: int, n_embd: int, seq_len: int,
                                layer_keys: Sequence[float] | None = None) -> float:
    """Training FLOPs per token: 6N for the weight matmuls (forward 2N, backward 4N) plus
    12 * n_layer * seq_len * n_embd for the attention scores and weighted sums (Kaplan et al.
    2020, table 1; the PaLM appendix B count). ``n_params`` should include the output head's
    matrix, since the head's matmul is real work even when tied to the embedding.

    ``layer_keys``: the keys a query sees in each attention layer when that is not ``seq_len``
    in every one of ``n_layer`` layers (a sliding window: min(seq_len, window); cross-attention:
    the source length); the attention term is then 12 * sum(layer_keys) * n_embd."""
    keys = float(sum(layer_keys)) if layer_keys is not None else float(n_layer * seq_len)
    return 6.0 * n_params + 12.0 * keys * n_embd


# ---------------------------------------------------------------------------------------------
# Any family's config: FLOPs per token and parameter counts of a meta-device model


def _meta_model(model_cfg) -> nn.Module:
    from axon.models import build_model

    if getattr(model_cfg, "vocab_size", 0) is None:
        raise ConfigError(f"model.vocab_size is null ({model_cfg.family}): it comes from the tokenizer; "
                          "set it, or resolve the config first (axon.tasks.resolve_vocab)")
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


# ---------------------------------------------------------------------------------------------
# Peak FLOP/s, the denominator of MFU

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from the vendors' data sheets. The first key
# found in the device name wins, so the PCIe and NVL parts come before the SXM one.
GPU_BF16_PEAK = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 5) -> float:
    """Measured FLOP/s of an n x n matmul on ``device`` (best of ``reps``): the CPU's practical peak."""
    gen = torch.Generator(device).manual_seed(0)  # never the global RNG: exact resume relies on it
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    best = float("inf")
    for _ in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def peak_flops(device: torch.device) -> float:
    """The denominator of MFU: the GPU's data-sheet bf16 peak, or a measured fp32 matmul peak."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_BF16_PEAK.items():
            if key in name:
                return value
        return matmul_peak_flops(device, torch.bfloat16, n=4096)
    return matmul_peak_flops(device)


__all__ = ["GPU_BF16_PEAK", "count_params", "flops_per_token", "matmul_peak_flops", "peak_flops",
           "transformer_flops_per_token"]

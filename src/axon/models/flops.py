"""FLOPs a model spends per training token (the numerator of MFU and the x-axis of scaling laws).

The convention (the one definition; each family's ``flops_per_token`` method applies it to its
own shapes, and ``axon.lab.flops.flops_per_token(model_cfg)`` is the entry point from a config):

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
"""

from __future__ import annotations

from collections.abc import Sequence


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

"""FLOPs a model spends per training token (the numerator of MFU and the x-axis of scaling laws)."""

from __future__ import annotations


def transformer_flops_per_token(n_params: int, n_layer: int, n_embd: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weight matmuls (forward 2N, backward 4N) plus
    12 * n_layer * seq_len * n_embd for the attention scores and weighted sums (Kaplan et al.
    2020, table 1; the PaLM appendix B count). ``n_params`` should include the output head's
    matrix, since the head's matmul is real work even when tied to the embedding."""
    return 6.0 * n_params + 12.0 * n_layer * seq_len * n_embd

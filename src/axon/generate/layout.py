"""Weight layout for one-sequence decoding on CPU.

A decode step at batch 1 multiplies one row by every weight matrix: a matrix-vector product
whose speed is how fast the matrix streams from memory. ``nn.Linear`` stores W as (out, in),
so ``x @ W.T`` is a "transposed" GEMV; stored column-major (the same (out, in) tensor with
strides (1, out), i.e. W.T contiguous, the layout of Hugging Face's GPT-2 ``Conv1D``), it is a
plain one. On the CPUs measured here (MKL, AMD EPYC, fp32) the plain GEMV streams 1.2-1.7x
faster: GPT-2 124M's 50257 x 768 head takes 5.8 ms instead of 10.0 ms per token, its twelve
blocks 15.8 ms instead of 19.4 ms (``benchmarks/decode_throughput.py``). With more rows
(prefill, batches) the (out, in) layout is as fast or faster, so training keeps it.

``column_major_linears(model)`` relays every ``nn.Linear`` weight out column-major in place
(same Parameter objects, same values, one matrix copied at a time, so no second copy of the
model) and restores the contiguous layout on exit, also after an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _linear_weights(model: nn.Module) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.dim() == 2:
            seen.setdefault(id(module.weight), module.weight)  # a tied head shares the embedding's
    return list(seen.values())


@contextmanager
def column_major_linears(model: nn.Module) -> Iterator[None]:
    """Within the block, every Linear weight of ``model`` is stored column-major (see module doc).

    Must run outside ``torch.inference_mode`` so that the restored weights stay ordinary
    tensors that training can use again.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("column_major_linears must be entered outside torch.inference_mode")
    weights = [w for w in _linear_weights(model) if w.is_contiguous()]
    with torch.no_grad():
        for w in weights:
            w.data = w.data.t().contiguous().t()  # (out, in) with strides (1, out)
    try:
        yield
    finally:
        with torch.no_grad():
            for w in weights:
                w.data = w.data.contiguous()

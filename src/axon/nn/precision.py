"""Upcasting for numerically sensitive statistics (softmax, routing, scans).

Under bf16 autocast the logits of a head are bf16; a loss, a router's softmax or Mamba's decay
rates are computed in fp32 instead. ``.float()`` did that but also *down*cast a float64 run
(``train.dtype: fp64``, used for numerical checks), so upcasting goes through here.
"""

import torch


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is a narrower float (bf16, fp16), else unchanged (fp32, fp64)."""
    return t.float() if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64) else t

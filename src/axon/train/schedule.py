"""Learning-rate schedules as a factor of the peak lr."""

from __future__ import annotations

import math


def lr_factor(step: float, total: float, name: str, warmup: int, min_ratio: float, decay_fraction: float) -> float:
    """Multiplier on the peak lr at ``step`` of ``total``.

    - constant: linear warmup, then 1.
    - cosine: linear warmup, then a half cosine from 1 down to ``min_ratio`` at ``total``
      (Loshchilov & Hutter 2017, as GPT-3 and Chinchilla use it).
    - wsd: warmup-stable-decay (Hu et al. 2024, MiniCPM): warmup, hold 1, then decay linearly to
      ``min_ratio`` over the last ``decay_fraction`` of training.
    - inverse_sqrt: "Attention Is All You Need" (sec. 5.3), lr = d^-0.5 * min(n^-0.5, n * w^-1.5)
      at step n = step + 1 with w = ``warmup``: linear warmup to the peak d^-0.5 * w^-0.5 at n = w,
      then proportional to 1/sqrt(n). As a factor of the peak: min(n / w, sqrt(w / n)); so
      ``optim.lr`` = d_model^-0.5 * warmup^-0.5 gives the paper's schedule exactly (d = 512,
      w = 4000: 7.0e-4). ``total`` plays no part: the schedule does not depend on the run's length.
    ``step`` may be fractional: a wall-clock budget maps elapsed time onto the step axis.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    if name == "inverse_sqrt":
        return math.sqrt(warmup / (step + 1))  # step >= warmup here, so n = step + 1 > w
    if name == "cosine":
        span = max(total - warmup, 1)
        progress = min(max((step - warmup) / span, 0.0), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if name == "wsd":
        decay_start = total * (1 - decay_fraction)
        if step < decay_start:
            return 1.0
        progress = min((step - decay_start) / max(total - decay_start, 1), 1.0)
        return 1.0 - (1 - min_ratio) * progress
    raise ValueError(f"unknown schedule {name!r}")

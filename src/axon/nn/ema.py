"""An exponential moving average of a model's parameters -- and of nothing else.

Ho et al. (2020) sample from an EMA of the denoiser's weights (decay 0.9999), as most diffusion
and many image models do since. The average covers the *parameters* only: a model's buffers
(normalisation statistics, a schedule someone put in a buffer) are state, not weights, and an EMA
that also averaged or overwrote them corrupts the model it is swapped into -- the classic bug of
lucidrains/denoising-diffusion-pytorch #136, where the EMA copy's update clobbered the diffusion
schedule's buffers.

    after every applied optimizer step k = 1, 2, ...:
        d_k     = min(decay, (1 + k) / (10 + k))        warm-up: early steps average over few
        shadow <- d_k * shadow + (1 - d_k) * param       every trainable parameter, in float32

    swapped_in(model): shadow <-> param.data for the duration of a ``with`` (evaluation, sampling),
    then back: the optimizer keeps training the raw weights.

The shadows are buffers of this module (``shadow`` holds one per parameter, named after it with
``.`` as ``__``; ``steps`` counts the updates), so a model that owns one saves them in its
checkpoint and a resumed run continues the same average. The owner calls :meth:`update` after each
optimizer step (``axon.models.base.TrainerCallback.after_step``: :class:`EMACallback`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def _key(name: str) -> str:
    return name.replace(".", "__")


class ParameterEMA(nn.Module):
    """Float32 shadows of ``params`` ({name: parameter}, trainable ones), averaged with ``decay``."""

    def __init__(self, params: dict[str, nn.Parameter], decay: float, warmup: bool = True):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.names = list(params)
        self.shadow = nn.Module()
        for name, p in params.items():
            self.shadow.register_buffer(_key(name), p.detach().float().clone())
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def rate(self) -> float:
        """The decay of the next update: ``decay``, or the warm-up's smaller value early on."""
        k = int(self.steps) + 1
        return min(self.decay, (1 + k) / (10 + k)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, params: dict[str, nn.Parameter]) -> None:
        """shadow <- d * shadow + (1 - d) * param, for every averaged parameter."""
        d = self.rate()
        for name in self.names:
            s = self.shadow.get_buffer(_key(name))
            s.lerp_(params[name].detach().to(s.dtype), 1.0 - d)
        self.steps += 1

    @contextlib.contextmanager
    def swapped_in(self, params: dict[str, nn.Parameter]) -> Iterator[None]:
        """Within the block the parameters hold the averages (cast to their dtype); after it, their
        own values again, bit for bit."""
        saved = {}
        with torch.no_grad():
            for name in self.names:
                p = params[name]
                saved[name] = p.detach().clone()
                p.copy_(self.shadow.get_buffer(_key(name)).to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)

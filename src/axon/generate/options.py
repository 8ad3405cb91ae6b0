"""Sampling settings, checked once, wherever they come from.

``generate`` and ``speculative_generate`` build a :class:`SamplingOptions` from their keywords (or
take one), and ``axon sample`` builds one from its flags, so a temperature of -1 or a top_p of 2
is refused the same way from Python and from the command line: a :class:`SamplingOptionError`
(a ``ConfigError``) whose one-line message names the field, e.g. ``top_p must be in (0, 1], got
2.0``. The command line words it with the flag instead (``--top-p must be in (0, 1], got 2.0``)
through :meth:`SamplingOptionError.message_for`. NaN is refused wherever a float is taken: it
fails every comparison, so a check written as ``x < 0`` would let it through.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from axon.errors import ConfigError


class SamplingOptionError(ConfigError):
    """A sampling setting out of range: ``field`` (the Python name), ``rule`` (what it must be) and
    the refused ``value``; its message is ``"<field> <rule>, got <value>"``."""

    def __init__(self, field: str, rule: str, value) -> None:
        self.field, self.rule, self.value = field, rule, value
        super().__init__(self.message_for(field))

    def message_for(self, name: str) -> str:
        """The message with the setting called ``name`` (e.g. a command-line flag)."""
        return f"{name} {self.rule}, got {self.value!r}"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingOptions:
    """How new tokens are picked; every value is checked on construction.

    - ``max_new_tokens``: tokens added to each prompt, >= 0;
    - ``temperature``: logits are divided by it, >= 0 and finite; 0 is greedy (argmax);
    - ``top_k``: keep the k likeliest tokens, >= 0 (0 or None: every token);
    - ``top_p``: nucleus sampling, keep the smallest set whose mass reaches it, in (0, 1] (None: off);
    - ``min_p``: keep tokens with p >= min_p * p_max, in [0, 1] (None: off);
    - ``repetition_penalty``: CTRL's penalty on tokens already in the sequence, > 0 and finite (1: off);
    - ``num_samples``: independent samples of each prompt, >= 1.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    num_samples: int = 1

    def __post_init__(self) -> None:
        if not (_is_int(self.max_new_tokens) and self.max_new_tokens >= 0):
            raise SamplingOptionError("max_new_tokens", "must be an integer >= 0", self.max_new_tokens)
        if not (_is_real(self.temperature) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise SamplingOptionError("temperature", "must be >= 0 and finite (0 is greedy)", self.temperature)
        if self.top_k is not None and not (_is_int(self.top_k) and self.top_k >= 0):
            raise SamplingOptionError("top_k", "must be an integer >= 0 (0 keeps every token)", self.top_k)
        if self.top_p is not None and not (_is_real(self.top_p) and 0 < self.top_p <= 1):
            raise SamplingOptionError("top_p", "must be in (0, 1]", self.top_p)
        if self.min_p is not None and not (_is_real(self.min_p) and 0 <= self.min_p <= 1):
            raise SamplingOptionError("min_p", "must be in [0, 1]", self.min_p)
        if not (_is_real(self.repetition_penalty) and math.isfinite(self.repetition_penalty)
                and self.repetition_penalty > 0):
            raise SamplingOptionError("repetition_penalty", "must be positive and finite (1 disables it)",
                                      self.repetition_penalty)
        if not (_is_int(self.num_samples) and self.num_samples >= 1):
            raise SamplingOptionError("num_samples", "must be an integer >= 1", self.num_samples)

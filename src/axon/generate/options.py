"""Sampling settings, checked once, wherever they come from.

``generate`` and ``speculative_generate`` build a :class:`SamplingOptions` from their keywords (or
take one), and ``axon sample`` builds one from its flags, so a temperature of -1 or a top_p of 2
is refused the same way from Python and from the command line: a :class:`SamplingOptionError`
(a ``ConfigError``) whose one-line message names the field, e.g. ``top_p must be in (0, 1], got
2.0``. The command line words it with the flag instead (``--top-p must be in (0, 1], got 2.0``)
through :meth:`SamplingOptionError.message_for`. NaN is refused wherever a float is taken: it
fails every comparison, so a check written as ``x < 0`` would let it through.

The settings of the other decoders are checked here too, by functions that ``beam_search``,
``speculative_generate`` and ``generate`` call on their keywords and ``axon sample`` on its flags
before it loads a run: :func:`check_beam_options`, :func:`check_num_draft`,
:func:`check_stop_tokens`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from axon.errors import OptionError, is_int, is_real


class SamplingOptionError(OptionError):
    """A sampling or decoding setting out of range: ``field`` (the Python name), ``rule`` (what it
    must be) and the refused ``value``; its message is ``"<field> <rule>, got <value>"``
    (:class:`axon.errors.OptionError`, which the command line words with the flag)."""


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
        if not (is_int(self.max_new_tokens) and self.max_new_tokens >= 0):
            raise SamplingOptionError("max_new_tokens", "must be an integer >= 0", self.max_new_tokens)
        if not (is_real(self.temperature) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise SamplingOptionError("temperature", "must be >= 0 and finite (0 is greedy)", self.temperature)
        if self.top_k is not None and not (is_int(self.top_k) and self.top_k >= 0):
            raise SamplingOptionError("top_k", "must be an integer >= 0 (0 keeps every token)", self.top_k)
        if self.top_p is not None and not (is_real(self.top_p) and 0 < self.top_p <= 1):
            raise SamplingOptionError("top_p", "must be in (0, 1]", self.top_p)
        if self.min_p is not None and not (is_real(self.min_p) and 0 <= self.min_p <= 1):
            raise SamplingOptionError("min_p", "must be in [0, 1]", self.min_p)
        if not (is_real(self.repetition_penalty) and math.isfinite(self.repetition_penalty)
                and self.repetition_penalty > 0):
            raise SamplingOptionError("repetition_penalty", "must be positive and finite (1 disables it)",
                                      self.repetition_penalty)
        if not (is_int(self.num_samples) and self.num_samples >= 1):
            raise SamplingOptionError("num_samples", "must be an integer >= 1", self.num_samples)


def check_length_penalty(length_penalty) -> None:
    """Beam search's score is log-prob / length ** length_penalty: any finite number."""
    if not (is_real(length_penalty) and math.isfinite(length_penalty)):
        raise SamplingOptionError("length_penalty", "must be finite", length_penalty)


def check_beam_options(max_new_tokens, num_beams, length_penalty=1.0, num_return=1) -> None:
    """The settings of :func:`axon.generate.beam_search`: ``num_beams`` >= 1, ``max_new_tokens``
    >= 1, a finite ``length_penalty``, and ``num_return`` hypotheses in [1, num_beams]."""
    if not (is_int(num_beams) and num_beams >= 1):
        raise SamplingOptionError("num_beams", "must be an integer >= 1", num_beams)
    if not (is_int(max_new_tokens) and max_new_tokens >= 1):
        raise SamplingOptionError("max_new_tokens", "must be an integer >= 1 with beam search", max_new_tokens)
    check_length_penalty(length_penalty)
    if not (is_int(num_return) and 1 <= num_return <= num_beams):
        raise SamplingOptionError("num_return", f"must be an integer in [1, {num_beams}] (at most one per beam)", num_return)


def check_num_draft(num_draft) -> None:
    """Draft tokens proposed per target pass in speculative decoding: >= 0 (0: the target alone)."""
    if not (is_int(num_draft) and num_draft >= 0):
        raise SamplingOptionError("num_draft", "must be an integer >= 0 (0: no drafting)", num_draft)


def check_stop_tokens(field: str, ids, vocab_size: int | None = None) -> None:
    """Stop token ids (``field``: the keyword that holds them): integers in [0, vocab_size) -- an id
    the model can never produce would never stop anything. ``vocab_size`` None: only >= 0."""
    for i in ids:
        if not (is_int(i) and i >= 0 and (vocab_size is None or i < vocab_size)):
            where = f"in [0, {vocab_size}) (the vocabulary)" if vocab_size is not None else ">= 0"
            raise SamplingOptionError(field, f"takes token ids {where}", i)


def vocabulary(model, vocab_limit: int | None = None) -> int | None:
    """The ids a decoder may produce: ``vocab_limit`` when given (a vocabulary padded beyond the
    tokenizer's), else the model's ``config.vocab_size`` (None when it has none)."""
    if vocab_limit is not None:
        return vocab_limit
    return getattr(getattr(model, "config", None), "vocab_size", None)

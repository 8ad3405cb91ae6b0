"""Decoding for every autoregressive family through the cache interface (``model.make_cache``,
``model(idx, cache=...)``): sampling strategies, beam search, speculative decoding."""

from axon.generate.beam import BeamHypothesis, beam_search
from axon.generate.cache import KVCache
from axon.generate.options import SamplingOptionError, SamplingOptions
from axon.generate.sampling import (
    Generation,
    cut_at_stop,
    filter_logits,
    generate,
    process_logits,
)
from axon.generate.speculative import SpeculativeResult, speculative_generate
from axon.generate.state import RecurrentStateCache
from axon.generate.stream import StreamPrinter
from axon.generate.window import WindowCache

__all__ = ["SamplingOptions", "SamplingOptionError", "StreamPrinter", "speculative_generate", "SpeculativeResult", "beam_search", "BeamHypothesis", "KVCache", "RecurrentStateCache", "WindowCache", "Generation", "generate", "filter_logits", "process_logits", "cut_at_stop"]

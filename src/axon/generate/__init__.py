"""Decoding: sampling strategies over any model that returns logits."""

from axon.generate.sampling import filter_logits, generate

__all__ = ["generate", "filter_logits"]

"""Losses. Models return logits; objectives turn (model, batch) into a loss and its parts."""

from axon.objectives.causal_lm import IGNORE_INDEX, CausalLM, causal_lm_loss

__all__ = ["CausalLM", "causal_lm_loss", "IGNORE_INDEX"]

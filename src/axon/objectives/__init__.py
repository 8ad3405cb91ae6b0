"""Losses. Models return logits; objectives turn (model, batch) into a loss and its parts."""

from axon.objectives.causal_lm import IGNORE_INDEX, CausalLM, causal_lm_loss
from axon.objectives.classification import Classification
from axon.objectives.glove import GloVeObjective, glove_loss
from axon.objectives.mlm import MaskedLM
from axon.objectives.negative_sampling import NegativeSampling, negative_sampling_loss
from axon.objectives.reward import PairwiseReward, bradley_terry_nll, labeller_nll
from axon.objectives.seq2seq import Seq2SeqLoss, label_smoothed_loss
from axon.objectives.sft import ResponseLM

__all__ = ["CausalLM", "causal_lm_loss", "IGNORE_INDEX", "Seq2SeqLoss", "label_smoothed_loss", "MaskedLM",
           "Classification", "NegativeSampling", "negative_sampling_loss", "ResponseLM", "PairwiseReward",
           "bradley_terry_nll", "labeller_nll", "GloVeObjective", "glove_loss"]

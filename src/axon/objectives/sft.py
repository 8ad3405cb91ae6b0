"""Supervised fine-tuning (InstructGPT step 1, Ouyang et al. 2022 sec. 3.5): next-token
cross-entropy over the response tokens only.

    tokens   U s e r :   a b c \\n A s s i s t a n t :   c b a $
    targets  -100 at every position whose next token is prompt or template ......  c b a $

    loss = - sum_{t in R} log p(y_t | x_<=t) / |R|,   R = the positions whose target is a response
           token (or its end marker; axon.data.chat), over the whole micro-batch

The batch is (x, y) with y = -100 (``IGNORE_INDEX``) wherever no loss is taken, so the loss is
``causal_lm_loss``'s (which skips those targets) and ``CausalLM`` adds the model's auxiliary losses
(an MoE's balance loss). What this objective adds is the count: evaluation weights each batch by
its response tokens, not by its (padded) positions, so the validation loss is the mean over every
response token of the split.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.objectives.causal_lm import IGNORE_INDEX, CausalLM


class ResponseLM(CausalLM):
    """Causal-LM cross-entropy over the targets that are not ``IGNORE_INDEX`` (module docstring)."""

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        loss, parts = super().__call__(model, batch)
        parts["count"] = (batch[1] != IGNORE_INDEX).sum()  # response targets: evaluation's weight
        return loss, parts

"""The mixed-modal objective: next-token prediction over captions and image codes (early fusion),
or over captions after an image prefix (late fusion); ``axon.tasks.mixed_modal``.

    early fusion   batch (x, y)           logits = model(x)          (B, T, V)
    late fusion    batch (images, x, y)   logits = model(images, x)  (B, T, V)
    loss = mean cross-entropy over the targets that are not padding (+ z_loss * mean(log Z)^2)

Besides ``ce`` the parts hold what Chameleon's stability study watches (its sec. 2.3, fig. 5): the
mean L2 norm of the output logits over the real positions (``logit_norm``) and the cross-entropy of the
image-code targets and of the text targets apart (``ce_image``, ``ce_text``; early fusion).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.models.base import unwrap
from axon.objectives.causal_lm import IGNORE_INDEX, causal_lm_loss


class MixedModalLM:
    def __init__(self, z_loss: float = 0.0, code_offset: int | None = None):
        self.z_loss = z_loss
        self.code_offset = code_offset  # ids >= this are image codes (None: no codes, late fusion)

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        *inputs, y = batch
        logits = model(*inputs)  # (B, T, V)
        loss, parts = causal_lm_loss(logits, y, self.z_loss)
        for name, value in unwrap(model).aux_losses().items():
            loss = loss + value
            parts[name] = value
        with torch.no_grad():
            keep = y != IGNORE_INDEX  # (B, T)
            real = logits.detach()[keep].float()  # (N, V)
            parts["count"] = keep.sum()
            parts["logit_norm"] = real.norm(dim=-1).mean()
            if self.code_offset is not None:
                tok = F.cross_entropy(real, y[keep], reduction="none")  # (N,)
                image = y[keep] >= self.code_offset
                for name, sel in (("ce_image", image), ("ce_text", ~image)):
                    parts[name] = tok[sel].mean() if bool(sel.any()) else tok.new_tensor(float("nan"))
        return loss, parts


__all__ = ["MixedModalLM"]

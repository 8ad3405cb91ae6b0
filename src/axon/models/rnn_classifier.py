"""Bidirectional recurrent text classifier (Schuster & Paliwal 1997; Graves & Schmidhuber 2005).

     tokens (B, T), attention_mask (B, T)            True = real token
        |
     gather the real tokens of each row to its front, in order    (padding anywhere: left, right)
        |
     wte -> dropout                                    (B, T, n_embd)
        |
     cell x n_layer, forward and backward directions over each row's n_b real tokens only
        |                                              (packed sequences: no step ever reads a pad)
     outputs (B, T, 2 * hidden)  ->  pool over the n_b real positions
        |        mean: sum_t h_t / n_b     max: max_t h_t     last: [h_fwd at t = n_b - 1 ; h_bwd at t = 0]
     dropout -> head -> logits (B, num_labels)

It follows the classification contract shared with BERT: ``model(input_ids, attention_mask)`` ->
logits (B, num_labels), the batch being (input_ids, attention_mask, labels); the "classify" task
builds such batches and ``axon.objectives`` scores them. Padding never leaks: a row's logits
are a function of its real tokens alone (tests/models/test_rnn_classifier.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from axon.model_configs.rnn_classifier import PRESETS, RNNClassifierConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.models.rnn import CELLS, init_forget_bias, recurrent_matmul_params


class RNNClassifier(Model):
    def __init__(self, cfg: RNNClassifierConfig):
        super().__init__()
        if cfg.vocab_size is None or cfg.num_labels is None:
            raise ValueError("RNNClassifierConfig.vocab_size and num_labels must be set before building the model")
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.rnn = CELLS[cfg.cell](cfg.n_embd, cfg.hidden, cfg.n_layer, batch_first=True, bidirectional=cfg.bidirectional,
                                   dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden * self.directions, cfg.num_labels)
        self.reset_parameters()

    @property
    def directions(self) -> int:
        return 2 if self.config.bidirectional else 1

    def reset_parameters(self) -> None:
        self.rnn.reset_parameters()
        init_forget_bias(self.rnn)
        nn.init.uniform_(self.wte.weight, -0.1, 0.1)
        nn.init.uniform_(self.head.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        return 6.0 * recurrent_matmul_params(self.rnn)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) bool, True = real token -> logits (B, num_labels)."""
        T = input_ids.size(1)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        mask = attention_mask.bool()
        lengths = mask.sum(1)  # (B,) real tokens per row
        if bool((lengths == 0).any()):
            raise ValueError("every row needs at least one real token (an attention_mask row is all False)")
        # Move each row's real tokens to its front, keeping their order: a stable sort of the
        # pad flags puts real positions (flag 0) first. Then packing reads exactly n_b tokens.
        order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices  # (B, T)
        idx = input_ids.gather(1, order)
        x = self.drop(self.wte(idx))  # (B, T, C)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, hx = self.rnn(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D * H), zeros past n_b
        real = torch.arange(T, device=mask.device)[None, :] < lengths[:, None]  # (B, T) after the gather
        if self.config.pool == "mean":
            pooled = h.sum(1) / lengths[:, None].to(h.dtype)
        elif self.config.pool == "max":
            pooled = h.masked_fill(~real[..., None], float("-inf")).amax(1)
        else:  # the final state of each direction: forward after token n_b - 1, backward after token 0
            h_n = hx[0] if isinstance(hx, tuple) else hx  # (n_layer * D, B, H)
            pooled = torch.cat(list(h_n[-self.directions :]), dim=-1)  # (B, D * H)
        return self.head(self.drop(pooled))  # (B, num_labels)


__all__ = ["RNNClassifierConfig", "RNNClassifier", "PRESETS"]

"""Bidirectional recurrent tagger, optionally with a CRF (Huang, Xu & Yu 2015, "BiLSTM-CRF"; Lample et al. 2016).

     word ids (B, T), attention_mask (B, T)          True = a real word, a left-aligned prefix
        |
     wte -> dropout                                   (B, T, n_embd)       words, not sub-tokens
        |
     cell x n_layer, forward and backward over each row's n_b real words only (packed sequences)
        |
     outputs (B, T, D * hidden) -> dropout -> head    (B, T, num_labels)   emissions, one per word
        |
     crf: null ........ per-word cross-entropy, argmax per word        (axon.objectives.tagging)
          CRF(K) ...... sentence NLL by the forward algorithm, Viterbi  (axon.nn.crf)

``forward`` returns the emissions; the CRF, when ``model.crf`` is true, is the module ``crf``,
which the tag task's objective asks for through the model contract (``unwrap(model).tag_crf()``,
``axon.models.base``). A tagger's contract is ``model(input_ids, attention_mask)`` -> (B, T, K)
plus ``tag_crf()``; BERT's ``head: tag`` follows it too (without a CRF). The input is word-level: the tag task builds its
vocabulary (``axon.data.tagged.WordVocab``, <unk> or <Unk> for an unseen word, by its first letter); there is no
character-level encoder, so an unseen word is known only by its context.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from axon.model_configs.rnn_tagger import PRESETS, RNNTaggerConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.models.rnn import CELLS, init_forget_bias, recurrent_matmul_params
from axon.nn.crf import CRF


class RNNTagger(Model):
    def __init__(self, cfg: RNNTaggerConfig):
        super().__init__()
        if cfg.vocab_size is None or cfg.num_labels is None:
            raise ValueError("RNNTaggerConfig.vocab_size and num_labels must be set before building the model")
        self.config = cfg
        D = 2 if cfg.bidirectional else 1
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd, padding_idx=0)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.rnn = CELLS[cfg.cell](cfg.n_embd, cfg.hidden, cfg.n_layer, batch_first=True, bidirectional=cfg.bidirectional,
                                   dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden * D, cfg.num_labels)
        self.crf = CRF(cfg.num_labels) if cfg.crf else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rnn.reset_parameters()
        init_forget_bias(self.rnn)
        nn.init.uniform_(self.wte.weight, -0.1, 0.1)
        with torch.no_grad():
            self.wte.weight[0].zero_()
        nn.init.uniform_(self.head.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)
        if self.crf is not None:
            self.crf.reset_parameters()

    def tag_crf(self) -> CRF | None:
        return self.crf

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """6 x (recurrent matrices + head matrix) per word; the CRF's K^2 per word is left out."""
        return 6.0 * (recurrent_matmul_params(self.rnn) + self.head.weight.numel())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T) word ids, attention_mask (B, T) bool (a real prefix) -> emissions (B, T, num_labels);
        rows past their length hold the head's bias (the objective never reads them)."""
        T = input_ids.size(1)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        lengths = attention_mask.bool().sum(1)
        if bool((lengths == 0).any()):
            raise ValueError("every row needs at least one real word (an attention_mask row is all False)")
        x = self.drop(self.wte(input_ids))  # (B, T, C)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D * H), zeros past n_b
        return self.head(self.drop(h))  # (B, T, K)


__all__ = ["RNNTaggerConfig", "RNNTagger", "PRESETS"]

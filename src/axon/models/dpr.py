"""Dense passage retrieval (DPR, Karpukhin et al. 2020): two BERT encoders map questions and passages to
vectors whose dot product ranks passages for a question.

    question ids (B, Tq) --> question encoder (BERT) --> h_[CLS] --> q (B, C)
                                                                      |   sim(q, p) = q . p   (sec. 3.1)
    passage ids  (N, Tp) --> passage encoder  (BERT) --> h_[CLS] --> p (N, C)

Trained with in-batch negatives (``axon.objectives.retrieval``); at search time every passage is encoded
once into an index (``axon.retrieval.index``) and a question is one encoder pass and a maximum inner
product search. DPR reads the [CLS] position's last hidden state as it is (no pooler, sec. 3.1);
``pooling: mean`` averages the real tokens instead. ``shared: true`` uses one encoder for both (the
paper's two are kept apart: "two independent BERT networks").
"""

from __future__ import annotations

import torch

from axon.model_configs.dpr import PRESETS, DPRConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.models.bert import Bert, masked_mean


class DPR(Model):
    def __init__(self, cfg: DPRConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("DPRConfig.vocab_size must be set before building the model")
        self.config = cfg
        self.question_encoder = Bert(cfg.encoder_config())
        self.passage_encoder = self.question_encoder if cfg.shared else Bert(cfg.encoder_config())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # a shared encoder counts once

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs of one question and its positive passage, per position of ``seq_len`` (default:
        block_size): the two encoders' per-token FLOPs added, as a batch of B questions runs B questions and
        B passages through them. Hard negatives (B more passages a step in DPR's recipe) are not counted."""
        T = seq_len or self.config.block_size
        return self.question_encoder.flops_per_token(T) + self.passage_encoder.flops_per_token(T)

    def _vector(self, encoder: Bert, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = encoder.encode(ids, mask)  # (B, T, C)
        return h[:, 0] if self.config.pooling == "cls" else masked_mean(h, mask)  # (B, C)

    def encode_questions(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[CLS] question [SEP] ids (B, T) -> question vectors (B, C)."""
        return self._vector(self.question_encoder, ids, mask)

    def encode_passages(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[CLS] passage [SEP] ids (N, T) -> passage vectors (N, C)."""
        return self._vector(self.passage_encoder, ids, mask)

    def forward(self, q_ids: torch.Tensor, q_mask: torch.Tensor | None, p_ids: torch.Tensor,
                p_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(question vectors (B, C), passage vectors (N, C)): one call, so DDP sees both encoders' gradients."""
        return self.encode_questions(q_ids, q_mask), self.encode_passages(p_ids, p_mask)


__all__ = ["DPR", "DPRConfig", "PRESETS"]

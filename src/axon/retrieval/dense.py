"""Dense retrieval with a trained DPR model (``axon.models.dpr``): texts -> vectors -> the best passages.

    passages --encode_passages--> P (N, C) ----+
                                               +--> exact_search / DenseIndex.search --> ids (Q, k)
    questions --encode_questions--> Q (Q, C) --+
"""

from __future__ import annotations

import numpy as np
import torch

from axon.data.bert_tokens import pad_batch


@torch.no_grad()
def encode(encode_fn, seqs: list[list[int]], pad_id: int, device: torch.device | str = "cpu",
           batch_size: int = 128) -> np.ndarray:
    """``encode_fn(ids, mask) -> (b, C)`` over ``seqs`` ([CLS] ... [SEP] ids) in batches -> (N, C) float32.
    Sequences are batched by length (less padding), and returned in their given order."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[np.ndarray | None] = [None] * len(seqs)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, mask = pad_batch([seqs[i] for i in rows], pad_id)
        vec = encode_fn(ids.to(device), mask.to(device)).float().cpu().numpy()
        for i, v in zip(rows, vec):
            out[i] = v
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), dtype=np.float32)


class Retriever:
    """A DPR model and its tokens' [CLS]/[SEP] encoding, over a fixed passage collection."""

    def __init__(self, model, tokens, passages: list[str], block_size: int, device: torch.device | str = "cpu",
                 index=None):
        self.model, self.tokens, self.block, self.device = model, tokens, block_size, device
        self.passages = passages
        self.index = index
        self._vectors: np.ndarray | None = None

    def _seqs(self, texts: list[str]) -> list[list[int]]:
        return [self.tokens.wrap(ids[: self.block - 2]) for ids in self.tokens.encode_batch(texts)]

    def passage_vectors(self) -> np.ndarray:
        if self._vectors is None:
            was = self.model.training
            self.model.eval()
            self._vectors = encode(self.model.encode_passages, self._seqs(self.passages), self.tokens.pad_id, self.device)
            self.model.train(was)
        return self._vectors

    def question_vectors(self, questions: list[str]) -> np.ndarray:
        was = self.model.training
        self.model.eval()
        out = encode(self.model.encode_questions, self._seqs(questions), self.tokens.pad_id, self.device)
        self.model.train(was)
        return out

    def search(self, questions: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, passage ids), each (len(questions), k), best first."""
        from axon.retrieval.index import exact_search

        q = self.question_vectors(questions)
        if self.index is not None:
            return self.index.search(q, k)
        return exact_search(q, self.passage_vectors(), k)


__all__ = ["Retriever", "encode"]

"""Okapi BM25 (Robertson et al. 1994): the lexical retriever dense retrieval is measured against (DPR,
Karpukhin et al. 2020, its table 2).

For a query q and a passage d of |d| words (avgdl: the collection's mean length; N passages; n(t):
passages holding term t; f(t, d): t's count in d):

    score(q, d) = sum over the query's terms t (with repeats) of
                  idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(N - n(t) + 0.5) - log(n(t) + 0.5), and where that is negative (t in more than
                  half of the passages) epsilon * the mean idf over the vocabulary

-- rank-bm25's ``BM25Okapi`` (k1 = 1.5, b = 0.75, epsilon = 0.25), the test oracle; a term the
collection lacks scores 0. The per-passage weights of every (passage, term) pair are precomputed in a
sparse matrix W (N, V), so a batch of queries (Q, V term counts) scores as one product Q @ W^T.

    index = BM25([tokenize(p) for p in passages])
    index.scores(tokenize(question)) -> (N,)          index.top_k([tokenize(q) ...], k) -> (Q, k) ids
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy import sparse

WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word characters: ``"Where was Vorani born?" -> ["where", "was", "vorani", "born"]``."""
    return WORD.findall(text.lower())


class BM25:
    def __init__(self, corpus: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25):
        if len(corpus) == 0:
            raise ValueError("BM25 needs at least one passage")
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.vocab: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for d, doc in enumerate(corpus):
            tf: dict[int, int] = {}
            for w in doc:
                t = self.vocab.setdefault(w, len(self.vocab))
                tf[t] = tf.get(t, 0) + 1
            rows += [d] * len(tf)
            cols += list(tf)
            counts += list(tf.values())
        N, V = len(corpus), len(self.vocab)
        tf = sparse.csr_matrix((np.asarray(counts, dtype=np.float64), (rows, cols)), shape=(N, V))
        doc_len = np.array([len(doc) for doc in corpus], dtype=np.float64)
        avgdl = doc_len.mean()
        n = np.bincount(np.asarray(cols, dtype=np.int64), minlength=V).astype(np.float64)  # passages holding t
        idf = np.log(N - n + 0.5) - np.log(n + 0.5)
        if V:
            idf[idf < 0] = epsilon * idf.mean()  # rank-bm25's floor: epsilon x the mean idf
        self.idf = idf
        norm = k1 * (1 - b + b * doc_len / avgdl)  # (N,)
        f = tf.tocoo()
        weights = idf[f.col] * f.data * (k1 + 1) / (f.data + norm[f.row])
        self.weights = sparse.csr_matrix((weights, (f.row, f.col)), shape=(N, V))  # W (N, V)
        self.size = N

    def _query_matrix(self, queries: Sequence[Sequence[str]]) -> sparse.csr_matrix:
        rows, cols = [], []
        for i, q in enumerate(queries):
            for w in q:
                t = self.vocab.get(w)
                if t is not None:
                    rows.append(i)
                    cols.append(t)
        data = np.ones(len(rows))
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(queries), len(self.vocab)))  # repeats add up

    def batch_scores(self, queries: Sequence[Sequence[str]]) -> np.ndarray:
        """(Q, N): every query's score against every passage."""
        return np.asarray((self._query_matrix(queries) @ self.weights.T).todense())

    def scores(self, query: Sequence[str]) -> np.ndarray:
        return self.batch_scores([query])[0]

    def top_k(self, queries: Sequence[Sequence[str]], k: int) -> np.ndarray:
        """(Q, min(k, N)) passage ids, best first (ties: the lower id first)."""
        s = self.batch_scores(queries)
        k = min(k, self.size)
        order = np.argsort(-s, axis=1, kind="stable")
        return order[:, :k]


def hits_at_k(ranked: np.ndarray, gold: Sequence[int], ks: Sequence[int] = (1, 5, 20)) -> dict[str, float]:
    """``top{k}``: the share of queries whose gold passage is among their first k retrieved (DPR's
    "top-k retrieval accuracy"); ``ranked`` (Q, >= max k) ids, best first."""
    gold = np.asarray(gold)[:, None]
    return {f"top{k}": float((ranked[:, :k] == gold).any(1).mean()) for k in ks}


__all__ = ["BM25", "hits_at_k", "tokenize"]

"""Retrieval for retrieval-augmented generation (issue 23): retrievers that rank passages for a question.

    bm25    Okapi BM25, the lexical baseline (rank-bm25's BM25Okapi, by hand on a sparse matrix), and
            top-k retrieval accuracy

The passages and questions of the generated knowledge base are ``axon.data.knowledge``'s.
"""

from axon.retrieval.bm25 import BM25, hits_at_k, tokenize

__all__ = ["BM25", "hits_at_k", "tokenize"]

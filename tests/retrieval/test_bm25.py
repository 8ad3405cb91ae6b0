"""axon.retrieval.bm25 against rank-bm25's BM25Okapi (the oracle), on a toy corpus and on the generated
knowledge base; top-k accuracy on planted rankings."""

import numpy as np
import pytest

from axon.data.knowledge import knowledge_base
from axon.retrieval import BM25, hits_at_k, tokenize

rank_bm25 = pytest.importorskip("rank_bm25")

TOY = ["the cat sat on the mat", "the dog sat on the log", "cats and dogs", "a bird on a wire over the mat",
       "the the the mat mat", "nothing here at all"]
QUERIES = ["cat on the mat", "dog dog log", "wire", "zebra", "the", "mat mat sat"]


@pytest.mark.parametrize("corpus,queries", [
    (TOY, QUERIES),
    ([p.text for p in knowledge_base(30, seed=3).passages], [q.text for q in knowledge_base(30, seed=3).questions[:40]]),
])
def test_scores_equal_rank_bm25s(corpus, queries):
    docs = [tokenize(d) for d in corpus]
    ours, theirs = BM25(docs), rank_bm25.BM25Okapi(docs)
    for q in queries:
        np.testing.assert_allclose(ours.scores(tokenize(q)), theirs.get_scores(tokenize(q)), rtol=1e-12, atol=1e-12)
    batch = ours.batch_scores([tokenize(q) for q in queries])
    assert batch.shape == (len(queries), len(corpus))


def test_top_k_orders_by_score_and_an_unknown_word_scores_zero():
    docs = [tokenize(d) for d in TOY]
    index = BM25(docs, k1=1.2, b=0.5)
    theirs = rank_bm25.BM25Okapi(docs, k1=1.2, b=0.5)
    np.testing.assert_allclose(index.scores(["cat", "mat"]), theirs.get_scores(["cat", "mat"]), rtol=1e-12)
    top = index.top_k([tokenize("cat mat"), tokenize("zebra")], 3)
    assert top.shape == (2, 3) and top[0, 0] == 0  # "the cat sat on the mat"
    assert not index.scores(["zebra"]).any() and top[1].tolist() == [0, 1, 2]  # all zero: ties by id
    assert index.top_k([["cat"]], 100).shape == (1, len(TOY))
    with pytest.raises(ValueError):
        BM25([])


def test_hits_at_k_counts_the_gold_among_the_first_k():
    ranked = np.array([[3, 1, 2], [0, 2, 1], [1, 0, 2]])
    assert hits_at_k(ranked, [3, 1, 0], ks=(1, 2, 3)) == {"top1": 1 / 3, "top2": 2 / 3, "top3": 1.0}


def test_bm25_finds_the_entity_but_not_the_paraphrased_fact():
    """On the knowledge base the name is a rare word, so BM25 finds the entity's four passages, but most
    questions share no other content word with their passage: top-1 well below top-5."""
    kb = knowledge_base(100, seed=0)
    index = BM25([tokenize(p.text) for p in kb.passages])
    test = kb.split("test")
    hits = hits_at_k(index.top_k([tokenize(q.text) for q in test], 20), [q.passage_id for q in test])
    assert hits["top5"] == 1.0 and hits["top1"] < 0.6

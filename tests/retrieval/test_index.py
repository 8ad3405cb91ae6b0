"""Inner-product search (axon.retrieval.index): faiss and the exact numpy search agree; the approximate
indexes find most of the exact top-k on clustered vectors; an index saved is the index loaded."""

from __future__ import annotations

import numpy as np
import pytest

from axon.errors import ConfigError, DataError
from axon.retrieval.index import DenseIndex, exact_search, recall_at_k

faiss = pytest.importorskip("faiss")


def clustered(n=3000, d=32, clusters=30, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)) * 3
    v = centres[rng.integers(clusters, size=n)] + rng.standard_normal((n, d)) * 0.5
    q = centres[rng.integers(clusters, size=100)] + rng.standard_normal((100, d)) * 0.5
    return v.astype(np.float32), q.astype(np.float32)


def test_exact_search_is_the_largest_inner_products_best_first():
    v = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    q = np.array([[1, 0.5]], dtype=np.float32)
    scores, ids = exact_search(q, v, 3)
    assert ids.tolist() == [[2, 0, 1]] and np.allclose(scores, [[1.5, 1.0, 0.5]])
    assert exact_search(q, v, 10)[1].shape == (1, 4)


def test_faiss_flat_index_agrees_with_the_exact_search():
    v, q = clustered()
    s, i = exact_search(q, v, 20)
    fs, fi = DenseIndex(v, "exact", use_faiss=True).search(q, 20)
    assert DenseIndex(v, "exact", use_faiss=True).faiss_index is not None
    np.testing.assert_allclose(fs, s, rtol=1e-4, atol=1e-3)
    assert recall_at_k(fi, i) > 0.999  # ids may swap only within float ties
    ns, ni = DenseIndex(v, "exact", use_faiss=False).search(q, 20)
    assert np.array_equal(ni, i)


@pytest.mark.parametrize("kind, kwargs", [("hnsw", {}), ("ivf", {"nlist": 30, "nprobe": 4})])
def test_approximate_indexes_find_most_of_the_exact_top_k(kind, kwargs):
    v, q = clustered()
    _, exact = exact_search(q, v, 10)
    _, approx = DenseIndex(v, kind, **kwargs).search(q, 10)
    assert recall_at_k(approx, exact) > 0.9


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_an_index_saved_and_loaded_searches_the_same(tmp_path, kind):
    v, q = clustered(n=500)
    index = DenseIndex(v, kind, nlist=10)
    index.save(tmp_path / kind)
    again = DenseIndex.load(tmp_path / kind)
    a, b = index.search(q, 5), again.search(q, 5)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    assert again.kind == kind and again.size == 500


def test_bad_inputs_are_one_line(tmp_path):
    v, q = clustered(n=50)
    with pytest.raises(ConfigError, match="choose one of"):
        DenseIndex(v, "annoy")
    with pytest.raises(ConfigError, match="nlist <= 50"):
        DenseIndex(v, "ivf", nlist=100)
    with pytest.raises(DataError, match="N >= 1"):
        DenseIndex(np.zeros((0, 4)), "exact")
    with pytest.raises(DataError, match=r"\(Q, 32\)"):
        DenseIndex(v).search(q[:, :5], 3)
    with pytest.raises(DataError, match="not an index folder"):
        DenseIndex.load(tmp_path)

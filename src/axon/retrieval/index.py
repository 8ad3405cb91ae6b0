"""Maximum inner product search over passage vectors: the exact search every answer is checked against, and
faiss's indexes (Johnson et al. 2019; ``pip install axon-lab[rag]``) for collections too large to scan.

    vectors (N, D) float32 --build--> index --search(q (Q, D), k)--> scores (Q, k), ids (Q, k), best first

kinds:
    exact   every passage scored, q . p for all N (faiss IndexFlatIP; without faiss, one numpy product)
    hnsw    a graph of the vectors (Malkov & Yashunin 2018; IndexHNSWFlat, inner product): each query walks
            from an entry point to ever closer neighbours; ``ef_search`` candidates kept (more: slower, closer
            to exact). Approximate: may miss a true top-k passage.
    ivf     the vectors clustered into ``nlist`` cells by k-means (IndexIVFFlat); a query scans the ``nprobe``
            cells whose centroids score highest. Approximate, and trained on the vectors (needs N >= nlist).

DPR searches with inner products (not cosine), so vectors are indexed as given. ``save(folder)`` writes
``index.faiss`` (faiss's own binary format) or ``vectors.npy`` (``allow_pickle=False``) and ``index.json``;
nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from axon.errors import ConfigError, DataError

KINDS = ("exact", "hnsw", "ivf")


def _faiss(kind: str):
    try:
        import faiss
    except ImportError:
        raise ConfigError(f"a {kind} index needs faiss: pip install 'axon-lab[rag]' (faiss-cpu)") from None
    return faiss


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (Q, min(k, N)): the k largest inner products, best first (ties: the lower id)."""
    s = np.asarray(queries, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T  # (Q, N)
    k = min(k, s.shape[1])
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, axis=1), ids


class DenseIndex:
    """An inner-product index of ``vectors`` (N, D) (module docstring)."""

    def __init__(self, vectors: np.ndarray, kind: str = "exact", *, nlist: int | None = None, nprobe: int = 8,
                 hnsw_m: int = 32, ef_search: int = 64, use_faiss: bool | None = None, seed: int = 0):
        if kind not in KINDS:
            raise ConfigError(f"index kind {kind!r}: choose one of {', '.join(KINDS)}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise DataError(f"an index needs (N, D) vectors with N >= 1, got shape {vectors.shape}")
        self.kind, self.dim, self.size = kind, vectors.shape[1], len(vectors)
        self.params = {"nprobe": nprobe, "ef_search": ef_search, "hnsw_m": hnsw_m}
        self.vectors = vectors
        self.faiss_index = None
        if use_faiss is None:
            use_faiss = kind != "exact" or _has_faiss()
        if not use_faiss:
            return
        faiss = _faiss(kind)
        d = self.dim
        if kind == "exact":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
        else:
            nlist = nlist or max(1, int(round(np.sqrt(self.size))))
            if nlist > self.size:
                raise ConfigError(f"an ivf index of {self.size} vectors needs nlist <= {self.size}, got {nlist}")
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(vectors)
            index.nprobe = min(nprobe, nlist)
            self.params["nlist"] = nlist
        index.add(vectors)
        self.faiss_index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best passages of each query (Q, D), best first; an approximate index may return
        fewer than k real hits, padded with id -1 and score -inf."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"queries must be (Q, {self.dim}), got shape {q.shape}")
        if self.faiss_index is None:
            return exact_search(q, self.vectors, k)
        k = min(k, self.size)
        scores, ids = self.faiss_index.search(q, k)
        scores = np.where(ids < 0, -np.inf, scores)
        return scores, ids

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors, allow_pickle=False)
        if self.faiss_index is not None:
            _faiss(self.kind).write_index(self.faiss_index, str(folder / "index.faiss"))
        meta = {"kind": self.kind, "dim": self.dim, "size": self.size, "faiss": self.faiss_index is not None,
                **self.params}
        (folder / "index.json").write_text(json.dumps(meta, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> DenseIndex:
        folder = Path(folder)
        meta_file = folder / "index.json"
        if not meta_file.is_file():
            raise DataError(f"{folder}: not an index folder (no index.json); build one with axon index build")
        meta = json.loads(meta_file.read_text())
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        self = cls.__new__(cls)
        self.kind, self.dim, self.size, self.vectors = meta["kind"], meta["dim"], meta["size"], vectors
        self.params = {k: meta[k] for k in ("nprobe", "ef_search", "hnsw_m", "nlist") if k in meta}
        self.faiss_index = None
        if meta.get("faiss"):
            self.faiss_index = _faiss(self.kind).read_index(str(folder / "index.faiss"))
        return self


def _has_faiss() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """The share of the exact top-k an approximate search found (k = the arrays' width)."""
    hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx_ids, exact_ids)]
    return float(np.sum(hits) / exact_ids.size)


__all__ = ["DenseIndex", "KINDS", "exact_search", "recall_at_k"]

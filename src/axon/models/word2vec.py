"""word2vec: skip-gram and CBOW with negative sampling (Mikolov et al. 2013a, 2013b).

Two tables of D-dimensional vectors: v_w ("input", ``wte``; the word vectors one keeps) and u_w
("output", ``out``). A training example is a centre word c with its context words o within a
window, and k "negative" words n_1..n_k drawn from the unigram distribution raised to 3/4.

  skip-gram (2013b, eq. 4): every context word o is predicted from the centre c:
      loss(c, o) = -log sigma(u_o . v_c) - sum_k log sigma(-u_{n_k} . v_c)
  CBOW (2013a): the centre is predicted from the mean of its context vectors h = mean_o v_o:
      loss(c)    = -log sigma(u_c . h)   - sum_k log sigma(-u_{n_k} . h)

Negative sampling replaces the softmax over the vocabulary with k + 1 binary logistic
regressions: tell the true pair from k noise pairs. The model returns those logits (the dot
products); the loss lives in ``axon.objectives.negative_sampling``; windows, subsampling and
negatives are drawn by the data (``axon.data.words``).

After training, words are compared by the cosine of their v vectors: nearest neighbours and
analogies (b - a + c, 2013a sec. 4) below, and export in the word2vec text format.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from axon.errors import check_count
from axon.model_configs.word2vec import PRESETS, Word2VecConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model


class Word2Vec(Model):
    def __init__(self, cfg: Word2VecConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("Word2VecConfig.vocab_size must be set before building the model")
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # v: input (word) vectors
        self.out = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # u: output (context) vectors
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """word2vec.c: v uniform in +-0.5 / D, u zero (so every first logit is 0, sigma = 1/2)."""
        D = self.config.n_embd
        nn.init.uniform_(self.wte.weight, -0.5 / D, 0.5 / D)
        nn.init.zeros_(self.out.weight)

    def forward(self, centers: torch.Tensor, contexts: torch.Tensor, context_mask: torch.Tensor,
                negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the true pairs and of the noise pairs.

        centers (N,), contexts (N, C) with context_mask (N, C) True where a context word is real
        (the window is dynamic, so rows hold fewer than C). Skip-gram: negatives (N, C, K), one
        set per (centre, context) pair -> (pos (N, C), neg (N, C, K)). CBOW: negatives (N, K)
        -> (pos (N,), neg (N, K)).
        """
        N = centers.size(0)
        if self.config.mode == "skipgram":
            v = self.wte(centers)[:, :, None]  # (N, D, 1)
            pos = torch.bmm(self.out(contexts), v).squeeze(-1)  # (N, C): u_o . v_c
            C, K = negatives.shape[1:]
            neg = torch.bmm(self.out(negatives.reshape(N, C * K)), v).view(N, C, K)  # u_n . v_c
            return pos, neg
        m = context_mask.to(self.wte.weight.dtype)
        h = (self.wte(contexts) * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)  # (N, D): mean of real contexts
        pos = (self.out(centers) * h).sum(-1)  # (N,)
        neg = torch.bmm(self.out(negatives), h[:, :, None]).squeeze(-1)  # (N, K)
        return pos, neg

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per centre word (forward 2 per multiply-add, x3 for training), counting
        the 2 * window context slots the batches hold (masked ones included: they are computed).
        Skip-gram: (1 + negatives) dot products of n_embd per slot. CBOW: the masked mean of the
        slots, then (1 + negatives) dot products. No lookup costs anything."""
        cfg = self.config
        slots, D, K = 2 * cfg.window, cfg.n_embd, cfg.negatives
        if cfg.mode == "skipgram":
            return 6.0 * D * (1 + K) * slots
        return 6.0 * D * (1 + K + slots)

    def vectors(self) -> torch.Tensor:
        """The word vectors (V, D): the input table, as word2vec.c writes them."""
        return self.wte.weight.detach()


# ----------------------------------------------------------------------------------------------
# Queries on trained vectors: cosine similarity of L2-normalised rows.


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return F.normalize(vectors.float(), dim=-1)


def nearest(vectors: torch.Tensor, query: torch.Tensor, k: int, exclude: list[int] = ()) -> list[tuple[int, float]]:
    """The ``k`` rows of ``vectors`` (V, D) with the largest cosine to ``query`` (D,), as (index,
    cosine), best first, skipping indices in ``exclude``. ``k`` >= 1 (`axon embed --k`)."""
    check_count("k", k, 1)
    sims = _unit(vectors) @ _unit(query[None])[0]  # (V,)
    if exclude:
        sims[torch.tensor(list(exclude), dtype=torch.long)] = float("-inf")
    k = min(k, vectors.size(0) - len(set(exclude)))
    top = torch.topk(sims, k)
    return list(zip(top.indices.tolist(), top.values.tolist()))


def neighbors(vectors: torch.Tensor, word: int, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` nearest words to word index ``word`` by cosine, itself excluded."""
    return nearest(vectors, vectors[word], k, exclude=[word])


def analogy(vectors: torch.Tensor, a: int, b: int, c: int, k: int = 10) -> list[tuple[int, float]]:
    """a is to b as c is to ?: the words nearest to unit(b) - unit(a) + unit(c), excluding a, b, c
    (Mikolov et al. 2013a sec. 4; the 3CosAdd of Levy & Goldberg 2014)."""
    u = _unit(vectors)
    return nearest(vectors, u[b] - u[a] + u[c], k, exclude=[a, b, c])


def save_word2vec_format(path: str | Path, words: list[str], vectors: torch.Tensor) -> None:
    """The word2vec text format: a header line "V D", then "word v1 ... vD" per word."""
    V, D = vectors.shape
    if len(words) != V:
        raise ValueError(f"{len(words)} words for {V} vectors")
    rows = vectors.float().tolist()
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{V} {D}\n")
        for word, row in zip(words, rows):
            f.write(word + " " + " ".join(f"{x:.6g}" for x in row) + "\n")


def load_word2vec_format(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """Read the word2vec text format (as written by :func:`save_word2vec_format`, gensim or word2vec.c)."""
    from axon.errors import DataError

    lines = Path(path).read_text(encoding="utf-8").splitlines()
    try:
        V, D = (int(x) for x in lines[0].split())
    except (IndexError, ValueError):
        raise DataError(f"{path}: the first line must be 'V D' (vocabulary size, dimension)") from None
    if len(lines) - 1 != V:
        raise DataError(f"{path}: header says {V} words, the file has {len(lines) - 1}")
    words, rows = [], []
    for i, line in enumerate(lines[1:], start=2):
        parts = line.rstrip().split(" ")
        if len(parts) != D + 1:
            raise DataError(f"{path}:{i}: expected a word and {D} numbers, got {len(parts)} fields")
        words.append(parts[0])
        rows.append([float(x) for x in parts[1:]])
    return words, torch.tensor(rows, dtype=torch.float32).reshape(V, D)


__all__ = ["Word2VecConfig", "Word2Vec", "PRESETS", "nearest", "neighbors", "analogy",
           "save_word2vec_format", "load_word2vec_format"]

"""fastText: skip-gram over character n-grams (Bojanowski et al. 2017, "Enriching Word Vectors with
Subword Information").

A word is wrapped in < and >, and its character n-grams for n in [minn, maxn] (3..6) are hashed
into ``buckets`` rows:

    "where" -> "<where>" -> n=3: <wh whe her ere re>   n=4: <whe wher here ere>   ... n=6
    n-gram g -> row V + fnv1a(utf8(g)) % buckets       (FNV-1a 32-bit, fastText's Dictionary::hash,
                                                         bytes >= 128 sign-extended as its int8_t cast)

    input table  wte (V + buckets, D): rows 0..V-1 one per vocabulary word, then the n-gram buckets
    output table out (V, D): one context vector per word, as word2vec's u

    subwords(w) = [id(w)] + [V + hash(g) for g in ngrams(w)]      (a vocabulary word)
                =           [V + hash(g) for g in ngrams(w)]      (an unseen word: its n-grams alone)
    v_w = sum_{s in subwords(w)} wte[s]           (the paper, sec. 3.2; model.pool=mean: fastText's code)

Training is word2vec's skip-gram with negative sampling with v_c in place of the word vector:

    loss(c, o) = -log sigma(u_o . v_c) - sum_k log sigma(-u_{n_k} . v_c)

The batches are word2vec's (``axon.data.words.ContextWindows``) with each centre id replaced by
its row of the subword table: centres (N, L) of row ids, -1 where a shorter word's row is padded.
The same n-gram of two words is one row: the gradient of "king" reaches the rows "<ki", "kin",
"ing", "ng>", ... that "kings" and "kingly" read too, which is what gives an unseen word a vector.
Queries (neighbours, analogies, export) are word2vec's on the vectors v_w of the vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from axon.errors import DataError
from axon.model_configs.fasttext import PRESETS, FastTextConfig  # noqa: F401 (re-exported)
from axon.models.base import Model

FNV_OFFSET, FNV_PRIME = 2166136261, 16777619


def fnv1a(text: str) -> int:
    """fastText's 32-bit FNV-1a of the UTF-8 bytes of ``text`` (Dictionary::hash): each byte is
    cast through int8_t to uint32, so bytes >= 128 enter as 0xFFFFFFxx. Deterministic across
    processes (unlike Python's salted ``hash``)."""
    h = FNV_OFFSET
    for b in text.encode("utf-8"):
        h ^= (b | 0xFFFFFF00) if b >= 128 else b
        h = (h * FNV_PRIME) & 0xFFFFFFFF
    return h


def char_ngrams(word: str, minn: int, maxn: int) -> list[str]:
    """The character n-grams of "<word>" with minn <= n <= maxn, by start position then length
    (fastText's computeSubwords order; characters, not bytes). ``char_ngrams("where", 3, 3)`` is
    ["<wh", "whe", "her", "ere", "re>"]."""
    w = f"<{word}>"
    return [w[i : i + n] for i in range(len(w)) for n in range(minn, maxn + 1) if i + n <= len(w)]


def subword_ids(word: str, vocab_index: dict[str, int], vocab_size: int, cfg: FastTextConfig) -> list[int]:
    """Input-table rows of ``word``: its own id if it is in the vocabulary, then V + the bucket of
    each n-gram (repeats kept, as fastText keeps them)."""
    own = [vocab_index[word]] if word in vocab_index else []
    return own + [vocab_size + fnv1a(g) % cfg.buckets for g in char_ngrams(word, cfg.minn, cfg.maxn)]


def subword_table(words: list[str], cfg: FastTextConfig, vocab_index: dict[str, int] | None = None) -> np.ndarray:
    """(len(words), L) int64: row i the subword ids of words[i], padded with -1 to the longest.
    ``vocab_index`` (default: words themselves, in order) says which words have their own row."""
    index = {w: i for i, w in enumerate(words)} if vocab_index is None else vocab_index
    V = cfg.vocab_size if cfg.vocab_size is not None else len(index)
    rows = [subword_ids(w, index, V, cfg) for w in words]
    for w, r in zip(words, rows):
        if not r:
            raise DataError(f"{w!r} has no character n-grams of length {cfg.minn}..{cfg.maxn} and is not in the "
                            "vocabulary: fastText has no vector for it")
    table = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return table


class FastText(Model):
    def __init__(self, cfg: FastTextConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("FastTextConfig.vocab_size must be set before building the model")
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size + cfg.buckets, cfg.n_embd)  # words, then n-gram buckets
        self.out = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # u: output (context) vectors
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """fastText: input rows uniform in +-1 / D, output rows zero."""
        D = self.config.n_embd
        nn.init.uniform_(self.wte.weight, -1.0 / D, 1.0 / D)
        nn.init.zeros_(self.out.weight)

    def word_vectors(self, subwords: torch.Tensor) -> torch.Tensor:
        """v_w for rows of subword ids (N, L), -1 = padding -> (N, D): the sum (or mean) of the rows.
        One embedding_bag over the real ids (no (N, L, D) tensor of padded rows is built)."""
        real = subwords >= 0  # (N, L)
        counts = real.sum(1)  # (N,)
        offsets = torch.cumsum(counts, 0) - counts  # (N,) where each word's ids start in the flat list
        return F.embedding_bag(subwords[real], self.wte.weight, offsets, mode=self.config.pool)

    def forward(self, centers: torch.Tensor, contexts: torch.Tensor, context_mask: torch.Tensor,
                negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Skip-gram logits: centers (N, L) subword rows, contexts (N, C) word ids (context_mask (N, C)
        True where real), negatives (N, C, K) -> (pos (N, C), neg (N, C, K)), as word2vec's."""
        N = centers.size(0)
        v = self.word_vectors(centers)[:, :, None]  # (N, D, 1)
        pos = torch.bmm(self.out(contexts), v).squeeze(-1)  # (N, C): u_o . v_c
        C, K = negatives.shape[1:]
        neg = torch.bmm(self.out(negatives.reshape(N, C * K)), v).view(N, C, K)  # u_n . v_c
        return pos, neg

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per centre word, counted as word2vec's skip-gram: 6 n_embd (1 + negatives)
        per context slot (2 * window slots). The sum of a word's subword rows (additions, ~n_embd per
        row) is a lookup and not counted, as word2vec's lookups are not."""
        cfg = self.config
        return 6.0 * cfg.n_embd * (1 + cfg.negatives) * 2 * cfg.window


__all__ = ["FastTextConfig", "FastText", "PRESETS", "fnv1a", "char_ngrams", "subword_ids", "subword_table"]

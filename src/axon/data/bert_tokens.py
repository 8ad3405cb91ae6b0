"""Tokenizers with BERT's special tokens, and the [CLS] text [SEP] / padding conventions.

BERT's inputs need five special tokens: ``[PAD]`` (padding), ``[UNK]`` (text outside the
vocabulary), ``[CLS]`` (first position; its output is what the pooler reads), ``[SEP]`` (end of a
segment) and ``[MASK]`` (the masked-LM blank). The BERT tasks (``mlm``, ``classify``) find them by
name in the tokenizer, so any Hugging Face ``tokenizer.json`` that has them works (BERT's and
MiniLM's WordPiece; RoBERTa-style ``<pad> <unk> <s> </s> <mask>`` are accepted too). Built here
(``build_bert_tokenizer``), they take ids 0-4 and the rest of the vocabulary follows:

* ``char``: one id per character of the text (a ``WordLevel`` model over single characters);
  characters never seen become ``[UNK]``.
* ``wordpiece``: BERT's uncased WordPiece (Wu et al. 2016; Devlin et al. 2019, sec. 3):
  BertNormalizer (lowercase, accents kept), split on whitespace and punctuation, pieces inside
  a word marked ``##``; the vocabulary is learnt by ``train_wordpiece`` below.
* ``bpe``: Axon's byte-level BPE (GPT-2 style, as RoBERTa uses; never unknown) with the five
  tokens added.

Each is a pure function of the text, so a run's evaluation or resume, which rebuilds the
tokenizer, gets exactly the ids it trained with. (That is why WordPiece is learnt here: the
``tokenizers`` WordPieceTrainer returns another vocabulary, or other ids, from one process to
the next on the same text.)

Special tokens are recognised in raw text too (a literal "[MASK]" in the input is the mask
token), as in BERT's tokenizers. Axon's own character ``tokenizer.json`` format has no special
tokens and is refused by the BERT tasks with a line saying how to get one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from axon.data.tokenizers import DEFAULT_BPE_VOCAB_SIZE, BPETokenizer, HFTokenizer, load_tokenizer
from axon.errors import DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: role -> accepted names, in order of preference
ROLES = {"pad": ("[PAD]", "<pad>"), "unk": ("[UNK]", "<unk>"), "cls": ("[CLS]", "<s>"),
         "sep": ("[SEP]", "</s>"), "mask": ("[MASK]", "<mask>")}
BERT_TOKENIZER_KINDS = ("char", "wordpiece", "bpe")


def train_wordpiece(texts: Iterable[str], vocab_size: int):
    """An uncased WordPiece ``tokenizers.Tokenizer`` learnt from ``texts``, deterministically.

    Words (after BERT's normaliser and pre-tokenizer) start as characters, the first as itself
    and the others as ``##c``; then, as ``tokenizers``' WordPieceTrainer does (BPE's rule,
    Sennrich et al. 2016), the most frequent adjacent pair is merged into a new piece (``a`` +
    ``##b`` -> ``ab``) until the vocabulary (special tokens, characters, pieces) has
    ``vocab_size`` entries. Ties go to the smallest pair in string order, and ids follow the
    order pieces are added, so the result depends on the text alone.
    """
    import heapq
    from collections import Counter, defaultdict

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    words = [[w[0], *("##" + c for c in w[1:])] for w in sorted(counts)]
    freqs = [counts[w] for w in sorted(counts)]
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *sorted({s for w in words for s in w} - set(SPECIAL_TOKENS))])}
    pairs: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for i, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            pairs[pair] += f
            where[pair].add(i)
    heap = [(-c, a, b) for (a, b), c in pairs.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        if pairs.get((a, b), 0) != -neg or neg == 0:
            continue  # a stale entry: this pair's count changed since it was pushed
        new = a + b[2:]  # b is always a ## piece: only a word's first symbol lacks the prefix
        vocab.setdefault(new, len(vocab))
        changed = set()
        for i in sorted(where.pop((a, b))):
            w, f = words[i], freqs[i]
            for pair in zip(w, w[1:]):
                pairs[pair] -= f
                changed.add(pair)
            merged, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                    merged.append(new)
                    k += 2
                else:
                    merged.append(w[k])
                    k += 1
            words[i] = merged
            for pair in zip(merged, merged[1:]):
                pairs[pair] += f
                where[pair].add(i)
                changed.add(pair)
        pairs.pop((a, b), None)
        for pair in sorted(changed):
            if pairs.get(pair, 0) > 0:
                heapq.heappush(heap, (-pairs[pair], *pair))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre, decoders.WordPiece()
    return tok


def build_bert_tokenizer(kind: str, texts: Iterable[str], vocab_size: int | None = None) -> HFTokenizer:
    """A tokenizer with BERT's special tokens: ``char`` / ``wordpiece`` / ``bpe`` built from
    ``texts``, or anything else as a path to a ``tokenizer.json`` (``texts`` unread)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size or DEFAULT_BPE_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS)
    if kind == "char":
        chars: set[str] = set()
        for t in texts:
            chars.update(t)
        if not chars:
            raise DataError("cannot build a character vocabulary from empty text")
        vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
        for c in sorted(chars - set(vocab)):
            vocab[c] = len(vocab)
        tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character a piece
        tok.decoder = decoders.Fuse()
    elif kind == "wordpiece":
        tok = train_wordpiece(texts, vocab_size or DEFAULT_BPE_VOCAB_SIZE)
    else:
        return load_tokenizer(kind)
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # matched whole in raw text, skipped by decode(skip_special_tokens)
    return HFTokenizer(tok)


class BertTokens:
    """A tokenizer's BERT special ids and encoding for BERT inputs.

    ``encode(text)`` gives the ids of the text alone (no special tokens; padding or truncation
    configured inside a published ``tokenizer.json``, as all-MiniLM-L6-v2's pads to 128, is
    switched off on a private copy), ``wrap(ids)`` adds [CLS] ... [SEP].
    """

    def __init__(self, tokenizer) -> None:
        if not isinstance(tokenizer, HFTokenizer):
            raise DataError(
                f"the BERT tasks need a tokenizer with [PAD] [CLS] [SEP] [MASK] tokens; a {tokenizer.kind} tokenizer "
                "has none: set data.tokenizer to char, wordpiece or bpe (built with them) or to a BERT tokenizer.json")
        self.tokenizer = tokenizer
        raw = tokenizer.tokenizer
        ids = {}
        for role, names in ROLES.items():
            found = next((i for i in map(raw.token_to_id, names) if i is not None), None)
            if found is None and role != "unk":
                raise DataError(f"the tokenizer has no {names[0]} token; the BERT tasks need {', '.join(SPECIAL_TOKENS)} "
                                "(set data.tokenizer to char, wordpiece or bpe to build such a tokenizer)")
            ids[role] = found
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (ids[r] for r in ROLES)
        self.vocab_size = tokenizer.vocab_size
        specials = {i for i in ids.values() if i is not None}
        specials.update(i for t, i in raw.get_vocab(with_added_tokens=True).items() if t in SPECIAL_TOKENS)
        self.special_ids = np.array(sorted(specials), dtype=np.int64)
        if raw.padding is not None or raw.truncation is not None:
            from tokenizers import Tokenizer

            raw = Tokenizer.from_str(raw.to_str())
            raw.no_padding()
            raw.no_truncation()
        self._raw = raw

    def encode(self, text: str) -> list[int]:
        return self._raw.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._raw.encode_batch(list(texts), add_special_tokens=False)]

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def wrap(self, ids: Sequence[int]) -> list[int]:
        """[CLS] ids [SEP]: one segment as BERT reads it."""
        return [self.cls_id, *ids, self.sep_id]

    def ordinary_ids(self) -> np.ndarray:
        """Every id that is not a special token: what masked-LM's random replacement draws from."""
        keep = np.ones(self.vocab_size, dtype=bool)
        keep[self.special_ids] = False
        return np.flatnonzero(keep)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad sequences to ``length`` (default: the longest): ids (B, T) int64 and the
    attention mask (B, T) bool, True at real tokens."""
    T = length if length is not None else max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.int64)
        mask[i, : len(s)] = True
    return ids, mask

"""Tagged sentences as token-classification batches: the data of the ``tag`` task (``axon.tasks.tag``).

Two encodings of a sentence of words w_1..w_n with tag ids y_1..y_n:

    word level (rnn_tagger):   ids    [ v(w_1)  v(w_2)  ...  v(w_n) ]          v: WordVocab; an unknown
                               labels [  y_1     y_2    ...   y_n   ]          word is <unk> = 1, or
                                                                               <Unk> = 2 if capitalised

    sub-tokens (bert):         ids    [CLS]  Ric  ##h  ##mond  is   here  [SEP]   words split by the
                               labels -100   y_1  -100  -100   y_2  y_3   -100    tokenizer, one by one

In the sub-token encoding each word's tag sits at its FIRST sub-token and every other position
(the rest of the word, [CLS], [SEP]) is IGNORE = -100, the convention of BERT's NER fine-tuning
(Devlin et al. 2019, sec. 5.3). A word the tokenizer makes nothing of (a control character) is
one [UNK], so every word keeps its tag.

Batches (input_ids (B, T) int64, attention_mask (B, T) bool, True = a real token, labels (B, T)
int64, IGNORE on padding and non-first sub-tokens) are right-padded to the longest sentence of the
batch; the positions whose label is not IGNORE are the words, in order. Training batches draw
``batch_size`` sentences uniformly with replacement from a generator seeded with (seed, step,
micro_step) (exact resume); the validation set is every sentence, in file order. Word dropout
(``word_dropout`` > 0, training batches only; Lample et al. 2016): from the same generator, each
word becomes its unknown token (<unk> or <Unk>) with that probability, so the unknown tokens, what
an unseen word is at test time, are trained even when the vocabulary keeps every training word.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from axon.data.bert_tokens import BertTokens, pad_batch
from axon.errors import DataError, reading

IGNORE = -100  # the label of a position that is not a word's first (sub-)token: torch's ignore_index
PAD, UNK, UNK_CAP = "<pad>", "<unk>", "<Unk>"


class WordVocab:
    """Words of the training sentences seen at least ``min_count`` times (optionally lowercased):
    id 0 = <pad>, 1 = <unk>, 2 = <Unk> (an unknown word with a capital first letter, as written,
    before any lowercasing: a name, in NER), then by falling count, ties in string order (a pure
    function of the text)."""

    def __init__(self, sentences: Sequence[Sequence[str]], min_count: int = 1, lowercase: bool = False) -> None:
        self.lowercase = lowercase
        counts = Counter(self.norm(w) for words in sentences for w in words)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        self.words = [PAD, UNK, UNK_CAP, *kept]
        self.index = {w: i for i, w in enumerate(self.words)}

    def norm(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def __len__(self) -> int:
        return len(self.words)

    @staticmethod
    def unknown(word: str) -> int:
        """The id of ``word`` were it unknown: <Unk> (2) if its first letter is a capital, else <unk> (1)."""
        return 2 if word[:1].isupper() else 1

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.index.get(self.norm(w), self.unknown(w)) for w in words]

    def save(self, path) -> None:
        """One word per line, in id order (<pad> and <unk> first)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(w + "\n" for w in self.words))

    @classmethod
    def load(cls, path, lowercase: bool = False) -> "WordVocab":
        """The vocabulary :meth:`save` wrote (a run's ``vocab.txt``); ``lowercase`` as the run's model.lowercase."""
        with reading(path, "vocab"):
            with open(path, encoding="utf-8") as f:
                words = f.read().split("\n")
        words = words[:-1] if words and words[-1] == "" else words
        if words[:3] != [PAD, UNK, UNK_CAP]:
            raise DataError(f"{path}: not a tagger vocabulary (its first lines must be {PAD}, {UNK}, {UNK_CAP})")
        vocab = cls([], lowercase=lowercase)
        vocab.words = words
        vocab.index = {w: i for i, w in enumerate(words)}
        return vocab


def encode_words(sentences, tag_ids: Sequence[Sequence[int]], vocab: WordVocab, block_size: int, truncate: bool,
                 source: str) -> tuple[list[list[int]], list[list[int]], int]:
    """Word-level (ids, labels) of each sentence and how many sentences were cut to ``block_size`` words."""
    seqs, labels, cut = [], [], 0
    for i, (words, tags) in enumerate(zip(sentences, tag_ids)):
        if len(words) > block_size:
            _too_long(source, i, words, len(words), "words", block_size, truncate)
            words, tags, cut = words[:block_size], tags[:block_size], cut + 1
        seqs.append(vocab.encode(words))
        labels.append(list(tags))
    return seqs, labels, cut


def unknown_ids(sentences, block_size: int) -> list[list[int]]:
    """Each word's unknown token (WordVocab.unknown), as cut by :func:`encode_words`: what word dropout puts in."""
    return [[WordVocab.unknown(w) for w in words[:block_size]] for words in sentences]


def first_subtoken_labels(pieces: Sequence[Sequence[int]], tags: Sequence[int], tokens: BertTokens) -> tuple[list[int], list[int]]:
    """[CLS] pieces... [SEP] ids and labels with each word's tag at its first piece, IGNORE elsewhere."""
    ids, labels = [tokens.cls_id], [IGNORE]
    for word_pieces, tag in zip(pieces, tags):
        word_pieces = list(word_pieces) or [tokens.unk_id if tokens.unk_id is not None else tokens.mask_id]
        ids.extend(word_pieces)
        labels.extend([tag] + [IGNORE] * (len(word_pieces) - 1))
    ids.append(tokens.sep_id)
    labels.append(IGNORE)
    return ids, labels


def encode_subtokens(sentences, tag_ids: Sequence[Sequence[int]], tokens: BertTokens, block_size: int, truncate: bool,
                     source: str) -> tuple[list[list[int]], list[list[int]], int]:
    """Sub-token (ids, labels) of each sentence (module docstring) and how many were cut: a cut
    sentence keeps the words whose pieces all fit in block_size - 2 positions."""
    seqs, labels, cut = [], [], 0
    for i, (words, tags) in enumerate(zip(sentences, tag_ids)):
        pieces = tokens.encode_batch(list(words))
        total = sum(max(len(p), 1) for p in pieces) + 2
        if total > block_size:
            _too_long(source, i, words, total, "sub-tokens with [CLS] and [SEP]", block_size, truncate)
            keep, used = 0, 2
            while keep < len(pieces) and used + max(len(pieces[keep]), 1) <= block_size:
                used += max(len(pieces[keep]), 1)
                keep += 1
            if keep == 0:
                raise DataError(f"{source}: sentence {i + 1} ({_head(words)}): its first word alone is more than "
                                f"model.block_size={block_size} sub-tokens with [CLS] and [SEP]")
            pieces, tags, cut = pieces[:keep], tags[:keep], cut + 1
        ids, labs = first_subtoken_labels(pieces, tags, tokens)
        seqs.append(ids)
        labels.append(labs)
    return seqs, labels, cut


def _head(words) -> str:
    return repr(" ".join(words[:6]) + (" ..." if len(words) > 6 else ""))


def _too_long(source, i, words, n, unit, block_size, truncate) -> None:
    if not truncate:
        raise DataError(f"{source}: sentence {i + 1} ({_head(words)}) is {n} {unit}, more than model.block_size="
                        f"{block_size}; raise model.block_size, or set data.truncate=true to keep its first words")


class TaggedSentences:
    """Encoded sentences as token-classification batches (module docstring)."""

    def __init__(self, seqs: list[list[int]], labels: list[list[int]], pad_id: int,
                 unknown: list[list[int]] | None = None, word_dropout: float = 0.0):
        if not seqs:
            raise DataError("no sentences")
        self.seqs, self.labels, self.pad_id = seqs, labels, pad_id
        self.unknown, self.word_dropout = unknown, word_dropout
        if word_dropout > 0 and unknown is None:
            raise ValueError("word dropout needs each word's unknown token")

    def __len__(self) -> int:
        return len(self.seqs)

    def batch(self, rows, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = list(rows)
        seqs = [self.seqs[i] for i in rows]
        if rng is not None and self.word_dropout > 0:  # training batches: words -> their unknown token
            seqs = [np.where(rng.random(len(s)) < self.word_dropout, self.unknown[i], s).tolist() for s, i in zip(seqs, rows)]
        ids, mask = pad_batch(seqs, self.pad_id)
        labels = torch.full(ids.shape, IGNORE, dtype=torch.int64)
        for r, i in enumerate(rows):
            labels[r, : len(self.labels[i])] = torch.as_tensor(self.labels[i], dtype=torch.int64)
        return ids, mask, labels

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return self.batch(rng.integers(0, len(self.seqs), size=batch_size).tolist(), rng)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        starts = range(0, len(self.seqs), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.batch(range(s, min(s + batch_size, len(self.seqs)))) for s in starts)

"""The ``word2vec`` task: skip-gram / CBOW with negative sampling on any text.

The data (words, the vocabulary saved as ``vocab.txt``, (centre, context, negatives) batches) is
``axon.data.words``; the task adds the objective (``NegativeSampling``), samples.txt's nearest
neighbours of a few words, and ``load_embeddings``, which ``axon embed`` reads a run with.
"""

from __future__ import annotations

from pathlib import Path

import torch

from axon.data.words import VOCAB_FILE, ContextWindows, Vocabulary, read_texts, words_of
from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup


def probe_words(vocab: Vocabulary, prompt: str, lowercase: bool) -> list[str]:
    """Words whose neighbours samples.txt shows: those of the prompt in the vocabulary, else five
    of middling frequency (ranks 50, 100, 200, 400, 800)."""
    words = [w for w in words_of(prompt, lowercase) if w in vocab.index]
    return words or [vocab.words[r] for r in (50, 100, 200, 400, 800) if r < len(vocab)]


def format_neighbors(vocab: Vocabulary, vectors: torch.Tensor, word: str, k: int) -> str:
    from axon.models.word2vec import neighbors

    near = neighbors(vectors, vocab.index[word], k)
    return f"{word}: " + ", ".join(f"{vocab.words[i]} {s:.2f}" for i, s in near)


def word_vocabulary(cfg) -> tuple[str, str, Vocabulary]:
    """(training text, validation text, vocabulary) of a word-embedding run (word2vec, glove, fasttext): the
    words seen at least ``model.min_count`` times in the training text; fills ``model.vocab_size``
    (a configured one must agree)."""
    m = cfg.model
    train_text, val_text, origin = read_texts(cfg.data)
    vocab = Vocabulary.build(words_of(train_text, m.lowercase), m.min_count)
    if len(vocab) < 2:
        raise DataError(f"{origin}: fewer than 2 words occur at least min_count={m.min_count} times; "
                        "lower model.min_count or bring more text")
    if m.vocab_size is None:
        m.vocab_size = len(vocab)
    elif m.vocab_size != len(vocab):
        raise ConfigError(f"model.vocab_size={m.vocab_size} but the text has {len(vocab)} words seen at least "
                          f"min_count={m.min_count} times; leave model.vocab_size null")
    return train_text, val_text, vocab


def word2vec_task(cfg, device: torch.device) -> TaskSetup:
    from axon.models.word2vec import Word2VecConfig
    from axon.objectives.negative_sampling import NegativeSampling

    m = cfg.model
    if not isinstance(m, Word2VecConfig):
        raise ConfigError(f"task: word2vec trains the word2vec family; set model.family=word2vec (got {m.family})")
    if cfg.optim.name.lower() == "muon":
        raise ConfigError("optim.name: word2vec has only embedding tables, which Muon does not train; "
                          "use adam, adamw or sgd (see configs/word2vec.yaml)")
    train_text, val_text, vocab = word_vocabulary(cfg)
    train = ContextWindows(vocab.encode(words_of(train_text, m.lowercase)), vocab.counts, m, "train")
    val = ContextWindows(vocab.encode(words_of(val_text, m.lowercase)), vocab.counts, m, "val")
    probes = probe_words(vocab, cfg.train.sample_prompt, m.lowercase)

    def sample(model, step: int) -> str:  # samples.txt: the neighbours of a few words
        return "\n".join(format_neighbors(vocab, model.vectors(), w, 8) for w in probes)

    return TaskSetup(train_data=train, val_data=val, objective=NegativeSampling(), tokenizer=None,
                     sample_fn=sample, extra_files={VOCAB_FILE: vocab.save})


EMBEDDING_FAMILIES = ("word2vec", "glove", "fasttext")


class Embeddings:
    """A word-embedding run's vectors for ``axon embed``: the vocabulary (V words), their vectors
    (V, D), and ``query(word)`` -> (vocabulary index or None, vector (D,)). A fasttext run answers
    for a word outside the vocabulary too: the sum (or mean) of its n-gram rows."""

    def __init__(self, cfg, vocab: Vocabulary, vectors: torch.Tensor, model=None):
        self.cfg, self.vocab, self.vectors, self.model = cfg, vocab, vectors, model

    def query(self, word: str) -> tuple[int | None, torch.Tensor]:
        from axon.data.words import lookup

        m = self.cfg.model
        w = word.lower() if m.lowercase else word
        if w in self.vocab.index or m.family != "fasttext":
            try:
                i = lookup(self.vocab, word, m.lowercase)
            except DataError as e:
                raise DataError(f"{e}; a {m.family} run has no vector for a word outside its vocabulary "
                                "(a fasttext run builds one from its character n-grams)") from None
            return i, self.vectors[i]
        from axon.models.fasttext import subword_table

        with torch.no_grad():
            return None, self.model.word_vectors(torch.from_numpy(subword_table([w], m, self.vocab.index)))[0]


def load_embeddings(run_dir: str | Path) -> Embeddings:
    """The vectors of a word2vec, glove or fasttext run directory (``Embeddings``)."""
    from axon.train.run import load_run

    cfg, model, _ = load_run(run_dir, "cpu")
    if cfg.model.family not in EMBEDDING_FAMILIES:
        raise ConfigError(f"{run_dir} is a {cfg.model.family} run; axon embed reads word2vec, glove and fasttext runs")
    vocab = Vocabulary.load(Path(run_dir) / VOCAB_FILE)
    if len(vocab) != cfg.model.vocab_size:
        raise DataError(f"{run_dir}: {VOCAB_FILE} has {len(vocab)} words, the model {cfg.model.vocab_size} vectors")
    if cfg.model.family == "fasttext":
        from axon.models.fasttext import subword_table
        from axon.tasks.fasttext import vocabulary_vectors

        vectors = vocabulary_vectors(model, subword_table(vocab.words, cfg.model))
    else:
        vectors = model.vectors()
    return Embeddings(cfg, vocab, vectors, model)

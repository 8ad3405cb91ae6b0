"""The ``fasttext`` task: word2vec's skip-gram with negative sampling, each centre word read as
its character n-grams (``axon.models.fasttext``).

  text -> words_of / Vocabulary (word2vec's tokenisation, min_count, vocab.txt)
       -> subword table (V, L): row w = [w, V + hash(n-gram) ...], -1 padded   (built once per run)
       -> ContextWindows batches (centres (N,), contexts, mask, negatives), seeded by the step
       -> centres replaced by their table rows (N, L'), L' the longest row in the batch

The objective is word2vec's ``NegativeSampling`` unchanged. The table is a pure function of the
vocabulary and the config (FNV-1a is not salted), so ``axon embed`` rebuilds it from the run's
vocab.txt, and gives an unseen word the sum of its n-gram rows (``Embeddings`` in
``axon.tasks.word2vec``).
"""

from __future__ import annotations

import numpy as np
import torch

from axon.data.words import VOCAB_FILE, ContextWindows, words_of
from axon.errors import ConfigError
from axon.tasks.base import TaskSetup
from axon.tasks.word2vec import probe_words, word_vocabulary


class SubwordWindows(ContextWindows):
    """word2vec's skip-gram batches with each centre id replaced by its subword row."""

    def __init__(self, ids: np.ndarray, counts: np.ndarray, table: np.ndarray, cfg, split: str):
        super().__init__(ids, counts, cfg, split)
        self.table = table

    def _batch(self, starts, span, T, rng):
        centers, contexts, mask, negatives = super()._batch(starts, span, T, rng)
        rows = self.table[centers.numpy()]  # (N, L)
        width = max(1, int((rows >= 0).sum(1).max()))  # the longest row in this batch
        return torch.from_numpy(np.ascontiguousarray(rows[:, :width])), contexts, mask, negatives


def vocabulary_vectors(model, table: np.ndarray) -> torch.Tensor:
    """v_w of every vocabulary word (V, D), in chunks of 4,096 words."""
    with torch.no_grad():
        t = torch.from_numpy(table)
        return torch.cat([model.word_vectors(t[i : i + 4096]) for i in range(0, len(t), 4096)]).detach()


def fasttext_task(cfg, device: torch.device) -> TaskSetup:
    from axon.models.fasttext import FastTextConfig, subword_table
    from axon.objectives.negative_sampling import NegativeSampling
    from axon.tasks.word2vec import format_neighbors

    m = cfg.model
    if not isinstance(m, FastTextConfig):
        raise ConfigError(f"task: fasttext trains the fasttext family; set model.family=fasttext (got {m.family})")
    if cfg.optim.name.lower() == "muon":
        raise ConfigError("optim.name: fasttext has only embedding tables, which Muon does not train; "
                          "use adam, adamw or sgd (see configs/fasttext.yaml)")
    train_text, val_text, vocab = word_vocabulary(cfg)
    table = subword_table(vocab.words, m)
    train = SubwordWindows(vocab.encode(words_of(train_text, m.lowercase)), vocab.counts, table, m, "train")
    val = SubwordWindows(vocab.encode(words_of(val_text, m.lowercase)), vocab.counts, table, m, "val")
    probes = probe_words(vocab, cfg.train.sample_prompt, m.lowercase)

    def sample(model, step: int) -> str:  # samples.txt: the neighbours of a few words
        vectors = vocabulary_vectors(model, table)
        return "\n".join(format_neighbors(vocab, vectors, w, 8) for w in probes)

    return TaskSetup(train_data=train, val_data=val, objective=NegativeSampling(), tokenizer=None,
                     sample_fn=sample, extra_files={VOCAB_FILE: vocab.save})


__all__ = ["SubwordWindows", "fasttext_task", "vocabulary_vectors"]

"""The ``glove`` task: GloVe's weighted least squares on the co-occurrence counts of any text.

  text -> words_of / Vocabulary (word2vec's tokenisation, vocab.txt) -> ids
       -> cooccurrence(ids, V, window): nonzero entries (i, j, X_ij), built once per run
       -> batches of batch_size * block_size entries drawn uniformly with replacement,
          seeded by (seed, step, micro_step): a pure function of the step, so a resumed run
          draws what an unbroken one does

Validation entries are the co-occurrences of the validation text under the training vocabulary.
``axon embed`` reads a glove run as a word2vec one (``axon.tasks.word2vec.load_embeddings``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from axon.data.words import VOCAB_FILE, words_of
from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup
from axon.tasks.word2vec import format_neighbors, probe_words, word_vocabulary

EVAL_SEED = 1234567


class CooccurrenceEntries:
    """The nonzero entries of a co-occurrence matrix, sampled into (i (N,), j (N,), X_ij (N,)) batches."""

    def __init__(self, ids: np.ndarray, vocab_size: int, window: int, split: str):
        from axon.models.glove import cooccurrence

        self.split = split
        self.i, self.j, self.x = cooccurrence(ids, vocab_size, window)
        if len(self.x) == 0:
            raise DataError(f"the {split} text has fewer than 2 words in the vocabulary: no co-occurrences to fit")

    def _batch(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(self.i[idx]), torch.from_numpy(self.j[idx]),
                torch.from_numpy(self.x[idx].astype(np.float32)))

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0,
                  rank: int = 0, world_size: int = 1):
        """batch_size * block_size entries; with world_size processes, rank r's share of one draw."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        n = batch_size * block_size
        idx = rng.integers(0, len(self.x), size=n * world_size)
        return self._batch(idx[rank * n : (rank + 1) * n])

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple]:
        """Fixed batches: as many as the entries fill (at least one), fixed seeds."""
        n = batch_size * block_size
        count = max(1, len(self.x) // n)
        if max_batches is not None:
            count = min(count, max_batches)

        def batches():
            for b in range(count):
                rng = np.random.default_rng(np.random.SeedSequence([EVAL_SEED, b]))
                yield self._batch(rng.integers(0, len(self.x), size=n))

        return batches()


def glove_task(cfg, device: torch.device) -> TaskSetup:
    from axon.models.glove import GloVeConfig
    from axon.objectives.glove import GloVeObjective

    m = cfg.model
    if not isinstance(m, GloVeConfig):
        raise ConfigError(f"task: glove trains the glove family; set model.family=glove (got {m.family})")
    if cfg.optim.name.lower() == "muon":
        raise ConfigError("optim.name: glove has only embedding tables, which Muon does not train; "
                          "use adagrad (the paper's), adam or sgd (see configs/glove.yaml)")
    train_text, val_text, vocab = word_vocabulary(cfg)
    train = CooccurrenceEntries(vocab.encode(words_of(train_text, m.lowercase)), len(vocab), m.window, "train")
    val = CooccurrenceEntries(vocab.encode(words_of(val_text, m.lowercase)), len(vocab), m.window, "val")
    probes = probe_words(vocab, cfg.train.sample_prompt, m.lowercase)

    def sample(model, step: int) -> str:  # samples.txt: the neighbours of a few words
        return "\n".join(format_neighbors(vocab, model.vectors(), w, 8) for w in probes)

    return TaskSetup(train_data=train, val_data=val, objective=GloVeObjective(m.x_max, m.alpha), tokenizer=None,
                     sample_fn=sample, extra_files={VOCAB_FILE: vocab.save})

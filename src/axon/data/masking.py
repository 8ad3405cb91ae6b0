"""BERT's masked-language-model data: masking, masked windows of a token stream, and their text source.

Text source of the ``mlm`` task (``axon.tasks.mlm``), in order of precedence:

* ``data.dir``: a directory prepared by ``axon prepare`` with a tokenizer that has BERT's special
  tokens (``axon prepare FILES --tokenizer path/to/bert/tokenizer.json``);
* ``data.train_file``: a plain-text file, validated on ``data.val_file`` or on its last 10% of
  characters (nanoGPT's rule), tokenised in memory;
* the bundled corpus (``data.corpus``), split as nanoGPT splits it, tokenised once into the cache.

``data.tokenizer`` is ``char``, ``wordpiece`` or ``bpe`` (built from the training text with [PAD]
[UNK] [CLS] [SEP] [MASK], see ``axon.data.bert_tokens``) or a path to a tokenizer.json.

A training example is a window of ``block_size - 2`` consecutive tokens read as one segment,
``[CLS] window [SEP]`` (RoBERTa's full-sentence inputs, Liu et al. 2019; no next-sentence
prediction). Masking (Devlin et al. 2019, sec. 3.1, and ``create_pretraining_data.py``): in each
sequence, ``max(1, round(mask_prob * n))`` of its n ordinary tokens are chosen uniformly without
replacement; a chosen token becomes [MASK] with probability 0.8, a random ordinary token with
0.1, and stays itself with 0.1; the labels hold the original ids at chosen positions and -100
elsewhere. Batch = (input_ids (B, T), attention_mask (B, T) all True, labels (B, T)).

Windows are drawn as the lm task draws them (``TokenDataset.get_batch``), and the masking from its
own generator seeded with (seed, step, micro_step, 1): a batch is a pure function of its
arguments, so resume is exact. The validation set is the stream's consecutive windows, window j
masked by a generator seeded with (20190524, j): the same blanks for every run and batch size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from axon.atomic import written_aside
from axon.data.bert_tokens import BERT_TOKENIZER_KINDS, BertTokens, build_bert_tokenizer
from axon.data.cache import cache_data_dir, cache_root, resolve_data_dir
from axon.data.files import read_text, resolve_file
from axon.data.tokenizers import check_tokenizer_choice
from axon.errors import ConfigError, DataError

IGNORE_INDEX = -100
EVAL_SEED = 20190524  # masks of the validation windows: fixed, so every run is scored on the same blanks
MASK_SEED_KEY = 1  # appended to (seed, step, micro_step): the masking draws apart from the window draws
P_MASK, P_RANDOM = 0.8, 0.1  # of the chosen tokens: [MASK], a random token; the rest (0.1) stay


def mask_tokens(ids: np.ndarray, tokens: BertTokens, mask_prob: float, rng: np.random.Generator,
                ordinary: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking of ids (B, T) -> (inputs, labels), both (B, T) int64 (see the module docstring).
    Special tokens ([CLS], [SEP], [PAD], ...) are never chosen."""
    ids = np.asarray(ids, dtype=np.int64)
    ordinary = tokens.ordinary_ids() if ordinary is None else ordinary
    candidate = ~np.isin(ids, tokens.special_ids)  # (B, T)
    n_cand = candidate.sum(1)
    n_pick = np.where(n_cand > 0, np.maximum(1, np.rint(mask_prob * n_cand)), 0).astype(np.int64)  # (B,)
    # A uniform choice of n_pick candidates per row: the n_pick smallest of uniform keys.
    keys = np.where(candidate, rng.random(ids.shape), 2.0)
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = rank < n_pick[:, None]
    labels = np.where(chosen, ids, IGNORE_INDEX)
    u = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (u < P_MASK)] = tokens.mask_id
    swap = chosen & (u >= P_MASK) & (u < P_MASK + P_RANDOM)
    inputs[swap] = rng.choice(ordinary, size=int(swap.sum()))
    return inputs, labels


class MaskedWindows:
    """Masked [CLS] window [SEP] batches from a token stream (a ``TokenDataset``)."""

    def __init__(self, stream, tokens: BertTokens, mask_prob: float):
        self.stream, self.tokens, self.mask_prob = stream, tokens, mask_prob
        self._ordinary = tokens.ordinary_ids()

    def _windows(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """The stream's (x, y) pairs are windows of n tokens shifted by one: window = x[0] + y."""
        w = torch.cat([x[:, :1], y], dim=1).numpy()  # (B, n)
        B = w.shape[0]
        cls = np.full((B, 1), self.tokens.cls_id, dtype=np.int64)
        sep = np.full((B, 1), self.tokens.sep_id, dtype=np.int64)
        return np.concatenate([cls, w, sep], axis=1)  # (B, n + 2)

    def _batch(self, windows: np.ndarray, rng: np.random.Generator | list[np.random.Generator]) -> tuple[torch.Tensor, ...]:
        """Masked windows; ``rng`` one generator for the batch, or one per window."""
        if isinstance(rng, list):
            rows = [mask_tokens(w[None], self.tokens, self.mask_prob, g, self._ordinary) for w, g in zip(windows, rng)]
            inputs, labels = np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
        else:
            inputs, labels = mask_tokens(windows, self.tokens, self.mask_prob, rng, self._ordinary)
        inputs, labels = torch.from_numpy(inputs), torch.from_numpy(labels)
        return inputs, torch.ones_like(inputs, dtype=torch.bool), labels

    @staticmethod
    def _content(block_size: int) -> int:
        if block_size < 4:
            raise ConfigError(f"model.block_size={block_size} leaves no room for a window between [CLS] and [SEP]")
        return block_size - 3  # the stream's x/y length: windows of block_size - 2 tokens

    def check_windows(self, block_size: int) -> None:
        """At start-up: the stream holds one window of ``block_size - 2`` tokens for [CLS] ... [SEP]."""
        n = self._content(block_size)
        self.stream.check_windows(n, f"model.block_size={block_size} ({n + 1} tokens between [CLS] and [SEP])")

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        x, y = self.stream.get_batch(step, batch_size, self._content(block_size), seed, micro_step=micro_step)
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step, MASK_SEED_KEY]))
        return self._batch(self._windows(x, y), rng)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        batches = self.stream.iter_eval_batches(batch_size, self._content(block_size), max_batches)

        def masked():  # window j's blanks come from its own generator: the same for any batch size
            j = 0
            for x, y in batches:
                yield self._batch(self._windows(x, y), [np.random.default_rng([EVAL_SEED, j + k]) for k in range(len(x))])
                j += len(x)

        return masked()


def _memory_stream(ids: np.ndarray, vocab_size: int, split: str, origin: str):
    from axon.data.loader import TokenDataset
    from axon.data.shards import Shard

    return TokenDataset([Shard(Path(origin), np.asarray(ids, dtype=np.int64), vocab_size)], split)


def _read_text(path: Path) -> str:
    if path.suffix != ".txt":
        raise DataError(f"{path}: the mlm task reads plain text (.txt); prepare other formats with axon prepare and set data.dir")
    return read_text(path, universal_newlines=True)


def corpus_tokenizer(cfg) -> Path:
    """The BERT tokenizer of the bundled corpus for ``data.tokenizer`` (a kind), built once into
    the cache (char: every character of the corpus; wordpiece, bpe: learnt from its train split)."""
    from axon.data.corpus import corpus_path

    kind, vocab = cfg.data.tokenizer, cfg.data.vocab_size
    tag = f"bert-{cfg.data.corpus}-{kind}" + (f"-{vocab}" if vocab and kind != "char" else "")
    file = cache_root(cfg.data) / "data" / tag / "tokenizer.json"
    if not file.is_file():
        text = _read_text(corpus_path(cfg.data.corpus))
        tok = build_bert_tokenizer(kind, [text if kind == "char" else text[: int(len(text) * 0.9)]], vocab)
        (cache_data_dir(cfg.data) / tag).mkdir(exist_ok=True)
        with written_aside(file, suffix=".json") as tmp:  # concurrent runs never read half a file
            tok.save(tmp)
    return file


def load_streams(cfg):
    """(tokenizer, train stream, val stream) of the mlm task's text source (module docstring)."""
    from axon.data.loader import open_prepared

    data = cfg.data
    if data.dir is not None:
        return open_prepared(resolve_data_dir(data))
    check_tokenizer_choice(data.tokenizer, BERT_TOKENIZER_KINDS)
    if data.train_file is not None:
        train_path = resolve_file(data.train_file, "data.train_file", data)
        text = _read_text(train_path)
        if data.val_file is not None:
            val_text = _read_text(resolve_file(data.val_file, "data.val_file", data))
        else:
            cut = int(len(text) * 0.9)
            text, val_text = text[:cut], text[cut:]
        tok = build_bert_tokenizer(data.tokenizer, [text], data.vocab_size)
        tokens = BertTokens(tok)
        train = _memory_stream(tokens.encode_array(text), tok.vocab_size, "train", str(train_path))
        val = _memory_stream(tokens.encode_array(val_text), tok.vocab_size, "val", str(data.val_file or train_path))
        return tok, train, val
    if data.tokenizer in BERT_TOKENIZER_KINDS:
        data = dataclasses.replace(data, tokenizer=str(corpus_tokenizer(cfg)), vocab_size=None)
    return open_prepared(resolve_data_dir(data))

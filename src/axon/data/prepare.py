"""Text -> tokenizer + token shards + meta.json, the one-time step before training.

``prepare`` writes into ``out_dir``::

    train.bin / val.bin          token shards (see shards.py); when a split holds more than
                                 ``shard_tokens`` tokens: train_000.bin, train_001.bin, ...
    tokenizer.json               the tokenizer that produced them (see tokenizers.py)
    meta.json                    written last: its presence means the directory is complete

Two ways to split train from val:

* **Plain text** (only ``.txt`` inputs): the files are read whole and concatenated; train is the
  first ``int(n_chars * (1 - val_fraction))`` characters and val the rest, exactly as nanoGPT's
  ``prepare.py`` does, so tiny Shakespeare gives the published split (1,003,854 / 111,540).
  No end-of-text token is inserted.
* **Document stream** (any ``.jsonl`` input, or a Hugging Face dataset): documents are read one
  at a time and never all held in memory. With ``period = round(1 / val_fraction)``, document
  ``i`` (counting from 0 across all sources, in order) goes to val when
  ``i % period == period - 1`` and to train otherwise; each document is followed by the
  tokenizer's end-of-text token when it has one. A ``.txt`` file among the inputs is one document.

The tokenizer is built from the data unless ``tokenizer`` is a path to a ``tokenizer.json``:

* ``"char"``: the vocabulary is every character of the whole input, train and val (nanoGPT's
  convention, which guarantees val is encodable). A document stream is read twice for this.
* ``"bpe"``: trained on the training text only, at most its first ``tokenizer_train_chars``
  characters (a document stream: the first training documents up to that many characters).
"""

from __future__ import annotations

import itertools
import json
import re
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from axon.atomic import atomic_write_text
from axon.data.corpus import corpus_path
from axon.data.files import read_text
from axon.data.shards import ShardWriter
from axon.data.tokenizers import KINDS, AnyTokenizer, build_tokenizer
from axon.errors import DataError, OptionError, check_count, check_output_dir, is_real


class PrepareOptionError(OptionError, DataError):
    """A setting of :func:`prepare` out of range: an OptionError (the command line names the
    flag) that is a DataError, as prepare's other refusals are."""


SPLITS = ("train", "val")
META_FILE = "meta.json"
META_VERSION = 1
#: Tokens per shard file before a split is cut into {split}_000.bin, {split}_001.bin, ...
DEFAULT_SHARD_TOKENS = 100_000_000
#: Characters of training text a BPE tokenizer is trained on (more costs time, gains little).
DEFAULT_TOKENIZER_TRAIN_CHARS = 20_000_000
INPUT_SUFFIXES = (".txt", ".jsonl")


def prepare(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    tokenizer: str = "char",
    vocab_size: int | None = None,
    val_fraction: float = 0.1,
    text_field: str = "text",
    hf_dataset: str | None = None,
    hf_split: str = "train",
    hf_config: str | None = None,
    hf_data_files: Any = None,
    max_docs: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    tokenizer_train_chars: int = DEFAULT_TOKENIZER_TRAIN_CHARS,
    progress: bool | None = None,
) -> dict:
    """Tokenize ``inputs`` (and/or ``hf_dataset``) into ``out_dir``; returns the meta dict.

    ``inputs``: ``.txt``/``.jsonl`` files (may be empty when ``hf_dataset`` is given).
    ``tokenizer`` is ``"char"``, ``"bpe"`` (with ``vocab_size``) or a path to a tokenizer.json.
    ``hf_dataset``/``hf_config``/``hf_split``/``hf_data_files`` go to
    ``datasets.load_dataset(..., streaming=True)``; ``hf_dataset="json"`` with local
    ``hf_data_files`` reads local files offline. ``max_docs`` caps a document stream.
    ``progress``: a tqdm bar over documents; None shows it only on a terminal.
    """
    files = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    if not files and hf_dataset is None:
        raise DataError("nothing to prepare: give input files or an hf_dataset")
    for f in files:
        if f.suffix not in INPUT_SUFFIXES:
            raise DataError(f"{f}: unsupported input type {f.suffix!r}; use {' or '.join(INPUT_SUFFIXES)}")
        if not f.is_file():
            raise DataError(f"input file not found: {f}")
    if not (is_real(val_fraction) and 0 <= val_fraction < 1):
        raise PrepareOptionError("val_fraction", "must be in [0, 1)", val_fraction)
    check_count("shard_tokens", shard_tokens, 1)
    check_count("vocab_size", vocab_size, 1, optional=True)
    check_count("max_docs", max_docs, 1, optional=True)
    check_output_dir("out_dir", out_dir)  # before any text is read: a file there fails only at the end

    out = Path(out_dir)
    meta: dict[str, Any] = {
        "version": META_VERSION,
        "inputs": [str(f) for f in files],
        "hf_dataset": None
        if hf_dataset is None
        else {"path": hf_dataset, "config": hf_config, "split": hf_split, "data_files": hf_data_files},
        "val_fraction": val_fraction,
    }
    if hf_dataset is None and all(f.suffix == ".txt" for f in files):
        tok, rule, splits = _prepare_text(
            files, out, shard_tokens, tokenizer, vocab_size, val_fraction, tokenizer_train_chars
        )
    else:

        def documents() -> Iterator[str]:
            docs = itertools.chain.from_iterable(_file_documents(f, text_field) for f in files)
            if hf_dataset is not None:
                docs = itertools.chain(
                    docs, _hf_documents(hf_dataset, hf_config, hf_split, hf_data_files, text_field)
                )
            return itertools.islice(docs, max_docs)

        tok, rule, splits = _prepare_stream(
            documents, out, shard_tokens, tokenizer, vocab_size, val_fraction, tokenizer_train_chars, progress
        )
        meta["max_docs"] = max_docs

    tok.save(out)
    meta.update(
        tokenizer=tok.kind,
        vocab_size=tok.vocab_size,
        eot_id=tok.eot_id,
        split_rule=rule,
        splits=splits,
    )
    return _write_meta(out, meta)


def prepare_corpus(
    name: str = "shakespeare",
    out_dir: str | Path | None = None,
    tokenizer: str = "char",
    vocab_size: int | None = None,
) -> dict:
    """Prepare a bundled corpus; ``out_dir`` defaults to ``data/{name}_{tokenizer}``."""
    if out_dir is None:
        out_dir = Path("data") / (f"{name}_{tokenizer}" if tokenizer in KINDS else name)
    return prepare([corpus_path(name)], out_dir, tokenizer=tokenizer, vocab_size=vocab_size)


# --- the two split rules ----------------------------------------------------------------------


def _prepare_text(
    files: list[Path],
    out: Path,
    shard_tokens: int,
    tokenizer: str,
    vocab_size: int | None,
    val_fraction: float,
    train_chars: int,
) -> tuple[AnyTokenizer, str, dict]:
    text = "".join(read_text(f) for f in files)
    n_train = int(len(text) * (1 - val_fraction))
    parts = {"train": text[:n_train], "val": text[n_train:]}
    tok = build_tokenizer(tokenizer, [text] if tokenizer == "char" else [parts["train"][:train_chars]], vocab_size)
    names = ", ".join(f.name for f in files)
    with _split_writers(out, tok.vocab_size, shard_tokens) as writers:
        for (split, part), offset in zip(parts.items(), (0, n_train)):
            where = f"{names}, {split} part (from character {offset})"
            writers[split].write(_encode(tok, part, where), part)
    rule = f"characters: train = first int(n_chars * (1 - {val_fraction})) characters, val = the rest"
    return tok, rule, {s: w.stats() for s, w in writers.items()}


def _prepare_stream(
    documents: Callable[[], Iterator[str]],
    out: Path,
    shard_tokens: int,
    tokenizer: str,
    vocab_size: int | None,
    val_fraction: float,
    train_chars: int,
    progress: bool | None,
) -> tuple[AnyTokenizer, str, dict]:
    period = round(1 / val_fraction) if val_fraction > 0 else 0
    if period == 1:
        raise PrepareOptionError("val_fraction", "must be at most 0.5 when documents are split (a larger one "
                                 "would send every document to val)", val_fraction)

    def is_val(i: int) -> bool:
        return period > 0 and i % period == period - 1

    def train_sample() -> Iterator[str]:
        budget = train_chars
        for i, doc in enumerate(documents()):
            if budget <= 0:
                return
            if not is_val(i):
                yield doc[:budget]
                budget -= len(doc)

    tok = build_tokenizer(tokenizer, documents() if tokenizer == "char" else train_sample(), vocab_size)
    eot = None if tok.eot_id is None else np.array([tok.eot_id], dtype=np.int64)
    docs = tqdm(documents(), desc="tokenizing", unit="doc", disable=None if progress is None else not progress)
    with _split_writers(out, tok.vocab_size, shard_tokens) as writers:
        for i, doc in enumerate(docs):
            ids = _encode(tok, doc, f"document {i}")
            writers["val" if is_val(i) else "train"].write(ids if eot is None else np.concatenate([ids, eot]), doc)
    rule = f"documents: document i goes to val when i % {period} == {period - 1}" if period else "documents: all train"
    return tok, rule, {s: w.stats() for s, w in writers.items()}


# --- sources -----------------------------------------------------------------------------------


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    """A ``.txt`` file as one document, or each line of a ``.jsonl`` file as one."""
    if path.suffix == ".txt":
        yield read_text(path)
        return
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                text = record.get(text_field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise DataError(f"{path}:{lineno}: record has no string field {text_field!r}")
                yield text
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text (byte {e.start})") from None


def _hf_documents(
    name: str, config: str | None, split: str, data_files: Any, text_field: str
) -> Iterator[str]:
    """Stream the ``text_field`` of each record of a Hugging Face dataset."""
    try:
        import datasets
    except ImportError:
        raise DataError("hf_dataset needs the `datasets` package: pip install 'axon-lab[hf]'") from None
    try:
        records = datasets.load_dataset(name, config, split=split, streaming=True, data_files=data_files)
    except (OSError, ValueError) as e:  # not found / no such config or split / offline
        raise DataError(f"cannot load Hugging Face dataset {name!r}: {e}".splitlines()[0]) from None
    for i, record in enumerate(records):
        text = record.get(text_field)
        if not isinstance(text, str):
            raise DataError(
                f"{name} record {i}: no string field {text_field!r} (fields: {', '.join(record)})"
            )
        yield text


def _encode(tok: AnyTokenizer, text: str, where: str) -> np.ndarray:
    try:
        return tok.encode_array(text)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None


# --- output ------------------------------------------------------------------------------------


class _SplitWriter:
    """One split's tokens, streamed into shards of at most ``shard_tokens`` tokens.

    Shards are written as ``{split}_000.bin, {split}_001.bin, ...``; a split that fits in one
    is renamed ``{split}.bin``. Characters, UTF-8 bytes and documents are counted on the way.
    """

    def __init__(self, out_dir: Path, split: str, vocab_size: int, shard_tokens: int) -> None:
        self.out_dir, self.split, self.vocab_size, self.shard_tokens = out_dir, split, vocab_size, shard_tokens
        self.shards: list[Path] = []
        self.num_tokens = self.num_chars = self.num_bytes = self.num_docs = 0
        self._next_shard()

    def _next_shard(self) -> None:
        self._writer = ShardWriter(self.out_dir / f"{self.split}_{len(self.shards):03d}.bin", self.vocab_size)

    def write(self, ids: np.ndarray, text: str) -> None:
        self.num_chars += len(text)
        self.num_bytes += len(text.encode("utf-8", "surrogatepass"))
        self.num_docs += 1
        self.num_tokens += len(ids)
        while len(ids):
            room = self.shard_tokens - self._writer.num_tokens
            self._writer.write(ids[:room])
            ids = ids[room:]
            if len(ids):  # the current shard is full and more tokens follow
                self.shards.append(self._writer.close())
                self._next_shard()

    def close(self) -> None:
        self.shards.append(self._writer.close())
        if len(self.shards) == 1:
            self.shards = [self.shards[0].replace(self.out_dir / f"{self.split}.bin")]
        # Shards of an earlier, larger run under this name would be picked up by a glob.
        pattern = re.compile(rf"{re.escape(self.split)}(_\d+)?\.bin")
        kept = {p.name for p in self.shards}
        for p in self.out_dir.iterdir():
            if pattern.fullmatch(p.name) and p.name not in kept:
                p.unlink()

    def abort(self) -> None:
        self._writer.abort()
        for p in self.shards:
            p.unlink(missing_ok=True)

    def stats(self) -> dict:
        return {
            "num_tokens": self.num_tokens,
            "num_chars": self.num_chars,
            "num_bytes": self.num_bytes,
            "num_docs": self.num_docs,
            "shards": [p.name for p in self.shards],
        }


@contextmanager
def _split_writers(out: Path, vocab_size: int, shard_tokens: int) -> Iterator[dict[str, _SplitWriter]]:
    """A writer per split; all are closed on success, and on error the partial shards dropped."""
    out.mkdir(parents=True, exist_ok=True)
    # Remove the completion marker before the first shard is replaced: a run that dies
    # half-way must not leave an old meta.json describing new shards.
    (out / META_FILE).unlink(missing_ok=True)
    writers = {s: _SplitWriter(out, s, vocab_size, shard_tokens) for s in SPLITS}
    try:
        yield writers
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()


def _write_meta(out: Path, meta: dict) -> dict:
    """Write meta.json atomically; returns the meta exactly as stored (paths become strings)."""
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write_text(out / META_FILE, text)
    return json.loads(text)


def load_meta(data_dir: str | Path) -> dict | None:
    """The meta.json of a prepared directory, or None when there is none."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None

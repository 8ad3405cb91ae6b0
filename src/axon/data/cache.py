"""The data cache, prepared data directories, and the character / byte counts of their splits.

The cache (``data.cache_dir``, else ``$AXON_CACHE``, else ``~/.cache/axon``) holds what a run
prepares on first use and every later run reuses: the bundled corpus tokenised into shards
(``data/<corpus>-<tokenizer>``), BERT tokenizers of the corpus, and the bundled task files built
from the corpus (``made_on_first_use``: speakers, labellers, sentiment, ner).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from axon.atomic import atomic_directory
from axon.errors import DataError


def cache_root(data_cfg=None) -> Path:
    """The cache directory of a config's ``data`` section (None: the environment's or the default)."""
    configured = getattr(data_cfg, "cache_dir", None)
    return Path(configured or os.environ.get("AXON_CACHE") or Path.home() / ".cache" / "axon")


def cache_data_dir(data_cfg=None) -> Path:
    """The cache's ``data`` directory, made if need be; a cache that cannot be made is one line
    naming the setting it came from (before any run trains on it)."""
    path = cache_root(data_cfg) / "data"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        source = ("data.cache_dir" if getattr(data_cfg, "cache_dir", None)
                  else "$AXON_CACHE" if os.environ.get("AXON_CACHE") else "the data cache")
        raise DataError(f"{source}: cannot create {path}: {e.strerror or e}") from None
    return path


def made_on_first_use(name: str, files: tuple[str, ...], version: int, cache_dir: Path, write) -> Path:
    """The file of ``bundled:<dataset>/<file>`` (``name`` without "bundled:") that a module builds from
    the bundled corpus: ``write(directory)`` writes all of ``files`` into
    ``<cache_dir>/data/bundled-<dataset>-v<version>`` the first time one is asked for (atomically:
    another process that wrote it first wins); an unknown file is one line listing the files."""
    from axon.errors import ConfigError

    dataset, _, file = name.partition("/")
    if file not in files:
        raise ConfigError(f"unknown bundled file {name!r}; choose one of: " + ", ".join(f"bundled:{dataset}/{f}" for f in files))
    root = cache_dir / "data" / f"bundled-{dataset}-v{version}"
    if not all((root / f).is_file() for f in files):
        root.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(root) as tmp:
            write(tmp)
    return root / file


def resolve_data_dir(data_cfg) -> Path:
    """The prepared data directory: ``data.dir``, or the bundled corpus prepared into the cache.

    Preparing writes to a temporary directory renamed into place, so concurrent runs never see
    half-written shards.
    """
    if data_cfg.dir is not None:
        path = Path(data_cfg.dir)
        if not (path / "meta.json").is_file():
            raise DataError(f"data.dir: {path} is not a prepared data directory (no meta.json); run `axon prepare` first")
        return path
    from axon.data.prepare import prepare_corpus
    from axon.data.tokenizers import KINDS, check_tokenizer_choice

    tok = data_cfg.tokenizer
    check_tokenizer_choice(tok, KINDS)
    # A tokenizer file is named by a digest of its path (Python's hash() changes every process).
    tag = tok if tok in ("char", "bpe") else "custom-" + hashlib.sha256(os.path.abspath(tok).encode()).hexdigest()[:10]
    if data_cfg.vocab_size:
        tag += f"-{data_cfg.vocab_size}"
    path = cache_root(data_cfg) / "data" / f"{data_cfg.corpus}-{tag}"
    if not (path / "meta.json").is_file():
        cache_data_dir(data_cfg)
        with atomic_directory(path) as tmp:  # another process that prepared it first wins
            prepare_corpus(data_cfg.corpus, tmp, tokenizer=tok, vocab_size=data_cfg.vocab_size)
    return path


def split_ratios(data_dir: Path, split: str = "val") -> tuple[float | None, float | None]:
    """(characters per token, bytes per token) of a split, from meta.json, for bits per char/byte."""
    meta = json.loads((data_dir / "meta.json").read_text())
    s = meta["splits"][split]
    n = s["num_tokens"]
    return (s["num_chars"] / n if n else None), (s["num_bytes"] / n if n else None)

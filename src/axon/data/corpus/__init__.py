"""Corpora shipped inside the package."""

from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent

#: name -> file; "shakespeare" is the tiny Shakespeare corpus nanoGPT's char recipe uses.
CORPORA = {"shakespeare": CORPUS_DIR / "tinyshakespeare.txt"}


def corpus_path(name: str = "shakespeare") -> Path:
    from axon.errors import DataError

    if name not in CORPORA:
        raise DataError(f"unknown bundled corpus {name!r}; choose one of: {', '.join(sorted(CORPORA))}")
    return CORPORA[name]

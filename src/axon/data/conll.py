"""CoNLL-format tagged text: one token per line, the tag in the last column, blank lines between sentences.

    -DOCSTART- -X- -X- O          skipped (CoNLL-2003 document separators)
                                  blank: ends a sentence
    EU NNP B-NP B-ORG             word = first column, tag = last column; middle columns
    rejects VBZ B-VP O              (POS, chunk) are ignored
    German JJ B-NP B-MISC
                                  blank: ends a sentence
    Peter B-PER
    Blackburn I-PER

    -> Conll(sentences=[(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
                        (["Peter", "Blackburn"], ["B-PER", "I-PER"])],
             tags=["B-MISC", "B-ORG", "B-PER", "I-PER", "O"])       sorted

Columns are split on any whitespace. Bad input ends with one DataError line naming the file and the
line: a line with one column, an empty file, a file with no tagged token (an empty tag set); an
unreadable or non-UTF-8 file the same way (``axon.errors.reading``).

BIO: with ``check_bio=True`` each tag must be ``O``, ``B-<type>`` or ``I-<type>`` (else a DataError
naming the line). An ``I-X`` after ``O`` or after another type is *accepted* either way: it is common
in real data (CoNLL-2003 itself is IOB1, where I- opens an entity) and seqeval's default scorer
reads it as the start of an X entity, so the file is not rewritten.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from axon.errors import DataError, reading


class Conll(NamedTuple):
    """Sentences as (words, tags) pairs of equal length, and the sorted set of tags seen."""

    sentences: list[tuple[list[str], list[str]]]
    tags: list[str]


def _valid_bio(tag: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[:2] in ("B-", "I-"))


def read_conll(path, *, check_bio: bool = False) -> Conll:
    """Read a CoNLL file (see the module docstring). Raises DataError "<path>:<line>: ..." on bad input."""
    path = os.fspath(path)
    with reading(path, "CoNLL file"):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f"CoNLL file {path}: empty (no tagged tokens)")
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []

    def close():
        if words:
            sentences.append((list(words), list(tags)))
            words.clear()
            tags.clear()

    for n, line in enumerate(lines, 1):
        cols = line.split()
        if not cols:
            close()
            continue
        if cols[0] == "-DOCSTART-":
            close()
            continue
        if len(cols) < 2:
            raise DataError(f"CoNLL file {path}:{n}: one column {line.strip()!r}; want a word and a tag (the last column)")
        tag = cols[-1]
        if check_bio and not _valid_bio(tag):
            raise DataError(f"CoNLL file {path}:{n}: tag {tag!r} is not BIO (O, B-<type> or I-<type>)")
        words.append(cols[0])
        tags.append(tag)
    close()
    tag_set = sorted({t for _, ts in sentences for t in ts})
    if not tag_set:
        raise DataError(f"CoNLL file {path}: no tagged tokens (an empty tag set; only -DOCSTART- and blank lines)")
    return Conll(sentences, tag_set)

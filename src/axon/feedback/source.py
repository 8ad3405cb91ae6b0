"""The bundled corpus as the source of the feedback data: its split, its characters, its words.

Everything the feedback setups write is made of the bundled tiny Shakespeare corpus
(``axon.data.corpus``), so a character tokenizer trained on it encodes every prompt and response:

* ``corpus_parts()``: the corpus cut as nanoGPT's ``prepare.py`` and ``axon prepare`` cut it (the
  first 90% of the characters train, the rest is validation), so the sentiment prompts drawn from
  the train part are text an SFT model trained on that split has seen, and the held-out ones are
  not;
* ``charset()``: its 65 characters. It has no digit but ``3`` and no double quote, which is why
  numbers are written in words ("five") throughout;
* ``vocabulary()``: its frequent lowercase words, the words instructions are made of.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

# axon.data.corpus.CORPORA["shakespeare"], named here rather than imported: importing anything in
# axon.data runs its __init__, which loads torch, and this package stays torch-free
# (tests/feedback/test_source.py checks the two paths agree).
CORPUS_FILE = Path(__file__).resolve().parents[1] / "data" / "corpus" / "tinyshakespeare.txt"

#: nanoGPT's split of the corpus (axon.data.prepare's default val_fraction)
VAL_FRACTION = 0.1

#: English number words, used to write counts (the corpus has no digit but 3)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                "nineteen", "twenty")

# Kept out of the vocabulary. Negations and "but"/"least"/"kind"/"sort" change how VADER reads the
# words after them (its NEGATE list and special cases), so a topic word "never" would turn "never,
# I love thee" negative; number words would confuse the letter-counting judge.
STOPWORDS = frozenset(
    "aint arent cannot cant couldnt darent despite didnt doesnt dont hadnt hasnt havent isnt mightnt "
    "mustnt neednt neither never none nope nor not nothing nowhere oughtnt rarely seldom shant shouldnt "
    "uhuh wasnt werent without wont wouldnt no but least kind sort".split()) | frozenset(NUMBER_WORDS)

#: the words of ``vocabulary()``: at least this many letters, at most the other
MIN_LETTERS, MAX_LETTERS = 3, 8
#: and seen at least this often in the train part
MIN_COUNT = 5


@cache
def corpus_text() -> str:
    """The bundled corpus, exactly as stored."""
    with open(CORPUS_FILE, encoding="utf-8", newline="") as f:
        return f.read()


def corpus_parts() -> tuple[str, str]:
    """(train, val): the first ``1 - VAL_FRACTION`` of the characters and the rest."""
    text = corpus_text()
    cut = int(len(text) * (1 - VAL_FRACTION))
    return text[:cut], text[cut:]


@cache
def charset() -> frozenset[str]:
    """Every character of the corpus."""
    return frozenset(corpus_text())


@cache
def vocabulary() -> tuple[str, ...]:
    """The lowercase alphabetic words of the train part with ``MIN_LETTERS``..``MAX_LETTERS``
    letters, seen at least ``MIN_COUNT`` times, less ``STOPWORDS``; sorted, so a seed picks the
    same words everywhere (about 2,700 words)."""
    counts = Counter(re.findall(r"[a-z]+", corpus_parts()[0].lower()))
    return tuple(sorted(w for w, n in counts.items()
                        if n >= MIN_COUNT and MIN_LETTERS <= len(w) <= MAX_LETTERS and w not in STOPWORDS))


def foreign_chars(text: str) -> str:
    """The characters of ``text`` that the corpus lacks, sorted ('' when none)."""
    return "".join(sorted(set(text) - charset()))

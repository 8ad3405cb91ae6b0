"""A named-entity set built from the bundled corpus: people and places tagged in the lines of the plays.

Silver labels from two word lists, no annotator. The build (deterministic, no randomness):

    tiny Shakespeare
        |  speeches (axon.data.speakers.speeches): "NAME:" heading + lines
        v
    PER list: every word of every speaker heading, title-cased       KING RICHARD III -> Richard
              minus roman numerals, words of < 3 letters,            (King, III dropped)
              role words (ROLES: Citizen, Huntsman, Roman, ...)
              and any word the corpus also writes in lower case      Grey, Page, Rivers, Will ...
    LOC list: a hand list of places (PLACES) minus the PER list      Verona, Mantua, Rome, England ...
        |
        v
    every speech line -> tokens -> tag each token found in a list (case-sensitive);
                                   consecutive tokens of one type form one entity (B-, then I-)

        O  Romeo ,  Romeo !  wherefore art thou Romeo ?
        O  B-PER O  B-PER O  O         O   O    B-PER O

        Where is Titus Lartius ?          Caius Marcius ...   Verona
        O     O  B-PER I-PER   O          O     B-PER         B-LOC
                                          (Caius is in no heading)

Tokens: runs of letters, an apostrophe with the letters after it (``Rome's`` -> ``Rome 's``,
``banish'd`` -> ``banish 'd``, the Penn Treebank's way), and every other non-space character alone.

Sentences are the lines of the speeches (verse lines, not grammatical sentences). Kept: every line
with an entity, and every ``KEEP_EVERY``-th line without one (so about one line in two holds an
entity). Split: a line in the corpus's first 90% of characters goes to training, the rest to
validation -- nanoGPT's split, the one ``axon train`` uses -- so validation lines come from other
scenes and a share of their names never occurs in training (``meta.json``: ``val_unseen_entities``).

Limits, said plainly: the labels are a gazetteer's.

* A word is tagged wherever it occurs: ``Paris`` is always a person (Romeo and Juliet's Paris), never
  the city; lords named by their title (``Gloucester``, ``York``, ``Norfolk``) are persons, and so are
  the places they are named after, because the headings name the speakers that way.
* A name the speakers' headings never give (``Jupiter``, ``Caesar``, ``Ned``) is O; so is a name that is
  also a lower-case word of the corpus (``Grey``, ``Rivers``, ``Will``): tagging those would tag the
  word too.
* Two types only, PER and LOC; no MISC, no ORG; nationalities (``Roman``, ``Volsce``) are O.
* Names are capitalised and the list is fixed, so a model can score high by memorising the list;
  the validation names absent from training are what measures generalisation.

Files (CoNLL: ``word tag`` per line, blank line between sentences; ``axon.data.conll`` reads them):
``train.conll``, ``val.conll``, ``meta.json`` (sizes, entity counts, the two lists). Write them with
``python -m axon.data.ner --out DIR``; configs name them ``bundled:ner/train.conll`` and
``bundled:ner/val.conll``, which are written into the cache on first use.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


VERSION = 1
FILES = ("train.conll", "val.conll", "meta.json")
TRAIN_FRACTION = 0.9  # nanoGPT's split of the corpus: lines in the first 90% of characters train
KEEP_EVERY = 8  # of the lines without an entity, the 8th, 16th, ... are kept

#: Words of speaker headings that name a role, a rank or a people, not a person (they are also
#: capitalised in the headings only, so the lower-case rule does not catch them).
ROLES = frozenset("""Aedile Archbishop Chorus Conspirators Gardener Haberdasher Huntsman Mariner Player Roman
Servingman Seventh Sixth Shepard Sheriff Volsce Watchman""".split())

#: Places of the plays. A place that is also a speaker's name (York, Gloucester, Exeter ...) is a person
#: here; ambiguous ones (Lancaster, Burgundy, Kent: houses and lords; Tower, a common noun too) are left out.
PLACES = frozenset("""England France Rome London Verona Mantua Padua Vienna Milan Naples Venice Pisa Bohemia
Sicilia Ireland Scotland Wales Antium Corioli Florence Coventry Bristol Tewksbury Barnet Calais Italy Spain Tunis
Pomfret Westminster Gloucestershire Ravenspurgh Brittany Lombardy Greece Troy Capitol Tiber Jerusalem Barbary
Delphos Carthage Northampton Ludlow Leicester Bosworth""".split())

_TOKEN = re.compile(r"[A-Za-z]+|'[A-Za-z]+|\S")
_WORD = re.compile(r"[A-Za-z]+")
_ROMAN = re.compile(r"[IVXL]+")


def tokenize(line: str) -> list[str]:
    """Letters, apostrophe + letters, and each other non-space character (module docstring)."""
    return _TOKEN.findall(line)


@dataclass
class NerSet:
    train: list[tuple[list[str], list[str]]]  # (words, BIO tags) per kept line
    val: list[tuple[list[str], list[str]]]
    meta: dict


def gazetteers(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(PER words, LOC words) of the corpus ``text`` (module docstring)."""
    from axon.data.speakers import speeches

    lower = {w for w in _WORD.findall(text) if w.islower()}
    per = set()
    for s in speeches(text):
        for w in _WORD.findall(s.speaker):
            w = w.capitalize()
            if len(w) >= 3 and not _ROMAN.fullmatch(w.upper()) and w not in ROLES and w.lower() not in lower:
                per.add(w)
    return frozenset(per), frozenset(PLACES - per)


def tag_tokens(tokens: list[str], per: frozenset[str], loc: frozenset[str]) -> list[str]:
    """BIO tags of ``tokens``: a token in ``per`` / ``loc`` is PER / LOC; a run of one type is one entity."""
    tags, prev = [], None
    for t in tokens:
        kind = "PER" if t in per else "LOC" if t in loc else None
        tags.append("O" if kind is None else (f"I-{kind}" if kind == prev else f"B-{kind}"))
        prev = kind
    return tags


def entities(tags: list[str], words: list[str]) -> list[tuple[str, str]]:
    """(type, text) of each entity of a tagged line."""
    out, cur = [], None
    for w, t in zip(words, tags):
        if t.startswith("B-"):
            cur = [t[2:], [w]]
            out.append(cur)
        elif t.startswith("I-") and cur is not None:
            cur[1].append(w)
        else:
            cur = None
    return [(k, " ".join(ws)) for k, ws in out]


def build_ner_set(text: str | None = None) -> NerSet:
    """The set from ``text`` (default: the bundled corpus); see the module docstring."""
    from axon.data.corpus import corpus_path

    if text is None:
        text = corpus_path("shakespeare").read_text(encoding="utf-8")
    per, loc = gazetteers(text)
    cut = int(len(text) * TRAIN_FRACTION)
    splits: dict[str, list] = {"train": [], "val": []}
    plain, offset = 0, 0
    for block in text.split("\n\n"):
        lines = block.split("\n")
        start = offset
        offset += len(block) + 2
        heading = re.fullmatch(r"[^\n]+:", lines[0]) is not None
        for i, line in enumerate(lines):
            line_start = start
            start += len(line) + 1
            if (heading and i == 0) or not line.strip():
                continue
            words = tokenize(line)
            tags = tag_tokens(words, per, loc)
            if all(t == "O" for t in tags):
                plain += 1
                if plain % KEEP_EVERY:
                    continue
            splits["train" if line_start < cut else "val"].append((words, tags))

    def stats(split) -> dict:
        ents = Counter(k for words, tags in split for k, _ in entities(tags, words))
        return {"sentences": len(split), "tokens": sum(len(w) for w, _ in split),
                "with_entity": sum(any(t != "O" for t in tags) for _, tags in split),
                "entities": dict(sorted(ents.items()))}

    seen = {e for words, tags in splits["train"] for e in entities(tags, words)}
    val_ents = [e for words, tags in splits["val"] for e in entities(tags, words)]
    meta = {"version": VERSION, "source": "tiny Shakespeare (bundled corpus)", "train_fraction": TRAIN_FRACTION,
            "keep_every": KEEP_EVERY, "train": stats(splits["train"]), "val": stats(splits["val"]),
            "val_unseen_entities": round(sum(e not in seen for e in val_ents) / max(1, len(val_ents)), 4),
            "per": sorted(per), "loc": sorted(loc)}
    return NerSet(splits["train"], splits["val"], meta)


def conll_text(sentences: list[tuple[list[str], list[str]]]) -> str:
    """CoNLL text: ``word tag`` per line, a blank line after each sentence."""
    return "".join("".join(f"{w} {t}\n" for w, t in zip(words, tags)) + "\n" for words, tags in sentences)


def write_ner_set(out_dir: str | Path) -> dict:
    """Write train.conll, val.conll and meta.json into ``out_dir``; returns meta."""
    ner = build_ner_set()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.conll").write_text(conll_text(ner.train), encoding="utf-8")
    (out / "val.conll").write_text(conll_text(ner.val), encoding="utf-8")
    (out / "meta.json").write_text(json.dumps(ner.meta, indent=1) + "\n")
    return ner.meta


def bundled_file(name: str, cache_dir: Path) -> Path:
    """The file ``ner/<file>`` of a ``bundled:`` name, written into ``cache_dir`` on first use."""
    from axon.data.cache import made_on_first_use

    return made_on_first_use(name, FILES, VERSION, cache_dir, write_ner_set)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.data.ner",
                                description="Write the named-entity set (PER, LOC) built from tiny Shakespeare.")
    p.add_argument("--out", required=True, help="directory for train.conll, val.conll, meta.json")
    args = p.parse_args(argv)
    meta = write_ner_set(args.out)
    tr, va = meta["train"], meta["val"]
    print(f"wrote {args.out}: {tr['sentences']} train / {va['sentences']} val lines; entities train {tr['entities']}, "
          f"val {va['entities']}; {meta['val_unseen_entities']:.1%} of val entities unseen in training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sentiment of a line: a sentence-level classify task labelled by the VADER lexicon.

Lines of speech of tiny Shakespeare, each labelled positive / neutral / negative by VADER's
compound score (``axon.feedback.sentiment``, issue 12's gold judge) with VADER's own thresholds:

    line of speech  "O, she doth teach the torches to burn bright!"
        |  whitespace-normalised, >= MIN_WORDS words
    VADER compound  c in (-1, 1)
        |  c >= +0.05 -> positive    c <= -0.05 -> negative    else -> neutral
    train.tsv / val.tsv  "text<TAB>label" per line (the classify task's .tsv format)

The split is the speaker task's (``axon.data.speakers``), so the masked-LM pretraining text
``bundled:speakers/pretrain.txt`` (``configs/bert_tiny_mlm.yaml``) holds no validation line:

* val: every line of the speaker task's 255 validation speeches (the speeches that
  ``pretrain.txt`` leaves out);
* train: every ``TRAIN_EVERY``-th line (in corpus order) of all the other speeches of the corpus,
  every speaker's, to keep the shipped files small; a line whose text is already in train (or, for
  val, in train or earlier in val) is dropped, so no validation text is a training text.

A line is a line of a speech's text (speaker headings like ``ROMEO:`` are not part of a speech),
with its whitespace collapsed, kept when it has at least ``MIN_WORDS`` words: shorter lines
("My lord?") are mostly neutral fragments. Neutral is kept as a class: it is VADER's own
three-way reading, and "no sentiment word here" is part of what a model must learn.

With the defaults: 4,603 train / 1,089 val lines (232 kB and 54 kB); train 46.8% neutral,
30.7% positive, 22.5% negative; val 45.1% neutral, 29.8% positive, 25.1% negative (the majority
baseline, always neutral, is 45.1% of val). The labels are a lexicon's: a model is scored on agreeing with VADER, not with
people, and VADER reads Early Modern English only as well as its modern lexicon allows.

vaderSentiment is an optional dependency (the ``rlhf`` extra), so the files are generated offline
and shipped in the package (``axon/data/corpus/vader/{train,val}.tsv``, addressed
``bundled:vader/train.tsv`` and ``bundled:vader/val.tsv``): ``python -m axon.data.vader_lines
--out DIR`` writes them (deterministic; tests/data/test_vader_lines.py regenerates them and
compares byte for byte).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

#: a line with fewer words is skipped
MIN_WORDS = 4
#: every TRAIN_EVERY-th line of the training speeches is kept
TRAIN_EVERY = 5
#: VADER's own thresholds on the compound score (Hutto & Gilbert 2014; the package's README)
POSITIVE, NEGATIVE = 0.05, -0.05
LABELS = ("negative", "neutral", "positive")
FILES = ("train.tsv", "val.tsv")


def vader_label(compound: float) -> str:
    """positive / neutral / negative by VADER's thresholds (module docstring)."""
    if compound >= POSITIVE:
        return "positive"
    if compound <= NEGATIVE:
        return "negative"
    return "neutral"


def _lines(speech_texts) -> list[str]:
    """The lines of the speeches, whitespace-collapsed, with at least MIN_WORDS words."""
    out = []
    for text in speech_texts:
        for line in text.split("\n"):
            words = line.split()
            if len(words) >= MIN_WORDS:
                out.append(" ".join(words))
    return out


def vader_lines(text: str | None = None, train_every: int = TRAIN_EVERY) -> tuple[list[str], list[str]]:
    """(train lines, val lines) of ``text`` (default: the bundled corpus), unlabelled; see the
    module docstring. Needs no VADER."""
    from axon.data.speakers import build_speaker_task, speeches
    from axon.errors import ConfigError

    if train_every < 1:
        raise ConfigError(f"train_every must be at least 1, got {train_every}")
    if text is None:
        from axon.data.corpus import corpus_path

        text = corpus_path("shakespeare").read_text(encoding="utf-8")
    held_out = {s.block for s in build_speaker_task(text).val}
    all_speeches = speeches(text)
    train_all = _lines(s.text for s in all_speeches if s.block not in held_out)
    seen: set[str] = set()
    train = []
    for line in train_all[train_every - 1::train_every]:
        if line not in seen:
            seen.add(line)
            train.append(line)
    val = []
    for line in _lines(s.text for s in all_speeches if s.block in held_out):
        if line not in seen:
            seen.add(line)
            val.append(line)
    return train, val


def labelled_vader_lines(text: str | None = None, train_every: int = TRAIN_EVERY) -> dict[str, list[tuple[str, str]]]:
    """{"train": [(line, label), ...], "val": [...]}: the lines labelled by VADER (needs vaderSentiment)."""
    from axon.feedback.sentiment import sentiment_score

    train, val = vader_lines(text, train_every)
    return {split: [(line, vader_label(sentiment_score(line))) for line in lines]
            for split, lines in (("train", train), ("val", val))}


def balance(rows: list[tuple[str, str]]) -> dict[str, float]:
    """The share of each label in ``rows``."""
    c = Counter(label for _, label in rows)
    return {k: c[k] / len(rows) for k in LABELS}


def write_vader_lines(out_dir: str | Path, train_every: int = TRAIN_EVERY) -> dict[str, list[tuple[str, str]]]:
    """Write train.tsv and val.tsv (``text<TAB>label`` per line) into ``out_dir``; returns the rows."""
    data = labelled_vader_lines(train_every=train_every)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in data.items():
        body = "".join(f"{line}\t{label}\n" for line, label in rows)
        (out / f"{split}.tsv").write_bytes(body.encode("utf-8"))
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.data.vader_lines",
                                description="Write the VADER-labelled line-sentiment task built from tiny Shakespeare.")
    p.add_argument("--out", required=True, help="directory for train.tsv and val.tsv")
    p.add_argument("--train-every", type=int, default=TRAIN_EVERY, help="keep every N-th training line (default %(default)s)")
    args = p.parse_args(argv)
    data = write_vader_lines(args.out, args.train_every)
    for split, rows in data.items():
        shares = ", ".join(f"{k} {v:.1%}" for k, v in balance(rows).items())
        print(f"{split}: {len(rows)} lines ({shares})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

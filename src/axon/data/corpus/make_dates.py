"""Write the bundled date-normalisation task: English dates in many surface forms -> ISO 8601.

    the twenty-third of March, 1994          ->  1994-03-23
    Wednesday, March 23, 1994                ->  1994-03-23
    march the twenty-third, nineteen ninety-four  ->  1994-03-23
    23.03.1994   3/23/1994   23 Mar 1994     ->  1994-03-23

A translation task with real structure at character level: the model has to read day, month and
year in whichever order, spelling and notation the form uses (number words, ordinals, month
names and abbreviations, day-first and month-first numerals, an optional weekday to ignore) and
write them in one fixed order. Dates run from 1900-01-01 to 2099-12-31. The split is by date:
the validation dates never occur in training, so exact match on them measures generalisation,
not memory.

Deterministic (Python's seeded ``random``): ``python -m axon.data.corpus.make_dates`` rewrites
``dates/train.tsv`` and ``dates/val.tsv`` identically (tests/tasks/test_seq2seq.py checks that the
shipped files are what this script writes).
"""

from __future__ import annotations

import argparse
import datetime
import random
from pathlib import Path

SEED = 20170612  # "Attention Is All You Need" went to arXiv on 12 June 2017
NUM_TRAIN, NUM_VAL = 20_000, 1_000
OUT_DIR = Path(__file__).resolve().parent / "dates"

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINAL_ONES = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
                "seventeenth", "eighteenth", "nineteenth"]
ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}


def number_words(n: int) -> str:
    """0 <= n < 100 in words: 42 -> forty-two."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + ("-" + ONES[ones] if ones else "")


def ordinal_words(n: int) -> str:
    """1 <= n <= 31 as an ordinal in words: 23 -> twenty-third."""
    if n < 20:
        return ORDINAL_ONES[n]
    if n in ORDINAL_TENS:
        return ORDINAL_TENS[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + "-" + ORDINAL_ONES[ones]


def ordinal_suffix(n: int) -> str:
    """23 -> 23rd, 11 -> 11th."""
    if 11 <= n % 100 <= 13:
        return f"{n}th"
    return f"{n}" + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def year_words(year: int, rng: random.Random) -> str:
    """1994 -> nineteen ninety-four; 1905 -> nineteen oh five; 2007 -> two thousand (and) seven;
    2021 -> twenty twenty-one or two thousand and twenty-one."""
    century, rest = divmod(year, 100)
    if century == 19:
        if rest == 0:
            return "nineteen hundred"
        return "nineteen " + ("oh " + ONES[rest] if rest < 10 else number_words(rest))
    if rest == 0:
        return "two thousand"
    if rest < 10 or rng.random() < 0.5:
        return "two thousand " + ("and " if rng.random() < 0.5 else "") + number_words(rest)
    return "twenty " + number_words(rest)


def cased(word: str, rng: random.Random) -> str:
    """Month and weekday names as people type them: mostly Title, sometimes lower or UPPER case."""
    r = rng.random()
    return word if r < 0.7 else word.lower() if r < 0.9 else word.upper()


def surface(date: datetime.date, rng: random.Random) -> str:
    """One of eleven ways of writing ``date``, picked by ``rng``."""
    d, m, y = date.day, date.month, date.year
    month = cased(MONTHS[m - 1], rng)
    abbr = cased(MONTHS[m - 1][:3], rng)
    forms = [
        lambda: f"{month} {d}, {y}",
        lambda: f"{d} {month} {y}",
        lambda: f"{abbr} {d}, {y}",
        lambda: f"{d} {abbr} {y}",
        lambda: f"the {ordinal_suffix(d)} of {month}, {y}",
        lambda: f"the {ordinal_words(d)} of {month}, {y}",
        lambda: f"{month} the {ordinal_words(d)}, {year_words(y, rng)}",
        lambda: f"{cased(WEEKDAYS[date.weekday()], rng)}, {month} {d}, {y}",
        lambda: f"{d:02d}.{m:02d}.{y}",  # day first, dots (European)
        lambda: f"{m}/{d}/{y}",  # month first, slashes (US)
        lambda: f"{ordinal_suffix(d)} {month} {year_words(y, rng)}",
    ]
    return rng.choice(forms)()


def make_splits(num_train: int = NUM_TRAIN, num_val: int = NUM_VAL, seed: int = SEED) -> tuple[list[str], list[str]]:
    """(train lines, val lines), each "source<TAB>YYYY-MM-DD"; no date is in both."""
    rng = random.Random(seed)
    start, end = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
    dates = [start + datetime.timedelta(days=i) for i in range((end - start).days + 1)]
    rng.shuffle(dates)
    val_dates, train_dates = dates[:num_val], dates[num_val : num_val + num_train]
    val = [f"{surface(d, rng)}\t{d.isoformat()}" for d in val_dates]
    train = [f"{surface(d, rng)}\t{d.isoformat()}" for d in train_dates]
    return train, val


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    train, val = make_splits()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("val", val)):
        (args.out / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {args.out / f'{name}.tsv'}: {len(lines)} pairs")


if __name__ == "__main__":
    main()

"""The bundled prompting tasks and the in-context corpus, generated offline from seeded ``random.Random``.

    seeded problems ------------------------------> arithmetic_{2,3,4,5}d{a,s}, arithmetic_2dm  (GPT-3 Table 3.9)
    words of the train part, symbols inserted ----> random_insertion  (GPT-3 Fig. 1.2)
                                                   word_problems, word_problems_cot  (PaLM's tennis balls)
    tinyshakespeare.txt  last 10% (its val part) --> cloze test split  (LAMBADA-style)
                         first 90% (train part) ---> cloze few-shot split; the corpus's text and cloze blocks
    dates/val.tsv, dates/train.tsv ---------------> dates (test / few-shot)
    axon.data.speakers: val / train speeches -----> speakers (test / few-shot)

Every task is a YAML file in lm-evaluation-harness 0.4's schema (the subset issue 20's harness reads)
beside two JSON-lines files, ``NAME.jsonl`` (the test split) and ``NAME_fewshot.jsonl`` (the
examples shots are drawn from), one JSON object a line:

    task                 output_type      a record                                          test / few-shot
    arithmetic_2da ...   loglikelihood    {"a": 48, "b": 76, "answer": 124}                 300 / 100 each
    random_insertion     loglikelihood    {"noisy": "s.u!c/c!e.s s i/o/n", "word": "..."}   300 / 100
    cloze                loglikelihood    {"context": "...", "word": "king", "line": 38554} 275 / 100
    dates                generate_until   {"date": "21 August 1955", "iso": "1955-08-21"}   300 / 100
    speakers             multiple_choice  {"text": "...", "choices": [4 names], "gold": 2}  205 / 100
    word_problems(_cot)  generate_until   {"question", "rationale", "answer", "split"}      300 / 100 (shared)

``python -m axon.eval.prompting.bundled`` rewrites every file in ``tasks/`` identically
(tests/eval/test_bundled_tasks.py checks that the shipped files are what it writes and that every
answer is right). ``python -m axon.eval.prompting.bundled corpus OUT.txt --chars N --seed S`` writes
the in-context corpus (:func:`in_context_corpus`); ``... word-problems OUT.jsonl --count N --seed S``
writes word problems for fine-tuning, none of them in the bundled splits.

This module reads the package's own data only: nothing is downloaded, nothing is unpickled.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import textwrap
from functools import cache
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"

SEED = 20200528  # "Language Models are Few-Shot Learners" went to arXiv on 28 May 2020
N_TEST, N_FEWSHOT = 300, 100
#: nanoGPT's split of the corpus, axon.data.prepare's default: the last 10% of the characters are val
VAL_FRACTION = 0.1
TARGET_DELIMITER, FEWSHOT_DELIMITER = " ", "\n\n"  # lm-eval's defaults, and the corpus's separators
HEADER = "# Written by `python -m axon.eval.prompting.bundled`: edit the generator, not this file.\n"


def bundled_tasks() -> dict[str, Path]:
    """Name -> YAML file of every bundled task (the file's stem is its ``task`` name)."""
    return {p.stem: p for p in sorted(TASKS_DIR.glob("*.yaml"))}


# ---------------------------------------------------------------------------------------------
# GPT-3's arithmetic (Brown et al. 2020, sec. 3.9.1): "Q: What is 48 plus 76? A: 124"

#: task name -> (operation word, digits of each operand)
ARITHMETIC = {
    **{f"arithmetic_{n}da": ("plus", n) for n in (2, 3, 4, 5)},
    **{f"arithmetic_{n}ds": ("minus", n) for n in (2, 3, 4, 5)},
    "arithmetic_2dm": ("times", 2),
}
OPERATIONS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
ARITHMETIC_TEXT = "Q: What is {{a}} %s {{b}}? A:"
ARITHMETIC_LINE = re.compile(r"Q: What is ([0-9]+) (plus|minus|times) ([0-9]+)\? A: (-?[0-9]+)")


def arithmetic_operands(digits: int, rng: random.Random) -> tuple[int, int]:
    """Two operands drawn uniformly among the numbers of exactly ``digits`` digits (as in the paper;
    a difference may be negative)."""
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    return rng.randint(lo, hi), rng.randint(lo, hi)


def arithmetic_record(op: str, a: int, b: int) -> dict:
    return {"a": a, "b": b, "answer": OPERATIONS[op](a, b)}


def arithmetic_example(op: str, a: int, b: int) -> str:
    """One example as a few-shot prompt shows it: the prompt, the delimiter, the answer."""
    return f"Q: What is {a} {op} {b}? A:{TARGET_DELIMITER}{OPERATIONS[op](a, b)}"


@cache
def arithmetic_splits(name: str) -> tuple[list[dict], list[dict]]:
    """(test, few-shot) records of one arithmetic task: N_TEST + N_FEWSHOT distinct operand pairs."""
    op, digits = ARITHMETIC[name]
    rng = random.Random(f"{SEED}:{name}")  # a str seed is hashed with SHA-512: the same on every machine
    pairs: dict[tuple[int, int], None] = {}
    while len(pairs) < N_TEST + N_FEWSHOT:
        pairs[arithmetic_operands(digits, rng)] = None
    records = [arithmetic_record(op, a, b) for a, b in pairs]
    return records[:N_TEST], records[N_TEST:]


# ---------------------------------------------------------------------------------------------
# The LAMBADA-style cloze (Paperno et al. 2016): passages whose last word is predictable from context

CLOZE_MIN_CHARS, CLOZE_MAX_CHARS = 200, 400
#: Words a passage may not end with: too common to say that the passage made them predictable.
STOP_WORDS = frozenset(
    "the and that this with thou thee thy thine you your yours ye for not but have has had hath doth does did "
    "his her him hers she they them their theirs what which when where there here then than from will shall "
    "would should could were was are been being our ours all any one some such more most very well too now yet "
    "nor how why who whom whose let upon into unto out off can may must might also again ever never nay yea "
    "say said tis its it's art wilt dost shalt these those thus like make made come came went see".split())
# A candidate last word: three or more letters after a space, not continued by a letter, an apostrophe or
# a hyphen ("woo'd" is not cut to "woo").
_LAST_WORD = re.compile(r" ([A-Za-z]{3,})(?![A-Za-z'-])")


def occurs_in(word: str, text: str) -> bool:
    """``word`` occurs in ``text`` as a whole word, case and all (not inside "woo'd" or "'tis")."""
    return word in _WORD_RUN.findall(text)


_WORD_RUN = re.compile(r"[A-Za-z']+")


@cache
def corpus_text() -> str:
    from axon.data.corpus import corpus_path

    with open(corpus_path("shakespeare"), encoding="utf-8", newline="") as f:
        return f.read()


def corpus_parts() -> tuple[str, str]:
    """(train, val) parts of the corpus as ``axon prepare`` (and nanoGPT) cut it by default."""
    text = corpus_text()
    cut = int(len(text) * (1 - VAL_FRACTION))
    return text[:cut], text[cut:]


def cloze_passages(text: str, first_line: int = 1) -> list[dict]:
    """Non-overlapping passages of ``text`` (its line ``i`` is line ``first_line + i`` of the corpus).

    The blank lines between speeches are dropped (so a passage never holds the few-shot delimiter
    "\\n\\n"; it may span speeches, name lines included). From each line on, the passage is the
    shortest run of whole lines and words of 200-400 characters that ends with a word which (a)
    has three or more letters, (b) is neither a stop word nor a name in capitals, and (c) already
    occurs earlier in the passage: offline, the property LAMBADA's annotators selected for. The
    next passage starts on the line after. Record: ``context`` (the passage without the space and
    the word), ``word``, ``line`` (where the passage starts).
    """
    lines = [(first_line + i, line) for i, line in enumerate(text.split("\n")) if line.strip()]
    out, start = [], 0
    while start < len(lines):
        passage, end = lines[start][1], start + 1
        while end < len(lines) and len(passage) < CLOZE_MAX_CHARS:  # whole lines, up to the longest passage
            passage += "\n" + lines[end][1]
            end += 1
        for m in _LAST_WORD.finditer(passage):
            word, context = m.group(1), passage[: m.start()]
            if m.end() > CLOZE_MAX_CHARS:
                start += 1
                break
            if (m.end() >= CLOZE_MIN_CHARS and word.lower() not in STOP_WORDS and not word.isupper()
                    and occurs_in(word, context)):
                out.append({"context": context, "word": word, "line": lines[start][0]})
                start += context.count("\n") + 1
                break
        else:
            start += 1
    return out


@cache
def cloze_splits() -> tuple[list[dict], list[dict]]:
    """(test, few-shot): every passage of the val part; N_FEWSHOT of the train part, in corpus order."""
    train, val = corpus_parts()
    test = cloze_passages(val[val.index("\n") + 1:], first_line=train.count("\n") + 2)  # from the first whole line
    pool = train_cloze_passages()
    picked = sorted(random.Random(f"{SEED}:cloze").sample(range(len(pool)), N_FEWSHOT))
    return test, [pool[i] for i in picked]


@cache
def train_cloze_passages() -> list[dict]:
    """The passages of the train part, up to its last whole line (the cut falls inside a line)."""
    train = corpus_parts()[0]
    return cloze_passages(train[: train.rindex("\n")])


def cloze_example(record: dict) -> str:
    return record["context"] + TARGET_DELIMITER + record["word"]


# ---------------------------------------------------------------------------------------------
# GPT-3's random insertion in a word (Brown et al. 2020, sec. 3.9.2 and Fig. 1.2):
# "s.u!c/c!e.s s i/o/n = succession"

#: The characters inserted between a word's letters: punctuation or a space, as in the paper
INSERTED = " .,!?;:/-"
WORD_LETTERS = (5, 8)  # the words: lower-case, 5-8 letters, at least WORD_MIN_COUNT times in the train part
WORD_MIN_COUNT = 3
WORD_TEXT = "{{noisy}} ="
#: The corpus's word blocks apply one of these to a noisy word, the same one through a block: the
#: prompt alone ("s.u!c/c!e.s s i/o/n =") does not say which, the block's earlier examples do. The
#: bundled task is "clean" (GPT-3's); the other two exist only in the corpus.
WORD_RULES = {"clean": lambda w: w, "reverse": lambda w: w[::-1], "cycle": lambda w: w[1:] + w[0]}


@cache
def corpus_words() -> tuple[str, ...]:
    """The words the task and the corpus's word blocks draw from, sorted."""
    counts: dict[str, int] = {}
    for word in re.findall(r"(?<![A-Za-z'])[a-z]+(?![A-Za-z'])", corpus_parts()[0]):
        if WORD_LETTERS[0] <= len(word) <= WORD_LETTERS[1]:
            counts[word] = counts.get(word, 0) + 1
    return tuple(sorted(w for w, n in counts.items() if n >= WORD_MIN_COUNT))


def insert_symbols(word: str, rng: random.Random) -> str:
    """One character of INSERTED between each two letters of ``word``."""
    return "".join(c + rng.choice(INSERTED) for c in word[:-1]) + word[-1]


def word_example(noisy: str, answer: str) -> str:
    return f"{noisy} ={TARGET_DELIMITER}{answer}"


@cache
def word_splits() -> tuple[list[dict], list[dict]]:
    """(test, few-shot) records of random_insertion: N_TEST + N_FEWSHOT distinct words, each with its
    letters split by inserted characters. The corpus's word blocks never use these words."""
    rng = random.Random(f"{SEED}:random_insertion")
    words = rng.sample(corpus_words(), N_TEST + N_FEWSHOT)
    records = [{"noisy": insert_symbols(w, rng), "word": w} for w in words]
    return records[:N_TEST], records[N_TEST:]


# ---------------------------------------------------------------------------------------------
# The dates as few-shot normalisation: "Date: the twenty-third of March, 1994\nISO: 1994-03-23"


@cache
def date_splits() -> tuple[list[dict], list[dict]]:
    """(test, few-shot): the first N_TEST pairs of dates/val.tsv, the first N_FEWSHOT of train.tsv
    (whose dates never occur in val: axon.data.corpus.make_dates splits by date)."""
    from axon.data.corpus import CORPUS_DIR

    def read(name: str, n: int) -> list[dict]:
        lines = (CORPUS_DIR / "dates" / name).read_text(encoding="utf-8").splitlines()[:n]
        return [dict(zip(("date", "iso"), line.split("\t"))) for line in lines]

    return read("val.tsv", N_TEST), read("train.tsv", N_FEWSHOT)


# ---------------------------------------------------------------------------------------------
# Speaker identification as multiple choice: "Who says this?" with four of the eight speakers

SPEECH_MIN_CHARS, SPEECH_MAX_CHARS = 20, 400
N_CHOICES = 4


@cache
def speaker_splits() -> tuple[list[dict], list[dict]]:
    """(test, few-shot): every validation speech of axon.data.speakers of 20-400 characters; N_FEWSHOT
    training speeches of that length. Choices: the speaker and three others, seeded, in seeded order;
    ``gold`` is the speaker's index."""
    from axon.data.speakers import build_speaker_task

    task = build_speaker_task()
    rng = random.Random(f"{SEED}:speakers")

    def records(speeches) -> list[dict]:
        out = []
        for s in speeches:
            if SPEECH_MIN_CHARS <= len(s.text) <= SPEECH_MAX_CHARS:
                choices = [s.speaker, *rng.sample([x for x in task.labels if x != s.speaker], N_CHOICES - 1)]
                rng.shuffle(choices)
                out.append({"text": s.text, "choices": choices, "gold": choices.index(s.speaker)})
        return out

    test, pool = records(task.val), records(task.train)
    return test, [pool[i] for i in sorted(rng.sample(range(len(pool)), N_FEWSHOT))]


# ---------------------------------------------------------------------------------------------
# Arithmetic word problems with step-by-step solutions (PaLM's "Roger has 5 tennis balls")

HE = ("Roger", "Tom", "James", "Ali", "Omar", "Ben", "Sam", "Leo", "Jack", "Ravi", "Carlos", "Hiro", "Ivan",
      "Noah", "Felix", "Kofi", "Mateo", "Yusuf")
SHE = ("Anna", "Maria", "Lily", "Sofia", "Emma", "Priya", "Mei", "Zoe", "Grace", "Nora", "Aisha", "Lucy", "Rosa",
       "Yuki", "Ella", "Hannah", "Amara", "Ines")
OBJECTS = ("tennis balls", "apples", "marbles", "pencils", "stickers", "cookies", "books", "stamps", "shells",
           "cards", "oranges", "eggs", "crayons", "buttons", "beads", "muffins", "candles", "toy cars", "balloons",
           "coins")
CONTAINERS = (("can", "cans"), ("box", "boxes"), ("bag", "bags"), ("pack", "packs"), ("jar", "jars"),
              ("basket", "baskets"), ("crate", "crates"), ("tray", "trays"))
GAIN = ("buys", "gets", "finds", "wins", "is given", "picks up")
LOSE = ("gives away", "loses", "sells", "uses", "trades away")


def word_problem(rng: random.Random) -> dict:
    """One two-step problem from one of six templates: {"question", "rationale", "answer"}; the
    rationale is PaLM's style and ends with "The answer is N."."""
    name = rng.choice(HE + SHE)
    He, he = ("He", "he") if name in HE else ("She", "she")
    other = rng.choice([n for n in HE + SHE if n != name])
    obj, (box, boxes) = rng.choice(OBJECTS), rng.choice(CONTAINERS)
    gain, lose = rng.choice(GAIN), rng.choice(LOSE)
    kind = rng.randrange(6)
    if kind == 0:  # a + b * c
        a, b, c = rng.randint(2, 20), rng.randint(2, 6), rng.randint(2, 10)
        ans = a + b * c
        q = (f"{name} has {a} {obj}. {He} {gain} {b} more {boxes} of {obj}. Each {box} has {c} {obj}. "
             f"How many {obj} does {he} have now?")
        r = f"{name} started with {a} {obj}. {b} {boxes} of {c} {obj} each is {b * c} {obj}. {a} + {b * c} = {ans}."
    elif kind == 1:  # a - b + c
        a = rng.randint(10, 40)
        b, c = rng.randint(2, a - 1), rng.randint(2, 20)
        ans = a - b + c
        q = (f"{name} has {a} {obj}. {He} {lose} {b} of them. Then {he} {gain} {c} more. "
             f"How many {obj} does {he} have now?")
        r = (f"{name} started with {a} {obj}. After {b} are gone, {he} has {a} - {b} = {a - b}. "
             f"Then {a - b} + {c} = {ans}.")
    elif kind == 2:  # a * b - c
        a, b = rng.randint(2, 6), rng.randint(2, 10)
        c = rng.randint(2, a * b - 1)
        ans = a * b - c
        q = (f"{name} has {a} {boxes} of {obj}. Each {box} holds {b} {obj}. {He} {lose} {c} {obj}. "
             f"How many {obj} does {he} have left?")
        r = f"{a} {boxes} of {b} {obj} each is {a} * {b} = {a * b} {obj}. {a * b} - {c} = {ans}."
    elif kind == 3:  # a + b * a
        a, b = rng.randint(2, 15), rng.randint(2, 5)
        ans = a + a * b
        q = (f"{name} has {a} {obj}. {other} has {b} times as many {obj} as {name}. "
             f"How many {obj} do they have together?")
        r = f"{other} has {b} * {a} = {a * b} {obj}. Together they have {a} + {a * b} = {ans}."
    elif kind == 4:  # (a + b) / c
        c, ans = rng.randint(2, 6), rng.randint(2, 10)
        a = rng.randint(2, c * ans - 2)
        b = c * ans - a
        q = (f"{name} has {a} {obj} and {other} has {b} {obj}. They share them equally among {c} friends. "
             f"How many {obj} does each friend get?")
        r = f"Together they have {a} + {b} = {a + b} {obj}. {a + b} / {c} = {ans}."
    else:  # a - (b + c)
        a = rng.randint(10, 50)
        b = rng.randint(2, a - 4)
        c = rng.randint(2, a - b - 2)
        ans = a - b - c
        q = (f"There are {a} {obj} in a {box}. {name} takes {b} and {other} takes {c}. "
             f"How many {obj} are left in the {box}?")
        r = f"{name} and {other} take {b} + {c} = {b + c} {obj}. {a} - {b + c} = {ans}."
    return {"question": q, "rationale": f"{r} The answer is {ans}.", "answer": ans}


def _distinct_problems(count: int, rng: random.Random, exclude: set[str]) -> list[dict]:
    out: dict[str, dict] = {}
    while len(out) < count:
        p = word_problem(rng)
        if p["question"] not in exclude:
            out.setdefault(p["question"], p)
    return list(out.values())


@cache
def word_problem_splits() -> tuple[list[dict], list[dict]]:
    """(test, few-shot): N_TEST + N_FEWSHOT distinct problems. ``split`` ("test" or "fewshot") tells the
    YAML's doc_to_target what to render: the answer alone (the gold of exact_match) for a test record,
    the worked answer a demonstration shows for a few-shot one (lm-eval's gsm8k-cot does the same)."""
    problems = _distinct_problems(N_TEST + N_FEWSHOT, random.Random(f"{SEED}:word_problems"), set())
    test = [{**p, "split": "test"} for p in problems[:N_TEST]]
    return test, [{**p, "split": "fewshot"} for p in problems[N_TEST:]]


def word_problem_records(count: int, seed: int) -> list[dict]:
    """``count`` distinct problems (seeded) none of which is in the bundled test or few-shot split:
    training data for fine-tuning with (``rationale``) or without rationales."""
    from axon.errors import check_count

    check_count("count", count, 1)
    bundled = {p["question"] for split in word_problem_splits() for p in split}
    return _distinct_problems(count, random.Random(f"{SEED}:word_problems:train:{seed}"), bundled)


# ---------------------------------------------------------------------------------------------
# The task files


def _task(name: str, output_type: str, text: str, target: str, metrics: list[str], num_fewshot: int = 0,
          target_delimiter: str = TARGET_DELIMITER, **extra) -> dict:
    """A task YAML's content in the contract's schema, over NAME.jsonl and NAME_fewshot.jsonl."""
    head = {"task": name, "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": f"{name}.jsonl", "train": f"{name}_fewshot.jsonl"}},
            "test_split": "test", "fewshot_split": "train", "output_type": output_type,
            "doc_to_text": text, "doc_to_target": target}
    choice = {"doc_to_choice": extra.pop("doc_to_choice")} if "doc_to_choice" in extra else {}
    return {**head, **choice, "target_delimiter": target_delimiter, "fewshot_delimiter": FEWSHOT_DELIMITER,
            "num_fewshot": num_fewshot, **extra, "metric_list": [{"metric": m} for m in metrics]}


def _answer_filter(name: str, pattern: str) -> list[dict]:
    return [{"name": name, "filter": [{"function": "regex", "regex_pattern": pattern}, {"function": "take_first"}]}]


ANSWER_PATTERN = "The answer is (-?[0-9]+)"
#: max_gen_toks of the word problems: room for the longest answer even one character a token (the tests check)
DIRECT_MAX_TOKENS, COT_MAX_TOKENS = 32, 256
#: doc_to_target of the loglikelihood tasks, with target_delimiter "": the space before the answer is the
#: target's, because a loglikelihood target is scored right after the prompt (lm-eval 0.4.13's rule, which
#: Axon's harness follows: the delimiter only joins the shots). The request is (prompt, " 124") and a
#: shot "... A: 124".
LL_TARGET = " {{%s}}"
DATE_PATTERN = r"^\s*([0-9]{4}-[0-9]{2}-[0-9]{2})\s*$"  # the whole line: exact match up to spaces


def task_specs() -> dict[str, tuple[str, dict, tuple[list[dict], list[dict]]]]:
    """Name -> (a comment saying what the task is, the YAML's content, (test, few-shot) records)."""
    specs = {}
    for name, (op, digits) in ARITHMETIC.items():
        what = {"plus": "addition", "minus": "subtraction", "times": "multiplication"}[op]
        specs[name] = (f"GPT-3's arithmetic (Brown et al. 2020, Table 3.9): {digits}-digit {what}; acc is "
                       "the greedy match of the answer, as lm-eval scores its arithmetic tasks.",
                       _task(name, "loglikelihood", ARITHMETIC_TEXT % op, LL_TARGET % "answer", ["acc"],
                             target_delimiter=""),
                       arithmetic_splits(name))
    specs["cloze"] = ("A LAMBADA-style last-word cloze on tiny Shakespeare's val part (the last 10%, unseen by "
                      "a model trained on its train split); the few-shot passages come from the train part.",
                      _task("cloze", "loglikelihood", "{{context}}", LL_TARGET % "word", ["acc", "perplexity"],
                            target_delimiter=""),
                      cloze_splits())
    specs["random_insertion"] = ("GPT-3's random insertion in a word (Brown et al. 2020, sec. 3.9.2, Fig. 1.2): a "
                                 "word of the corpus with a punctuation mark or space between each two letters, "
                                 "to be given back clean; acc is the greedy match.",
                                 _task("random_insertion", "loglikelihood", WORD_TEXT, LL_TARGET % "word",
                                       ["acc"], target_delimiter=""),
                                 word_splits())
    specs["dates"] = ("The bundled dates as few-shot normalisation: an English date -> ISO 8601 "
                      "(test: dates/val.tsv, shots: dates/train.tsv).",
                      _task("dates", "generate_until", "Date: {{date}}\nISO:", "{{iso}}", ["exact_match"], 4,
                            generation_kwargs={"until": ["\n"], "max_gen_toks": 24, "do_sample": False,
                                               "temperature": 0.0},
                            filter_list=_answer_filter("get-date", DATE_PATTERN)),
                      date_splits())
    specs["speakers"] = ("Who says this? One speaker of four (axon.data.speakers: test its validation speeches, "
                         "shots its training speeches, 20-400 characters).",
                         _task("speakers", "multiple_choice", "{{text}}\nQ: Who says this?\nA:", "gold",
                               ["acc", "acc_norm"], doc_to_choice="choices"),
                         speaker_splits())
    problems = word_problem_splits()
    for name, shown, max_toks in (("word_problems", "('The answer is ' ~ answer ~ '.')", DIRECT_MAX_TOKENS),
                                  ("word_problems_cot", "rationale", COT_MAX_TOKENS)):
        style = "with a worked answer (chain of thought)" if shown == "rationale" else "answering at once"
        target = f"{{{{{shown} if split == 'fewshot' else answer}}}}"
        files = {"test": "word_problems.jsonl", "train": "word_problems_fewshot.jsonl"}  # one pair for both tasks
        task = _task(name, "generate_until", "Q: {{question}}\nA:", target, ["exact_match"], 2,
                     dataset_kwargs={"data_files": files},
                     generation_kwargs={"until": ["\n"], "max_gen_toks": max_toks, "do_sample": False,
                                        "temperature": 0.0},
                     filter_list=_answer_filter("get-answer", ANSWER_PATTERN))
        specs[name] = (f"Two-step arithmetic word problems, the demonstrations {style}; exact_match of the number "
                       "after 'The answer is' against the answer.", task, problems)
    return specs


def _flow(value) -> str:
    """A YAML flow value: JSON for scalars (a JSON string is a YAML double-quoted one), bare keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str) and _BARE.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # plain scalars YAML reads back as these strings
_YAML_WORDS = {"true", "false", "null", "none", "yes", "no", "on", "off", "y", "n"}  # read as booleans or null


def task_yaml(comment: str, task: dict) -> str:
    """The YAML text of ``task`` (yaml.safe_load gives ``task`` back; the tests check it)."""
    lines = [HEADER.rstrip("\n"), *(f"# {c}" for c in textwrap.wrap(comment, 100))]
    for key, value in task.items():
        if isinstance(value, dict):
            lines += [f"{key}:", *(f"  {k}: {_flow(v)}" for k, v in value.items())]
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            lines.append(f"{key}:")
            for item in value:  # "- k: v" then "  k: v": a list of mappings in block style
                lines += [f"  {'-' if i == 0 else ' '} {k}: {_flow(v)}" for i, (k, v) in enumerate(item.items())]
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def task_files() -> dict[str, str]:
    """File name in tasks/ -> its text, for every bundled task (what :func:`write_tasks` writes)."""
    files = {}
    for name, (comment, task, (test, fewshot)) in task_specs().items():
        files[f"{name}.yaml"] = task_yaml(comment, task)
        data = task["dataset_kwargs"]["data_files"]
        files[data["test"]], files[data["train"]] = jsonl(test), jsonl(fewshot)
    return files


def write_tasks(out_dir: str | Path = TASKS_DIR) -> dict[str, str]:
    from axon.atomic import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = task_files()
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return files


# ---------------------------------------------------------------------------------------------
# The in-context corpus: ordinary text interleaved with blocks of few-shot examples

#: What each segment of the corpus is, with its probability; a block holds 1-8 examples of one format.
SEGMENTS = {"text": 0.12, "arithmetic": 0.36, "words": 0.50, "cloze": 0.02}
BLOCK_EXAMPLES = (1, 8)
TEXT_CHARS = (200, 1000)  # an ordinary segment: whole lines of the train part, at least this many characters


@cache
def _test_problems() -> frozenset[tuple[str, int, int]]:
    return frozenset((ARITHMETIC[n][0], r["a"], r["b"]) for n in ARITHMETIC for r in arithmetic_splits(n)[0])


def in_context_corpus(chars: int, seed: int) -> str:
    """``chars`` characters of text where in-context patterns are learnable (GPT-3's claim at toy scale).

    Segments joined by FEWSHOT_DELIMITER, each drawn with the probabilities of SEGMENTS:

    * ordinary text: a run of whole lines (blank lines kept) of tiny Shakespeare's train part, from a
      speech's first line, of TEXT_CHARS[0]-TEXT_CHARS[1] characters;
    * an arithmetic block: 1-8 problems of one of the nine arithmetic formats, each shown as a
      few-shot prompt shows it ("Q: What is 48 plus 76? A: 124"), joined by FEWSHOT_DELIMITER, as
      the prompts join their shots; never a problem of a task's test split;
    * a cloze block: 1-8 passages of the train part's cloze passages (``context word``), joined the
      same way; the cloze test split comes from the val part, which nothing here contains;
    * a word block: 1-8 words of :func:`corpus_words` with characters inserted between their
      letters, each followed by what one rule of WORD_RULES makes of the word, the same rule
      through the block ("s.u!c/c!e.s s i/o/n = succession", or "= noisseccus", or "=
      uccessions"): the prompt does not say which rule, the block's earlier examples do. Never a
      word of random_insertion's test or few-shot split.

    A model that learns to read the earlier examples of a block (the format, the operation, the
    number of digits, the rule, that the last word was seen before) predicts the later ones better. Cut to
    exactly ``chars`` characters; the same (chars, seed) gives the same text.
    """
    from axon.errors import check_count

    check_count("chars", chars, 1)
    check_count("seed", seed, 0)
    rng = random.Random(f"{SEED}:corpus:{seed}")
    train = corpus_parts()[0]
    lines = train.split("\n")
    starts = [i for i in range(len(lines) - 1) if (i == 0 or not lines[i - 1]) and lines[i].endswith(":")]
    passages, names, kinds = train_cloze_passages(), list(ARITHMETIC), list(SEGMENTS)
    test = _test_problems()
    rules = list(WORD_RULES)
    shown = {d["word"] for split in word_splits() for d in split}
    words = [w for w in corpus_words() if w not in shown]
    parts, size = [], 0
    while size < chars:
        kind = rng.choices(kinds, weights=[SEGMENTS[k] for k in kinds])[0]
        if kind == "text":
            i, want, chunk = rng.choice(starts), rng.randint(*TEXT_CHARS), []
            while i < len(lines) and sum(len(x) + 1 for x in chunk) < want:
                chunk.append(lines[i])
                i += 1
            part = "\n".join(chunk).strip("\n")
        else:
            k = rng.randint(*BLOCK_EXAMPLES)
            if kind == "cloze":
                examples = [cloze_example(passages[j]) for j in rng.sample(range(len(passages)), k)]
            elif kind == "words":
                rule = WORD_RULES[rng.choice(rules)]
                examples = [word_example(insert_symbols(w, rng), rule(w)) for w in rng.sample(words, k)]
            else:
                op, digits = ARITHMETIC[rng.choice(names)]
                examples = []
                while len(examples) < k:
                    a, b = arithmetic_operands(digits, rng)
                    if (op, a, b) not in test:
                        examples.append(arithmetic_example(op, a, b))
            part = FEWSHOT_DELIMITER.join(examples)
        parts.append(part)
        size += len(part) + len(FEWSHOT_DELIMITER)
    return FEWSHOT_DELIMITER.join(parts)[:chars]


# ---------------------------------------------------------------------------------------------
# The command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.eval.prompting.bundled",
                                description="Write the bundled prompting tasks (the default), the in-context "
                                            "corpus or word problems for fine-tuning.")
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("tasks", help="rewrite every task file (the default command)")
    t.add_argument("--out", default=str(TASKS_DIR), help="folder for the YAML and JSONL files (default: the package's)")
    c = sub.add_parser("corpus", help="write the in-context corpus")
    c.add_argument("out", help="the text file to write")
    c.add_argument("--chars", type=int, required=True, help="its length in characters")
    c.add_argument("--seed", type=int, default=0)
    w = sub.add_parser("word-problems", help="write word problems with rationales, none in the bundled splits")
    w.add_argument("out", help="the JSON-lines file to write")
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from axon.atomic import atomic_write_text
    from axon.errors import AxonError, OptionError

    try:
        if args.command == "corpus":
            text = in_context_corpus(args.chars, args.seed)
            atomic_write_text(args.out, text)
            print(f"wrote {args.out}: {len(text):,} characters (seed {args.seed})")
        elif args.command == "word-problems":
            records = word_problem_records(args.count, args.seed)
            atomic_write_text(args.out, jsonl(records))
            print(f"wrote {args.out}: {len(records):,} word problems (seed {args.seed})")
        else:
            out = getattr(args, "out", str(TASKS_DIR))
            files = write_tasks(out)
            print(f"wrote {len(files)} files to {out}: {', '.join(n for n in files if n.endswith('.yaml'))}")
    except OptionError as e:
        p.error(e.message_for(f"--{e.field}"))
    except (AxonError, OSError) as e:
        p.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

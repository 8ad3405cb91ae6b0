"""The bundled prompting tasks (issue 20): the shipped files are what the generator writes, every task
file is in the contract's schema, every answer is right, the splits are disjoint, and the in-context
corpus is deterministic and holds no test example."""

import ast
import calendar
import datetime
import inspect
import json
import re
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

import pytest
import yaml
from jinja2.sandbox import SandboxedEnvironment

from axon.data.prepare import prepare
from axon.data.speakers import build_speaker_task
from axon.eval.prompting import bundled
from axon.eval.prompting.bundled import TASKS_DIR, bundled_tasks

ROOT = Path(__file__).resolve().parents[2]

# THE CONTRACT's keys, output types, metrics and filter functions (issue 20)
KEYS = {"task", "dataset_path", "dataset_kwargs", "test_split", "fewshot_split", "output_type", "doc_to_text",
        "doc_to_target", "doc_to_choice", "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_config",
        "generation_kwargs", "metric_list", "filter_list"}
OUTPUT_TYPES = {"loglikelihood", "multiple_choice", "generate_until", "loglikelihood_rolling"}
METRICS = {"acc", "acc_norm", "exact_match", "f1", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"}
GENERATION_KEYS = {"until", "max_gen_toks", "do_sample", "temperature"}
NAMES = {*bundled.ARITHMETIC, "cloze", "random_insertion", "dates", "speakers", "word_problems", "word_problems_cot"}

ENV = SandboxedEnvironment()


@cache
def template(source: str):
    return ENV.from_string(source)


def field_or_template(spec, doc):
    """The contract's rule: a key of the record is that field; a string with "{{" a Jinja2 template."""
    if isinstance(spec, str) and spec in doc:
        return doc[spec]
    if isinstance(spec, str) and "{{" in spec:
        return template(spec).render(**doc)
    return spec


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tasks():
    """name -> (YAML content, test records, few-shot records), read from the shipped files."""
    out = {}
    for name, path in bundled_tasks().items():
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        files = spec["dataset_kwargs"]["data_files"]
        out[name] = (spec, read_jsonl(path.parent / files["test"]), read_jsonl(path.parent / files["train"]))
    return out


def demonstration(spec: dict, doc: dict) -> str:
    """A few-shot example as the contract builds it: text + target_delimiter + target (the gold choice)."""
    target = field_or_template(spec["doc_to_target"], doc)
    if spec["output_type"] == "multiple_choice":
        target = field_or_template(spec["doc_to_choice"], doc)[target]
    return field_or_template(spec["doc_to_text"], doc) + spec["target_delimiter"] + str(target)


# ---------------------------------------------------------------------------------------------
# The files


def test_shipped_files_are_what_the_generator_writes(tmp_path):
    assert bundled.main(["tasks", "--out", str(tmp_path)]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    shipped = {p.name: p.read_text(encoding="utf-8") for p in TASKS_DIR.iterdir()}
    assert written.keys() == shipped.keys() and len(written) == 15 + 14 * 2  # word_problems(_cot) share data
    assert [n for n in written if written[n] != shipped[n]] == []


def test_bundled_tasks_are_found_by_name_and_ship_in_the_wheel():
    assert set(bundled_tasks()) == NAMES
    assert all(p.suffix == ".yaml" and p.parent == TASKS_DIR for p in bundled_tasks().values())
    line = re.search(r'^"axon.eval.prompting" = (\[.*?\])', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    globs = ast.literal_eval(line.group(1))  # [tool.setuptools.package-data] (tomllib needs Python 3.11)
    package = TASKS_DIR.parent
    shipped = [str(p.relative_to(package)) for p in TASKS_DIR.iterdir()]
    assert [p for p in shipped if not any(fnmatch(p, g) for g in globs)] == []


def test_every_task_uses_only_the_contract_keys(tasks):
    specs = bundled.task_specs()
    for name, (spec, test, fewshot) in tasks.items():
        assert spec == specs[name][1], name  # the hand-written YAML emitter reads back as the dict
        assert set(spec) <= KEYS, (name, set(spec) - KEYS)
        assert spec["task"] == name and spec["dataset_path"] == "json"
        assert set(spec["dataset_kwargs"]) == {"data_files"} and set(spec["dataset_kwargs"]["data_files"]) == {
            spec["test_split"], spec["fewshot_split"]}
        assert spec["output_type"] in OUTPUT_TYPES
        assert {m["metric"] for m in spec["metric_list"]} <= METRICS
        assert ("doc_to_choice" in spec) == (spec["output_type"] == "multiple_choice")
        assert ("generation_kwargs" in spec) == (spec["output_type"] == "generate_until")
        if spec["output_type"] == "generate_until":
            assert set(spec["generation_kwargs"]) <= GENERATION_KEYS
            for f in spec["filter_list"]:
                assert set(f) == {"name", "filter"} and [s["function"] for s in f["filter"]] == ["regex", "take_first"]
        assert 100 <= len(fewshot) and 200 <= len(test) <= 500, (name, len(test), len(fewshot))


def test_examples_render_and_never_hold_the_fewshot_delimiter(tasks):
    for name, (spec, test, fewshot) in tasks.items():
        for doc in test + fewshot:
            text = demonstration(spec, doc)
            assert spec["fewshot_delimiter"] not in text, (name, text)
            assert "{" not in text and "}" not in text, (name, text)  # every template rendered


def test_generated_answers_read_back_through_the_filter(tasks):
    """A demonstration's target, read by the task's filter, is the gold answer; it never holds a stop string
    (a model that copies the demonstrations' form is not cut off before its answer)."""
    for name, (spec, test, fewshot) in tasks.items():
        if spec["output_type"] != "generate_until":
            continue
        pattern = re.compile(spec["filter_list"][0]["filter"][0]["regex_pattern"])
        until, max_tokens = spec["generation_kwargs"]["until"], spec["generation_kwargs"]["max_gen_toks"]
        for doc in test:
            as_shot = field_or_template(spec["doc_to_target"], {**doc, "split": "fewshot"})
            shown = spec["target_delimiter"] + str(as_shot)
            gold = field_or_template(spec["doc_to_target"], doc)
            assert pattern.findall(shown)[0] == gold, (name, shown, gold)
            assert not any(u in shown for u in until) and len(shown) <= max_tokens  # one character a token fits


# ---------------------------------------------------------------------------------------------
# Every answer is right


def test_arithmetic_answers(tasks):
    ops = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__}
    for name, (op, digits) in bundled.ARITHMETIC.items():
        spec, test, fewshot = tasks[name]
        for doc in test + fewshot:
            assert len(str(doc["a"])) == len(str(doc["b"])) == digits
            assert doc["answer"] == ops[op](doc["a"], doc["b"])
            line = demonstration(spec, doc)
            assert line == f"Q: What is {doc['a']} {op} {doc['b']}? A: {doc['answer']}"  # Table 3.9's format
        assert any(d["answer"] < 0 for d in test) == (op == "minus")


def test_random_insertion_words_come_back_clean(tasks):
    spec, test, fewshot = tasks["random_insertion"]
    words = set(bundled.corpus_words())
    assert len(words) > 2 * len(test + fewshot)
    assert len({d["word"] for d in test + fewshot}) == len(test + fewshot)  # no word in two examples
    for doc in test + fewshot:
        word, noisy = doc["word"], doc["noisy"]
        assert word in words and word.isalpha() and word.islower() and 5 <= len(word) <= 8
        assert noisy[::2] == word and all(c in bundled.INSERTED for c in noisy[1::2])  # one symbol per gap
        assert demonstration(spec, doc) == f"{noisy} = {word}"  # GPT-3's format: "s.u!c/c!e.s s i/o/n = succession"
    assert {c for d in test for c in d["noisy"][1::2]} == set(bundled.INSERTED)


def test_cloze_passages_come_from_their_part_of_the_corpus(tasks):
    _, test, fewshot = tasks["cloze"]
    text = bundled.corpus_text()
    lines = text.split("\n")
    train_lines = bundled.corpus_parts()[0].count("\n") + 1  # the last one runs on into the val part
    for part, docs in (("val", test), ("train", fewshot)):
        for doc in docs:
            word, context = doc["word"], doc["context"]
            passage = context + " " + word
            assert bundled.CLOZE_MIN_CHARS <= len(passage) <= bundled.CLOZE_MAX_CHARS
            assert len(word) >= 3 and word.isalpha() and word.lower() not in bundled.STOP_WORDS
            assert re.search(rf"\b{word}\b", context), doc  # the last word occurs earlier in the passage
            # The passage is the corpus's lines from doc["line"] on, blank lines dropped
            following = "\n".join(x for x in lines[doc["line"] - 1: doc["line"] + 40] if x.strip())
            assert following.startswith(passage) and not following[len(passage):][:1].isalpha(), doc
            if part == "val":
                assert doc["line"] > train_lines, doc
            else:
                assert doc["line"] + context.count("\n") < train_lines, doc
    assert test[0]["line"] > train_lines


def test_cloze_uses_the_split_axon_prepare_uses():
    assert inspect.signature(prepare).parameters["val_fraction"].default == bundled.VAL_FRACTION


MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
MONTHS |= {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
       "seventeen eighteen nineteen".split()
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
ORDINAL = dict(zip("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
                   "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split(), range(1, 20)))
ORDINAL |= {"twentieth": 20, "thirtieth": 30}


def number(words: str, units: dict) -> int:
    """'forty-two' -> 42 (units: the words for 1-19), 'twenty-third' -> 23 with ORDINAL."""
    tens, _, rest = words.partition("-")
    if tens in TENS and rest:
        return TENS[tens] + units[rest]
    return TENS[words] if words in TENS else units[words]


def year(words: str) -> int:
    if words.isdigit():
        return int(words)
    w = words.split()
    cardinal = dict(zip(ONES, range(20)))
    if w[0] == "nineteen":
        return 1900 if w[1:] == ["hundred"] else 1900 + number(w[-1], cardinal)
    if w[:2] == ["two", "thousand"]:
        return 2000 + (number(w[-1], cardinal) if len(w) > 2 else 0)
    assert w[0] == "twenty" and len(w) == 2, words
    return 2000 + number(w[1], cardinal)


def parse_date(text: str) -> datetime.date:
    """An independent reading of the eleven English forms of axon.data.corpus.make_dates."""
    t, month = text.lower(), "(" + "|".join(sorted(MONTHS, key=len, reverse=True)) + ")"
    forms = [
        rf"(?:(?P<weekday>[a-z]+day), )?(?P<m>{month}) (?P<d>\d{{1,2}}), (?P<y>\d{{4}})",
        rf"(?P<d>\d{{1,2}}) (?P<m>{month}) (?P<y>\d{{4}})",
        rf"the (?P<d>\d{{1,2}})(?:st|nd|rd|th) of (?P<m>{month}), (?P<y>\d{{4}})",
        rf"the (?P<dw>[a-z-]+) of (?P<m>{month}), (?P<y>\d{{4}})",
        rf"(?P<m>{month}) the (?P<dw>[a-z-]+), (?P<y>[a-z -]+)",
        r"(?P<d>\d{2})\.(?P<mo>\d{2})\.(?P<y>\d{4})",
        r"(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})",
        rf"(?P<d>\d{{1,2}})(?:st|nd|rd|th) (?P<m>{month}) (?P<y>[a-z -]+)",
    ]
    for form in forms:
        if m := re.fullmatch(form, t):
            g = m.groupdict()
            day = int(g["d"]) if g.get("d") else number(g["dw"], ORDINAL)
            date = datetime.date(year(g["y"]), int(g["mo"]) if g.get("mo") else MONTHS[g["m"]], day)
            assert not g.get("weekday") or g["weekday"] == calendar.day_name[date.weekday()].lower(), text
            return date
    raise AssertionError(f"no form reads {text!r}")


def test_dates_parse_to_their_iso_answer(tasks):
    spec, test, fewshot = tasks["dates"]
    assert parse_date("Wednesday, March 23, 1994") == datetime.date(1994, 3, 23)
    assert parse_date("march the twenty-third, nineteen ninety-four") == datetime.date(1994, 3, 23)
    assert parse_date("1st JAN two thousand and seven") == datetime.date(2007, 1, 1)
    for doc in test + fewshot:
        assert parse_date(doc["date"]).isoformat() == doc["iso"], doc
    assert demonstration(spec, test[0]) == f"Date: {test[0]['date']}\nISO: {test[0]['iso']}"


def test_speaker_choices_hold_the_gold_speaker_once(tasks):
    speaker_task = build_speaker_task()
    said_by = {}
    for split in ("val", "train"):
        for s in getattr(speaker_task, split):
            said_by.setdefault((split, s.text), set()).add(s.speaker)
    _, test, fewshot = tasks["speakers"]
    golds = []
    for split, docs in (("val", test), ("train", fewshot)):
        for doc in docs:
            speaker = doc["choices"][doc["gold"]]
            assert speaker in said_by[(split, doc["text"])], doc
            assert len(doc["choices"]) == 4 and doc["choices"].count(speaker) == 1 and len(set(doc["choices"])) == 4
            assert set(doc["choices"]) <= set(speaker_task.labels)
            golds.append(doc["gold"])
    assert min(golds.count(i) for i in range(4)) > len(golds) / 8  # the gold is not always in one place


def test_word_problems_rationales_end_with_their_answer(tasks):
    for name in ("word_problems", "word_problems_cot"):
        spec, test, fewshot = tasks[name]
        assert (test, fewshot) == (tasks["word_problems"][1], tasks["word_problems"][2])  # one pair of files
    for doc in test + fewshot:
        assert doc["rationale"].endswith(f"The answer is {doc['answer']}.")
        steps = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", doc["rationale"])
        assert steps, doc
        for a, op, b, c in steps:  # every step of the worked answer is right...
            a, b, c = int(a), int(b), int(c)
            assert {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op] == c, doc
        assert int(steps[-1][3]) == doc["answer"]  # ...and the last one gives the answer
        assert set(re.findall(r"\d+", doc["question"])) <= set(re.findall(r"\d+", doc["rationale"]))  # all used
    direct, cot = tasks["word_problems"][0], tasks["word_problems_cot"][0]
    doc = fewshot[0]
    assert demonstration(direct, doc) == f"Q: {doc['question']}\nA: The answer is {doc['answer']}."
    assert demonstration(cot, doc) == f"Q: {doc['question']}\nA: {doc['rationale']}"


# ---------------------------------------------------------------------------------------------
# Disjoint splits


def test_fewshot_and_test_splits_are_disjoint(tasks):
    for name, (spec, test, fewshot) in tasks.items():
        prompts = {field_or_template(spec["doc_to_text"], d) for d in test}
        assert len(prompts) == len(test), name  # no test example twice
        assert not prompts & {field_or_template(spec["doc_to_text"], d) for d in fewshot}, name
    _, test, fewshot = tasks["dates"]
    assert not {d["iso"] for d in test} & {d["iso"] for d in fewshot}  # not even the same date in another form


def test_word_problems_for_fine_tuning_are_new_and_seeded(tasks):
    a = bundled.word_problem_records(200, seed=1)
    assert a == bundled.word_problem_records(200, seed=1) != bundled.word_problem_records(200, seed=2)
    questions = {d["question"] for d in a}
    assert len(questions) == 200
    assert not questions & {d["question"] for d in tasks["word_problems"][1] + tasks["word_problems"][2]}


# ---------------------------------------------------------------------------------------------
# The in-context corpus


@pytest.fixture(scope="module")
def corpus():
    return bundled.in_context_corpus(300_000, seed=3)


def test_corpus_is_deterministic(corpus, tmp_path):
    assert len(corpus) == 300_000 and bundled.in_context_corpus(300_000, seed=3) == corpus
    assert bundled.in_context_corpus(300_000, seed=4) != corpus
    out = tmp_path / "corpus.txt"
    assert bundled.main(["corpus", str(out), "--chars", "5000", "--seed", "3"]) == 0
    assert out.read_text(encoding="utf-8") == corpus[:5000]  # a prefix: the same draws, cut earlier
    with pytest.raises(SystemExit) as e:
        bundled.main(["corpus", str(out), "--chars", "0"])
    assert e.value.code == 2


WORD_LINE = re.compile(r"([a-z](?:[^a-z][a-z]){4,7}) = ([a-z]{5,8})")


def test_corpus_mixes_text_and_blocks_of_examples(corpus):
    segments = corpus.split(bundled.FEWSHOT_DELIMITER)
    problems = [m for s in segments if (m := bundled.ARITHMETIC_LINE.fullmatch(s))]
    cloze = {bundled.cloze_example(p) for p in bundled.train_cloze_passages()}
    passages = [s for s in segments if s in cloze]
    arithmetic_chars = sum(len(m.group(0)) for m in problems)
    cloze_chars = sum(len(p) for p in passages)
    assert 0.2 < arithmetic_chars / len(corpus) < 0.5 and 0.1 < cloze_chars / len(corpus) < 0.4
    assert {(m.group(2), len(m.group(1))) for m in problems} == set(bundled.ARITHMETIC.values())
    for m in problems:  # every answer right
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        assert bundled.OPERATIONS[op](a, b) == c
    # word blocks: noisy words of corpus_words() and what one rule, the same through the block, makes of them
    blocks = [s for s in segments if s and all(WORD_LINE.fullmatch(x) for x in s.split(bundled.FEWSHOT_DELIMITER))]
    blocks = [[WORD_LINE.fullmatch(x) for x in b.split(bundled.FEWSHOT_DELIMITER)] for b in blocks]
    words = set(bundled.corpus_words())
    assert 0.15 < sum(len(m.group(0)) for b in blocks for m in b) / len(corpus) < 0.4
    rules = set()
    for block in blocks:
        block_rules = []
        for m in block:
            word = m.group(1)[::2]
            assert word in words and all(c in bundled.INSERTED for c in m.group(1)[1::2])
            block_rules.append({r for r, f in bundled.WORD_RULES.items() if f(word) == m.group(2)})
        common = set.intersection(*block_rules)
        assert common, block  # one rule explains the whole block
        rules |= common
    assert rules == set(bundled.WORD_RULES)
    # the ordinary text is the corpus's own lines
    text = [s for s in segments if s not in cloze and not bundled.ARITHMETIC_LINE.fullmatch(s)
            and not WORD_LINE.fullmatch(s)]
    assert sum(map(len, text)) / len(corpus) > 0.25
    train = bundled.corpus_parts()[0]
    assert all(s in train for s in text[:-1])  # the last may be cut mid-line


def test_corpus_holds_no_test_example(corpus, tasks):
    test_problems = {(bundled.ARITHMETIC[n][0], d["a"], d["b"]) for n in bundled.ARITHMETIC for d in tasks[n][1]}
    seen = {(m.group(2), int(m.group(1)), int(m.group(3))) for m in bundled.ARITHMETIC_LINE.finditer(corpus)}
    assert len(seen) > 1000 and not seen & test_problems
    assert not any(d["context"][:100] in corpus for d in tasks["cloze"][1])
    shown = {d["word"] for d in tasks["random_insertion"][1] + tasks["random_insertion"][2]}
    block_words = {m.group(1)[::2] for m in WORD_LINE.finditer(corpus)}
    assert len(block_words) > 1000 and not block_words & shown
    assert not any(d["context"][-60:] in corpus for d in tasks["cloze"][1])

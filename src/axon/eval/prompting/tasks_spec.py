"""Task files: a subset of lm-evaluation-harness 0.4's task YAML, read into a :class:`TaskSpec`,
and the requests of each example with k shots.

    task.yaml --load_task--> TaskSpec (checked keys, compiled templates, the JSON-lines records)
    TaskSpec, example i, k, seed --build_example--> Example: prompt + the requests of its type

    prompt = shot_1 + fewshot_delimiter + ... + shot_k + fewshot_delimiter + doc_to_text(doc)
    shot   = doc_to_text(s) + target_delimiter + doc_to_target(s)      (multiple_choice: the gold choice)

    output_type            requests of one example                                 (scorer method)
    loglikelihood          [(prompt, target)]                                      loglikelihood
                           (as lm-eval 0.4.13: target_delimiter only joins the shots, so the space
                           before an answer belongs in doc_to_target, " {{answer}}")
    multiple_choice        [(prompt, target_delimiter + choice) for each choice]   loglikelihood
    generate_until         [(prompt, generation_kwargs)]                           generate_until
    loglikelihood_rolling  [doc_to_target(doc)]  (lm-eval's: the document is the target; no shots)

A ``doc_to_*`` value follows lm-eval's rule: a key of the record is that field; a string with
"{{" (or "{%") is a Jinja2 template rendered in a sandbox with the record's fields (an undefined
name is an error); anything else is a literal (an int doc_to_target, a list doc_to_choice). Shots
come from ``fewshot_split`` (else from the test split, never the example itself, nor a record equal
to it): ``first_n`` takes the first k, ``default`` draws k with ``random.Random`` seeded by the seed
and the example's index, so an example's shots depend on nothing else (not --limit, not order).

Errors: a key of the YAML file that is unknown, missing or wrong is one ConfigError naming the key
and the file; a record that is not a JSON object, or that a template cannot render, is one
DataError naming file:line.
"""

from __future__ import annotations

import ast
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from axon.errors import ConfigError, DataError, OptionError, reading

OUTPUT_TYPES = ("loglikelihood", "multiple_choice", "generate_until", "loglikelihood_rolling")
#: the metrics each output type may report; the first ones are its default metric_list
METRICS = {
    "loglikelihood": ("perplexity", "acc"),
    "multiple_choice": ("acc", "acc_norm"),
    "generate_until": ("exact_match", "f1"),
    "loglikelihood_rolling": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
}
TASK_KEYS = ("task", "dataset_path", "dataset_kwargs", "test_split", "fewshot_split", "output_type", "doc_to_text",
             "doc_to_target", "doc_to_choice", "target_delimiter", "fewshot_delimiter", "num_fewshot",
             "fewshot_config", "generation_kwargs", "metric_list", "filter_list")
METRIC_KEYS = ("metric", "aggregation", "higher_is_better", "ignore_case", "ignore_punctuation")
SAMPLERS = ("first_n", "default")
FILTERS = ("regex", "take_first", "lowercase", "remove_whitespace")


def _environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # lm-eval's settings (StrictUndefined, trailing newlines kept), sandboxed: a template is data
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


class Field:
    """One ``doc_to_*`` value of a task file, applied to records (module docstring's rule)."""

    def __init__(self, key: str, spec, where: str):
        self.key, self.spec = key, spec
        self.template = None
        if isinstance(spec, str) and ("{{" in spec or "{%" in spec):
            from jinja2 import TemplateSyntaxError

            try:
                self.template = _environment().from_string(spec)
            except TemplateSyntaxError as e:
                raise ConfigError(f"{where}: {key}: not a valid Jinja2 template ({e.message}, "
                                  f"line {e.lineno})") from None

    def __call__(self, doc: dict, where: str):
        """The value for ``doc`` (``where``: its file:line, for the error)."""
        if isinstance(self.spec, str) and self.spec in doc:
            return doc[self.spec]
        if self.template is None:
            return self.spec
        from jinja2 import TemplateError

        try:
            return self.template.render(**doc)
        except TemplateError as e:
            raise DataError(f"{where}: {self.key}: the template cannot render this record ({e.message})") from None
        except Exception as e:  # a template's own arithmetic on the record: {{a / b}} with b = 0, ...
            raise DataError(f"{where}: {self.key}: the template cannot render this record "
                            f"({type(e).__name__}: {e})") from None


@dataclass
class TaskSpec:
    """A task file, checked and with its records loaded (see the module docstring)."""

    name: str
    path: Path  # the YAML file
    output_type: str
    test_docs: list[dict]
    test_where: list[str]  # file:line of each test record
    fewshot_docs: list[dict] | None  # None: shots come from the test split
    fewshot_where: list[str] | None
    doc_to_text: Field
    doc_to_target: Field
    doc_to_choice: Field | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    sampler: str = "default"
    generation_kwargs: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)  # {"metric": name, options...}
    filters: list[tuple[str, list[dict]]] = field(default_factory=list)  # (name, steps); [] for no filter
    _copies: dict | None = field(default=None, repr=False, compare=False)  # canonical JSON -> shot indices

    def __len__(self) -> int:
        return len(self.test_docs)

    def pool_copies(self, doc: dict) -> list[int]:
        """Indices of the shot records equal to ``doc`` (which never serve as its shots)."""
        if self._copies is None:
            self._copies = {}
            for j, d in enumerate(self.fewshot_docs if self.fewshot_docs is not None else self.test_docs):
                self._copies.setdefault(_canonical(d), []).append(j)
        return self._copies.get(_canonical(doc), [])

    # --- a record's values -----------------------------------------------------------------------

    def text(self, doc: dict, where: str) -> str:
        return str(self.doc_to_text(doc, where))

    def choices(self, doc: dict, where: str) -> list[str]:
        value = self.doc_to_choice(doc, where)
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                raise DataError(f"{where}: doc_to_choice gave {value!r}, not a list literal") from None
        if not isinstance(value, (list, tuple)) or not value:
            raise DataError(f"{where}: doc_to_choice must give a non-empty list of choices, got {value!r}")
        return [str(c) for c in value]

    def gold(self, doc: dict, where: str):
        """The target: a choice index (multiple_choice), else the target text."""
        value = self.doc_to_target(doc, where)
        if self.output_type != "multiple_choice":
            if isinstance(value, (list, tuple)):  # several references: lm-eval's shots use the first
                value = value[0] if value else ""
            return str(value)
        choices = self.choices(doc, where)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DataError(f"{where}: doc_to_target must give a choice index or a choice's text, got {value!r}")
        if isinstance(value, str):
            if value not in choices:
                raise DataError(f"{where}: doc_to_target gave {value!r}, which is none of the choices {choices}")
            return choices.index(value)
        if not 0 <= value < len(choices):
            raise DataError(f"{where}: doc_to_target gave index {value}, but there are {len(choices)} choices")
        return value

    def target_text(self, doc: dict, where: str) -> str:
        """What follows the target delimiter in a shot: the target, or the gold choice's text."""
        gold = self.gold(doc, where)
        return self.choices(doc, where)[gold] if self.output_type == "multiple_choice" else gold


@dataclass
class Example:
    """One test record with its prompt and requests (module docstring's table)."""

    index: int
    doc: dict
    where: str
    prompt: str
    shots: list[int]  # indices into the few-shot records (or the test records)
    requests: list
    gold: int | str | None = None
    choices: list[str] | None = None


# --- loading -------------------------------------------------------------------------------------


def load_task(path: str | Path) -> TaskSpec:
    """The task of the YAML file ``path`` (module docstring), its data files read."""
    import yaml

    path = Path(path)
    with reading(path, "task file"):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ConfigError(f"task file {path}: must be a mapping of lm-eval task keys, got {type(raw).__name__}")
    where = f"task file {path}"

    def fail(key: str, message: str):
        raise ConfigError(f"{where}: {key}: {message}")

    unknown = [k for k in raw if k not in TASK_KEYS]
    if unknown:
        fail(str(unknown[0]), f"unknown key; a task file has {', '.join(TASK_KEYS)}")
    for key in ("task", "dataset_path", "dataset_kwargs", "test_split", "output_type", "doc_to_text", "doc_to_target"):
        if key not in raw:
            fail(key, "missing; every task file needs task, dataset_path, dataset_kwargs, test_split, output_type, "
                      "doc_to_text and doc_to_target")
    name = raw["task"]
    if not isinstance(name, str) or not name.strip():
        fail("task", f"must be a non-empty name, got {name!r}")
    if raw["dataset_path"] != "json":
        fail("dataset_path", f"must be json (local JSON-lines files), got {raw['dataset_path']!r}")
    output_type = raw["output_type"]
    if output_type not in OUTPUT_TYPES:
        fail("output_type", f"must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")

    kwargs = raw["dataset_kwargs"]
    if not isinstance(kwargs, dict) or set(kwargs) != {"data_files"} or not isinstance(kwargs["data_files"], dict):
        fail("dataset_kwargs", "must be {data_files: {SPLIT: FILE.jsonl, ...}} (files relative to the task file)")
    files = kwargs["data_files"]
    for split, file in files.items():
        if not isinstance(file, str) or not file:
            fail(f"dataset_kwargs.data_files.{split}", f"must be a file name, got {file!r}")
    splits = {}
    for key in ("test_split", "fewshot_split"):
        split = raw.get(key)
        if key in raw and split not in files:
            fail(key, f"{split!r} is not a split of dataset_kwargs.data_files ({', '.join(map(str, files))})")
        splits[key] = split

    for key in ("doc_to_text", "doc_to_target"):
        value = raw[key]
        kinds = (str, int) if key == "doc_to_target" else (str,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            what = "a Jinja2 template, or a literal string or index" if key == "doc_to_target" else "a Jinja2 template"
            fail(key, f"must be a field name or {what}, got {value!r}")
    choice = raw.get("doc_to_choice")
    if output_type == "multiple_choice":
        if choice is None:
            fail("doc_to_choice", "missing; a multiple_choice task needs its choices (a field, a list or a template)")
        if not isinstance(choice, (str, list)) or (isinstance(choice, list) and not choice):
            fail("doc_to_choice", f"must be a field name, a non-empty list or a template, got {choice!r}")
    elif "doc_to_choice" in raw:
        fail("doc_to_choice", f"only a multiple_choice task has choices; this one is {output_type}")
    for key, default in (("target_delimiter", " "), ("fewshot_delimiter", "\n\n")):
        if not isinstance(raw.get(key, default), str):
            fail(key, f"must be a string, got {raw[key]!r}")
    num_fewshot = raw.get("num_fewshot", 0)
    if isinstance(num_fewshot, bool) or not isinstance(num_fewshot, int) or num_fewshot < 0:
        fail("num_fewshot", f"must be an integer >= 0, got {num_fewshot!r}")
    if output_type == "loglikelihood_rolling" and num_fewshot:
        fail("num_fewshot", "a loglikelihood_rolling task scores whole documents: it takes no shots")
    sampler = _sampler(raw.get("fewshot_config"), fail)
    generation = raw.get("generation_kwargs", {})
    if output_type != "generate_until" and "generation_kwargs" in raw:
        fail("generation_kwargs", f"only a generate_until task generates; this one is {output_type}")
    _check_generation(generation, fail)
    if output_type == "generate_until" and "until" not in generation:  # lm-eval's default stop: the shots' separator
        delimiter = raw.get("fewshot_delimiter", "\n\n")
        generation = {**generation, "until": [delimiter] if delimiter else []}
    metrics = _metrics(raw.get("metric_list"), output_type, fail)
    if output_type != "generate_until" and "filter_list" in raw:
        fail("filter_list", f"filters read generated answers: only a generate_until task has them; "
                            f"this one is {output_type}")
    filters = _filters(raw.get("filter_list"), fail)

    folder = path.parent
    test_docs, test_where = read_records(folder / files[splits["test_split"]])
    fewshot_docs = fewshot_where = None
    if splits["fewshot_split"] is not None and splits["fewshot_split"] != splits["test_split"]:
        fewshot_docs, fewshot_where = read_records(folder / files[splits["fewshot_split"]])
    return TaskSpec(
        name=name, path=path, output_type=output_type, test_docs=test_docs, test_where=test_where,
        fewshot_docs=fewshot_docs, fewshot_where=fewshot_where,
        doc_to_text=Field("doc_to_text", raw["doc_to_text"], where),
        doc_to_target=Field("doc_to_target", raw["doc_to_target"], where),
        doc_to_choice=Field("doc_to_choice", choice, where) if choice is not None else None,
        target_delimiter=raw.get("target_delimiter", " "), fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
        num_fewshot=num_fewshot, sampler=sampler, generation_kwargs=dict(generation), metrics=metrics, filters=filters,
    )


def _sampler(config, fail) -> str:
    if config is None:
        return "default"
    if not isinstance(config, dict):
        fail("fewshot_config", f"must be a mapping such as {{sampler: first_n}}, got {config!r}")
    for key in config:
        if key != "sampler":
            fail(f"fewshot_config.{key}", "unknown key; fewshot_config has sampler only")
    sampler = config.get("sampler", "default")
    if sampler not in SAMPLERS:
        fail("fewshot_config.sampler", f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    return sampler


def _check_generation(kwargs, fail) -> None:
    from axon.eval.prompting.scorer import GENERATION_KEYS

    if not isinstance(kwargs, dict):
        fail("generation_kwargs", f"must be a mapping, got {kwargs!r}")
    for key, value in kwargs.items():
        if key not in GENERATION_KEYS:
            fail(f"generation_kwargs.{key}", f"unknown key; generation_kwargs has {', '.join(GENERATION_KEYS)}")
        if key == "until" and not (isinstance(value, str) and value
                                   or isinstance(value, list) and all(isinstance(s, str) and s for s in value)):
            fail("generation_kwargs.until", f"must be a stop string or a list of them, got {value!r}")
        if key in ("max_gen_toks", "top_k") and (isinstance(value, bool) or not isinstance(value, int) or value < 1) \
                and not (key == "top_k" and value is None):
            fail(f"generation_kwargs.{key}", f"must be an integer >= 1, got {value!r}")
        if key == "do_sample" and not isinstance(value, bool):
            fail("generation_kwargs.do_sample", f"must be true or false, got {value!r}")
        if key == "temperature" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0):
            fail("generation_kwargs.temperature", f"must be a number >= 0, got {value!r}")
        if key == "top_p" and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                     or not 0 < value <= 1):
            fail("generation_kwargs.top_p", f"must be in (0, 1], got {value!r}")


def _metrics(metric_list, output_type: str, fail) -> list[dict]:
    allowed = METRICS[output_type]
    if metric_list is None:
        return [{"metric": m} for m in (allowed[:2] if output_type != "loglikelihood_rolling" else allowed)]
    if not isinstance(metric_list, list) or not metric_list:
        fail("metric_list", f"must be a non-empty list of {{metric: NAME}}, got {metric_list!r}")
    out, seen = [], set()
    for entry in metric_list:
        if not isinstance(entry, dict) or "metric" not in entry:
            fail("metric_list", f"each entry must be a mapping with a metric, got {entry!r}")
        for key in entry:
            if key not in METRIC_KEYS:
                fail(f"metric_list.{key}", f"unknown key; an entry has {', '.join(METRIC_KEYS)}")
        metric = entry["metric"]
        if metric not in allowed:
            fail("metric_list", f"metric {metric!r} is not one a {output_type} task reports ({', '.join(allowed)})")
        if metric in seen:
            fail("metric_list", f"metric {metric!r} is listed twice")
        for key in ("ignore_case", "ignore_punctuation"):
            if key in entry and (metric != "exact_match" or not isinstance(entry[key], bool)):
                fail(f"metric_list.{key}", "is a true/false option of exact_match only")
        seen.add(metric)
        out.append(dict(entry))
    return out


def _filters(filter_list, fail) -> list[tuple[str, list[dict]]]:
    if filter_list is None:
        return []
    if not isinstance(filter_list, list) or not filter_list:
        fail("filter_list", f"must be a non-empty list of {{name: ..., filter: [...]}}, got {filter_list!r}")
    out, names = [], set()
    for entry in filter_list:
        if not isinstance(entry, dict) or set(entry) != {"name", "filter"} or not isinstance(entry["filter"], list):
            fail("filter_list", f"each entry must be {{name: NAME, filter: [{{function: ...}}, ...]}}, got {entry!r}")
        name = entry["name"]
        if not isinstance(name, str) or not name or name in names:
            fail("filter_list", f"each filter needs its own non-empty name, got {name!r}")
        names.add(name)
        for step in entry["filter"]:
            if not isinstance(step, dict) or step.get("function") not in FILTERS:
                fail(f"filter_list.{name}", f"each step must be {{function: F}}, F one of {', '.join(FILTERS)}; "
                                            f"got {step!r}")
            regex = step["function"] == "regex"
            known = {"function"} | ({"regex_pattern", "group_select", "fallback"} if regex else set())
            for key in step:
                if key not in known:
                    fail(f"filter_list.{name}.{key}", f"unknown key of a {step['function']} filter")
            if step["function"] == "regex":
                _check_regex(step, name, fail)
        out.append((name, [dict(s) for s in entry["filter"]]))
    return out


def _check_regex(step: dict, name: str, fail) -> None:
    import re

    pattern = step.get("regex_pattern")
    if not isinstance(pattern, str):
        fail(f"filter_list.{name}.regex_pattern", f"a regex filter needs a pattern, got {pattern!r}")
    try:
        re.compile(pattern)
    except re.error as e:
        fail(f"filter_list.{name}.regex_pattern", f"not a valid regular expression ({e})")
    group = step.get("group_select", 0)
    if isinstance(group, bool) or not isinstance(group, int):
        fail(f"filter_list.{name}.group_select",
             f"must be an integer (which match: 0 the first, -1 the last), got {group!r}")
    if not isinstance(step.get("fallback", ""), str):
        fail(f"filter_list.{name}.fallback", f"must be a string, got {step['fallback']!r}")


def read_records(path: Path) -> tuple[list[dict], list[str]]:
    """The JSON objects of a JSON-lines file (blank lines skipped) and each one's file:line."""
    with reading(path, "task data file"):
        text = path.read_text(encoding="utf-8")
    docs, where = [], []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        at = f"{path}:{number}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{at}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(doc, dict):
            raise DataError(f"{at}: a record must be a JSON object, got {type(doc).__name__}")
        docs.append(doc)
        where.append(at)
    if not docs:
        raise DataError(f"{path}: no records (one JSON object per line)")
    return docs, where


# --- shots and requests --------------------------------------------------------------------------


def _canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


def fewshot_indices(spec: TaskSpec, index: int, k: int, seed: int = 1234) -> list[int]:
    """Which records are the ``k`` shots of test example ``index``: indices into the few-shot split
    (or the test split), never the example itself nor a record equal to it (module docstring)."""
    if k == 0:
        return []
    pool = spec.fewshot_docs if spec.fewshot_docs is not None else spec.test_docs
    same = spec.fewshot_docs is None
    excluded = set(spec.pool_copies(spec.test_docs[index])) | ({index} if same else set())
    available = len(pool) - len(excluded)
    if available < k:
        split = "test split" if same else "few-shot split"
        raise OptionError("shots", f"must be at most {available} for task {spec.name} (the records of its {split} "
                                   "besides the example itself)", k)
    if spec.sampler == "first_n":
        return [j for j in range(len(pool)) if j not in excluded][:k]
    rng = random.Random(f"{seed}:{index}")  # a str seed is hashed with SHA-512: the same draw in every process
    candidates = [j for j in range(len(pool)) if j not in excluded]
    return rng.sample(candidates, k)


def build_example(spec: TaskSpec, index: int, k: int, seed: int = 1234) -> Example:
    """Test example ``index`` of ``spec`` with ``k`` shots: its prompt and requests."""
    doc, where = spec.test_docs[index], spec.test_where[index]
    shots = fewshot_indices(spec, index, k, seed)
    pool, pool_where = ((spec.fewshot_docs, spec.fewshot_where) if spec.fewshot_docs is not None
                        else (spec.test_docs, spec.test_where))
    context = "".join(spec.text(pool[j], pool_where[j]) + spec.target_delimiter
                      + spec.target_text(pool[j], pool_where[j]) + spec.fewshot_delimiter for j in shots)
    kind = spec.output_type
    if kind == "loglikelihood_rolling":
        return Example(index, doc, where, "", shots, [str(spec.doc_to_target(doc, where))])
    prompt = context + spec.text(doc, where)
    gold = spec.gold(doc, where)
    if kind == "loglikelihood":
        return Example(index, doc, where, prompt, shots, [(prompt, gold)], gold)  # lm-eval 0.4.13: no delimiter
    if kind == "multiple_choice":
        choices = spec.choices(doc, where)
        return Example(index, doc, where, prompt, shots, [(prompt, spec.target_delimiter + c) for c in choices],
                       gold, choices)
    return Example(index, doc, where, prompt, shots, [(prompt, dict(spec.generation_kwargs))], gold)


__all__ = ["TaskSpec", "Example", "Field", "load_task", "read_records", "fewshot_indices", "build_example",
           "OUTPUT_TYPES", "METRICS", "TASK_KEYS"]

"""Data files named in a config, and the readers of the formats the tasks take.

``resolve_file`` turns ``data.train_file`` / ``data.val_file`` into a path. ``bundled:NAME``
names a file that comes with the package, in one of two ways:

* shipped inside the package, under ``axon/data/corpus/`` (``bundled:dates/train.tsv``, the
  seq2seq date task; ``bundled:vader/{train,val}.tsv``, lines of the corpus labelled by VADER's
  sentiment, ``axon.data.vader_lines``; ``bundled:tinyshakespeare.txt``);
* built from the bundled corpus and written into the cache (``data.cache_dir``, ``$AXON_CACHE`` or
  ``~/.cache/axon``) on first use: ``bundled:speakers/{train.jsonl,val.jsonl,pretrain.txt,meta.json}``,
  the speaker task (``axon.data.speakers``); ``bundled:labellers/{train.jsonl,val.jsonl,meta.json}``,
  planted preferences labelled by simulated labellers of known reliability (``axon.data.labellers``);
  ``bundled:sentiment/{train.jsonl,val.jsonl,heldout.jsonl}``, the sentiment-control setup's SFT
  demonstrations and prompts (``axon.data.sentiment``); ``bundled:ner/{train.conll,val.conll,meta.json}``,
  people and places tagged in the lines of the plays (``axon.data.ner``, the ``tag`` task's set);
* shipped with ``axon.feedback``: ``bundled:instructions/{train,val,heldout}.jsonl``, the
  instruction dataset (SFT rows; held-out prompts); ``bundled:arithmetic/{train,val,heldout}.jsonl``,
  worked arithmetic problems with exact answers (SFT rows, every split; ``axon.feedback.arithmetic``).

Any other value is a path to a file that must exist.

Readers, each refusing a malformed line with a message naming the file and line:

* ``read_text``: a UTF-8 text file, whole;
* ``read_examples``: labelled texts, ``.jsonl`` (``{"text": ..., "label": ...}`` per line, keys
  configurable; a label may be a string or an integer) or ``.tsv`` (``text<TAB>label`` per line;
  the label is after the last tab, so the text may hold tabs but not newlines);
* ``read_pairs``: sentence pairs, ``source<TAB>target`` per line, exactly one tab, text on both
  sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from axon.errors import ConfigError, DataError

BUNDLED = "bundled:"


def resolve_file(spec: str | None, field_name: str, data_cfg=None, *, example: str | None = None) -> Path:
    """The path of a data file given in the config (module docstring); ConfigError naming
    ``field_name`` when it is missing. ``data_cfg`` (the config's ``data`` section) says where
    the cache is, for the bundled files written there; ``example``, shown when no file is
    given, is a value to suggest."""
    if not spec:
        raise ConfigError(f"{field_name}: this task needs a file; set --{field_name}=PATH"
                          + (f" ({example})" if example else ""))
    if spec.startswith(BUNDLED):
        return bundled_file(spec[len(BUNDLED):], field_name, data_cfg)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"{field_name}: {path} not found")
    return path


def bundled_file(name: str, field_name: str, data_cfg=None) -> Path:
    """The file of ``bundled:NAME`` (module docstring)."""
    dataset = name.partition("/")[0]
    if dataset in ("speakers", "labellers", "sentiment", "ner"):  # built on first use, into the cache
        from axon.data import labellers, ner, sentiment, speakers
        from axon.data.cache import cache_data_dir

        maker = {"speakers": speakers, "labellers": labellers, "sentiment": sentiment, "ner": ner}[dataset]
        return maker.bundled_file(name, cache_data_dir(data_cfg).parent)  # made here: an unwritable cache is one line
    if dataset in ("instructions", "arithmetic"):  # shipped with axon.feedback, which writes and checks them
        from axon.feedback.datasets import ARITHMETIC_SIZES, BUNDLED_SIZES, arithmetic_path, bundled_path

        sizes, path_of = {"instructions": (BUNDLED_SIZES, bundled_path),
                          "arithmetic": (ARITHMETIC_SIZES, arithmetic_path)}[dataset]
        file = name.partition("/")[2]
        if file.removesuffix(".jsonl") not in sizes or not file.endswith(".jsonl"):
            raise ConfigError(f"{field_name}: {BUNDLED}{name} not found; the bundled files are {', '.join(bundled_names())}")
        return path_of(file.removesuffix(".jsonl"))
    from axon.data.corpus import CORPUS_DIR

    path = CORPUS_DIR / name
    if not path.is_file():
        raise ConfigError(f"{field_name}: {BUNDLED}{name} not found; the bundled files are {', '.join(bundled_names())}")
    return path


def bundled_names() -> list[str]:
    """Every ``bundled:NAME`` there is (module docstring)."""
    from axon.data import labellers, ner, sentiment, speakers
    from axon.data.corpus import CORPUS_DIR
    from axon.feedback.datasets import ARITHMETIC_SIZES, BUNDLED_SIZES

    shipped = [p.relative_to(CORPUS_DIR).as_posix() for p in (*CORPUS_DIR.glob("*.txt"), *CORPUS_DIR.glob("*/*.tsv"))]
    made = ([f"speakers/{f}" for f in speakers.FILES] + [f"labellers/{f}" for f in labellers.FILES]
            + [f"sentiment/{f}" for f in sentiment.FILES] + [f"ner/{f}" for f in ner.FILES] + [f"instructions/{f}.jsonl" for f in BUNDLED_SIZES]
            + [f"arithmetic/{f}.jsonl" for f in ARITHMETIC_SIZES])
    return [BUNDLED + n for n in sorted(shipped) + made]


# ----------------------------------------------------------------------------------------------
# Readers


VAL_EVERY = 10  # without data.val_file, the 10th, 20th, ... items of the training file are held out


def hold_out(items: list, source: Path, what: str = "examples", every: int = VAL_EVERY) -> tuple[list, list]:
    """(train, val): every ``every``-th item of ``items`` (read from ``source``) held out for
    validation, as the tasks do when no data.val_file is given; too few items is one line."""
    val = [x for i, x in enumerate(items, 1) if i % every == 0]
    if not val:
        raise DataError(f"{source}: fewer than {every} {what}; give data.val_file for validation (else every {every}th is held out)")
    return [x for i, x in enumerate(items, 1) if i % every != 0], val


def read_splits(data_cfg, read, *, example: str | None = None, what: str = "examples") -> tuple[list, Path, list, Path]:
    """(train items, train file, val items, val file) of a task's ``data.train_file`` and
    ``data.val_file``, each read by ``read(path) -> list``; without a val_file, every VAL_EVERY-th
    item of the training file is held out (:func:`hold_out`, ``what`` naming the items) and the
    val file is the training file."""
    train_file = resolve_file(data_cfg.train_file, "data.train_file", data_cfg, example=example)
    train = read(train_file)
    if data_cfg.val_file is None:
        train, val = hold_out(train, train_file, what)
        return train, train_file, val, train_file
    val_file = resolve_file(data_cfg.val_file, "data.val_file", data_cfg, example=example)
    return train, train_file, read(val_file), val_file


def read_text(path: str | Path, universal_newlines: bool = False) -> str:
    """A UTF-8 text file, exactly as stored (character counts and splits match the bytes), or
    with ``universal_newlines`` its line endings read as ``\\n``."""
    try:
        with open(path, encoding="utf-8", newline=None if universal_newlines else "") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text (byte {e.start})") from None


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    line: int  # 1-based line number in its file, for messages


def read_examples(path: str | Path, text_field: str = "text", label_field: str = "label") -> list[Example]:
    """The examples of a ``.jsonl`` or ``.tsv`` file (module docstring); DataError on a bad line."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".tsv"):
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl ({{\"text\": ..., \"label\": ...}} "
                        "per line) or .tsv (text<TAB>label per line)")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text (byte {e.start})") from None
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    out = []
    for n, line in enumerate(lines, start=1):
        where = f"{path}:{n}"
        line = line.removesuffix("\r")
        if not line.strip():
            raise DataError(f"{where}: empty line; every line must hold one example")
        if path.suffix == ".jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict) or text_field not in obj or label_field not in obj:
                raise DataError(f"{where}: expected an object with keys {text_field!r} and {label_field!r} "
                                "(set data.text_field / data.label_field for other names)")
            text, label = obj[text_field], obj[label_field]
            if not isinstance(text, str):
                raise DataError(f"{where}: {text_field!r} must be a string, got {type(text).__name__}")
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                raise DataError(f"{where}: {label_field!r} must be a string or an integer, got {label!r}")
            label = str(label)
        else:
            if "\t" not in line:
                raise DataError(f"{where}: no tab; a .tsv line is text<TAB>label")
            text, label = line.rsplit("\t", 1)
        if not text.strip():
            raise DataError(f"{where}: empty text")
        if not label.strip():
            raise DataError(f"{where}: empty label")
        out.append(Example(text, label, n))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    line: int  # 1-based line number in its file, for error messages


def read_pairs(path: str | Path) -> list[Pair]:
    """The pairs of a ``source<TAB>target`` file; any malformed line is a DataError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    pairs = []
    for n, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        where = f"{path}:{n}"
        if not line.strip():
            raise DataError(f"{where}: empty line; every line must be SOURCE<TAB>TARGET")
        tabs = line.count("\t")
        if tabs == 0:
            raise DataError(f"{where}: no tab; every line must be SOURCE<TAB>TARGET")
        if tabs > 1:
            raise DataError(f"{where}: {tabs} tabs; every line must be SOURCE<TAB>TARGET with exactly one tab")
        source, target = line.split("\t")
        if not source.strip():
            raise DataError(f"{where}: empty source (nothing before the tab)")
        if not target.strip():
            raise DataError(f"{where}: empty target (nothing after the tab)")
        pairs.append(Pair(source, target, n))
    if not pairs:
        raise DataError(f"{path}: no sentence pairs")
    return pairs

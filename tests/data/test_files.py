"""``bundled:`` names and data paths: one resolver for every task."""

from types import SimpleNamespace

import pytest

from axon.data.corpus import CORPUS_DIR
from axon.data.files import bundled_names, read_text, resolve_file
from axon.errors import ConfigError, DataError


def test_bundled_names_a_shipped_file_or_one_written_into_the_cache(tmp_path):
    data = SimpleNamespace(cache_dir=str(tmp_path))
    assert resolve_file("bundled:dates/train.tsv", "data.train_file", data) == CORPUS_DIR / "dates" / "train.tsv"
    speakers = resolve_file("bundled:speakers/val.jsonl", "data.val_file", data)
    assert speakers.is_file() and speakers.is_relative_to(tmp_path)  # built on first use, into data.cache_dir
    assert resolve_file("bundled:speakers/val.jsonl", "data.val_file", data) == speakers  # and reused
    prefs = resolve_file("bundled:labellers/train.jsonl", "data.train_file", data)
    assert prefs.is_file() and prefs.is_relative_to(tmp_path)
    names = bundled_names()
    assert {"bundled:dates/train.tsv", "bundled:dates/val.tsv", "bundled:speakers/train.jsonl",
            "bundled:labellers/val.jsonl"} <= set(names)
    held = resolve_file("bundled:sentiment/heldout.jsonl", "ppo.val_prompts", data)  # axon.data.sentiment
    assert held.is_relative_to(tmp_path) and len(held.read_text().splitlines()) == 200
    assert resolve_file("bundled:instructions/heldout.jsonl", "ppo.val_prompts").name == "instructions_heldout.jsonl"
    for name in names:
        if not name.startswith(("bundled:speakers/", "bundled:labellers/", "bundled:sentiment/", "bundled:ner/")):
            assert resolve_file(name, "data.train_file").is_file()


def test_unknown_bundled_names_and_missing_paths_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.train_file: bundled:dates/nope.tsv not found; the bundled files are "
                                          ".*bundled:dates/train.tsv.*bundled:speakers/train.jsonl"):
        resolve_file("bundled:dates/nope.tsv", "data.train_file")
    with pytest.raises(ConfigError, match="unknown bundled file 'speakers/nothing.jsonl'"):
        resolve_file("bundled:speakers/nothing.jsonl", "data.train_file", SimpleNamespace(cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="data.val_file: .*missing.txt not found"):
        resolve_file(str(tmp_path / "missing.txt"), "data.val_file")
    with pytest.raises(ConfigError, match=r"data.train_file: this task needs a file; set --data.train_file=PATH \(e.g. x\)$"):
        resolve_file(None, "data.train_file", example="e.g. x")


def test_read_text_keeps_line_endings_unless_asked(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"a\r\nb\n")
    assert read_text(path) == "a\r\nb\n"
    assert read_text(path, universal_newlines=True) == "a\nb\n"
    path.write_bytes(b"a\xff")
    with pytest.raises(DataError, match="not valid UTF-8 text"):
        read_text(path)


def test_hold_out_keeps_every_tenth_for_validation_and_refuses_too_few(tmp_path):
    from axon.data.files import hold_out

    train, val = hold_out(list(range(1, 26)), tmp_path / "t.jsonl")
    assert val == [10, 20] and train == [i for i in range(1, 26) if i % 10]
    with pytest.raises(DataError, match="t.jsonl: fewer than 10 prompts; give data.val_file"):
        hold_out(list(range(9)), tmp_path / "t.jsonl", "prompts")

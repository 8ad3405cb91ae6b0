"""axon.atomic: whatever is written aside appears whole under its name, or not at all."""

import json
import os

import pytest

from axon.atomic import (
    AtomicFile,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    temp_path,
    written_aside,
)


def names(d):
    return sorted(p.name for p in d.iterdir())


def test_temp_names_are_hidden_unique_siblings(tmp_path):
    a, b = temp_path(tmp_path / "x.json"), temp_path(tmp_path / "x.json", ".json")
    assert a.parent == tmp_path and a.name.startswith(f".x.json.{os.getpid()}.") and a.name.endswith(".tmp")
    assert b.name.endswith(".tmp.json") and a != temp_path(tmp_path / "x.json")


def test_writes_replace_the_file_and_leave_nothing_else(tmp_path):
    f = tmp_path / "f"
    f.write_text("old")
    atomic_write_text(f, "é\n")
    assert f.read_bytes() == "é\n".encode()
    atomic_write_bytes(f, b"\x00\x01")
    assert f.read_bytes() == b"\x00\x01"
    atomic_write_json(f, {"a": [1, 2]}, indent=1)
    assert f.read_text() == json.dumps({"a": [1, 2]}, indent=1) + "\n"
    atomic_write_json(f, {"x": 1.5}, fsync=True)
    assert json.loads(f.read_text()) == {"x": 1.5}
    assert names(tmp_path) == ["f"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    f = tmp_path / "f.csv"
    f.write_text("old")
    with pytest.raises(RuntimeError), AtomicFile(f, newline="") as out:
        out.write("half")
        raise RuntimeError
    assert f.read_text() == "old" and names(tmp_path) == ["f.csv"]
    writer = AtomicFile(f, binary=True, fsync=True)
    writer.file.write(b"new")
    assert f.read_text() == "old"  # nothing under the name until commit
    assert writer.commit() == f and f.read_bytes() == b"new" and names(tmp_path) == ["f.csv"]


def test_written_aside_for_writers_that_take_a_path(tmp_path):
    f = tmp_path / "tok.json"
    with written_aside(f, suffix=".json") as tmp:
        assert tmp.suffix == ".json" and tmp.parent == tmp_path
        tmp.write_text("{}")
        assert not f.exists()
    assert f.read_text() == "{}" and names(tmp_path) == ["tok.json"]
    with pytest.raises(ValueError), written_aside(f) as tmp:
        tmp.write_text("half")
        raise ValueError
    assert f.read_text() == "{}" and names(tmp_path) == ["tok.json"]


def test_directory_appears_whole_or_not_at_all(tmp_path):
    d = tmp_path / "cache" / "data"
    d.parent.mkdir()
    with pytest.raises(KeyError), atomic_directory(d) as tmp:
        (tmp / "shard").write_text("half")
        raise KeyError
    assert names(d.parent) == []  # no directory, no temporary left behind
    with atomic_directory(d, fsync=True) as tmp:
        (tmp / "meta.json").write_text("1")
        assert not d.exists()
    assert names(d) == ["meta.json"] and names(d.parent) == ["data"]


def test_directory_already_there_is_kept_unless_replace(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "meta.json").write_text("first")
    with atomic_directory(d) as tmp:  # another process prepared it first: theirs stays
        (tmp / "meta.json").write_text("second")
    assert (d / "meta.json").read_text() == "first" and names(tmp_path) == ["d"]
    stale = tmp_path / ".tmp-d-1"  # an explicit temporary name, left by a killed writer
    stale.mkdir()
    (stale / "junk").write_text("x")
    with atomic_directory(d, temp=stale, replace=True, fsync=True) as tmp:
        assert tmp == stale and names(tmp) == []  # emptied first
        (tmp / "meta.json").write_text("third")
    assert names(d) == ["meta.json"] and (d / "meta.json").read_text() == "third" and names(tmp_path) == ["d"]

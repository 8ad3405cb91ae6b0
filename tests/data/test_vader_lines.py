"""axon.data.vader_lines: the shipped VADER-labelled line task is what the module generates."""

from collections import Counter

import pytest

from axon.data.corpus import CORPUS_DIR
from axon.data.files import read_examples, resolve_file
from axon.data.speakers import build_speaker_task
from axon.data.vader_lines import FILES, MIN_WORDS, vader_label, vader_lines, write_vader_lines


def test_thresholds_are_vaders():
    assert [vader_label(c) for c in (0.05, 0.0499, 0.0, -0.0499, -0.05, 0.9, -0.9)] == \
        ["positive", "neutral", "neutral", "neutral", "negative", "positive", "negative"]


def test_split_follows_the_speaker_task_and_does_not_overlap():
    train, val = vader_lines()
    assert len(set(train) & set(val)) == 0 and len(set(train)) == len(train) and len(set(val)) == len(val)
    assert all(len(line.split()) >= MIN_WORDS for line in train + val)
    assert not [line for line in train + val if line.endswith(":") and line.upper() == line]  # no speaker heading
    held_out = " ".join(" ".join(s.text.split()) for s in build_speaker_task().val)
    assert all(line in held_out for line in val)


def test_shipped_files_are_small_and_read_by_the_classify_reader():
    for name in FILES:
        path = resolve_file(f"bundled:vader/{name}", "data.train_file")
        assert path == CORPUS_DIR / "vader" / name and path.stat().st_size < 300_000
        labels = Counter(e.label for e in read_examples(path))
        assert set(labels) == {"negative", "neutral", "positive"}


def test_regenerated_files_equal_the_shipped_ones_byte_for_byte(tmp_path):
    pytest.importorskip("vaderSentiment")
    write_vader_lines(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (CORPUS_DIR / "vader" / name).read_bytes(), name

"""The bundled NER set (axon.data.ner): people and places of the plays, tagged by two word lists."""

from types import SimpleNamespace

import pytest

from axon.data.conll import read_conll
from axon.data.files import resolve_file
from axon.data.ner import (PLACES, ROLES, build_ner_set, entities, gazetteers, main, tag_tokens, tokenize,
                           write_ner_set)
from axon.errors import ConfigError

TOY = """ROMEO:
O Romeo, Romeo! wherefore art thou Romeo?
Let us to Verona, or to Mantua.

KING RICHARD III:
Where is Titus Lartius? The king will
ride first to London with Grey.

TITUS LARTIUS:
grey hairs and the Huntsman.

First Huntsman:
Romeo's horse.

GREY:
Paris waits in Padua.

PARIS:
Away.
"""


def test_tokens_split_punctuation_and_apostrophe_suffixes():
    assert tokenize("O Romeo, Romeo's banish'd!") == ["O", "Romeo", ",", "Romeo", "'s", "banish", "'d", "!"]


def test_gazetteers_take_heading_words_but_not_roles_numerals_or_lower_case_words():
    per, loc = gazetteers(TOY)
    assert per == {"Romeo", "Richard", "Titus", "Lartius", "Paris"}  # King, III, First (king, first): dropped
    assert "Grey" not in per  # "grey" is also a lower-case word of the text
    assert "Huntsman" not in per and "Huntsman" in ROLES
    assert loc == PLACES - per and "Verona" in loc and "Paris" not in loc  # a speaker's name is a person


def test_tags_by_hand_one_entity_per_run_of_one_type():
    per, loc = gazetteers(TOY)
    words = tokenize("Where is Titus Lartius? Romeo to Verona Mantua")
    tags = tag_tokens(words, per, loc)
    assert tags == ["O", "O", "B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "I-LOC"]
    assert entities(tags, words) == [("PER", "Titus Lartius"), ("PER", "Romeo"), ("LOC", "Verona Mantua")]
    assert tag_tokens(["Romeo", "Verona"], per, loc) == ["B-PER", "B-LOC"]  # a change of type opens an entity


def test_toy_set_keeps_entity_lines_and_skips_headings():
    ner = build_ner_set(TOY)
    lines = [" ".join(w) for w, _ in ner.train + ner.val]
    assert not any(line.endswith(":") for line in lines)  # the headings are not sentences
    assert "O Romeo , Romeo ! wherefore art thou Romeo ?" in lines
    assert "grey hairs and the Huntsman ." not in lines  # no entity, and not the 8th plain line
    assert ner.meta["train"]["entities"]["PER"] >= 4


def test_bundled_set_is_deterministic_valid_bio_and_split_by_position(tmp_path):
    meta = write_ner_set(tmp_path / "a")
    again = build_ner_set()
    train = read_conll(tmp_path / "a" / "train.conll", check_bio=True)
    val = read_conll(tmp_path / "a" / "val.conll", check_bio=True)
    assert train.sentences == again.train and val.sentences == again.val  # the files are the set, again
    assert set(train.tags) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
    assert meta["train"]["sentences"] == len(train.sentences) and meta["val"]["sentences"] == len(val.sentences)
    assert 4000 < len(train.sentences) < 7000 and 400 < len(val.sentences) < 800
    assert meta["val"]["entities"]["PER"] > 150 and meta["val"]["entities"]["LOC"] > 30
    assert 0.05 < meta["val_unseen_entities"] < 0.5  # validation holds names training never shows
    # no tagged word is also written in lower case anywhere in the corpus
    from axon.data.corpus import corpus_path
    import re
    lower = {w for w in re.findall(r"[A-Za-z]+", corpus_path().read_text()) if w.islower()}
    tagged = {w for s in (train, val) for words, tags in s.sentences for w, t in zip(words, tags) if t != "O"}
    assert not {w.lower() for w in tagged} & lower
    assert {"Romeo", "Juliet", "Verona", "Rome"} <= tagged


def test_bundled_names_resolve_into_the_cache_and_unknown_files_are_refused(tmp_path, capsys):
    data = SimpleNamespace(cache_dir=str(tmp_path))
    path = resolve_file("bundled:ner/val.conll", "data.val_file", data)
    assert path.is_relative_to(tmp_path) and read_conll(path).sentences
    with pytest.raises(ConfigError, match="unknown bundled file 'ner/test.conll'; choose one of: bundled:ner/train.conll"):
        resolve_file("bundled:ner/test.conll", "data.val_file", data)
    assert main(["--out", str(tmp_path / "cli")]) == 0
    assert "val entities unseen in training" in capsys.readouterr().out

"""axon.data.conll: reading CoNLL files, and one DataError line naming the file and line on bad input."""

import pytest

from axon.data.conll import read_conll
from axon.errors import DataError

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC


Peter\tB-PER
Blackburn  I-PER
-DOCSTART- -X- -X- O
London B-LOC
"""


def _write(tmp_path, text, name="x.conll"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_sentences_last_column_and_sorted_tag_set(tmp_path):
    got = read_conll(_write(tmp_path, CONLL))
    assert got.sentences == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["London"], ["B-LOC"]),  # -DOCSTART- ends a sentence even without a blank line
    ]
    assert got.tags == ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER", "O"]


def test_no_trailing_blank_line_and_crlf(tmp_path):
    got = read_conll(_write(tmp_path, "a O\r\nb B-X\r\n\r\nc I-X"))
    assert got.sentences == [(["a", "b"], ["O", "B-X"]), (["c"], ["I-X"])]


@pytest.mark.parametrize(
    "text, where",
    [
        ("a O\nb B-X\nlonely\n", ":3: one column 'lonely'"),
        ("", ": empty"),
        ("\n  \n\n", ": empty"),
        ("-DOCSTART- -X- O\n\n", ": no tagged tokens"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_line(tmp_path, text, where):
    p = _write(tmp_path, text)
    with pytest.raises(DataError) as e:
        read_conll(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and where in msg


def test_missing_and_non_utf8_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="missing.conll"):
        read_conll(tmp_path / "missing.conll")
    p = tmp_path / "latin1.conll"
    p.write_bytes("caf\xe9 O\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_conll(p)


def test_bio_check_refuses_a_non_bio_tag_but_accepts_i_after_o(tmp_path):
    ok = _write(tmp_path, "a O\nb I-PER\nc I-LOC\n")  # I- after O / another type: accepted (IOB1-style)
    assert read_conll(ok, check_bio=True).tags == ["I-LOC", "I-PER", "O"]
    bad = _write(tmp_path, "a O\nb PER\n", "bad.conll")
    assert read_conll(bad).tags == ["O", "PER"]  # without the check, any tag
    with pytest.raises(DataError, match=r"bad.conll:2: tag 'PER' is not BIO"):
        read_conll(bad, check_bio=True)

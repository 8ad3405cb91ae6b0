import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon.data.corpus import corpus_path
from axon.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    HFTokenizer,
    _chunks,
    build_tokenizer,
    load_tokenizer,
)
from axon.errors import DataError

# Any Unicode string Python can encode as UTF-8: everything but lone surrogates.
unicode_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)))
# Text dense in whitespace and newlines, where byte-level BPE pre-tokenization is subtle.
whitespace_heavy = st.text(alphabet=st.sampled_from(list(" \n\n\n\t\r\u00a0\u3000ab's1.,\u0301\U0001f600\x00")))
given_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SHAKESPEARE = corpus_path("shakespeare").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train([SHAKESPEARE[:50_000]], vocab_size=300)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.from_text(SHAKESPEARE)


# --- byte-level BPE ----------------------------------------------------------------------------


@given_settings
@given(text=unicode_text)
def test_bpe_roundtrips_any_unicode(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text
    assert bpe.encode_array(text).tolist() == ids


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00",
        "a\x00b\x00\x00",
        "   leading and trailing   ",
        "tabs\t\tand\n\n\nnewlines \n \r\n",
        "e\u0301 combining, \u0915\u094d\u0937 conjunct",
        "emoji \U0001f600\U0001f44d\U0001f3fd family \U0001f468\u200d\U0001f469\u200d\U0001f467",
        " \u00a0\u2028\u3000 odd spaces",
        "a <|endoftext|> b",
        "don't won't they're",
    ],
)
def test_bpe_roundtrips_hard_cases(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_has_eot_and_requested_vocab(bpe):
    assert bpe.kind == "bpe"
    assert bpe.vocab_size == 300
    assert bpe.eot_id is not None
    assert bpe.encode("<|endoftext|>") == [bpe.eot_id]
    # the merges learned something: common English is shorter than its byte count
    assert len(bpe.encode("the king and the queen")) < len("the king and the queen")


@given_settings
@given(text=whitespace_heavy)
def test_bpe_chunk_cuts_do_not_change_ids(bpe, text):
    """encode_array's fast path (batch-encoding cut pieces) must give the whole-text ids."""
    pieces = _chunks(text, size=2)
    assert "".join(pieces) == text
    # The cuts are pre-token boundaries, the claim that makes the fast path exact ...
    pre = bpe.tokenizer.pre_tokenizer
    whole = [p for p, _ in pre.pre_tokenize_str(text)]
    assert [p for piece in pieces for p, _ in pre.pre_tokenize_str(piece)] == whole
    # ... and hence the ids agree.
    batched = [i for e in bpe.tokenizer.encode_batch(pieces, add_special_tokens=False) for i in e.ids]
    assert batched == bpe.tokenizer.encode(text, add_special_tokens=False).ids


def test_bpe_encode_array_long_text_matches_plain_encode(bpe):
    text = SHAKESPEARE[:40_000]
    assert len(_chunks(text)) > 1  # the fast path is taken
    assert bpe.encode_array(text).tolist() == bpe.tokenizer.encode(text, add_special_tokens=False).ids


def test_prefix_space_tokenizer_is_encoded_whole(bpe):
    """A loaded tokenizer that adds a prefix space per input must not take the chunked path."""
    from tokenizers import Tokenizer, pre_tokenizers

    raw = Tokenizer.from_str(bpe.tokenizer.to_str())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok = BPETokenizer(raw)
    text = SHAKESPEARE[:40_000]
    assert tok.encode_array(text).tolist() == raw.encode(text, add_special_tokens=False).ids


def test_bpe_rejects_lone_surrogate_and_tiny_vocab(bpe):
    with pytest.raises(DataError, match="surrogate"):
        bpe.encode("a\ud800b")
    with pytest.raises(DataError, match="too small"):
        BPETokenizer.train(["abc"], vocab_size=100)


def test_decode_rejects_out_of_range_ids(bpe, char):
    for tok in (bpe, char):
        with pytest.raises(DataError, match=str(tok.vocab_size)):
            tok.decode([0, tok.vocab_size])
        with pytest.raises(DataError, match="-1"):
            tok.decode([-1])


# --- characters --------------------------------------------------------------------------------


def test_char_vocab_is_nanogpt_convention(char):
    assert char.vocab_size == 65
    assert char.chars == sorted(set(SHAKESPEARE))
    assert char.encode("\n") == [0]  # sorted: "\n" comes first


@given_settings
@given(data=st.data())
def test_char_roundtrips_text_over_its_vocab(char, data):
    text = data.draw(st.text(alphabet=st.sampled_from(char.chars)))
    ids = char.encode(text)
    assert char.decode(ids) == text
    assert char.decode(np.asarray(ids)) == text
    assert char.encode_array(text).dtype == np.int64


@settings(max_examples=50, deadline=None)  # each example builds a lookup table of up to 1.1M entries
@given(text=st.text(min_size=1))  # surrogates included: a vocabulary may hold any code point
def test_char_from_text_roundtrips_its_own_text(text):
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text


def test_char_unknown_raises_with_character_and_position(char):
    with pytest.raises(DataError, match=r"'€' at position 3"):
        char.encode("abc€d")
    with pytest.raises(DataError, match=r"'\\U0001f600' at position 0|'😀' at position 0"):
        char.encode("😀")


@given_settings
@given(text=unicode_text)
def test_char_replace_mode_maps_unknowns_to_unk(char, text):
    tok = CharTokenizer(char.chars, unknown="replace")
    assert tok.unk_char == "?"
    expected = "".join(c if c in char.chars else "?" for c in text)
    assert tok.decode(tok.encode(text)) == expected


def test_char_replace_default_without_question_mark_and_bad_unk():
    tok = CharTokenizer(["b", "a"], unknown="replace")
    assert tok.unk_char == "b"
    assert tok.decode(tok.encode("axz")) == "abb"
    with pytest.raises(DataError, match="unk_char"):
        CharTokenizer(["a", "b"], unknown="replace", unk_char="?")
    with pytest.raises(DataError):
        CharTokenizer.from_text("")


def test_char_encode_array_matches_encode(char):
    text = SHAKESPEARE[:20000]
    assert char.encode_array(text).tolist() == char.encode(text)


@pytest.mark.parametrize("target", ["dir", "tokenizer.json", "chars.json"])
def test_char_save_load_roundtrip(tmp_path, target):
    tok = CharTokenizer.from_text("hello world?", unknown="replace")
    path = tmp_path if target == "dir" else tmp_path / target
    written = tok.save(path)
    assert written.name == ("tokenizer.json" if target == "dir" else target)
    obj = json.loads(written.read_text())
    assert obj == {"axon_tokenizer": "char", "version": 1, "chars": tok.chars, "unk": "?"}
    loaded = load_tokenizer(path)
    assert isinstance(loaded, CharTokenizer)
    assert (loaded.chars, loaded.unk_char) == (tok.chars, tok.unk_char)
    assert loaded.encode("hello zz") == tok.encode("hello zz")


def test_bpe_save_load_roundtrip(tmp_path, bpe):
    bpe.save(tmp_path)
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(loaded, BPETokenizer)
    assert (loaded.kind, loaded.vocab_size, loaded.eot_id) == ("bpe", bpe.vocab_size, bpe.eot_id)
    text = SHAKESPEARE[:2000] + " \U0001f600\x00"
    assert loaded.encode(text) == bpe.encode(text)
    assert loaded.decode(loaded.encode(text)) == text


def test_hf_standard_tokenizer_json_loads(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "</s>": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))

    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, HFTokenizer) and not isinstance(loaded, BPETokenizer)
    assert (loaded.kind, loaded.vocab_size, loaded.eot_id) == ("hf", 4, 3)
    assert loaded.encode("hello world nope") == [1, 2, 0]
    assert loaded.encode_array("hello").tolist() == [1]
    loaded.save(tmp_path / "copy.json")
    assert load_tokenizer(tmp_path / "copy.json").encode("world") == [2]


def test_load_tokenizer_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(DataError, match="tokenizer.json"):
        load_tokenizer(tmp_path)  # a directory without one
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_tokenizer(bad)
    bad.write_text('{"model": {"type": "Nonsense"}}')
    with pytest.raises(DataError, match="bad.json"):
        load_tokenizer(bad)
    bad.write_text('{"axon_tokenizer": "char", "version": 1, "chars": ["a", "a"], "unk": null}')
    with pytest.raises(DataError, match="bad.json"):
        load_tokenizer(bad)


def test_build_tokenizer(tmp_path):
    char = build_tokenizer("char", ["ab", "ca"])
    assert (char.kind, char.chars) == ("char", ["a", "b", "c"])
    bpe = build_tokenizer("bpe", [SHAKESPEARE[:5000]], vocab_size=280)
    assert (bpe.kind, bpe.vocab_size) == ("bpe", 280)
    path = char.save(tmp_path)
    assert build_tokenizer(str(path), []).chars == char.chars
    with pytest.raises(DataError, match="char, bpe"):
        build_tokenizer("wordpiece", ["x"])
    with pytest.raises(DataError, match="nope.json"):
        build_tokenizer(str(tmp_path / "nope.json"), [])


def test_loaded_tokenizer_drops_fixed_padding_and_truncation(tmp_path):
    """A published tokenizer.json may pad/cut every encoding (all-MiniLM-L6-v2: 128); Axon encodes whole texts."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_padding(length=16, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=3)
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode("a b a b a") == [2, 3, 2, 3, 2]


def test_a_tokenizer_file_far_larger_than_any_real_one_is_refused_unread(tmp_path):
    """Refused by its size, naming the file, before a byte is parsed (a sparse file: no disk used)."""
    from axon.data.tokenizers import MAX_TOKENIZER_BYTES

    path = tmp_path / "tokenizer.json"
    with open(path, "wb") as f:
        f.truncate(MAX_TOKENIZER_BYTES + 1)
    with pytest.raises(DataError, match=r"tokenizer.json: 256 MiB is far larger than any real tokenizer.json"):
        load_tokenizer(path)

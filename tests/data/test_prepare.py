import json

import numpy as np
import pytest

from axon.data.corpus import corpus_path
from axon.data.prepare import prepare, prepare_corpus
from axon.data.shards import read_shard
from axon.data.tokenizers import load_tokenizer
from axon.errors import DataError

SHAKESPEARE = corpus_path("shakespeare").read_text(encoding="utf-8")
DOCS = [SHAKESPEARE[i * 700 : i * 700 + 300 + 37 * i] for i in range(12)] + ["caf\u00e9 \U0001f600\n", ""]


def _tokens(out_dir, split, meta):
    return np.concatenate([read_shard(out_dir / name).tokens for name in meta["splits"][split]["shards"]])


def _write_jsonl(path, docs, field="text"):
    path.write_text("".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)), encoding="utf-8")
    return path


def test_shakespeare_char_matches_nanogpt(tmp_path):
    meta = prepare_corpus("shakespeare", tmp_path)

    assert len(SHAKESPEARE) == 1_115_394
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert (train["num_chars"], val["num_chars"]) == (1_003_854, 111_540)
    assert (train["num_tokens"], val["num_tokens"]) == (1_003_854, 111_540)
    assert (train["num_bytes"], val["num_bytes"]) == (1_003_854, 111_540)  # ASCII
    assert (train["shards"], val["shards"]) == (["train.bin"], ["val.bin"])
    assert (meta["tokenizer"], meta["vocab_size"], meta["eot_id"]) == ("char", 65, None)
    assert meta["val_fraction"] == 0.1
    assert meta["inputs"] == [str(corpus_path("shakespeare"))]
    assert json.loads((tmp_path / "meta.json").read_text()) == meta

    tok = load_tokenizer(tmp_path)
    assert tok.decode(_tokens(tmp_path, "train", meta)) == SHAKESPEARE[:1_003_854]
    assert tok.decode(_tokens(tmp_path, "val", meta)) == SHAKESPEARE[1_003_854:]


def test_bpe_text_split_decodes_exactly(tmp_path):
    text = SHAKESPEARE[:20_000] + "\n\u00e9t\u00e9 \U0001f600\n"
    src = tmp_path / "in.txt"
    src.write_bytes(text.encode("utf-8"))
    meta = prepare(src, tmp_path / "out", tokenizer="bpe", vocab_size=300, val_fraction=0.25)
    n_train = int(len(text) * 0.75)
    tok = load_tokenizer(tmp_path / "out")
    assert (tok.kind, tok.vocab_size, meta["vocab_size"]) == ("bpe", 300, 300)
    assert tok.decode(_tokens(tmp_path / "out", "train", meta)) == text[:n_train]
    assert tok.decode(_tokens(tmp_path / "out", "val", meta)) == text[n_train:]
    assert meta["splits"]["val"]["num_bytes"] == len(text[n_train:].encode("utf-8"))
    assert tok.eot_id not in _tokens(tmp_path / "out", "train", meta)  # one document: no separator


def test_crlf_text_is_kept_verbatim(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\r\nb\r\n" * 10)
    meta = prepare(src, tmp_path / "out")
    assert meta["splits"]["train"]["num_chars"] + meta["splits"]["val"]["num_chars"] == 60
    assert "\r" in load_tokenizer(tmp_path / "out").chars


def test_jsonl_documents_go_to_val_by_index(tmp_path):
    docs = [f"doc {i} " + "x" * i for i in range(10)]
    meta = prepare(_write_jsonl(tmp_path / "d.jsonl", docs), tmp_path / "out", val_fraction=0.2)
    tok = load_tokenizer(tmp_path / "out")
    # period round(1 / 0.2) = 5: documents 4 and 9 go to val; the char tokenizer has no EOT
    assert tok.decode(_tokens(tmp_path / "out", "val", meta)) == docs[4] + docs[9]
    assert tok.decode(_tokens(tmp_path / "out", "train", meta)) == "".join(d for i, d in enumerate(docs) if i % 5 != 4)
    assert (meta["splits"]["train"]["num_docs"], meta["splits"]["val"]["num_docs"]) == (8, 2)
    assert "i % 5 == 4" in meta["split_rule"]
    assert meta["max_docs"] is None


def test_jsonl_bpe_appends_eot_after_each_document(tmp_path):
    meta = prepare(_write_jsonl(tmp_path / "d.jsonl", DOCS), tmp_path / "out", tokenizer="bpe", vocab_size=300)
    tok = load_tokenizer(tmp_path / "out")
    eot = "<|endoftext|>"
    assert meta["eot_id"] == tok.eot_id is not None
    val = [d for i, d in enumerate(DOCS) if i % 10 == 9]
    train = [d for i, d in enumerate(DOCS) if i % 10 != 9]
    assert tok.decode(_tokens(tmp_path / "out", "val", meta)) == "".join(d + eot for d in val)
    assert tok.decode(_tokens(tmp_path / "out", "train", meta)) == "".join(d + eot for d in train)
    assert meta["splits"]["train"]["num_bytes"] == sum(len(d.encode("utf-8")) for d in train)


def test_max_docs_and_txt_among_documents(tmp_path):
    txt = tmp_path / "whole.txt"
    txt.write_text("one whole file")
    jsonl = _write_jsonl(tmp_path / "d.jsonl", [f"d{i}" for i in range(10)])
    meta = prepare([txt, jsonl], tmp_path / "out", max_docs=4)
    tok = load_tokenizer(tmp_path / "out")
    assert meta["max_docs"] == 4
    assert tok.decode(_tokens(tmp_path / "out", "train", meta)) == "one whole filed0d1d2"


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (['{"text": "ok"}', "", '{"text": "fine"}', "{oops"], r"d\.jsonl:4: not valid JSON"),
        (['{"text": "ok"}', '{"body": "no text field"}'], r"d\.jsonl:2: .*'text'"),
        (['{"text": 42}'], r"d\.jsonl:1: .*'text'"),
        (['["a list"]'], r"d\.jsonl:1: .*'text'"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path, lines, match):
    src = tmp_path / "d.jsonl"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match):
        prepare(src, tmp_path / "out")


def test_failed_prepare_never_leaves_a_stale_meta(tmp_path):
    out = tmp_path / "out"
    good = prepare(_write_jsonl(tmp_path / "good.jsonl", ["abc"] * 5), out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "abc"}\n' * 3 + "{broken\n")
    # fails while building the vocabulary, before anything in out_dir is touched
    with pytest.raises(DataError, match="bad.jsonl:4"):
        prepare(bad, out)
    assert json.loads((out / "meta.json").read_text()) == good
    # fails while writing shards (a given tokenizer needs no first pass): no meta, no partial file
    with pytest.raises(DataError, match="bad.jsonl:4"):
        prepare(bad, out, tokenizer=str(out / "tokenizer.json"))
    assert not (out / "meta.json").exists()
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_large_split_is_sharded_and_stale_shards_removed(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text(SHAKESPEARE[:1000])
    out = tmp_path / "out"
    meta = prepare(src, out, shard_tokens=300)
    assert meta["splits"]["train"]["shards"] == ["train_000.bin", "train_001.bin", "train_002.bin"]
    assert meta["splits"]["val"]["shards"] == ["val.bin"]
    assert [read_shard(out / n).num_tokens for n in meta["splits"]["train"]["shards"]] == [300, 300, 300]
    assert load_tokenizer(out).decode(_tokens(out, "train", meta)) == SHAKESPEARE[:900]

    meta = prepare(src, out)  # one shard again: the numbered ones must go
    assert meta["splits"]["train"]["shards"] == ["train.bin"]
    assert sorted(p.name for p in out.glob("train*.bin")) == ["train.bin"]


def test_hf_streaming_path_matches_jsonl_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    pytest.importorskip("datasets")
    src = _write_jsonl(tmp_path / "d.jsonl", DOCS)
    a = prepare(src, tmp_path / "a", tokenizer="bpe", vocab_size=300)
    b = prepare([], tmp_path / "b", tokenizer="bpe", vocab_size=300, hf_dataset="json", hf_data_files=str(src))
    assert b["hf_dataset"] == {"path": "json", "config": None, "split": "train", "data_files": str(src)}
    assert a["splits"] == b["splits"]
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    with pytest.raises(DataError, match="no string field 'body'"):
        prepare([], tmp_path / "c", hf_dataset="json", hf_data_files=str(src), text_field="body")


def test_existing_tokenizer_is_reused(tmp_path):
    prepare_corpus("shakespeare", tmp_path / "ref")
    src = tmp_path / "in.txt"
    src.write_text("To be, or not to be: that is the question.\n")
    meta = prepare(src, tmp_path / "out", tokenizer=str(tmp_path / "ref" / "tokenizer.json"))
    assert meta["vocab_size"] == 65
    assert load_tokenizer(tmp_path / "out").chars == load_tokenizer(tmp_path / "ref").chars

    src.write_text("caf\u00e9")
    with pytest.raises(DataError, match=r"in.txt, val part \(from character 3\): character '\u00e9' at position 0"):
        prepare(src, tmp_path / "out2", tokenizer=str(tmp_path / "ref"))


def test_input_errors(tmp_path):
    with pytest.raises(DataError, match="missing.txt"):
        prepare(tmp_path / "missing.txt", tmp_path / "out")
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(DataError, match="data.csv.*'.csv'"):
        prepare(tmp_path / "data.csv", tmp_path / "out")
    with pytest.raises(DataError, match="nothing to prepare"):
        prepare([], tmp_path / "out")
    src = _write_jsonl(tmp_path / "d.jsonl", ["a", "b"])
    with pytest.raises(DataError, match="val_fraction"):
        prepare(src, tmp_path / "out", val_fraction=1.0)
    with pytest.raises(DataError, match="every document to val"):
        prepare(src, tmp_path / "out", val_fraction=0.9)
    with pytest.raises(DataError, match="choose one of: char, bpe"):
        prepare(src, tmp_path / "out", tokenizer="sentencepiece")


@pytest.mark.parametrize("kw, message", [
    ({"max_docs": -1}, "max_docs must be an integer >= 1, got -1"),
    ({"max_docs": 0}, "max_docs must be an integer >= 1, got 0"),
    ({"vocab_size": -5, "tokenizer": "bpe"}, "vocab_size must be an integer >= 1, got -5"),
    ({"val_fraction": float("nan")}, "val_fraction must be in [0, 1), got nan"),
    ({"shard_tokens": 0}, "shard_tokens must be an integer >= 1, got 0"),
])
def test_settings_are_refused_naming_the_keyword_before_anything_is_written(tmp_path, kw, message):
    """The same sentence `axon prepare` prints with the flag (--max-docs ...): tests/bad_inputs."""
    from axon.errors import OptionError

    src = _write_jsonl(tmp_path / "d.jsonl", ["a", "b"])
    with pytest.raises(OptionError) as info:
        prepare(src, tmp_path / "out", **kw)
    assert str(info.value) == message and not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_refused_before_tokenizing(tmp_path):
    from axon.errors import OptionError

    (tmp_path / "out").write_text("mine")
    with pytest.raises(OptionError, match=r"^out_dir must name a directory to write into, got '.*out', which is a file$"):
        prepare(_write_jsonl(tmp_path / "d.jsonl", ["a"]), tmp_path / "out")
    assert (tmp_path / "out").read_text() == "mine"

"""Sentence-pair data (TSV), the seq2seq task, the bundled date task, and a tiny recipe that learns."""

import datetime

import pytest
import torch

from axon.config import load_config
from axon.data.corpus import CORPUS_DIR
from axon.data.corpus.make_dates import make_splits, ordinal_words, year_words
from axon.data.files import read_pairs, resolve_file
from axon.data.pairs import PairDataset, SpecialIds
from axon.data.tokenizers import CharTokenizer
from axon.errors import ConfigError, DataError
from axon.tasks import build_task



def write(tmp_path, text, name="pairs.tsv"):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


# ---------------------------------------------------------------------------------------------
# The file format


def test_read_pairs(tmp_path):
    pairs = read_pairs(write(tmp_path, "a b\tx\r\nc\ty z\n"))  # CRLF is fine, the final newline optional
    assert [(p.source, p.target, p.line) for p in pairs] == [("a b", "x", 1), ("c", "y z", 2)]
    assert len(read_pairs(write(tmp_path, "a\tb"))) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\tb\n\nc\td\n", "pairs.tsv:2: empty line"),
        ("a\tb\n  \n", "pairs.tsv:2: empty line"),
        ("a\tb\nno tab here\n", "pairs.tsv:2: no tab"),
        ("a\tb\tc\n", "pairs.tsv:1: 2 tabs"),
        ("\tb\n", "pairs.tsv:1: empty source"),
        ("a\t \n", "pairs.tsv:1: empty target"),
        ("", "no sentence pairs"),
        (b"a\t\xff\n", "not UTF-8"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_pairs(write(tmp_path, text))


def test_missing_and_bundled_files(tmp_path):
    assert resolve_file("bundled:dates/val.tsv", "data.val_file") == CORPUS_DIR / "dates" / "val.tsv"
    with pytest.raises(ConfigError, match="data.train_file: nope.tsv not found"):
        resolve_file("nope.tsv", "data.train_file")
    with pytest.raises(ConfigError, match="data.train_file: this task needs a file"):
        resolve_file(None, "data.train_file")


def dataset(pairs_text, tmp_path, block_size=8, **kw):
    pairs = read_pairs(write(tmp_path, pairs_text))
    tok = CharTokenizer.from_text([p.source + p.target for p in pairs])
    return PairDataset(pairs, tok, SpecialIds.for_tokenizer(tok), block_size, "pairs.tsv", **kw), tok


def test_over_long_source_or_target_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"pairs.tsv:2: the source is 8 tokens, \+1 for BOS/EOS exceeds "
                                        r"model.block_size=8"):
        dataset("ab\tc\nabcdefgh\tc\n", tmp_path)
    with pytest.raises(DataError, match="pairs.tsv:1: the target is 9 tokens"):
        dataset("ab\tabcdefghi\n", tmp_path)
    dataset("abcdefg\tabcdefg\n", tmp_path)  # 7 + 1 fits exactly


def test_batch_layout(tmp_path):
    ds, tok = dataset("ab\tcde\nabcd\tc\n", tmp_path)
    sp = ds.special
    V = tok.vocab_size
    assert (sp.pad, sp.bos, sp.eos, sp.vocab_size) == (V, V + 1, V + 2, V + 3)
    src, tgt_in, tgt_out = ds.collate([0, 1])
    a, b, c, d, e = (tok.encode(ch)[0] for ch in "abcde")
    P, B, E = sp.pad, sp.bos, sp.eos
    assert src.tolist() == [[a, b, E, P, P], [a, b, c, d, E]]
    assert tgt_in.tolist() == [[B, c, d, e], [B, c, P, P]]
    assert tgt_out.tolist() == [[c, d, e, E], [c, E, P, P]]
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == torch.int64
    assert sp.strip([c, d, P, B, E, a]) == [c, d]  # up to EOS, specials dropped


def test_batches_are_a_pure_function_of_seed_and_step(tmp_path):
    # 40 distinct sources of 1-6 characters (i % 20 picks the letter, i % 6 the length)
    lines = "".join(f"{chr(97 + i % 20) * (1 + i % 6)}\t{'y' * (1 + i % 5)}\n" for i in range(40))
    ds, _ = dataset(lines, tmp_path, num_buckets=4)
    a = ds.get_batch(5, 6, 8, seed=1, micro_step=1)
    assert all(torch.equal(x, y) for x, y in zip(a, ds.get_batch(5, 6, 8, seed=1, micro_step=1)))
    assert any(not torch.equal(x, y) for x, y in zip(a, ds.get_batch(6, 6, 8, seed=1, micro_step=1)))
    assert any(not torch.equal(x, y) for x, y in zip(a, ds.get_batch(5, 6, 8, seed=1, micro_step=0)))
    # Length buckets partition the pairs, and a batch comes from one bucket (similar lengths)...
    assert sorted(int(i) for b in ds.buckets for i in b) == list(range(40))
    which = {tuple(s.tolist()): i for i, s in enumerate(ds.src)}
    counts = torch.zeros(40)
    for step in range(400):
        src = ds.get_batch(step, 10, 8, seed=3)[0]
        lengths = (src != ds.special.pad).sum(1)
        assert lengths.max() - lengths.min() <= 2
        for row in src.tolist():
            counts[which[tuple(t for t in row if t != ds.special.pad)[:-1]]] += 1  # drop the EOS
    # ...while every pair is drawn about equally often (probability 1/N per draw: 100 expected).
    assert counts.sum() == 4000 and counts.min() > 50 and counts.max() < 160


def test_eval_batches_cover_every_pair_once_in_order(tmp_path):
    ds, _ = dataset("".join(f"{'x' * (1 + i % 3)}\ty\n" for i in range(7)), tmp_path)
    batches = list(ds.iter_eval_batches(3, 8))
    assert [b[0].size(0) for b in batches] == [3, 3, 1]
    assert torch.equal(batches[1][0], ds.collate([3, 4, 5])[0])
    assert len(list(ds.iter_eval_batches(3, 8, max_batches=2))) == 2


# ---------------------------------------------------------------------------------------------
# The bundled date task


def test_bundled_dates_are_what_the_script_writes():
    train, val = make_splits()
    assert (CORPUS_DIR / "dates" / "train.tsv").read_text(encoding="utf-8") == "\n".join(train) + "\n"
    assert (CORPUS_DIR / "dates" / "val.tsv").read_text(encoding="utf-8") == "\n".join(val) + "\n"
    train_dates = {line.split("\t")[1] for line in train}
    val_dates = {line.split("\t")[1] for line in val}
    assert len(val_dates) == 1000 and not train_dates & val_dates  # held-out dates
    for line in val[:200]:
        source, target = line.split("\t")
        date = datetime.date.fromisoformat(target)
        assert str(date.day) in source or ordinal_words(date.day) in source.lower()


def test_number_words():
    rng = __import__("random").Random(0)
    assert ordinal_words(23) == "twenty-third" and ordinal_words(30) == "thirtieth" and ordinal_words(12) == "twelfth"
    assert year_words(1994, rng) == "nineteen ninety-four" and year_words(1905, rng) == "nineteen oh five"
    assert year_words(1900, rng) == "nineteen hundred" and year_words(2000, rng) == "two thousand"
    assert year_words(2021, rng) in ("twenty twenty-one", "two thousand twenty-one", "two thousand and twenty-one")


# ---------------------------------------------------------------------------------------------
# The task


def task_config(tmp_path, *extra):
    return load_config(None, ["--model.family=seq2seq", "--model.preset=tiny", f"--out_dir={tmp_path}",
                              "--train.threads=1", "--log.progress=false", *extra])


def test_task_builds_a_shared_tokenizer_and_holds_out_every_tenth_pair(tmp_path):
    lines = "".join(f"{i}\t{'abc'[i % 3]}\n" for i in range(30))
    cfg = task_config(tmp_path, f"--data.train_file={write(tmp_path, lines)}")
    task = build_task(cfg, torch.device("cpu"))
    assert task.tokenizer.vocab_size == 13  # 0-9 and a, b, c: both sides, one vocabulary
    assert cfg.model.vocab_size == 16  # + PAD, BOS, EOS
    assert len(task.train_data) == 27 and len(task.val_data) == 3
    assert [p.source for p in task.val_data.pairs] == ["9", "19", "29"]


def test_task_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.train_file: this task needs a file"):
        build_task(task_config(tmp_path), torch.device("cpu"))
    few = write(tmp_path, "a\tb\n")
    with pytest.raises(DataError, match="too few to hold out"):
        build_task(task_config(tmp_path, f"--data.train_file={few}"), torch.device("cpu"))
    cfg = load_config(None, ["--task=seq2seq", f"--data.train_file={few}"])
    with pytest.raises(ConfigError, match="model.family=seq2seq"):
        build_task(cfg, torch.device("cpu"))
    long = write(tmp_path, "".join(f"{'a' * 40}\tb\n" for _ in range(10)), "long.tsv")
    with pytest.raises(DataError, match="long.tsv:1: the source is 40 tokens"):
        build_task(task_config(tmp_path, f"--data.train_file={long}"), torch.device("cpu"))

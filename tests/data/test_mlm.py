import numpy as np
import pytest
import torch

from axon.data.bert_tokens import SPECIAL_TOKENS, BertTokens, build_bert_tokenizer, pad_batch
from axon.data.masking import IGNORE_INDEX, MaskedWindows, mask_tokens
from axon.data.tokenizers import CharTokenizer
from axon.errors import DataError

TEXT = "the quick brown fox jumps over the lazy dog.\nA stitch in time saves nine!\n" * 20


@pytest.fixture(scope="module")
def tokens():
    return BertTokens(build_bert_tokenizer("char", [TEXT]))


@pytest.mark.parametrize("kind", ["char", "wordpiece", "bpe"])
def test_built_tokenizers_put_the_special_tokens_first(kind):
    tok = build_bert_tokenizer(kind, [TEXT], vocab_size=300)
    t = BertTokens(tok)
    assert (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (0, 1, 2, 3, 4)
    ids = t.encode("the lazy fox")
    assert ids and min(ids) >= len(SPECIAL_TOKENS)  # ordinary text never encodes to a special id
    assert t.encode("a [MASK] b").count(4) == 1  # written out, the token is recognised


def test_built_tokenizers_are_the_same_in_another_process(tmp_path):
    """A run's eval and resume rebuild its tokenizer: the ids must not depend on the process
    (the tokenizers library's own WordPiece trainer fails this)."""
    import subprocess
    import sys

    (tmp_path / "t.txt").write_text(TEXT)
    kinds = ("wordpiece", "bpe", "char")
    code = ("import sys; from axon.data.bert_tokens import build_bert_tokenizer as b; t = open(sys.argv[1]).read()\n"
            f"for k in {kinds * 2!r}: print(b(k, [t], 300).tokenizer.to_str())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.txt")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == [build_bert_tokenizer(k, [TEXT], 300).tokenizer.to_str() for k in kinds * 2]


def test_wordpiece_merges_the_most_frequent_pair_first():
    """Sennrich et al.'s example: low x5, lower x2, newest x6, widest x3. Ties go to the smaller
    pair in string order, so ##e ##s (9) before ##s ##t (9), ##o ##w (7) before l ##o (7)."""
    from axon.data.bert_tokens import train_wordpiece

    text = " ".join(["low"] * 5 + ["lower"] * 2 + ["newest"] * 6 + ["widest"] * 3)
    alphabet = 5 + len({"l", "n", "w", "##o", "##w", "##e", "##r", "##s", "##t", "##i", "##d"})
    vocab = train_wordpiece([text], alphabet + 4).get_vocab()
    assert [t for t, i in sorted(vocab.items(), key=lambda kv: kv[1])][alphabet:] == ["##es", "##est", "##ow", "low"]
    assert train_wordpiece([text], alphabet + 4).encode("lowest newer").tokens == ["low", "##est", "n", "##e", "##w", "##e", "##r"]


def test_char_tokenizer_maps_unseen_characters_to_unk(tokens):
    assert tokens.encode("th\u00e9") == [*tokens.encode("th"), tokens.unk_id]
    assert tokens.decode(tokens.encode("the fox")) == "the fox"


def test_tokenizers_without_bert_tokens_are_refused():
    with pytest.raises(DataError, match="char tokenizer"):
        BertTokens(CharTokenizer.from_text("abc"))
    from axon.data.tokenizers import BPETokenizer

    with pytest.raises(DataError, match=r"\[PAD\]"):
        BertTokens(BPETokenizer.train([TEXT], 300))


def test_padding_and_truncation_of_a_published_tokenizer_are_switched_off(tokens):
    raw = tokens.tokenizer.tokenizer
    from axon.data.tokenizers import HFTokenizer
    from tokenizers import Tokenizer

    padded = Tokenizer.from_str(raw.to_str())
    padded.enable_padding(length=32, pad_id=0, pad_token="[PAD]")
    padded.enable_truncation(max_length=5)
    t = BertTokens(HFTokenizer(padded))
    assert t.encode("the quick brown fox") == tokens.encode("the quick brown fox")


def test_pad_batch():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[True] * 3, [True, False, False]]


def test_masking_statistics(tokens):
    """15% of ordinary tokens per sequence; of them 80% [MASK], 10% random, 10% unchanged."""
    rng = np.random.default_rng(0)
    ids = rng.integers(5, tokens.vocab_size, size=(400, 100))
    ids[:, 0], ids[:, -1] = tokens.cls_id, tokens.sep_id
    ids[:50, 60:] = tokens.pad_id
    inputs, labels = mask_tokens(ids, tokens, 0.15, np.random.default_rng(1))
    chosen = labels != IGNORE_INDEX
    assert not chosen[np.isin(ids, tokens.special_ids)].any()  # never a special token
    n_ordinary = (~np.isin(ids, tokens.special_ids)).sum(1)
    assert (chosen.sum(1) == np.maximum(1, np.rint(0.15 * n_ordinary))).all()
    assert (labels[chosen] == ids[chosen]).all() and (inputs[~chosen] == ids[~chosen]).all()
    masked = (inputs[chosen] == tokens.mask_id).mean()
    kept = (inputs[chosen] == ids[chosen]).mean()
    replaced = inputs[chosen][(inputs[chosen] != tokens.mask_id) & (inputs[chosen] != ids[chosen])]
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.015  # ~5,700 chosen: 3 sigma ~ 0.016 / 0.012
    assert abs(len(replaced) / chosen.sum() - 0.1) < 0.015  # (a random draw equal to the original counts as kept)
    assert not np.isin(replaced, tokens.special_ids).any()


def test_masking_is_a_function_of_the_seed(tokens):
    ids = np.random.default_rng(0).integers(5, tokens.vocab_size, size=(8, 30))
    a = mask_tokens(ids, tokens, 0.15, np.random.default_rng(7))
    b = mask_tokens(ids, tokens, 0.15, np.random.default_rng(7))
    c = mask_tokens(ids, tokens, 0.15, np.random.default_rng(8))
    assert all((x == y).all() for x, y in zip(a, b)) and not (a[1] == c[1]).all()


@pytest.fixture(scope="module")
def windows(tokens):
    from axon.data.masking import _memory_stream

    stream = _memory_stream(tokens.encode_array(TEXT), tokens.vocab_size, "train", "<text>")
    return MaskedWindows(stream, tokens, 0.15)


def test_batches_are_cls_window_sep_and_deterministic(windows, tokens):
    inputs, mask, labels = windows.get_batch(step=3, batch_size=4, block_size=20, seed=11)
    assert inputs.shape == mask.shape == labels.shape == (4, 20) and mask.all()
    assert (inputs[:, 0] == tokens.cls_id).all() and (inputs[:, -1] == tokens.sep_id).all()
    original = torch.where(labels != IGNORE_INDEX, labels, inputs)
    text = tokens.decode(original[0, 1:-1].tolist())
    assert text in TEXT  # a window of consecutive tokens of the stream
    again = windows.get_batch(step=3, batch_size=4, block_size=20, seed=11)
    assert all(torch.equal(a, b) for a, b in zip(again, (inputs, mask, labels)))
    other = windows.get_batch(step=4, batch_size=4, block_size=20, seed=11)
    assert not torch.equal(other[0], inputs)
    assert not torch.equal(windows.get_batch(step=3, batch_size=4, block_size=20, seed=11, micro_step=1)[0], inputs)


def test_eval_batches_are_fixed_and_cover_the_stream(windows):
    first = list(windows.iter_eval_batches(8, 20))
    second = list(windows.iter_eval_batches(8, 20))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(first, second))
    n = sum(b[0].shape[0] for b in first)
    assert n == windows.stream.num_eval_windows(17)
    assert len(list(windows.iter_eval_batches(8, 20, max_batches=2))) == 2
    other = list(windows.iter_eval_batches(5, 20))  # another batch size: the same windows and blanks
    for i in (0, 2):
        assert torch.equal(torch.cat([b[i] for b in other]), torch.cat([b[i] for b in first]))

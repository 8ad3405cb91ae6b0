import json

import numpy as np
import pytest
import torch

from axon.data.corpus import corpus_path
from axon.data.loader import TokenDataset
from axon.data.prepare import prepare_corpus
from axon.data.shards import write_shard
from axon.data.tokenizers import load_tokenizer
from axon.errors import DataError

N = 50_000


@pytest.fixture
def ramp(tmp_path):
    """One shard whose token at position i is i, so a window is identified by its first token."""
    write_shard(tmp_path / "train.bin", np.arange(N), vocab_size=N)
    return TokenDataset.from_dir(tmp_path, "train")


@pytest.fixture
def two_shards(tmp_path):
    """Shard k holds k * 10_000 + arange(n_k): a token tells which shard it came from."""
    write_shard(tmp_path / "train_000.bin", np.arange(3_000), vocab_size=20_000)
    write_shard(tmp_path / "train_001.bin", 10_000 + np.arange(5_000), vocab_size=20_000)
    return TokenDataset.from_dir(tmp_path, "train")


def test_batch_shapes_and_next_token_targets(ramp):
    x, y = ramp.get_batch(step=0, batch_size=8, block_size=32, seed=1)
    assert x.shape == y.shape == (8, 32)
    assert x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y, x + 1)  # on the ramp, the next token is the value + 1
    assert torch.equal(x, x[:, :1] + torch.arange(32))  # each row is a consecutive window
    assert int(y.max()) < N


def test_batches_are_a_pure_function_of_their_arguments(ramp, tmp_path):
    args = dict(step=7, batch_size=16, block_size=64, seed=123, micro_step=2)
    x, y = ramp.get_batch(**args)
    reopened = TokenDataset.from_dir(tmp_path, "train")  # a resumed run: a fresh dataset object
    for ds in (ramp, reopened):
        x2, y2 = ds.get_batch(**args)
        assert torch.equal(x, x2) and torch.equal(y, y2)
    for change in (dict(step=8), dict(micro_step=3), dict(seed=124)):
        assert not torch.equal(x, ramp.get_batch(**{**args, **change})[0]), change


def test_ranks_take_disjoint_slices_of_one_global_batch(ramp):
    world, b, t = 4, 8, 16
    per_rank = [ramp.get_batch(3, b, t, seed=5, rank=r, world_size=world)[0] for r in range(world)]
    starts = torch.cat(per_rank)[:, 0].tolist()
    assert len(set(starts)) == world * b  # no window drawn twice across ranks
    # together the ranks read exactly what one process reads with the global batch size
    single, _ = ramp.get_batch(3, world * b, t, seed=5)
    assert torch.equal(torch.cat(per_rank), single)
    with pytest.raises(ValueError):
        ramp.get_batch(3, b, t, seed=5, rank=4, world_size=4)


def test_windows_stay_inside_one_shard_and_cover_all_shards(two_shards):
    assert two_shards.num_tokens == 8_000
    x, y = two_shards.get_batch(0, batch_size=512, block_size=100, seed=0)
    windows = torch.cat([x, y[:, -1:]], dim=1)
    shard_of = windows // 10_000
    assert torch.equal(shard_of, shard_of[:, :1].expand_as(shard_of))  # never crosses a seam
    assert torch.equal(windows, windows[:, :1] + torch.arange(101))
    first = windows[:, 0]
    assert int(first[shard_of[:, 0] == 0].max()) <= 3_000 - 101
    assert int(first[shard_of[:, 0] == 1].max()) <= 10_000 + 5_000 - 101
    # starts are uniform over valid positions: shard 1 has (5000-100)/(2900+4900) of them
    share = float((shard_of[:, 0] == 1).float().mean())
    assert 0.55 < share < 0.71  # 4900/7800 = 0.628; 512 draws: sigma 0.021, so ~3.7 sigma either side


def test_eval_batches_are_consecutive_windows(ramp):
    t = 100
    assert ramp.num_eval_windows(t) == (N - 1) // t
    batches = list(ramp.iter_eval_batches(batch_size=64, block_size=t))
    assert len(batches) == -(-((N - 1) // t) // 64)
    assert batches[-1][0].shape[0] == ((N - 1) // t) % 64  # the last batch is partial
    x = torch.cat([b[0] for b in batches]).flatten()
    y = torch.cat([b[1] for b in batches]).flatten()
    assert torch.equal(x, torch.arange(((N - 1) // t) * t))
    assert torch.equal(y, x + 1)
    assert len(list(ramp.iter_eval_batches(64, t, max_batches=2))) == 2
    again = next(iter(ramp.iter_eval_batches(64, t)))
    assert torch.equal(again[0], batches[0][0])


def test_eval_windows_per_shard(two_shards):
    t = 1000
    assert two_shards.num_eval_windows(t) == 2 + 4  # (3000 - 1) // 1000 + (5000 - 1) // 1000
    firsts = [int(x[0, 0]) for x, _ in two_shards.iter_eval_batches(batch_size=1, block_size=t)]
    assert firsts == [0, 1000, 10_000, 11_000, 12_000, 13_000]


def test_short_split_is_refused(tmp_path):
    write_shard(tmp_path / "val.bin", np.arange(33), vocab_size=100)
    ds = TokenDataset.from_dir(tmp_path, "val")
    assert ds.get_batch(0, 2, block_size=32, seed=0)[0].shape == (2, 32)  # exactly block + 1 tokens
    assert ds.num_eval_windows(32) == 1
    short = r"the 'val' split holds 33 tokens, but a window of model.block_size=33 needs 34 tokens in one shard"
    with pytest.raises(DataError, match=short):
        ds.get_batch(0, 2, block_size=33, seed=0)
    with pytest.raises(DataError, match=short):
        ds.iter_eval_batches(2, block_size=33)
    ds.check_windows(32)  # what a task checks at start-up, before the first step or evaluation
    with pytest.raises(DataError, match=f"^{tmp_path}: {short}"):
        ds.check_windows(33)


def test_a_tokenizer_smaller_than_the_shards_is_refused_at_start_up(tmp_path):
    """The model takes its vocabulary from tokenizer.json: one smaller than the shards' would meet
    an id past its embedding mid-step (an IndexError), so opening the directory refuses it."""
    from axon.data.loader import open_prepared
    from axon.data.prepare import prepare

    (tmp_path / "a.txt").write_text("abcdefgh " * 40)
    (tmp_path / "b.txt").write_text("ab " * 40)
    prepare(tmp_path / "a.txt", tmp_path / "data")
    prepare(tmp_path / "b.txt", tmp_path / "other")
    tokenizer, train, val = open_prepared(tmp_path / "data")
    assert tokenizer.vocab_size == train.vocab_size == val.vocab_size == 9
    (tmp_path / "data" / "tokenizer.json").write_bytes((tmp_path / "other" / "tokenizer.json").read_bytes())
    with pytest.raises(DataError, match=r"tokenizer\.json: the tokenizer has 3 symbols but the 'train' shards of .* "
                                        r"were written for 9 \(their header's vocab_size\)"):
        open_prepared(tmp_path / "data")


def test_from_dir_errors(tmp_path, ramp):
    with pytest.raises(DataError, match="not found"):
        TokenDataset.from_dir(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="no 'val' token shards"):
        TokenDataset.from_dir(tmp_path, "val")
    (tmp_path / "meta.json").write_text(json.dumps({"splits": {"train": {"shards": ["train.bin"], "num_tokens": 7}}}))
    with pytest.raises(DataError, match="meta.json says .* 7 tokens"):
        TokenDataset.from_dir(tmp_path, "train")
    with pytest.raises(DataError, match="no 'val' split"):
        TokenDataset.from_dir(tmp_path, "val")


def test_prepared_shakespeare_end_to_end(tmp_path):
    prepare_corpus("shakespeare", tmp_path)
    text = corpus_path("shakespeare").read_text(encoding="utf-8")
    train, val = TokenDataset.from_dir(tmp_path, "train"), TokenDataset.from_dir(tmp_path, "val")
    assert (train.num_tokens, val.num_tokens, train.vocab_size) == (1_003_854, 111_540, 65)
    tok = load_tokenizer(tmp_path)
    x, y = train.get_batch(0, 4, 64, seed=0)
    for row_x, row_y in zip(x, y):
        window = tok.decode(row_x.tolist() + row_y[-1:].tolist())
        assert window in text[:1_003_854]
    x, _ = next(val.iter_eval_batches(2, 64))
    assert tok.decode(x[0]) == text[1_003_854 : 1_003_854 + 64]

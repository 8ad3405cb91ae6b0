import struct

import numpy as np
import pytest

from axon.data import shards
from axon.data.shards import HEADER_SIZE, MAGIC, ShardWriter, read_shard, write_shard
from axon.errors import DataError


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def shard(tmp_path):
    tokens = np.arange(1000, dtype=np.int64) % 65
    return write_shard(tmp_path / "train.bin", tokens, vocab_size=65), tokens


@pytest.mark.parametrize(
    ("vocab_size", "dtype", "top"),
    [(65, np.uint16, 64), (65536, np.uint16, 65535), (65537, np.uint32, 65536), (200_000, np.uint32, 199_999)],
)
def test_roundtrip_picks_narrowest_dtype(tmp_path, vocab_size, dtype, top):
    tokens = [0, 1, top, 7, top]
    path = write_shard(tmp_path / "s.bin", tokens, vocab_size)
    size = np.dtype(dtype).itemsize
    assert path.stat().st_size == HEADER_SIZE + len(tokens) * size

    header = path.read_bytes()[:HEADER_SIZE]
    assert header[:8] == MAGIC
    assert struct.unpack_from("<IIQQ", header, 8) == (1, size, vocab_size, len(tokens))

    s = read_shard(path)
    assert isinstance(s.tokens, np.memmap) and s.tokens.dtype == dtype
    assert s.tokens.tolist() == tokens
    assert (s.num_tokens, s.vocab_size, s.path) == (len(tokens), vocab_size, path)
    with pytest.raises(ValueError):  # read-only map
        s.tokens[0] = 1


def test_empty_and_incremental_writes(tmp_path):
    empty = read_shard(write_shard(tmp_path / "e.bin", [], vocab_size=10))
    assert empty.num_tokens == 0 and empty.tokens.dtype == np.uint16

    with ShardWriter(tmp_path / "inc.bin", vocab_size=50_000) as w:
        for chunk in (np.arange(5), [], np.array([[7, 8], [9, 10]], dtype=np.uint32)):
            w.write(chunk)
    assert read_shard(tmp_path / "inc.bin").tokens.tolist() == [0, 1, 2, 3, 4, 7, 8, 9, 10]


@pytest.mark.parametrize("bad", [-1, 65])
def test_out_of_range_token_is_refused_and_nothing_written(tmp_path, bad):
    with pytest.raises(DataError, match=f"token {bad} .*x.bin|x.bin.*token {bad}"):
        write_shard(tmp_path / "x.bin", [0, 5, bad, 3], vocab_size=65)
    assert list(tmp_path.iterdir()) == []  # no shard, no temporary file


def test_non_integer_tokens_are_refused(tmp_path):
    with pytest.raises(DataError, match="integers"):
        write_shard(tmp_path / "x.bin", [0.5, 1.0], vocab_size=65)


def test_failed_rewrite_keeps_the_old_shard(shard):
    path, tokens = shard
    with pytest.raises(DataError):
        write_shard(path, [1, 2, 99], vocab_size=65)
    assert read_shard(path).tokens.tolist() == tokens.tolist()
    assert [p.name for p in path.parent.iterdir()] == ["train.bin"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothere.bin"):
        read_shard(tmp_path / "nothere.bin")


@pytest.mark.parametrize("keep", [HEADER_SIZE + 1999, HEADER_SIZE + 1000, 10, 0])
def test_truncation_is_refused(shard, keep):
    path, _ = shard
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(DataError, match="train.bin.*truncated"):
        read_shard(path, verify=False)


def test_trailing_bytes_are_refused(shard):
    path, _ = shard
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(DataError, match="train.bin.*trailing"):
        read_shard(path)


@pytest.mark.parametrize("offset", [HEADER_SIZE, HEADER_SIZE + 999, HEADER_SIZE + 1999])
def test_flipped_body_byte_fails_checksum(shard, offset):
    path, _ = shard
    _flip(path, offset)
    with pytest.raises(DataError, match="train.bin.*checksum"):
        read_shard(path)
    assert read_shard(path, verify=False).num_tokens == 1000  # only the checksum can see it


@pytest.mark.parametrize(
    ("offset", "why"),
    [
        (0, "magic"),
        (7, "magic"),
        (8, "version"),
        (12, "dtype"),
        (16, "checksum"),  # vocab size: structurally fine, only the checksum covers it
        (24, "truncated"),  # token count
        (32, "checksum"),
        (39, "checksum"),
        (40, "padding"),
        (63, "padding"),
    ],
)
def test_flipped_header_byte_is_refused(shard, offset, why):
    path, _ = shard
    _flip(path, offset)
    with pytest.raises(DataError, match=f"train.bin.*{why}"):
        read_shard(path)


def test_wrong_magic_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"NOTATOKENSHARD" + bytes(100))
    with pytest.raises(DataError, match="model.safetensors.*not an Axon token shard"):
        read_shard(path)


def test_verification_is_chunked(shard, monkeypatch):
    path, tokens = shard
    monkeypatch.setattr(shards, "_CHUNK_BYTES", 7)  # many uneven pieces
    assert read_shard(path).tokens.tolist() == tokens.tolist()
    _flip(path, HEADER_SIZE + 1500)
    with pytest.raises(DataError, match="checksum"):
        read_shard(path)

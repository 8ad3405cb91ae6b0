"""Binary token shards: a 64-byte header followed by the token ids.

Layout (all integers little-endian)::

    offset  size  field
         0     8  magic            b"AXONTOK\\x00"
         8     4  version          uint32, = 1
        12     4  dtype code       uint32: 2 -> uint16 tokens, 4 -> uint32 tokens (bytes per token)
        16     8  vocab size       uint64; every token is in [0, vocab size)
        24     8  token count      uint64
        32     8  checksum         uint64: CRC-32 of the token bytes followed by this header
                                   with the checksum field zeroed (so a flip anywhere is caught)
        40    24  zero padding
        64     *  tokens           token count * (dtype code) bytes, nothing after them

Tokens are uint16 when the vocabulary fits (vocab size <= 65536), else uint32. Readers map the
tokens with ``np.memmap``, so a shard costs no memory until its pages are touched.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axon.atomic import AtomicFile
from axon.errors import DataError

MAGIC = b"AXONTOK\x00"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQQQ")  # magic, version, dtype code, vocab size, token count, checksum
_CHECKSUM_OFFSET = 32
DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_CHUNK_BYTES = 1 << 24  # verify in 16 MiB pieces so memory stays flat for any shard size


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest shard dtype that holds every id below ``vocab_size``."""
    if not 1 <= vocab_size <= 2**32:
        raise DataError(f"vocab_size {vocab_size} is outside the range a shard can store [1, 2**32]")
    return DTYPES[2] if vocab_size <= 2**16 else DTYPES[4]


def _header(dtype: np.dtype, vocab_size: int, num_tokens: int, checksum: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, dtype.itemsize, vocab_size, num_tokens, checksum).ljust(
        HEADER_SIZE, b"\x00"
    )


def _checksum(body_crc: int, header: bytes) -> int:
    """Finish a running CRC-32 of the body with the header (its checksum field zeroed)."""
    zeroed = header[:_CHECKSUM_OFFSET] + bytes(8) + header[_CHECKSUM_OFFSET + 8 :]
    return zlib.crc32(zeroed, body_crc)


@dataclass(frozen=True)
class Shard:
    """A shard opened for reading; ``tokens`` is a read-only memory map (or empty array)."""

    path: Path
    tokens: np.ndarray
    vocab_size: int

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


class ShardWriter:
    """Write a shard incrementally; it appears at ``path`` atomically on :meth:`close`.

    Tokens go to a temporary file in the same directory, which is fsynced and renamed over
    ``path`` only when complete, so a crash never leaves a half-written shard under the real
    name. Use as a context manager; an exception inside the block discards the temporary file.
    """

    def __init__(self, path: str | Path, vocab_size: int) -> None:
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self.num_tokens = 0
        self._crc = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = AtomicFile(self.path, binary=True, fsync=True, buffering=1 << 20)
        self._file = self._out.file
        self._file.write(bytes(HEADER_SIZE))  # placeholder until the count and checksum are known

    def write(self, tokens: np.ndarray | Sequence[int]) -> None:
        """Append ``tokens`` after checking each is in [0, vocab_size)."""
        arr = np.asarray(tokens)
        if arr.size == 0:
            return
        if arr.dtype.kind not in "iu":
            raise DataError(f"{self.path.name}: tokens must be integers, got dtype {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise DataError(f"{self.path.name}: token {bad} is outside the vocabulary [0, {self.vocab_size})")
        data = np.ascontiguousarray(arr.reshape(-1), dtype=self.dtype)
        self._crc = zlib.crc32(data, self._crc)
        self._file.write(data.data)
        self.num_tokens += data.size

    def close(self) -> Path:
        """Write the header, fsync and move the shard into place; returns its path."""
        header = _header(self.dtype, self.vocab_size, self.num_tokens, 0)
        header = _header(self.dtype, self.vocab_size, self.num_tokens, _checksum(self._crc, header))
        self._file.seek(0)
        self._file.write(header)
        return self._out.commit()

    def abort(self) -> None:
        """Discard the temporary file; nothing appears at ``path``."""
        self._out.abort()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(path: str | Path, tokens: np.ndarray | Sequence[int], vocab_size: int) -> Path:
    """Write ``tokens`` (all in [0, vocab_size)) as one shard at ``path``, atomically."""
    with ShardWriter(path, vocab_size) as writer:
        writer.write(tokens)
    return writer.path


def read_shard(path: str | Path, verify: bool = True) -> Shard:
    """Open a shard, refusing (with :class:`DataError` naming the file) anything malformed.

    The header and file size are always checked; ``verify`` also recomputes the checksum,
    streaming the file in chunks (a sequential read, ~1 GB/s).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"token shard not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE:
            raise DataError(f"{path}: truncated token shard ({size} bytes, smaller than the {HEADER_SIZE}-byte header)")
        magic, version, code, vocab_size, num_tokens, checksum = _HEADER.unpack_from(header)
        if magic != MAGIC:
            raise DataError(f"{path}: not an Axon token shard (magic {magic!r}, expected {MAGIC!r})")
        if version != VERSION:
            raise DataError(f"{path}: unsupported shard version {version} (this Axon reads version {VERSION})")
        if code not in DTYPES:
            raise DataError(f"{path}: unknown token dtype code {code} (expected 2 or 4)")
        dtype = DTYPES[code]
        expected = HEADER_SIZE + num_tokens * dtype.itemsize
        if size != expected:
            what = "truncated" if size < expected else "has trailing bytes"
            raise DataError(
                f"{path}: token shard {what}: header says {num_tokens} tokens ({expected} bytes), file has {size} bytes"
            )
        if any(header[_HEADER.size :]):
            raise DataError(f"{path}: corrupt token shard header (non-zero padding)")
        if verify:
            crc = 0
            while chunk := f.read(_CHUNK_BYTES):
                crc = zlib.crc32(chunk, crc)
            if _checksum(crc, header) != checksum:
                raise DataError(f"{path}: token shard checksum mismatch (the file is corrupt)")
    if num_tokens == 0:
        tokens = np.empty(0, dtype=dtype)  # np.memmap cannot map zero bytes
        tokens.flags.writeable = False
    else:
        tokens = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(num_tokens,))
    return Shard(path=path, tokens=tokens, vocab_size=vocab_size)

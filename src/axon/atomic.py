"""Writing files and directories atomically: aside under a temporary name, then renamed into place.

A reader (another process, or this one after a crash) sees the old file or the whole new one,
never half of it: ``os.replace`` of a sibling is atomic on POSIX and Windows alike. Every place
in Axon that writes something another process may read meanwhile, or that a kill must not leave
half-written (shards, meta.json, result.json, checkpoints, prepared caches, reports), goes
through here. ``fsync=True`` also forces the data to disk before the rename (and, for a
directory, the parent's entry after it), so that a power cut cannot leave the new name pointing
at empty blocks.

Temporary names are hidden siblings, ``.<name>.<pid>.<random>.tmp``: unique to the process and
the call, so concurrent writers never share one, and created with "x" (exclusive) mode rather
than by ``mkstemp``, whose 0600 mode would ignore the umask. This module imports nothing of
Axon's.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temp_path(path: str | Path, suffix: str = "") -> Path:
    """A fresh hidden sibling of ``path`` to write aside: ``.<name>.<pid>.<random>.tmp<suffix>``
    (``suffix`` for writers that go by the extension, e.g. ``".json"``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def fsync_path(path: str | Path) -> None:
    """Force a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A file written aside that appears at ``path`` on :meth:`commit` and never on :meth:`abort`.

    ``file`` is the open temporary file (text, or ``binary=True``; ``open_kwargs`` go to
    ``open``: ``encoding``, ``newline``, ``buffering``). As a context manager it yields ``file``
    and commits when the block ends normally, aborts when it raises.
    """

    def __init__(self, path: str | Path, *, binary: bool = False, fsync: bool = False, **open_kwargs) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.tmp = temp_path(self.path)
        if not binary:
            open_kwargs.setdefault("encoding", "utf-8")
        self.file: IO = open(self.tmp, "xb" if binary else "x", **open_kwargs)

    def commit(self) -> Path:
        """Flush (and fsync) the file, close it and rename it over ``path``; returns ``path``."""
        try:
            self.file.flush()
            if self.fsync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; nothing appears at ``path``."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> IO:
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    """``path.write_bytes(data)``, atomically."""
    with AtomicFile(path, binary=True, fsync=fsync) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8", fsync: bool = False) -> Path:
    """``path.write_text(text)``, atomically (UTF-8 unless ``encoding`` says otherwise)."""
    with AtomicFile(path, encoding=encoding, fsync=fsync) as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = None, default=None, fsync: bool = False) -> Path:
    """``json.dumps(obj, indent=indent, default=default)`` and a newline, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default) + "\n", fsync=fsync)


@contextmanager
def written_aside(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """For a writer that takes a path (``tokenizer.save(p)``): yields a temporary sibling to write,
    renamed over ``path`` when the block ends normally, deleted when it raises."""
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path, *, temp: str | Path | None = None, replace: bool = False,
                     fsync: bool = False) -> Iterator[Path]:
    """Fill a directory aside; it appears at ``path`` whole when the block ends normally.

    Yields the temporary directory (``temp``, default :func:`temp_path`; emptied first if a
    crashed writer left it), which is deleted if the block raises. Then, if ``path`` exists:
    ``replace=True`` deletes it first (the same checkpoint saved again); otherwise the rename
    fails and the temporary directory is dropped, keeping what is there (another process
    prepared the same cache first). ``fsync=True`` syncs every file in it before the rename and
    the parent directory after.
    """
    path = Path(path)
    tmp = Path(temp) if temp is not None else temp_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if fsync:
        for f in sorted(tmp.iterdir()):
            if f.is_file():
                fsync_path(f)
    if replace and path.exists():
        shutil.rmtree(path)
    try:
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if replace:
            raise
        return  # another writer's directory is already in place: it stays
    if fsync:
        fsync_path(path.parent)

"""User-facing errors.

Anything the *user* can cause (a bad config value, a missing or corrupt file, a prompt that is
too long) raises :class:`AxonError`. The CLI prints its message as one line and exits non-zero;
programming errors keep their traceback (DESIGN.md, rule 12). :func:`check` is the one-line
validation every config dataclass uses. This module imports nothing from axon, so any layer may
use it (tests/test_layering.py).

Files from the outside world fail in a handful of ways -- missing, unreadable, not UTF-8, not valid
JSON or YAML -- and each way gets one line naming the file: reading a user's file goes inside
``with reading(path):``. What escapes to the CLI as a bare ``OSError`` (an unwritable output
directory, a full disk) is shown by ``axon.cli.main`` the same way, with the path the OS names.
"""

import json
import os
import shutil
from contextlib import contextmanager


class AxonError(Exception):
    """An error caused by user input; its message is shown as one line, without a traceback."""


class ConfigError(AxonError):
    """A configuration value is unknown, of the wrong type, or inconsistent with another."""


class DataError(AxonError):
    """A data file (text, JSONL, token shard, tokenizer) is missing, truncated or corrupt."""


class CheckpointError(AxonError):
    """A checkpoint is missing or damaged."""


class WriteError(AxonError):
    """The outside world refused a write (a full disk, a quota, a read-only or vanished directory)."""


class CheckpointMismatch(CheckpointError):
    """A sound checkpoint that does not fit the model it is loaded into (another architecture):
    not damage, so no reason to fall back to an older checkpoint."""


def check(cond: bool, field_name: str, message: str) -> None:
    """Raise ConfigError "<field_name>: <message>" unless ``cond`` — for ``__post_init__`` checks."""
    if not cond:
        raise ConfigError(f"{field_name}: {message}")


def os_error_line(e: OSError) -> str:
    """'<path>: <reason>' for an OSError (the OS's words: "No such file or directory", "No space
    left on device", "Permission denied"), or its message when it names no path."""
    reason = e.strerror or str(e)
    return f"{e.filename}: {reason}" if e.filename is not None else reason


@contextmanager
def reading(path, what: str = "file"):
    """Reading ``path`` inside this block: an OSError, a UnicodeDecodeError, a JSON or YAML syntax
    error becomes DataError "<what> <path>: <what is wrong>" (CheckpointError etc. pass through)."""
    try:
        yield
    except AxonError:
        raise
    except OSError as e:
        raise DataError(f"{what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{what} {path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except Exception as e:
        if type(e).__module__.startswith("yaml"):  # yaml.YAMLError, without importing yaml here
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise DataError(f"{what} {path}: malformed YAML{where}: {getattr(e, 'problem', None) or e}") from None
        raise


def free_space(path) -> str:
    """'N MB free' on the file system holding ``path`` (or its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "free space unknown"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


@contextmanager
def writing(path, what: str = "file", then: str = ""):
    """Writing ``path`` inside this block: an OSError (ENOSPC, EFBIG, EDQUOT, EROFS, EACCES...)
    becomes WriteError "could not write <what> <path>: <reason> (<free space>)<then>"."""
    try:
        yield
    except AxonError:
        raise
    except OSError as e:
        raise WriteError(f"could not write {what} {path}: {e.strerror or e} ({free_space(path)}){then}") from None

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
from contextlib import contextmanager


class AxonError(Exception):
    """An error caused by user input; its message is shown as one line, without a traceback."""


class ConfigError(AxonError):
    """A configuration value is unknown, of the wrong type, or inconsistent with another."""


class DataError(AxonError):
    """A data file (text, JSONL, token shard, tokenizer) is missing, truncated or corrupt."""


class CheckpointError(AxonError):
    """A checkpoint is missing or damaged."""


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

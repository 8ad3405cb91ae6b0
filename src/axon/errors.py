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
import numbers
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


class OptionError(ConfigError, ValueError):
    """A keyword argument of a Python function, or the command-line flag that feeds it, out of
    range: ``field`` (the Python name), ``rule`` (what it must be), the refused ``value`` and an
    optional ``detail``; its message is ``"<field> <rule>, got <value><detail>"``. ``axon.cli``
    words it with the flag the user typed instead of the field (``--top-p must be in (0, 1], got
    2.0``) through :meth:`message_for`, so the Python API and the command line refuse a value with
    the same sentence. Also a ValueError: what a function refuses is a bad argument value."""

    def __init__(self, field: str, rule: str, value, detail: str = "") -> None:
        self.field, self.rule, self.value, self.detail = field, rule, value, detail
        super().__init__(self.message_for(field))

    def message_for(self, name: str) -> str:
        """The message with the setting called ``name`` (e.g. a command-line flag)."""
        return f"{name} {self.rule}, got {self.value!r}{self.detail}"


def is_int(value) -> bool:
    """An integer that is not a bool (True is an int to Python, never a count to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number that is not a bool (NaN and inf included: check finiteness separately)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_count(field: str, value, minimum: int, *, optional: bool = False, meaning: str = "") -> None:
    """Raise OptionError unless ``value`` is an integer >= ``minimum`` (or None when ``optional``);
    ``meaning`` is added to the rule, e.g. "(0: no intervals)"."""
    if (optional and value is None) or (is_int(value) and value >= minimum):
        return
    rule = f"must be an integer >= {minimum}" + (f" {meaning}" if meaning else "")
    raise OptionError(field, rule, value)


def check_new_file(field: str, path, *, make_parents: bool = False) -> None:
    """Raise OptionError unless a file can be written at ``path``: it is not a directory, and its
    directory exists (with ``make_parents``: will be created, so the nearest existing one is a
    directory) -- checked before the work whose result goes there."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OptionError(field, "must name a file to write", path, ", which is a directory")
    rule = "must name a file to write" if make_parents else "must name a file in an existing directory"
    _check_parent(field, path, rule, make_parents)


def check_output_dir(field: str, path, *, empty: bool = False) -> None:
    """Raise OptionError unless ``path`` is a directory to write into: absent (it is created,
    with its parents) or a directory -- and with ``empty``, an empty one."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OptionError(field, "must name a directory to write into", path, ", which is a file")
    if empty and os.path.isdir(path) and os.listdir(path):
        raise OptionError(field, "must name a new or empty directory", path, ", which holds files already")
    _check_parent(field, path, "must name a directory to write into", True)


def _check_parent(field: str, path: str, rule: str, make_parents: bool) -> None:
    parent = os.path.dirname(path.rstrip(os.sep)) or "."
    if make_parents:  # created with its parents: the nearest existing one must be a directory
        while not os.path.exists(parent):
            parent = os.path.dirname(parent) or "."
    if not os.path.isdir(parent):
        raise OptionError(field, rule, path, f"; {parent} {'is a file' if os.path.exists(parent) else 'does not exist'}")


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

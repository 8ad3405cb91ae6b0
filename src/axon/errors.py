"""User-facing errors.

Anything the *user* can cause (a bad config value, a missing or corrupt file, a prompt that is
too long) raises :class:`AxonError`. The CLI prints its message as one line and exits non-zero;
programming errors keep their traceback (DESIGN.md, rule 12). :func:`check` is the one-line
validation every config dataclass uses. This module imports nothing from axon, so any layer may
use it (tests/test_layering.py).
"""


class AxonError(Exception):
    """An error caused by user input; its message is shown as one line, without a traceback."""


class ConfigError(AxonError):
    """A configuration value is unknown, of the wrong type, or inconsistent with another."""


class DataError(AxonError):
    """A data file (text, JSONL, token shard, tokenizer) is missing, truncated or corrupt."""


class CheckpointError(AxonError):
    """A checkpoint is missing or damaged."""


def check(cond: bool, field_name: str, message: str) -> None:
    """Raise ConfigError "<field_name>: <message>" unless ``cond`` — for ``__post_init__`` checks."""
    if not cond:
        raise ConfigError(f"{field_name}: {message}")

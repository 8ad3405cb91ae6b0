"""The type and finiteness check of a config field, shared by every config dataclass.

:func:`coerce` reads a value as its field's annotation says (int, float, bool, str, Literal,
Optional, tuple, list, dict, a nested config dataclass) and refuses NaN and infinity in any float.
``axon.config`` applies it to what a recipe or a flag says; every config's ``__post_init__`` starts
with :func:`check_fields`, the same check on what it was given, so ``RunConfig(...)`` in Python
and ``--section.key=value`` on the command line refuse the same values with the same message.
Standard library only, like the rest of the config layer (tests/test_layering.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from typing import Any, Literal

from axon.errors import ConfigError


class _NotFinite(ConfigError):
    """A float field given NaN or infinity."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str, text: bool = True) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in that type; a mismatch, or a
    float that is NaN or infinite, is a ConfigError naming ``key``. ``text``: the value was read
    from YAML or a flag, where "3e-4" (YAML 1.1 reads it as a string) is still a number; a Python
    caller's "3e-4" is refused."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key, text)
            except _NotFinite:
                raise  # a NaN is a number, not a value of another type
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not valid; choose one of: {', '.join(map(str, choices))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, f"{key}[{i}]", text) for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        return origin(coerce(v, inner, f"{key}[{i}]", text) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        return {coerce(k, k_tp, key, text): coerce(v, v_tp, f"{key}.{k}", text) for k, v in value.items()}
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):  # a section of RunConfig
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float) and text and isinstance(value, str):
        # YAML 1.1 reads "3e-4" (no dot) as a string; numbers written that way are still numbers.
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)  # numpy's integers too, as a plain int (YAML writes no numpy scalar)
        if isinstance(value, float) and value.is_integer():
            return int(value)  # YAML reads 1e6 as a float
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
            if not math.isfinite(value):
                raise _NotFinite(f"{key}: must be a finite number, got {value}")
            return value
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if not text and isinstance(value, os.PathLike):
            return os.fspath(value)  # a Python caller's Path for a directory
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(obj: Any, prefix: str) -> None:
    """Every field of the config dataclass ``obj`` in its annotated type and finite (:func:`coerce`
    with ``prefix + name`` as the key), converted in place: an int given for a float becomes a float,
    a list given for a tuple a tuple. The first check of every config's ``__post_init__``, so the
    range checks after it compare numbers."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        checked = coerce(value, hints[f.name], prefix + f.name, text=False)
        if checked is not value:
            setattr(obj, f.name, checked)

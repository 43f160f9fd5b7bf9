"""Typed dataclass settings from plain data: one loader and one way to check values, for every block.

Why here, below every layer: the run configuration (training), the model section stored in every
model artifact (models) and the strategies' own settings all load and check the same way, so a value
is accepted or refused with the same message wherever it is read.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from mitotype.errors import ConfigError


def value_range(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False) -> dict[str, Any]:
    """Field metadata: the range a number must lie in (``None`` = unbounded; ``*_open`` excludes the end)."""
    return {"range": (lo, hi, lo_open, hi_open)}


def one_of(*choices: str) -> dict[str, Any]:
    """Field metadata: the only values a string may take."""
    return {"choices": choices}


def lazy_type(resolve: Callable[[], type]) -> dict[str, Any]:
    """Field metadata: the field's settings class is asked for when a configuration is read, not fixed when the
    dataclass is defined (a block built from a registry that may still grow, e.g. ``strategies``)."""
    return {"type": resolve}


class Settings:
    """Base of every settings dataclass: checked on construction, in one pass, by the same rules.

    A field declares its own rule in its metadata (:func:`value_range`, :func:`one_of`); every number must
    be finite; a rule that involves several fields (or the outside world, e.g. a registered backbone)
    goes in :meth:`check`. Messages name the key as the configuration file spells it (``where``).
    """

    where: ClassVar[str] = ""
    """The dotted path of this block in the run configuration (``strategies.mixup``), for messages."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        validate_fields(self, self.where)
        self.check()

    def check(self) -> None:
        """Rules across fields; the default has none."""


def validate_fields(obj: Any, where: str = "") -> None:
    """Check every field of one settings object against its declared rule (not recursing: nested
    settings check themselves when they are built)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        dotted = f"{where}.{f.name}" if where else f.name
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and not math.isfinite(value):
            raise ConfigError(f"{dotted} = {value} is not a finite number")
        if numeric and "range" in f.metadata:
            lo, hi, lo_open, hi_open = f.metadata["range"]
            below = lo is not None and (value <= lo if lo_open else value < lo)
            above = hi is not None and (value >= hi if hi_open else value > hi)
            if below or above:
                raise ConfigError(f"{dotted} = {value} is out of range {'(' if lo_open else '['}{lo}, {hi}"
                                  f"{')' if hi_open else ']'}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{dotted} must be one of {', '.join(choices)}, got {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type, or raise a ConfigError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """The one loader: build ``cls`` from plain data (YAML, JSON), converting each value to its annotated
    type and refusing unknown keys with the closest valid one; the settings then check themselves."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    names = list(fields)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown configuration key '{dotted}'{hint}")
        resolve = fields[key].metadata.get("type")
        kwargs[key] = _coerce(value, resolve() if resolve is not None else hints[key], dotted)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-data form of a configuration (lists for tuples, paths as strings)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return convert(obj)


__all__ = ["Settings", "from_dict", "lazy_type", "one_of", "to_dict", "validate_fields", "value_range"]

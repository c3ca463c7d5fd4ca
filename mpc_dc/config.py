"""Frozen configuration dataclasses built from TOML tables, rejecting unknown keys.

Every configuration class in mpc-dc is a ``@dataclass(frozen=True)`` whose field
names carry their units (``capacity_mw``, ``demand_charge_usd_per_kw``). Build
one from a mapping with :func:`from_mapping`: an unknown key is an error that
names the nearest valid key, a missing required key is an error naming it, a
value of the wrong type is an error naming the expected type; each is one line.
Nested dataclass fields are built recursively.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import pandas as pd

from traces.errors import ConfigError
from traces.grid import STEP, STEPS_PER_DAY

T = TypeVar("T")


def from_mapping(
    cls: type[T], mapping: Mapping[str, Any], source: str | Path, prefix: str = ""
) -> T:
    """Build the frozen dataclass ``cls`` from ``mapping``.

    Parameters
    ----------
    cls
        A dataclass type.
    mapping
        Keys and values, e.g. a table parsed by :mod:`tomllib`.
    source
        File name (or ``"<defaults>"``) used in error messages.
    prefix
        Dotted path of ``mapping`` inside the file, e.g. ``"site.grid"``.

    Raises
    ------
    ConfigError
        On unknown, missing or mistyped keys (one line, naming file and key).
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            source, f"expected a table, got {type(mapping).__name__}", key=prefix or None
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    reject_unknown_keys(source, mapping, list(fields), f"{prefix}." if prefix else "")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        dotted = _join(prefix, name)
        if name not in mapping:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                expected = field.metadata.get("expected") or _describe(hints[name])
                raise ConfigError(source, f"required key is missing; expected {expected}",
                                  key=dotted)
            continue
        kwargs[name] = _coerce(hints[name], mapping[name], source, dotted)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(source, str(err), key=prefix or None) from None


def reject_unknown_keys(source: str | Path, table: Mapping[str, Any], keys: Sequence[str],
                        prefix: str = "", dotted_hint: str = "") -> None:
    """Raise :class:`ConfigError` naming the first key of ``table`` not in ``keys``.

    The message names the nearest valid key, or all of them; ``dotted_hint`` is added
    when the unknown key is dotted. ``prefix`` (with its trailing dot) is the table's
    place in the file, e.g. ``"suite."``.
    """
    for key in table:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(keys)}"
            if "." in key:
                hint += dotted_hint
            raise ConfigError(source, f"unknown key; {hint}", key=f"{prefix}{key}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like in TOML, for a missing key's message
    (a field's ``metadata["expected"]`` says it better where the type alone does not)."""
    origin = get_origin(hint)
    if origin is typing.Literal:
        return f"one of {list(get_args(hint))}"
    if origin in (tuple, list):
        args = get_args(hint)
        return "a list of tables" if args and dataclasses.is_dataclass(args[0]) else "a list"
    if dataclasses.is_dataclass(hint) or origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a table"
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string",
             Path: "a path string"}
    return names.get(hint, "a value")


def _coerce(hint: Any, value: Any, source: str | Path, key: str) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None and type(None) in get_args(hint):
            return None
        if len(options) == 1:  # Optional[X]: X's own error names the exact key
            return _coerce(options[0], value, source, key)
        errors = []
        for option in options:
            try:
                return _coerce(option, value, source, key)
            except ConfigError as err:
                errors.append(err.message)
        raise ConfigError(source, "; ".join(errors), key=key)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_mapping(hint, value, source, key)
    if origin in (tuple, list):
        args = get_args(hint)
        if isinstance(value, Mapping) and args and dataclasses.is_dataclass(args[0]):
            # [key] where [[key]] was meant: name the TOML, not the whole table's repr.
            raise ConfigError(source, f"expected a list of tables ([[{key}]] for each entry), "
                              f"got one table ([{key}])", key=key)
        if not isinstance(value, list | tuple):
            shown = "a table" if isinstance(value, Mapping) else repr(value)
            raise ConfigError(source, f"expected a list, got {shown}", key=key)
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(source, f"expected a table, got {value!r}", key=key)
        args = get_args(hint)
        value_hint = args[1] if len(args) == 2 else Any
        return {k: _coerce(value_hint, v, source, f"{key}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(source, f"expected one of {list(allowed)}, got {value!r}", key=key)
        return value
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(source, f"expected a number, got {value!r}", key=key)
        if not math.isfinite(value):
            # TOML allows nan and inf; no configuration value means either.
            raise ConfigError(source, f"expected a finite number, got {value!r}", key=key)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, f"expected an integer, got {value!r}", key=key)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, f"expected true or false, got {value!r}", key=key)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(source, f"expected a string, got {value!r}", key=key)
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(source, f"expected a path string, got {value!r}", key=key)
        return Path(value)
    if isinstance(hint, type) and issubclass(hint, str):  # StrEnum
        try:
            return hint(value)
        except ValueError:
            members = [getattr(m, "value", m) for m in hint]  # type: ignore[attr-defined]
            raise ConfigError(
                source, f"expected one of {members}, got {value!r}", key=key
            ) from None
    return value


def to_mapping(obj: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (for writing the resolved scenario)."""
    result: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            result[field.name] = to_mapping(value)
        elif isinstance(value, tuple | list):
            result[field.name] = [
                to_mapping(v) if dataclasses.is_dataclass(v) else _plain(v) for v in value
            ]
        else:
            result[field.name] = _plain(value)
    return result


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_mapping(value)  # a table inside a mapping (controller.channels)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def grid_start(source: str, key: str, value: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an ISO 8601 UTC time on the 15-min grid."""
    try:
        ts = pd.Timestamp(value)
    except ValueError:
        raise ConfigError(
            source, f"expected an ISO 8601 UTC time, got {value!r}", key=key
        ) from None
    if ts.tzinfo is None or ts.utcoffset() != pd.Timedelta(0) or ts != ts.floor(STEP):
        raise ConfigError(
            source, f"expected a UTC time on the 15-minute grid, got {value!r}", key=key
        )


class RunPeriod:
    """Derived figures of a run spec with ``start`` (ISO UTC) and ``days`` [d] fields.

    A base of the scenario run dataclasses; it has no fields, so the TOML keys stay
    those of the dataclass.
    """

    start: str
    days: float

    @property
    def start_ts(self) -> pd.Timestamp:
        """``start`` as a UTC timestamp."""
        return pd.Timestamp(self.start).tz_convert("UTC")

    @property
    def n_steps(self) -> int:
        """Intervals of the run."""
        return round(self.days * STEPS_PER_DAY)


def positive(source: str, key: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` > 0 (or >= 0)."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(source, f"expected a value {bound}, got {value!r}", key=key)

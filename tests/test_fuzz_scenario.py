"""Property tests: scenario files of the one schema, mutated, through the CLI.

The seeds are the packaged example scenarios (``mpc_dc/scenarios``), both as shipped
and resolved (:func:`~mpc_dc.site.scenario.scenario_to_mapping`: every key of the
schema with its value, so every key is a mutation target). Hypothesis changes one
thing: a value of another TOML type, NaN or an infinity in a number, a key
misspelt, a required key deleted, a key or value of the schemas before the one
schema added, or random bytes of the file. Each file goes through ``mpc-dc scenario
check FILE --no-data``: exit 0, or exit 2 with exactly one stderr line ``mpc-dc:
error: FILE: ...`` and no traceback, nothing written. Each mutation class also says
what the line must name (the mutated key, the key suggested, the new key of an old
one) and what it must say was expected.

The example counts add up to 525 in CI (``CI=true``; derandomized, see conftest.py)
and 105 elsewhere.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_dc.site.scenario import (
    OLD_KEYS,
    OLD_VALUES,
    Scenario,
    example_path,
    load_scenario,
    scenario_to_mapping,
)
from tests.fuzzing import Outcome, byte_edits, check_command, edited, scratch_folder

EXAMPLES = sorted(p.stem for p in example_path("default").parent.glob("*.toml")
                  if not p.stem.startswith("sweep_"))

Place = tuple[str | int, ...]
"""A place in a scenario table: table keys and list positions."""

# ----------------------------------------------------------------------------- TOML


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    return name if _BARE.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value: tables inline, so a document is one line per key."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are TOML escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(table: Mapping[str, Any]) -> str:
    return "".join(f"{_key(k)} = {toml_value(v)}\n" for k, v in table.items())


# ----------------------------------------------------------------------------- seeds


def _resolved(name: str) -> dict[str, Any]:
    return scenario_to_mapping(load_scenario(example_path(name)))


RESOLVED = {name: _resolved(name) for name in EXAMPLES}
SHIPPED = {name: example_path(name).read_bytes() for name in EXAMPLES}


def dotted(path: Place) -> str:
    """``site.campuses[0].grid.tariff.kind`` for ``("site", "campuses", 0, ...)``."""
    out = ""
    for token in path:
        out += f"[{token}]" if isinstance(token, int) else (f".{token}" if out else token)
    return out


def places(node: Any, path: Place = ()) -> Iterator[tuple[Place, Any]]:
    """Every key and list entry under ``node`` (tables too), with its value."""
    items: Any = (node.items() if isinstance(node, Mapping)
                  else enumerate(node) if isinstance(node, list) else ())
    for token, value in items:
        here = (*path, token)
        yield here, value
        yield from places(value, here)


def _schema_type(hint: Any) -> Any:
    """The dataclass of an optional or union field (``Battery | None``), else ``hint``."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        tables = [a for a in options if dataclasses.is_dataclass(a)]
        return tables[0] if len(options) > 1 and tables else options[0]
    return hint


@functools.cache
def field_type(path: Place) -> tuple[Any, bool]:
    """The declared type at ``path`` and whether its key is a schema key (a field of a
    dataclass, not a key of a free table such as ``model_map``)."""
    hint: Any = Scenario
    schema_key = True
    for token in path:
        hint = _schema_type(hint)
        origin = get_origin(hint)
        if dataclasses.is_dataclass(hint):
            hint, schema_key = get_type_hints(hint)[str(token)], True
        elif origin in (tuple, list):
            hint, schema_key = get_args(hint)[0], False
        elif origin in (dict, Mapping) or hint in (dict, Mapping):
            hint, schema_key = get_args(hint)[1], False
    return hint, schema_key


def is_union(path: Place) -> bool:
    """A value at ``path`` is checked against several types (the message names a
    table above it)."""
    return any(get_origin(field_type(path[:i])[0]) in (typing.Union, types.UnionType)
               and len([a for a in get_args(field_type(path[:i])[0])
                        if a is not type(None)]) > 1
               for i in range(1, len(path) + 1))


def schema_keys(table: Mapping[str, Any]) -> list[Place]:
    """The places of ``table`` that are keys of the schema (not list entries, nor keys of
    free tables such as ``model_map``)."""
    return [p for p, _ in places(table) if isinstance(p[-1], str) and field_type(p)[1]]


def set_at(table: dict[str, Any], path: Place, value: Any) -> None:
    node: Any = table
    for token in path[:-1]:
        node = node[token]
    node[path[-1]] = value


def get_at(table: Mapping[str, Any], path: Place) -> Any:
    node: Any = table
    for token in path:
        node = node[token]
    return node


# ----------------------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One scratch folder for the module."""
    yield from scratch_folder("mpc-dc-fuzz-scenario-")


def check_file(folder: Path, data: bytes, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Write ``data``; run ``scenario check FILE --no-data``; assert the invariants
    (tests/fuzzing.py). (``run`` reads a file with the same function, and
    tests/test_bad_input_corpus.py checks that it refuses the corpus alike.)"""
    return check_command(folder, ".toml", data,
                         lambda path: ["scenario", "check", path, "--no-data"], capsys)


def check_table(folder: Path, table: Mapping[str, Any],
                capsys: pytest.CaptureFixture[str]) -> Outcome:
    return check_file(folder, toml_document(table).encode("utf-8"), capsys)


IN_CI = os.environ.get("CI", "").lower() == "true"
FUZZ = settings(max_examples=75 if IN_CI else 15, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Seven properties x 75 examples = 525 per CI run (x 15 = 105 elsewhere)."""

seed_st = st.sampled_from(EXAMPLES)


def _resolved_copy(name: str) -> dict[str, Any]:
    return json.loads(json.dumps(RESOLVED[name]))


@pytest.mark.parametrize("name", EXAMPLES)
def test_seeds_are_valid(name: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a mutation every seed is accepted, shipped and resolved as one-line
    TOML (so each refusal below is the mutation's)."""
    assert check_file(folder, SHIPPED[name], capsys).code == 0
    assert check_table(folder, RESOLVED[name], capsys).code == 0


# ----------------------------------------------------------------------------- properties


def _other_type(value: Any) -> st.SearchStrategy[Any]:
    """A TOML value of another kind than ``value`` (an integer is a number, so for a
    number field it is not another kind)."""
    choices: list[Any] = ["abc", True, [1], {"x": 1}, 3, 2.5]
    if isinstance(value, bool):
        choices = ["abc", 1, [True], {"x": 1}]
    elif isinstance(value, int | float):
        choices = ["abc", "1.5", True, [1], {"x": 1}]
    elif isinstance(value, str):
        choices = [5, 2.5, False, [value], {"x": value}]
    elif isinstance(value, list):
        choices = ["abc", 5, {"x": 1}]
    elif isinstance(value, dict):
        choices = ["abc", 5, [1]]
    return st.sampled_from(choices)


@FUZZ
@given(name=seed_st, data=st.data())
def test_value_of_another_type_is_refused_naming_its_key(
    name: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any key (or list entry) given a value of another TOML type: refused, naming it
    (or, for a value checked against several types, the key that has them)."""
    table = _resolved_copy(name)
    path, value = data.draw(st.sampled_from(list(places(table))), label="place")
    if isinstance(value, dict | list) and not value:
        return  # an empty table or list: nothing of its kind to contradict
    new = data.draw(_other_type(value), label="value")
    set_at(table, path, new)
    outcome = check_table(folder, table, capsys)
    assert outcome.code == 2, (dotted(path), new)
    key = dotted(path)
    assert outcome.key is not None, outcome
    if is_union(path):
        assert key.startswith(outcome.key), (key, outcome)
    else:
        assert outcome.key == key, (key, outcome)
    assert "expected" in outcome.said, outcome


NON_FINITE_WORDING = {int: "expected an integer", float: "expected a finite number"}
"""What the product says a number field should have held, by its declared type."""


def non_finite_message(hint: Any, value: float) -> str:
    """The message for NaN or an infinity ``value`` at a field of type ``hint``: an
    optional field (``int | None``) is checked as its one type (``config._coerce``), a
    field of several types against each of them, their messages joined by "; ". A type
    without a wording here is a KeyError: a new kind of number field needs its wording
    decided, not any message accepted."""
    options = ([a for a in get_args(hint) if a is not type(None)]
               if get_origin(hint) in (typing.Union, types.UnionType) else [hint])
    return "; ".join(f"{NON_FINITE_WORDING[option]}, got {value!r}" for option in options)


@FUZZ
@given(name=seed_st, data=st.data())
def test_nan_and_infinity_are_refused_naming_the_key(
    name: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN or an infinity in a number: refused naming the key, never read as a value."""
    table = _resolved_copy(name)
    numbers = [(p, v) for p, v in places(table)
               if isinstance(v, int | float) and not isinstance(v, bool)]
    path, _ = data.draw(st.sampled_from(numbers), label="place")
    special = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]), label="value")
    set_at(table, path, special)
    outcome = check_table(folder, table, capsys)
    assert outcome.code == 2
    assert outcome.key == dotted(path), outcome
    assert outcome.said == non_finite_message(field_type(path)[0], special), outcome


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf])
def test_non_finite_optional_integer_is_refused_as_an_integer(
    special: float, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example Hypothesis found: ``controller.mip_max_nodes`` (``int | None``) set
    to NaN is an integer field's error, as for the plain integer fields."""
    path = ("controller", "mip_max_nodes")
    assert field_type(path)[0] == int | None
    table = _resolved_copy("default")
    set_at(table, path, special)
    outcome = check_table(folder, table, capsys)
    assert outcome.code == 2
    assert outcome.key == "controller.mip_max_nodes", outcome
    assert outcome.said == f"expected an integer, got {special!r}", outcome


@FUZZ
@given(name=seed_st, data=st.data())
def test_misspelt_key_is_refused_naming_the_right_one(
    name: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schema key with a letter added: refused as unknown, suggesting the key meant."""
    table = _resolved_copy(name)
    path = data.draw(st.sampled_from(schema_keys(table)), label="key")
    suffix = data.draw(st.sampled_from(["x", "s", "_", "z"]), label="suffix")
    parent = get_at(table, path[:-1])
    wrong = str(path[-1]) + suffix
    if wrong in parent:
        return  # the misspelling is another key of the table
    # Same place in the table, so the key is reported where it was.
    items = [(wrong if k == path[-1] else k, v) for k, v in parent.items()]
    parent.clear()
    parent.update(items)
    outcome = check_table(folder, table, capsys)
    assert outcome.code == 2
    assert outcome.key == dotted((*path[:-1], wrong)), outcome
    assert outcome.said == f"unknown key; did you mean '{path[-1]}'?", outcome


REQUIRED = {("site",), ("site", "campuses")}
"""Required keys besides each campus's ``name`` and ``price_node``."""


@FUZZ
@given(name=seed_st, data=st.data())
def test_deleted_key(
    name: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key deleted: its default is used; a required key is refused naming it and
    what was expected."""
    table = _resolved_copy(name)
    path = data.draw(st.sampled_from(schema_keys(table)), label="key")
    del get_at(table, path[:-1])[path[-1]]
    outcome = check_table(folder, table, capsys)
    required = path in REQUIRED or (path[:2] == ("site", "campuses")
                                    and len(path) == 4 and path[3] in ("name", "price_node"))
    if required:
        assert outcome.code == 2
        assert outcome.key == dotted(path), outcome
        assert outcome.said.startswith("required key is missing; expected "), outcome


OLD_PLACES = sorted(OLD_KEYS)


@FUZZ
@given(name=seed_st, data=st.data())
def test_old_key_is_refused_naming_the_new_one(
    name: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key (or value) of the schemas before the one schema, anywhere in file order:
    refused naming it and its new key."""
    table = _resolved_copy(name)
    value: Any
    old_value = data.draw(st.booleans(), label="old value")
    if old_value:
        (key, value), message = data.draw(st.sampled_from(sorted(OLD_VALUES.items())),
                                          label="old")
        expected = f"{value!r} is a value of the schema before the one schema; {message}"
    else:
        key = data.draw(st.sampled_from(OLD_PLACES), label="old")
        value = data.draw(st.sampled_from([1, "x", {}]), label="value")
        expected = f"a key of the schema before the one schema; {OLD_KEYS[key]}"
    *parents, last = key.split(".")
    node = table
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    outcome = check_table(folder, table, capsys)
    assert outcome.code == 2
    assert outcome.key == key, outcome
    assert outcome.said == expected, outcome


@FUZZ
@given(name=seed_st, data=st.data())
def test_random_byte_edits(
    name: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes of a shipped example deleted, inserted or overwritten: accepted, or one
    line naming the file, never a crash."""
    edits = data.draw(byte_edits(len(SHIPPED[name])), label="edits")
    check_file(folder, edited(SHIPPED[name], edits), capsys)


@FUZZ
@given(name=seed_st, data=st.data())
def test_file_cut_off(
    name: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shipped example cut off anywhere (a half-written or truncated file): accepted
    (a shorter valid file) or one line naming the file; inside a multi-byte character,
    refused as not UTF-8."""
    raw = SHIPPED[name]
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    outcome = check_file(folder, raw[:cut], capsys)
    if not raw[:cut].strip():
        assert outcome.message == "scenario file is empty", outcome
    try:
        raw[:cut].decode("utf-8")
    except UnicodeDecodeError:
        assert outcome.message.startswith("not UTF-8 text"), outcome

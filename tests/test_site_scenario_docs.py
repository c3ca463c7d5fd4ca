"""docs/scenario.md documents every key of the one schema, no key that does not exist,
every old key's new key, and the example files."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from mpc_dc.site.config import Fleet, Site
from mpc_dc.site.scenario import (
    OLD_KEYS,
    OLD_VALUES,
    REMOVED_KEYS,
    Scenario,
    example_path,
    load_scenario,
)
from mpc_dc.sweep import SWEEP_KEYS, load_sweep

DOC = Path(__file__).resolve().parents[1] / "docs" / "scenario.md"
MIGRATION = "## Migration: old key → new key"

#: Fields that are not keys of the file: the site's fleet is the top-level [fleet]; the
#: quantization table is a CSV of the package.
NOT_KEYS = {(Site, "fleet"), (Fleet, "table")}


def _dataclass_of(hint: Any) -> type | None:
    """The table class of a field (``X | None`` too, and a field that takes a string or
    a table, ``fleet.flexibility = "S6"`` or ``{switching = ...}``: its table), or of a
    list of tables (``[[site.campuses]]``); None for a value."""
    if get_origin(hint) is tuple:
        args = get_args(hint)
        return _dataclass_of(args[0]) if args else None
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = get_args(hint)
        found = [c for c in map(_dataclass_of, args) if c is not None]
        return found[0] if found else None
    return hint if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


def schema_keys(cls: type = Scenario, prefix: str = "") -> list[str]:
    """Every leaf key of the schema, dotted as a TOML table path
    (``site.campuses.grid.tariff.kind``)."""
    keys: list[str] = []
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if (cls, field.name) in NOT_KEYS:
            continue
        dotted = f"{prefix}{field.name}"
        hint = hints[field.name]
        nested = _dataclass_of(hint)
        if nested is None:
            keys.append(dotted)
            continue
        keys += schema_keys(nested, f"{dotted}.")
        if get_origin(hint) in (typing.Union, types.UnionType) and any(
                _dataclass_of(a) is None and a is not type(None) for a in get_args(hint)):
            keys.append(dotted)  # a value or a table (``flexibility = "S6"`` or its levers)
    return keys


def _parts() -> tuple[str, str]:
    text = DOC.read_text(encoding="utf-8")
    reference, sep, migration = text.partition(MIGRATION)
    assert sep, f"{DOC.name} has no section '{MIGRATION}'"
    return reference, migration


def documented_keys() -> set[str]:
    """First-column keys of the reference tables."""
    found = re.findall(r"^\| `([a-z_][a-z_.]*)` \|", _parts()[0], re.M)
    return {k for k in found if not k.endswith(".toml")}


def test_every_key_is_documented_and_exists() -> None:
    keys = schema_keys()
    assert len(keys) > 60
    documented = documented_keys()
    sweep = {f"sweep.{k}" for k in SWEEP_KEYS}
    assert set(keys) - documented == set(), f"keys missing from {DOC.name}"
    assert documented - set(keys) - sweep == set(), f"{DOC.name} documents unknown keys"
    assert sweep <= documented


def _plain(text: str) -> str:
    return text.replace("[i]", "").replace("[", "").replace("]", "")


def test_every_old_key_is_in_the_migration_table_with_its_new_key() -> None:
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", _parts()[1], re.M))
    expected = {**{k: v for k, v in OLD_KEYS.items()}, **REMOVED_KEYS,
                **{f'{k} = "{v}"': msg for (k, v), msg in OLD_VALUES.items()}}
    assert set(rows) == set(expected)
    for old, cell in rows.items():
        message = _plain(expected[old])
        for token in re.findall(r"`([^`]+)`", cell):
            if "." in token:
                assert _plain(token) in message, (old, token, message)


def test_documented_examples_exist_and_load() -> None:
    names = re.findall(r"^\| `(\w+)\.toml` \|", DOC.read_text(encoding="utf-8"), re.M)
    shipped = sorted(p.stem for p in example_path("default").parent.glob("*.toml"))
    assert sorted(names) == shipped
    for name in names:
        path = example_path(name)
        if name.startswith("sweep_"):
            load_sweep(path)  # its base scenario (inline or a file) and every run's overrides
        else:
            load_scenario(path)

"""docs/scenario_v1.md documents every key of the schemas before the one schema (read by
mpc_dc/scenario.py and mpc_dc/fleet_scenario.py until they go), and no key that does not exist.

The one schema's reference, docs/scenario.md, is checked by tests/test_site_scenario_docs.py.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from mpc_dc.fleet_scenario import FleetScenario, load_fleet_scenario
from mpc_dc.scenario import Scenario, example_path, load_scenario, scenario_kind
from mpc_dc.sweep import SWEEP_KEYS

DOC = Path(__file__).resolve().parents[1] / "docs" / "scenario_v1.md"


def _dataclass_of(hint: Any) -> type | None:
    if get_origin(hint) in (typing.Union, types.UnionType):
        for arg in get_args(hint):
            found = _dataclass_of(arg)
            if found is not None:
                return found
        return None
    return hint if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


def scenario_keys(cls: type = Scenario, prefix: str = "") -> list[str]:
    """Every leaf key of the scenario dataclasses, dotted (``site.grid.tariff.kind``)."""
    keys: list[str] = []
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        dotted = f"{prefix}{field.name}"
        nested = _dataclass_of(hints[field.name])
        if nested is not None:
            keys += scenario_keys(nested, f"{dotted}.")
        else:
            keys.append(dotted)
    return keys


FLEET_HEADING = "## Fleet scenarios"


def _keys_in(text: str) -> set[str]:
    found = re.findall(r"^\| `([a-z_][a-z_.]*)` \|", text, re.M)
    return {k for k in found if not k.endswith(".toml")}


def _parts() -> tuple[str, str]:
    text = DOC.read_text(encoding="utf-8")
    head, _, fleet = text.partition(FLEET_HEADING)
    fleet_table, _, rest = fleet.partition("\n## ")
    return head + "\n## " + rest, fleet_table


def documented_keys() -> set[str]:
    """Keys in the first column of the RCDC reference tables."""
    return _keys_in(_parts()[0])


def documented_fleet_keys() -> set[str]:
    """Keys in the first column of the fleet-scenario table."""
    return _keys_in(_parts()[1])


def test_every_scenario_key_is_documented() -> None:
    keys = scenario_keys()
    assert len(keys) > 25
    missing = [k for k in keys if k not in documented_keys()]
    assert not missing, f"keys missing from {DOC.name}: {missing}"


def test_every_fleet_key_is_documented_and_exists() -> None:
    keys = set(scenario_keys(FleetScenario))
    documented = documented_fleet_keys()
    assert keys - documented == set(), f"fleet keys missing from {DOC.name}"
    assert documented - keys == set(), f"{DOC.name} documents fleet keys that do not exist"


def test_every_documented_key_exists() -> None:
    valid = set(scenario_keys()) | {f"sweep.{k}" for k in SWEEP_KEYS}
    stale = sorted(documented_keys() - valid)
    assert not stale, f"{DOC.name} documents keys that do not exist: {stale}"


def test_documented_examples_exist_and_load() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in re.findall(r"^\| `(\w+)\.toml` \|", text, re.M):
        path = example_path(name)
        assert path.is_file(), name
        if name.startswith("sweep_"):
            continue
        if scenario_kind(path) == "fleet":
            load_fleet_scenario(path)
        else:
            load_scenario(path)

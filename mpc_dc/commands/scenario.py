"""``mpc-dc scenario check FILE``: validate a scenario without running it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mpc_dc.config import to_mapping
from mpc_dc.scenario import default_scenario, load_scenario, read_toml, scenario_kind


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scenario`` command group."""
    parser = subparsers.add_parser("scenario", help="validate or show scenario files")
    sub = parser.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a scenario (or sweep) file without running it")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check)
    show = sub.add_parser("show", help="print a scenario with every default filled in")
    show.add_argument("file", type=Path, nargs="?", help="scenario TOML (default: embedded)")
    show.set_defaults(func=_show)


def _check(args: argparse.Namespace) -> int:
    if "sweep" in read_toml(args.file):
        from mpc_dc.sweep import load_sweep

        spec = load_sweep(args.file)
        print(f"{args.file}: ok (sweep '{spec.name}', {len(spec.runs)} runs, every run's "
              "scenario valid)")
        return 0
    if scenario_kind(args.file) == "fleet":
        from mpc_dc.fleet_scenario import load_fleet_scenario

        fleet = load_fleet_scenario(args.file)
        print(f"{args.file}: ok (fleet scenario '{fleet.name}', {fleet.run.days:g} days, "
              f"{fleet.flexibility}, {fleet.data.source} data, controller "
              f"{fleet.controller.kind})")
        return 0
    scenario = load_scenario(args.file)
    print(f"{args.file}: ok (scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"{scenario.data.source} data, controller {scenario.controller.kind})")
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.file and scenario_kind(args.file) == "fleet":
        from mpc_dc.fleet_scenario import load_fleet_scenario

        print(json.dumps(to_mapping(load_fleet_scenario(args.file)), indent=2))
        return 0
    scenario = load_scenario(args.file) if args.file else default_scenario()
    print(json.dumps(to_mapping(scenario), indent=2))
    return 0

"""``mpc-dc scenario check FILE``: validate a scenario without running it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mpc_dc.commands._common import with_data_dir
from mpc_dc.config import to_mapping
from mpc_dc.scenario import default_scenario, load_scenario, read_toml, scenario_kind
from traces.grid import STEP


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scenario`` command group."""
    parser = subparsers.add_parser("scenario", help="validate or show scenario files")
    sub = parser.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check", help="validate a scenario (or sweep) file without running it",
        description="Validate a scenario without running it. A fleet scenario's data are "
        "read too (as `run` reads them: price nodes, carbon zones, BurstGPT over history + "
        "run + horizon), so the check refuses what a run would refuse.")
    check.add_argument("file", type=Path)
    check.add_argument("--data", type=Path, help="override data.data_dir (public data folder)")
    check.add_argument("--no-data", action="store_true",
                       help="fleet scenarios: check the file alone, without reading the data")
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
        return _check_fleet(args)
    scenario = load_scenario(args.file)
    print(f"{args.file}: ok (scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"{scenario.data.source} data, controller {scenario.controller.kind})")
    return 0


def _check_fleet(args: argparse.Namespace) -> int:
    from mpc_dc.fleet_scenario import errors_name, fleet_sources, load_fleet_scenario

    with errors_name(args.file):
        fleet = with_data_dir(load_fleet_scenario(args.file), args.data)
        if args.no_data:
            data = f"{fleet.data.source} data not read (--no-data)"
        else:
            index = fleet_sources(fleet).index
            verb = "generated for" if fleet.data.source == "synthetic" else "cover"
            data = (f"{fleet.data.source} data {verb} history + run + horizon, "
                    f"{index[0]:%Y-%m-%d %H:%M} to {index[-1] + STEP:%Y-%m-%d %H:%M} UTC")
    print(f"{args.file}: ok (fleet scenario '{fleet.name}', {fleet.run.days:g} days, "
          f"{fleet.flexibility}, {data}, controller {fleet.controller.kind})")
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.file and scenario_kind(args.file) == "fleet":
        from mpc_dc.fleet_scenario import load_fleet_scenario

        print(json.dumps(to_mapping(load_fleet_scenario(args.file)), indent=2))
        return 0
    scenario = load_scenario(args.file) if args.file else default_scenario()
    print(json.dumps(to_mapping(scenario), indent=2))
    return 0

"""``mpc-dc scenario check FILE``: validate a scenario without running it; ``show`` it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mpc_dc.commands._common import read_scenario, with_data_dir
from mpc_dc.site.data import check_data
from mpc_dc.site.scenario import read_toml, scenario_to_mapping
from traces.errors import ConfigError
from traces.grid import STEP


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scenario`` command group."""
    parser = subparsers.add_parser("scenario", help="validate or show scenario files")
    sub = parser.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check", help="validate a scenario (or sweep) file without running it",
        description="Validate a scenario without running it: keys, ranges, price nodes and "
        "carbon zones, then its data (read or generated as `run` does: every series over "
        "history + run + horizon, BurstGPT's span), so the check refuses what a run would "
        "refuse.")
    check.add_argument("file", type=Path)
    # A path, not an existing folder: with --no-data (or synthetic data) it is not
    # read, and a file may be checked on a machine without the data
    # (tests/test_fleet_sources.py); a folder the check reads is named when missing.
    check.add_argument("--data", type=Path,
                       help="override data.dir (public data folder) of a scenario file")
    check.add_argument("--no-data", action="store_true",
                       help="check the file alone, without reading the data")
    check.set_defaults(func=_check)
    show = sub.add_parser("show", help="print a scenario with every default filled in")
    show.add_argument("file", type=Path, nargs="?", help="scenario TOML (default: embedded)")
    show.set_defaults(func=_show)


def _check(args: argparse.Namespace) -> int:
    if "sweep" in read_toml(args.file):
        from mpc_dc.sweep import check_sweep_data, load_sweep

        if args.data is not None:
            # `mpc-dc sweep` has no --data: its runs read data.dir of the file, so a
            # check with another folder would pass a sweep that fails (it was ignored).
            raise ConfigError("--data", f"applies to a scenario file, not the sweep "
                              f"{args.file} (its runs read the file's data.dir); expected "
                              "the data folder in the sweep file's [data] table")

        spec = load_sweep(args.file)
        data = ("data not read (--no-data)" if args.no_data else
                f"data of its {check_sweep_data(spec)} distinct data configuration(s) checked")
        print(f"{args.file}: ok (sweep '{spec.name}', {len(spec.runs)} runs, every run's "
              f"scenario valid, {data})")
        return 0
    scenario = with_data_dir(read_scenario(args.file), args.data)
    if args.no_data:
        data = f"{scenario.data.source} data not read (--no-data)"
    else:
        index = check_data(scenario, source=args.file).index
        verb = "generated for" if scenario.data.source == "synthetic" else "cover"
        data = (f"{scenario.data.source} data {verb} history + run + horizon, "
                f"{index[0]:%Y-%m-%d %H:%M} to {index[-1] + STEP:%Y-%m-%d %H:%M} UTC")
    fleet = (f", fleet {scenario.fleet.flexibility}" if scenario.fleet is not None else "")
    print(f"{args.file}: ok (scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"{len(scenario.site.campuses)} campus(es){fleet}, {data}, controller "
          f"{scenario.controller.kind})")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(json.dumps(scenario_to_mapping(read_scenario(args.file)), indent=2))
    return 0

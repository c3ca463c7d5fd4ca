"""``mpc-dc compare SCENARIO.toml --forecasters ...``: one scenario under several controllers."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from mpc_dc.commands._common import (
    markdown_table,
    progress_bars,
    with_data_dir,
    write_comparison,
)
from mpc_dc.commands._options import comma_list, existing_dir, output_dir
from mpc_dc.runner import compare
from mpc_dc.scenario import default_scenario, load_scenario, scenario_kind
from traces.errors import ConfigError

DEFAULT_FORECASTERS = "oracle,sarimax,seasonal_naive,persistence"

COLUMNS = {
    "cost_usd": ("cost [$]", "{:,.0f}"),
    "profit_vs_no_colocation_usd": ("profit vs no coloc. [$]", "{:,.0f}"),
    "savings_pct": ("savings [%]", "{:.2f}"),
    "regret_usd": ("regret vs offline [$]", "{:,.0f}"),
    "regret_pct": ("regret [% of no-coloc. cost]", "{:.2f}"),
    "mip_gap_pct": ("MIP gap [%]", "{:.4f}"),
    "deadline_missed_wu": ("missed [WU]", "{:.2f}"),
    "fallbacks": ("fallbacks", "{:d}"),
    "solve_median_ms": ("solve med. [ms]", "{:.2f}"),
    "wall_time_s": ("wall [s]", "{:.1f}"),
}
"""RCDC table columns; percentages are of the no-colocation cost (see runner.compare)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` command."""
    parser = subparsers.add_parser(
        "compare",
        help="run one scenario under several forecasters/controllers and compare",
        description="Runs the scenario on identical data under each controller (baseline, "
        "offline, perfect/oracle, or a forecaster name for MPC), plus the no-colocation "
        "reference, the offline optimum and the perfect-forecast MPC with the same horizon, "
        "and prints cost, profit and savings vs no colocation, regret vs the offline optimum "
        "(in $ and in % of the no-colocation cost), the MIP gap the solves ended with, "
        "deadline misses and fallbacks.",
    )
    parser.add_argument("scenario", nargs="?", type=Path, help="scenario TOML file")
    parser.add_argument("--data", type=existing_dir,
                        help="override data.data_dir (public data folder)")
    parser.add_argument(
        "--forecasters", type=comma_list, default=None,
        help=f"site scenarios: comma-separated labels (default: {DEFAULT_FORECASTERS})",
    )
    parser.add_argument("--out", type=output_dir,
                        help="write the table as CSV and Markdown into this new folder")
    parser.add_argument(
        "--flex", type=comma_list,
        help="fleet scenarios: comma-separated labels S1..S6, optionally combined "
        "with +fluid/+request or a controller (e.g. S1,S6,S6+fluid,S6+perfect)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print the table."""
    if args.scenario and scenario_kind(args.scenario) == "fleet":
        if args.forecasters is not None:
            raise ConfigError("--forecasters", "applies to site scenarios; a fleet scenario "
                              "compares --flex labels (S1..S6)")
        return compare_fleet_main(args)
    if args.flex is not None:
        raise ConfigError("--flex", "applies to fleet scenarios (kind = \"fleet\"); a site "
                          "scenario compares --forecasters")
    scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    scenario = with_data_dir(scenario, args.data)
    labels = list(args.forecasters or DEFAULT_FORECASTERS.split(","))
    with progress_bars() as progress:
        table = compare(scenario, labels, progress=progress)
    text = markdown_table(table, "controller", COLUMNS, _rcdc_cell)
    notes = limit_notes(table)
    if notes:
        text = "\n".join([text, "", *notes])
    print(f"mpc-dc compare: scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"{scenario.site.grid.tariff.kind} market")
    print(text)
    if args.out:
        write_comparison(args.out, table, text)
    return 0


def limit_notes(table: pd.DataFrame) -> list[str]:
    """One line per row with solves that ended without proven optimality.

    A limit-stopped offline solve makes every regret of the table uncertain by up
    to its gap, so it is said under the table, not only in the gap column.
    """
    notes = []
    for label, row in table.iterrows():
        count = int(row.get("solves_not_optimal", 0) or 0)
        if count:
            notes.append(f"note: {label}: {count} solve(s) ended without proven optimality "
                         f"(time limit, gap limit or failure); largest MIP gap "
                         f"{row['mip_gap_pct']:.4g} %")
    return notes


def _rcdc_cell(row: pd.Series, key: str, fmt: str) -> str:
    """:func:`_cell`, with ``-`` for a value that does not apply (NaN)."""
    value = row.get(key)
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return _cell(row, key, fmt)


FLEET_COLUMNS = {
    "flexibility": ("levers", "{}"),
    "fidelity": ("fidelity", "{}"),
    "total_usd": ("total cost [$]", "{:,.2f}"),
    "energy_usd": ("energy [$]", "{:,.2f}"),
    "switching_usd": ("switching [$]", "{:,.2f}"),
    "dr_reward_usd": ("DR reward [$]", "{:,.2f}"),
    "slo_attainment": ("SLO att. [%]", "{:.2%}"),
    "ttft_p99_s": ("TTFT p99 [s]", "{:.1f}"),
    "tokens_unserved": ("unserved [tok]", "{:,.0f}"),
    "fallbacks": ("fallbacks", "{:d}"),
    "solve_median_ms": ("solve med. [ms]", "{:.1f}"),
    "wall_time_s": ("wall [s]", "{:.1f}"),
}


def compare_fleet_main(args: argparse.Namespace) -> int:
    """``mpc-dc compare FLEET.toml --flex S1,...,S6``: cost next to SLO attainment."""
    from mpc_dc.fleet_scenario import compare_fleet, errors_name, load_fleet_scenario

    labels = list(args.flex or ["S1", "S2", "S3", "S4", "S5", "S6"])
    with errors_name(args.scenario), progress_bars() as progress:
        scenario = with_data_dir(load_fleet_scenario(args.scenario), args.data)
        table = compare_fleet(scenario, labels, progress=progress)
    print(f"mpc-dc compare: fleet scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"data {scenario.data.source} x{scenario.data.rate_multiplier:g}, controller "
          f"{scenario.controller.kind}")
    out = markdown_table(table, "label", FLEET_COLUMNS, _cell)
    print(out)
    if args.out:
        write_comparison(args.out, table, out)
    return 0


def _cell(row: pd.Series, key: str, fmt: str) -> str:
    """One table cell: ``"{}"`` as text, ``"{:d}"`` as an integer, else as a float.

    A missing value shows as ``0`` (integers) or ``nan`` (floats).
    """
    value = row.get(key)
    if fmt == "{}":
        return str(value)
    if fmt == "{:d}":
        return fmt.format(int(value or 0))
    return fmt.format(float(value if value is not None else math.nan))

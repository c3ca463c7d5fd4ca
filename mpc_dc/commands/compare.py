"""``mpc-dc compare SCENARIO.toml --forecasters ...``: one scenario under several controllers."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mpc_dc.runner import compare
from mpc_dc.scenario import default_scenario, load_scenario, scenario_kind

COLUMNS = {
    "cost_usd": ("cost [$]", "{:,.0f}"),
    "profit_vs_no_colocation_usd": ("profit vs no coloc. [$]", "{:,.0f}"),
    "savings_pct": ("savings [%]", "{:.2f}"),
    "regret_usd": ("regret [$]", "{:,.0f}"),
    "regret_pct": ("regret [%]", "{:.2f}"),
    "deadline_missed_wu": ("missed [WU]", "{:.2f}"),
    "fallbacks": ("fallbacks", "{:d}"),
    "solve_median_ms": ("solve med. [ms]", "{:.2f}"),
    "wall_time_s": ("wall [s]", "{:.1f}"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` command."""
    parser = subparsers.add_parser(
        "compare",
        help="run one scenario under several forecasters/controllers and compare",
        description="Runs the scenario on identical data under each controller (baseline, "
        "offline, perfect/oracle, or a forecaster name for MPC), plus the no-colocation "
        "reference, and prints cost, profit and savings vs no colocation, regret vs perfect "
        "foresight, deadline misses and fallbacks.",
    )
    parser.add_argument("scenario", nargs="?", type=Path, help="scenario TOML file")
    parser.add_argument("--data", type=Path, help="override data.data_dir (public data folder)")
    parser.add_argument(
        "--forecasters", default="oracle,sarimax,seasonal_naive,persistence",
        help="comma-separated labels (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="write the table as CSV and Markdown here")
    parser.add_argument(
        "--flex", help="fleet scenarios: comma-separated labels S1..S6, optionally combined "
        "with +fluid/+request or a controller (e.g. S1,S6,S6+fluid,S6+perfect)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print the table."""
    if args.scenario and scenario_kind(args.scenario) == "fleet":
        return compare_fleet_main(args)
    scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    if args.data:
        scenario = replace(scenario, data=replace(scenario.data, data_dir=str(args.data)))
    labels = [label.strip() for label in args.forecasters.split(",") if label.strip()]
    bars: list[tqdm] = []

    def progress(label: str, total: int) -> Callable[[int], object]:
        bar = tqdm(total=total, unit="step", desc=label, disable=not sys.stderr.isatty())
        bars.append(bar)
        return bar.update

    table = compare(scenario, labels, progress=progress)
    for bar in bars:
        bar.close()
    text = format_table(table)
    print(f"mpc-dc compare: scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"{scenario.site.grid.tariff.kind} market")
    print(text)
    if args.out:
        from mpc_dc.rundir import atomic_dir

        with atomic_dir(args.out) as tmp:
            table.to_csv(tmp / "compare.csv")
            (tmp / "compare.md").write_text(text + "\n", encoding="utf-8")
        print(f"written: {args.out}/compare.csv, compare.md")
    return 0


def format_table(table: pd.DataFrame) -> str:
    """Markdown table of the comparison."""
    header = ["controller", *(name for name, _ in COLUMNS.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.iterrows():
        cells = [str(label)]
        for key, (_, fmt) in COLUMNS.items():
            value = row[key]
            cells.append(fmt.format(int(value)) if fmt == "{:d}" else fmt.format(float(value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    from mpc_dc.fleet_scenario import compare_fleet, load_fleet_scenario

    scenario = load_fleet_scenario(args.scenario)
    if args.data:
        scenario = replace(scenario, data=replace(scenario.data, data_dir=str(args.data)))
    text = args.flex or "S1,S2,S3,S4,S5,S6"
    labels = [label.strip() for label in text.split(",") if label.strip()]
    bars: list[tqdm] = []

    def progress(label: str, total: int) -> Callable[[int], object]:
        bar = tqdm(total=total, unit="step", desc=label, disable=not sys.stderr.isatty())
        bars.append(bar)
        return bar.update

    table = compare_fleet(scenario, labels, progress=progress)
    for bar in bars:
        bar.close()
    print(f"mpc-dc compare: fleet scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"data {scenario.data.source} x{scenario.data.rate_multiplier:g}, controller "
          f"{scenario.controller.kind}")
    out = format_fleet_table(table)
    print(out)
    if args.out:
        from mpc_dc.rundir import atomic_dir

        with atomic_dir(args.out) as tmp:
            table.to_csv(tmp / "compare.csv")
            (tmp / "compare.md").write_text(out + "\n", encoding="utf-8")
        print(f"written: {args.out}/compare.csv, compare.md")
    return 0


def format_fleet_table(table: pd.DataFrame) -> str:
    """Markdown table of a fleet comparison (SLO attainment next to cost)."""
    header = ["label", *(name for name, _ in FLEET_COLUMNS.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.iterrows():
        cells = [str(label)]
        for key, (_, fmt) in FLEET_COLUMNS.items():
            value = row.get(key)
            if fmt == "{}":
                cells.append(str(value))
            elif fmt == "{:d}":
                cells.append(fmt.format(int(value or 0)))
            else:
                cells.append(fmt.format(float(value if value is not None else math.nan)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""``mpc-dc compare SCENARIO.toml --forecasters ...``: one scenario under several controllers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mpc_dc.runner import compare
from mpc_dc.scenario import default_scenario, load_scenario

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
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print the table."""
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

"""``mpc-dc run [SCENARIO.toml] [--out DIR]``: one closed-loop run and its run directory."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from mpc_dc.runner import run_scenario
from mpc_dc.scenario import controller_variant, default_scenario, load_scenario


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        help="run one scenario closed-loop (default: the embedded synthetic week)",
        description="Simulate a scenario closed-loop and write its run directory. With no "
        "scenario file, runs the embedded default: one week of synthetic data, wholesale "
        "market, SARIMAX-driven MPC.",
    )
    parser.add_argument("scenario", nargs="?", type=Path, help="scenario TOML file")
    parser.add_argument("--data", type=Path, help="override data.data_dir (public data folder)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<name>-<time>)")
    parser.add_argument("--controller", help="baseline | offline | perfect | <forecaster name>")
    parser.add_argument("--days", type=float, help="override run.days [d]")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run and print a summary table."""
    scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    if args.data:
        scenario = replace(scenario, data=replace(scenario.data, data_dir=str(args.data)))
    if args.controller:
        scenario = controller_variant(scenario, args.controller)
    if args.days:
        scenario = replace(scenario, run=replace(scenario.run, days=args.days))
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("runs") / f"{scenario.name}-{stamp}"
    print(f"mpc-dc run: scenario '{scenario.name}', {scenario.run.days:g} days from "
          f"{scenario.run.start}, data {scenario.data.source}, controller "
          f"{scenario.controller.kind}"
          + (f" ({scenario.controller.forecaster})" if scenario.controller.kind == "mpc" else ""))
    with tqdm(total=scenario.run.n_steps, unit="step", desc="simulating",
              disable=not sys.stderr.isatty()) as bar:
        outcome = run_scenario(scenario, out=out, progress=bar.update, plots=not args.no_plots,
                               overwrite=args.overwrite)
    print(summary_table(outcome.result.kpis, outcome.controller))
    print(f"run directory: {outcome.path}")
    return 0


def summary_table(kpis: dict[str, Any], controller: str) -> str:
    """A readable block of the headline KPIs."""
    penalties = kpis["unserved_penalty_usd"] + kpis["missed_penalty_usd"]
    fallbacks = f"{kpis['solves']} / {kpis['fallbacks_total']} {kpis['fallbacks'] or ''}"
    rows = [
        ("controller", controller),
        ("net cost", f"{kpis['cost_usd']:,.0f} $"),
        ("  energy import", f"{kpis['energy_import_usd']:,.0f} $"),
        ("  export revenue", f"{kpis['export_revenue_usd']:,.0f} $"),
        ("  demand charge", f"{kpis['demand_charge_usd']:,.0f} $"),
        ("  penalties", f"{penalties:,.0f} $"),
        ("grid import", f"{kpis['import_mwh']:,.1f} MWh"),
        ("grid export", f"{kpis['export_mwh']:,.1f} MWh"),
        ("renewable used", f"{kpis['renewable_used_mwh']:,.1f} MWh"),
        ("renewable curtailed", f"{kpis['curtailed_mwh']:,.1f} MWh"),
        ("peak import", f"{kpis['peak_import_mw']:,.1f} MW"),
        ("deferrable work missed", f"{kpis['work_df_missed_wu']:,.3f} WU"),
        ("solves / fallbacks", fallbacks),
        ("solve time median", f"{1000 * kpis['solve_time_median_s']:.2f} ms"),
        ("wall time setup + sim", f"{kpis['setup_time_s']:.2f} + {kpis['wall_time_s']:.2f} s"),
    ]
    return "\n".join(f"{label:<24} {value}" for label, value in rows)

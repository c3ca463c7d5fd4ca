"""``mpc-dc run [SCENARIO.toml] [--out DIR]``: one closed-loop run and its run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mpc_dc.commands._common import progress_bars, with_run_overrides
from mpc_dc.commands._options import existing_dir, output_dir, positive_float
from mpc_dc.runner import run_scenario
from mpc_dc.scenario import controller_variant, default_scenario, load_scenario, scenario_kind


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
    parser.add_argument("--data", type=existing_dir,
                        help="override data.data_dir (public data folder)")
    parser.add_argument("--out", type=output_dir,
                        help="run directory (default runs/<name>-<time>)")
    parser.add_argument("--controller", help="baseline | offline | perfect | <forecaster name>")
    parser.add_argument("--days", type=positive_float("d"), help="override run.days [d]")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out that mpc-dc wrote (it carries the "
                        "output marker); any other folder is refused")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run and print a summary table."""
    if args.scenario and scenario_kind(args.scenario) == "fleet":
        return run_fleet(args)
    scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    scenario, out = with_run_overrides(scenario, args, controller_variant)
    print(f"mpc-dc run: scenario '{scenario.name}', {scenario.run.days:g} days from "
          f"{scenario.run.start}, data {scenario.data.source}, controller "
          f"{scenario.controller.kind}"
          + (f" ({scenario.controller.forecaster})" if scenario.controller.kind == "mpc" else ""))
    with progress_bars() as progress:
        outcome = run_scenario(scenario, out=out,
                               progress=progress("simulating", scenario.run.n_steps),
                               plots=not args.no_plots, overwrite=args.overwrite)
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


def run_fleet(args: argparse.Namespace) -> int:
    """``mpc-dc run FLEET.toml``: one fleet closed-loop run and its run directory."""
    from mpc_dc.fleet_scenario import (
        errors_name,
        fleet_variant,
        load_fleet_scenario,
        run_fleet_scenario,
    )

    with errors_name(args.scenario):
        scenario, out = with_run_overrides(load_fleet_scenario(args.scenario), args,
                                           fleet_variant)
        ctl = scenario.controller
        print(f"mpc-dc run: fleet scenario '{scenario.name}' ({scenario.flexibility}), "
              f"{scenario.run.days:g} days from {scenario.run.start}, data "
              f"{scenario.data.source} x{scenario.data.rate_multiplier:g}, "
              f"{scenario.serving.fidelity} serving, controller {ctl.kind}"
              + (f" ({ctl.forecaster})" if ctl.kind == "mpc" else ""))
        with progress_bars() as progress:
            outcome = run_fleet_scenario(scenario, out=out,
                                         progress=progress("simulating", scenario.run.n_steps),
                                         overwrite=args.overwrite)
    print(fleet_summary_table(outcome.result.kpis, outcome.controller))
    print(f"run directory: {outcome.path}")
    return 0


def fleet_summary_table(kpis: dict[str, Any], controller: str) -> str:
    """The headline KPIs of a fleet run: cost next to SLO attainment."""
    c = kpis["cost_components_usd"]
    slo_key = "SLO attainment" if "slo_attainment" in kpis else "SLO attainment (fluid est.)"
    rows = [
        ("controller", controller),
        ("levers", kpis["flexibility"]),
        ("serving fidelity", kpis["fidelity"]),
        ("total cost", f"{c['total_usd']:,.2f} $"),
        ("  energy", f"{c['energy_usd']:,.2f} $"),
        ("  carbon", f"{c['carbon_usd']:,.2f} $"),
        ("  switching", f"{c['switching_usd']:,.2f} $"),
        ("  quality", f"{c['quality_usd']:,.2f} $"),
        ("  DR reward / penalty", f"{c['dr_reward_usd']:,.2f} / {c['dr_penalty_usd']:,.2f} $"),
        ("  unserved", f"{c['unserved_usd']:,.2f} $"),
        (slo_key, f"{100 * kpis['slo']:.2f} %"),
    ]
    for model, v in kpis.get("slo_attainment_by_model", {}).items():
        rows.append((f"  {model}", f"{100 * v:.2f} %"))
    if "ttft_p50_s" in kpis:
        rows.append(("TTFT p50/p95/p99", f"{kpis['ttft_p50_s']:.2f} / {kpis['ttft_p95_s']:.2f} "
                     f"/ {kpis['ttft_p99_s']:.2f} s"))
    rows += [
        ("tokens served / unserved", f"{kpis['tokens_served']:,.0f} / "
         f"{kpis['tokens_unserved']:,.0f}"),
        ("energy per token", f"{kpis['energy_per_token_j']:.3f} J"),
        ("facility energy", f"{kpis['facility_energy_mwh']:,.3f} MWh"),
        ("solves / fallbacks", f"{kpis.get('solves', 0)} / {kpis.get('fallbacks_total', 0)} "
         f"{kpis.get('fallbacks') or ''}"),
        ("solve time median/p95", f"{1000 * kpis.get('solve_time_median_s', 0.0):.1f} / "
         f"{1000 * kpis.get('solve_time_p95_s', 0.0):.1f} ms"),
        ("wall time setup + sim", f"{kpis['setup_time_s']:.2f} + {kpis['wall_time_s']:.2f} s"),
    ]
    return "\n".join(f"{label:<28} {value}" for label, value in rows)

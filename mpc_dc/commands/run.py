"""``mpc-dc run [SCENARIO.toml] [--out DIR]``: one closed-loop run and its run directory."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from mpc_dc.commands._common import (
    add_set_option,
    progress_bars,
    read_scenario,
    with_run_overrides,
)
from mpc_dc.commands._options import (
    controller_label,
    existing_dir,
    output_dir,
    policy_spec,
    positive_float,
)
from mpc_dc.runner import run_scenario
from mpc_dc.site.data import SOURCE
from mpc_dc.site.scenario import MAX_RUN_DAYS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        help="run one scenario closed-loop (default: the embedded synthetic site)",
        description="Simulate a scenario closed-loop and write its run directory. With no "
        "scenario file, runs the embedded default: the product scenario nyiso_wind_fleet "
        "on synthetic data (three NYISO campuses, wind at two, a training backlog, two "
        "LLM families at BF16 and FP8 serving requests, wholesale with export), MPC.",
    )
    parser.add_argument("scenario", nargs="?", type=Path, help="scenario TOML file")
    parser.add_argument("--data", type=existing_dir,
                        help="override data.dir (public data folder)")
    parser.add_argument("--out", type=output_dir,
                        help="run directory (default runs/<name>-<time>)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--controller", type=controller_label,
                       help="baseline | offline | perfect | <forecaster> | "
                       "S1..S6 | fluid | request | fast | nofast (the fast layer), "
                       "combined with + (e.g. S4+fluid, sarimax+nofast)")
    which.add_argument("--policy", type=policy_spec,
                       help="run this policy instead of the scenario's controller: "
                       "package.module:Class or an installed entry-point name "
                       "(docs/policies.md)")
    parser.add_argument("--days", type=positive_float("d", at_most=MAX_RUN_DAYS),
                        help="override run.days [d]")
    add_set_option(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out that mpc-dc wrote (it carries the "
                        "output marker); any other folder is refused")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run and print a summary table."""
    source = args.scenario or SOURCE
    scenario, out = with_run_overrides(read_scenario(args.scenario), args, source)
    ctl = scenario.controller
    fleet = scenario.fleet
    print(f"mpc-dc run: scenario '{scenario.name}', {scenario.run.days:g} days from "
          f"{scenario.run.start}, {len(scenario.site.campuses)} campus(es), data "
          f"{scenario.data.source}"
          + (f", fleet {fleet.flexibility} ({scenario.serving.fidelity} serving)"
             if fleet is not None else "")
          + (f", policy {args.policy}" if args.policy else f", controller {ctl.kind}"
             + (f" ({ctl.forecaster})" if ctl.kind == "mpc" else "")))
    with progress_bars() as progress:
        outcome = run_scenario(scenario, out=out,
                               progress=progress("simulating", scenario.run.n_steps),
                               plots=not args.no_plots, overwrite=args.overwrite,
                               source=source, policy=args.policy)
    print(summary_table(outcome.result.kpis, outcome.controller))
    print(f"run directory: {outcome.path}")
    return 0


def summary_table(kpis: dict[str, Any], controller: str) -> str:
    """A readable block of the headline KPIs."""
    penalties = kpis["unserved_penalty_usd"] + kpis["missed_penalty_usd"]
    fallbacks = f"{kpis['solves']} / {kpis['fallbacks_total']} {kpis['fallbacks'] or ''}"
    rows = [
        ("controller", controller),
        ("net cost", f"{kpis['cost_usd']:,.2f} $ = costs {kpis['costs_usd']:,.2f} $ − "
         f"revenue {kpis['revenue_usd']:,.2f} $"),
        ("  energy import", f"{kpis['energy_import_usd']:,.2f} $"),
        ("  export revenue", f"{kpis['export_revenue_usd']:,.2f} $"),
        ("  demand charge", f"{kpis['demand_charge_usd']:,.2f} $"),
        ("  carbon", f"{kpis['carbon_cost_usd']:,.2f} $"),
        ("  DR reward / penalty", f"{kpis['dr_reward_usd']:,.2f} / "
         f"{kpis['dr_penalty_usd']:,.2f} $"),
        ("  penalties", f"{penalties:,.2f} $"),
    ]
    if "lateness_usd" in kpis:
        rows.append(("  lateness (SLO term)", f"{kpis['lateness_usd']:,.2f} $ for "
                     f"{kpis['late_requests']:,.0f} late requests"))
    rows += [
        ("grid import / export", f"{kpis['import_mwh']:,.3f} / {kpis['export_mwh']:,.3f} MWh"),
        ("renewable used / curtailed", f"{kpis['renewable_used_mwh']:,.3f} / "
         f"{kpis['curtailed_mwh']:,.3f} MWh"),
        ("self-consumption", f"{kpis['self_consumption_mwh']:,.3f} MWh"),
        ("IT energy inference / other", f"{kpis['inference_it_energy_mwh']:,.3f} / "
         f"{kpis['other_it_energy_mwh']:,.3f} MWh"),
        ("carbon", f"{kpis['carbon_t']:,.3f} t"),
        ("peak import", f"{kpis['peak_import_mw']:,.3f} MW"),
        ("deferrable work missed", f"{kpis['work_df_missed_wu']:,.3f} WU"),
    ]
    if kpis["dr_event_intervals"]:
        rows.append(("DR below baseline / kept", f"{kpis['dr_energy_savings_mwh']:,.4f} MWh / "
                     f"{100 * kpis['dr_compliance']:.1f} % of event intervals at or under "
                     f"the committed cap, {100 * kpis['dr_under_programme_cap']:.1f} % "
                     "under the programme's"))
    if "tokens_served" in kpis:
        slo = kpis.get("slo_attainment", kpis.get("slo_attainment_estimate", math.nan))
        label = "SLO attainment" if "slo_attainment" in kpis else "SLO attainment (fluid est.)"
        rows.append((label, f"{100 * slo:.2f} %"))
        for model, v in kpis.get("slo_attainment_by_model", {}).items():
            rows.append((f"  {model}", f"{100 * v:.2f} %"))
        if "ttft_p50_s" in kpis:
            rows.append(("TTFT p50/p95/p99", f"{kpis['ttft_p50_s']:.2f} / "
                         f"{kpis['ttft_p95_s']:.2f} / {kpis['ttft_p99_s']:.2f} s"))
            rows.append(("TPOT p50/p95/p99", f"{1000 * kpis['tpot_p50_s']:.1f} / "
                         f"{1000 * kpis['tpot_p95_s']:.1f} / {1000 * kpis['tpot_p99_s']:.1f} ms"))
        rows.append(("tokens served / unserved", f"{kpis['tokens_served']:,.0f} / "
                     f"{kpis['tokens_unserved']:,.0f}"))
        if kpis.get("fast_layer_enabled"):
            rows.append(("fast layer started / kept", f"{kpis['fast_instances_started']:,.0f}"
                         f" / {kpis['fast_instances_kept']:,.0f} instances"))
            rows.append(("  moved: campus / precision", f"{kpis['fast_requests_rerouted']:,.0f}"
                         f" / {kpis['fast_precision_moves']:,.0f} requests"))
    injected = {k: v for k, v in kpis.get("faults_injected", {}).items() if v}
    if injected:
        rows.append(("faults injected", f"{sum(injected.values())} {injected}"))
    rows += [
        ("solves / fallbacks", fallbacks),
        ("solve time median", f"{1000 * kpis['solve_time_median_s']:.2f} ms"),
        ("wall time setup + sim", f"{kpis['setup_time_s']:.2f} + {kpis['wall_time_s']:.2f} s"),
    ]
    if kpis.get("dr_lead_in_days"):
        rows.append(("DR lead-in (meter history)", f"{kpis['dr_lead_in_days']} d simulated in "
                                                   f"{kpis['dr_lead_in_time_s']:.2f} s"))
    return "\n".join(f"{label:<28} {value}" for label, value in rows)

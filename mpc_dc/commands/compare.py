"""``mpc-dc compare [SCENARIO.toml] --forecasters ...``: one scenario under several controllers.

With ``--attribute``: the regret of each forecaster split by forecast channel
(:mod:`mpc_dc.attribution`) into a resumable folder of runs.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from mpc_dc.commands._common import (
    add_set_option,
    check_labels,
    failed_runs,
    markdown_table,
    print_report,
    progress_bars,
    read_scenario,
    with_data_dir,
    with_days,
    with_set_options,
    write_comparison,
)
from mpc_dc.commands._options import (
    existing_dir,
    label_list,
    output_dir,
    policy_spec,
    positive_float,
    positive_int,
)
from mpc_dc.rundir import check_target
from mpc_dc.runner import OFFLINE_ROW, compare
from mpc_dc.site.data import SOURCE
from mpc_dc.site.scenario import MAX_RUN_DAYS, Scenario
from traces.errors import ConfigError

DEFAULT_LABELS = ["sarimax", "seasonal_naive", "persistence"]
"""``--forecasters`` of a comparison when none are given."""

COLUMNS = {
    "cost_usd": ("net cost [$]", "{:,.2f}"),
    "costs_usd": ("costs [$]", "{:,.2f}"),
    "revenue_usd": ("revenue [$]", "{:,.2f}"),
    "cost_without_slo_usd": ("net w/o SLO term [$]", "{:,.2f}"),
    "slo_attainment": ("SLO att. [%]", "{:.2%}"),
    "ttft_p99_s": ("TTFT p99 [s]", "{:,.1f}"),
    "profit_vs_reference_usd": ("profit vs reference [$]", "{:,.2f}"),
    "regret_usd": ("regret vs offline [$]", "{:,.2f}"),
    "regret_pct": ("regret vs offline [% of reference's costs]", "{:.2f}"),
    "regret_perfect_usd": ("regret vs perfect [$]", "{:,.2f}"),
    "regret_perfect_pct": ("regret vs perfect [% of perfect's costs]", "{:.2f}"),
    "import_mwh": ("import [MWh]", "{:,.2f}"),
    "export_mwh": ("export [MWh]", "{:,.2f}"),
    "self_consumption_mwh": ("renewable self-cons. [MWh]", "{:,.2f}"),
    "carbon_t": ("carbon [t]", "{:,.2f}"),
    "deadline_missed_wu": ("missed [WU]", "{:.3f}"),
    "mip_gap_pct": ("MIP gap [%]", "{:.4f}"),
    "fallbacks": ("fallbacks", "{:d}"),
    "solve_median_ms": ("solve med. [ms]", "{:.1f}"),
    "wall_time_s": ("wall [s]", "{:.1f}"),
}
"""Columns of the printed table (``compare.csv`` has every column of
:func:`mpc_dc.runner.compare`). The net cost includes the price of lateness (the SLO
term, :mod:`mpc_dc.sim.lateness`) and is costs − revenue: costs are every cost term
with the SLO term, revenue the export revenue and DR reward; the net without the SLO
term and the SLO attainment are beside it. Profit and regrets are differences of net
costs (lost revenue counts); their percentages are of a cost without revenue, named in
the header: the reference's costs (offline regret, the savings' base) and the
perfect-forecast row's costs (regret vs perfect), never of a net cost, which revenue
can bring near zero or below."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` command."""
    parser = subparsers.add_parser(
        "compare",
        help="run one scenario under several forecasters/controllers and compare",
        description="Runs the scenario on identical data under each label, plus the "
        "business-as-usual reference (no colocated renewable, battery or export; fleet "
        "S1; the baseline rule), the offline optimum and the perfect-forecast MPC with the "
        "same horizon, and prints the net cost, its costs and revenue (net = costs - "
        "revenue), profit vs the reference, regret vs the offline optimum (in $ and in %% "
        "of the reference's costs) and vs perfect forecasts (in $ and in %% of their "
        "costs), SLO attainment, import, export, "
        "renewable self-consumption, carbon, the MIP gap the solves ended with (the "
        "offline plan's certified gap), fallbacks and times.",
    )
    parser.add_argument("scenario", nargs="?", type=Path, help="scenario TOML file "
                        "(default: the embedded one)")
    parser.add_argument("--data", type=existing_dir,
                        help="override data.dir (public data folder)")
    parser.add_argument("--days", type=positive_float("d", at_most=MAX_RUN_DAYS),
                        help="override run.days [d]")
    parser.add_argument(
        "--forecasters", type=label_list, default=None,
        help="comma-separated labels: forecasters, baseline, offline, perfect/oracle "
        "(default: sarimax,seasonal_naive,persistence; with --attribute: forecaster "
        "names, default the scenario's controller.forecaster)",
    )
    parser.add_argument(
        "--flex", type=label_list, default=[],
        help="more labels: S1..S6, optionally combined with +fluid/+request, +fast/+nofast "
        "(the fast layer) or a forecaster (e.g. S1,S6,S6+fluid,S6+nofast)",
    )
    add_set_option(parser)
    parser.add_argument("--policy", dest="policies", type=policy_spec, action="append",
                        default=[], metavar="POLICY",
                        help="add a row for this policy: package.module:Class or an "
                        "installed entry-point name (repeat for several; docs/policies.md)")
    parser.add_argument("--out", type=output_dir,
                        help="write the table as CSV and Markdown into this new folder")
    parser.add_argument("--runs", type=output_dir,
                        help="write each row's run directory under this new folder")
    parser.add_argument(
        "--attribute", action="store_true",
        help="split each forecaster's regret (its cost minus the perfect-forecast MPC's) "
        "into price, renewable, demand, other-load (and priced carbon) parts plus an "
        "interaction term: 2n+2 runs for n channel groups, written with the table "
        "(attribution.csv/.md) and a bar chart into --out (default "
        "runs/<scenario>-attribution-<UTC time>); the same command resumes it")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="with --attribute: runs in parallel (local process pool; "
                        "default: %(default)s)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print the table."""
    source = args.scenario or SOURCE
    scenario = with_set_options(with_data_dir(read_scenario(args.scenario), args.data), args)
    scenario = with_days(scenario, args.days, source)
    if args.attribute:
        return attribute_main(args, scenario)
    if args.workers != 1:
        raise ConfigError("--workers", "runs in parallel only with --attribute")
    forecasters = args.forecasters or DEFAULT_LABELS
    check_labels(scenario, "--forecasters", forecasters, source)
    check_labels(scenario, "--flex", args.flex, source)
    labels = list(dict.fromkeys([*forecasters, *args.flex]))
    if args.out:
        check_target(args.out, offers_overwrite=False)  # now, not after every run
    with progress_bars() as progress:
        table = compare(scenario, labels, policies=args.policies, progress=progress,
                        out_dir=args.runs, source=source)
    text = markdown_table(table, "controller", COLUMNS, _cell)
    notes = limit_notes(table)
    if notes:
        text = "\n".join([text, "", *notes])
    print(f"mpc-dc compare: scenario '{scenario.name}', {scenario.run.days:g} days, "
          f"{len(scenario.site.campuses)} campus(es), data {scenario.data.source}")
    print(text)
    if args.out:
        write_comparison(args.out, table, text)
    return 0


def attribute_main(args: argparse.Namespace, scenario: Scenario) -> int:
    """``--attribute``: run the attribution, write and print its table."""
    from mpc_dc.attribution import attribute, markdown

    for option, given in (("--flex", args.flex), ("--runs", args.runs),
                          ("--policy", args.policies)):
        if given:
            raise ConfigError(option, "does not combine with --attribute (its runs are "
                              "written under --out/runs; the fleet flexibility and the "
                              "controller are the scenario's)")
    labels = args.forecasters or [scenario.controller.forecaster]
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("runs") / f"{scenario.name}-attribution-{stamp}"
    print(f"mpc-dc compare --attribute: scenario '{scenario.name}', "
          f"{scenario.run.days:g} days, forecasters {', '.join(labels)}; into {out}",
          flush=True)
    table, outcome = attribute(scenario, labels, out, workers=args.workers,
                               on_report=print_report, source=args.scenario or SOURCE)
    if table is None:
        return failed_runs(outcome.failed, len(outcome.reports), "attribution runs")
    print(markdown(table, scenario.name))
    print(f"written: {out}/attribution.csv, attribution.md, attribution.png "
          f"(mpc-dc report {out})")
    return 0


def limit_notes(table: pd.DataFrame) -> list[str]:
    """One line per row with solves that ended without proven optimality.

    A limit-stopped (or round-and-fix) offline plan makes every regret of the table
    uncertain by up to its gap, so it is said under the table, not only in the gap
    column.
    """
    notes = []
    for label, row in table.iterrows():
        count = int(row.get("solves_not_optimal", 0) or 0)
        if not count:
            continue
        if label == OFFLINE_ROW:
            method = row.get("offline_method", "")
            notes.append(f"note: {label}: not proven optimal ({method}); its plan is within "
                         f"{row['mip_gap_pct']:.4g} % of the bound, so every regret may be "
                         "overstated by up to that much of the offline cost")
        else:
            nodes = int(row.get("node_limit_hits", 0) or 0)
            notes.append(f"note: {label}: {count} solve(s) ended without proven optimality "
                         f"(time limit, gap limit or failure; {nodes} with a MIP run stopped "
                         f"on the node limit); largest MIP gap {row['mip_gap_pct']:.4g} %")
    return notes


def _cell(row: pd.Series, key: str, fmt: str) -> str:
    """One table cell: ``-`` for a value that does not apply (NaN), ``"{:d}"`` as an
    integer, else as a float."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "{:d}":
        return fmt.format(int(value))
    return fmt.format(float(value))

"""``mpc-dc benchmark SUITE [--policy ...]``: every policy on a suite of scenarios, one scorecard.

Runs each scenario of the suite (a shipped suite such as ``standard``, or a suite
file) under the suite's built-in controllers (the business-as-usual baseline, MPC
with each forecaster, perfect forecasts, the offline optimum) and under every
``--policy``, as a resumable sweep (locally or on dask), then writes the scorecard:
``scorecard.csv`` (per scenario and policy), ``summary.csv`` (per policy, with its
score) and ``scorecard.md``; ``mpc-dc report DIR`` renders it as HTML. Definitions:
docs/benchmark.md. Exit code 2 if a run was refused for bad input, else 1 if a run
failed (run the same command to retry).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpc_dc.commands._common import add_executor_options, executor_of, failed_runs, print_report
from mpc_dc.commands._options import (
    comma_list,
    existing_dir,
    output_dir,
    policy_spec,
    positive_float,
)
from mpc_dc.rundir import write_file_atomic
from mpc_dc.suite import (
    load_suite,
    scorecard,
    scorecard_markdown,
    shipped_suites,
    suite_sweep,
    summary,
    time_limit_notes,
)
from mpc_dc.sweep import run_sweep, timings_table


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` command."""
    parser = subparsers.add_parser(
        "benchmark", help="score controllers on a suite of scenarios (scorecard)",
        description=__doc__)
    parser.add_argument("suite", help=f"a shipped suite ({', '.join(shipped_suites())}) or a "
                        "suite TOML file")
    parser.add_argument("--policy", dest="policies", type=policy_spec, action="append",
                        default=[], metavar="POLICY",
                        help="a policy to score: package.module:Class or an installed "
                        "entry-point name (repeat for several; docs/policies.md)")
    parser.add_argument("--size", default="default",
                        help="a size of the suite (its [suite.sizes]; default: %(default)s)")
    parser.add_argument("--days", type=positive_float("d"),
                        help="run length of every scenario [d] (replaces the size's)")
    parser.add_argument("--scenarios", type=comma_list, default=[],
                        help="only these scenarios of the suite (comma-separated names)")
    parser.add_argument("--data", type=existing_dir,
                        help="override data.dir of every scenario (public data folder)")
    parser.add_argument("--out", type=output_dir, required=True,
                        help="benchmark directory (new, or one to resume)")
    add_executor_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the suite, write and print the scorecard."""
    suite = load_suite(args.suite, size=args.size, days=args.days, only=args.scenarios,
                       data_dir=None if args.data is None else str(args.data))
    spec = suite_sweep(suite, args.policies)
    executor, workers = executor_of(args)
    print(f"mpc-dc benchmark: suite '{suite.name}' ({suite.size}), "
          f"{len(suite.scenarios)} scenarios x {len(spec.runs) // len(suite.scenarios)} "
          f"policies = {len(spec.runs)} runs, executor {executor}"
          + (f" at {args.scheduler}" if args.scheduler else f" ({workers} worker(s))"))
    outcome = run_sweep(spec, args.out, executor=executor, workers=workers,
                        scheduler=args.scheduler, on_report=print_report,
                        dashboard=args.dashboard)
    card = scorecard(outcome.table, timings_table(spec, args.out),
                     suite.slo_penalty_usd_per_request)
    totals = summary(card)
    notes = [f"{s.name}: {n}" for s in suite.scenarios for n in s.notes]
    notes += time_limit_notes(card)
    text = scorecard_markdown(suite.name, suite.size, card, totals, notes)
    out: Path = args.out
    write_file_atomic(out / "scorecard.csv", lambda p: card.to_csv(p, index=False))
    write_file_atomic(out / "summary.csv", lambda p: totals.to_csv(p, index=False))
    write_file_atomic(out / "scorecard.md", lambda p: p.write_text(text + "\n",
                                                                   encoding="utf-8"))
    print(text)
    print(f"written: {out}/scorecard.csv, summary.csv, scorecard.md; wall time "
          f"{outcome.wall_time_s:.1f} s")
    return failed_runs(outcome.failed, len(spec.runs))

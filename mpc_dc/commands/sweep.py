"""``mpc-dc sweep SWEEP.toml --out DIR``: many closed-loop runs, locally or on dask.

Expands the file's ``[sweep]`` table into runs (see :mod:`mpc_dc.sweep`), runs the
unfinished ones, each into ``DIR/runs/<id>`` atomically, and writes the results
table (``results.parquet``, ``results.csv``). Running the same command again
resumes: finished runs are skipped. Exit code 2 if a run was refused for bad input,
else 1 if any run failed (re-run to retry).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpc_dc.commands._common import add_executor_options, executor_of, failed_runs, print_report
from mpc_dc.commands._options import output_dir
from mpc_dc.sweep import check_sweep_data, load_sweep, run_sweep


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` command."""
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid or list of scenario variants (resumable; local or dask)",
        description=__doc__,
    )
    parser.add_argument("file", type=Path, help="sweep TOML file (a scenario plus [sweep])")
    parser.add_argument("--out", type=output_dir, required=True,
                        help="sweep directory (new, or a sweep directory to resume)")
    add_executor_options(parser)
    parser.add_argument("--plots", action="store_true", help="write each run's PNG plots")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and list the runs without running them")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Validate, run, write the tables, print a summary."""
    spec = load_sweep(args.file)
    if not args.scheduler:
        # The runs read their data on this machine: a run the data would refuse is
        # refused now, before any other run spends its time. (A remote scheduler's
        # workers read theirs where they run.)
        check_sweep_data(spec)
    executor, workers = executor_of(args)
    print(f"mpc-dc sweep: '{spec.name}', {len(spec.runs)} runs, executor {executor}"
          + (f" at {args.scheduler}" if args.scheduler else f" ({workers} worker(s))"))
    if args.dry_run:
        for run in spec.runs:
            print(f"  {run.run_id}")
        return 0

    outcome = run_sweep(spec, args.out, executor=executor, workers=workers,
                        scheduler=args.scheduler, plots=args.plots, on_report=print_report,
                        dashboard=args.dashboard)
    done = int((outcome.table["status"] == "done").sum())
    print(f"results: {args.out / 'results.parquet'}, results.csv ({done}/{len(spec.runs)} "
          f"runs complete); wall time {outcome.wall_time_s:.1f} s")
    return failed_runs(outcome.failed, len(spec.runs))

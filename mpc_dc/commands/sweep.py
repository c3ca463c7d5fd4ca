"""``mpc-dc sweep SWEEP.toml --out DIR``: many closed-loop runs, locally or on dask.

Expands the file's ``[sweep]`` table into runs (see :mod:`mpc_dc.sweep`), runs the
unfinished ones, each into ``DIR/runs/<id>`` atomically, and writes the results
table (``results.parquet``, ``results.csv``). Running the same command again
resumes: finished runs are skipped. Exit code 1 if any run failed (re-run to retry).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpc_dc.commands._common import print_run_report
from mpc_dc.commands._options import output_dir, positive_int, scheduler_address
from mpc_dc.sweep import DASHBOARD_DEFAULT, Executor, load_sweep, run_sweep


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
    parser.add_argument("--executor", choices=["local", "dask"], default="local",
                        help="local: this process or a process pool; dask: dask.distributed "
                        "(default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="worker processes (default: 1 for local, 2 for a dask "
                        "LocalCluster)")
    parser.add_argument("--scheduler", type=scheduler_address, default=None,
                        help="address of a running dask scheduler (tcp://host:8786); "
                        "implies --executor dask. The connection is unauthenticated TCP "
                        "and the scheduler runs pickled code: use only a scheduler you "
                        "control, on a trusted network (docs/reliability.md)")
    parser.add_argument("--dashboard", default=DASHBOARD_DEFAULT, metavar="ADDRESS",
                        help="where a LocalCluster's dashboard listens (default "
                        "%(default)s: this machine only, random port; ':0' listens on "
                        "every interface, unauthenticated)")
    parser.add_argument("--plots", action="store_true", help="write each run's PNG plots")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and list the runs without running them")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Validate, run, write the tables, print a summary."""
    spec = load_sweep(args.file)
    executor: Executor = "dask" if args.scheduler or args.executor == "dask" else "local"
    workers = args.workers or (2 if executor == "dask" else 1)
    print(f"mpc-dc sweep: '{spec.name}', {len(spec.runs)} runs, executor {executor}"
          + (f" at {args.scheduler}" if args.scheduler else f" ({workers} worker(s))"))
    if args.dry_run:
        for run in spec.runs:
            print(f"  {run.run_id}")
        return 0
    outcome = run_sweep(spec, args.out, executor=executor, workers=workers,
                        scheduler=args.scheduler, plots=args.plots, on_report=print_run_report,
                        dashboard=args.dashboard)
    done = int((outcome.table["status"] == "done").sum())
    print(f"results: {args.out / 'results.parquet'}, results.csv ({done}/{len(spec.runs)} "
          f"runs complete); wall time {outcome.wall_time_s:.1f} s")
    if outcome.failed:
        first = outcome.failed[0]
        print(f"mpc-dc: error: {len(outcome.failed)} of {len(spec.runs)} runs failed "
              f"(first {first.run_id}: {first.message}); run the same command again to "
              "retry them", file=sys.stderr)
        return 1
    return 0

"""``mpc-dc report DIR``: an HTML or Markdown report of a run or a sweep directory.

A run: KPI table, cost components, power flows of a chosen day, prices. A sweep:
results table, regret vs forecast error per forecaster, cost components per run,
SLO attainment when the runs report it. The HTML file is self-contained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpc_dc.commands._options import calendar_day, output_file
from mpc_dc.report import write_report
from mpc_dc.rundir import check_file_target


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    parser = subparsers.add_parser(
        "report", help="HTML/Markdown report of a run or sweep directory", description=__doc__
    )
    parser.add_argument("dir", type=Path, help="run directory or sweep directory")
    parser.add_argument("--format", choices=["html", "md"], default="html",
                        help="output format (default: %(default)s)")
    parser.add_argument("--out", type=output_file,
                        help="report file (default DIR/report.<format>)")
    parser.add_argument("--day", type=calendar_day,
                        help="local day YYYY-MM-DD of the power-flow plot "
                        "(default: the first full day)")
    parser.add_argument("--run", dest="run_id",
                        help="for a sweep: run id whose day of power flows is shown")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Write the report and print where it went."""
    if args.out is not None:
        check_file_target(args.out)  # now, not after building the report
    path = write_report(args.dir, out=args.out, fmt=args.format, day=args.day,
                        run_id=args.run_id)
    print(f"report: {path}")
    return 0

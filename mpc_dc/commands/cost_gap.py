"""``mpc-dc cost-gap REFERENCE RUN [RUN ...]``: where the cost gap between runs comes from.

Prints each run's cost split into inference idle and active energy, other IT, renewable,
residual and lateness (:mod:`mpc_dc.cost_gap`), its difference to the first run, and per
further run the intervals where it paid the most lateness beyond the first. The runs
are directories of one scenario written by ``mpc-dc run --out`` or ``compare --runs``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mpc_dc.commands._common import markdown_table
from mpc_dc.commands._options import existing_dir, positive_int
from mpc_dc.cost_gap import gap_table, lateness_gap, load_run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cost-gap`` command."""
    parser = subparsers.add_parser(
        "cost-gap", help="split the cost gap between runs by component and time",
        description=__doc__)
    parser.add_argument("runs", nargs="+", type=existing_dir, metavar="RUN",
                        help="run directories; the first is the reference")
    parser.add_argument("--top", type=positive_int, default=5,
                        help="intervals of lateness gap listed per run (default: %(default)s)")
    parser.set_defaults(func=main)


def _name(path: Path) -> str:
    return path.resolve().name


def _markdown(table: pd.DataFrame, first: str, fmt: str) -> str:
    """``table`` as Markdown, every column formatted with ``fmt``."""
    columns = {str(c): (str(c), fmt) for c in table.columns}
    return markdown_table(table.set_axis(list(columns), axis=1), first, columns,
                          lambda row, key, f: f.format(row[key]))


def main(args: argparse.Namespace) -> int:
    """Print the tables."""
    # Each run's files are read once, for the table and for its lateness gap.
    loaded = [load_run(p) for p in args.runs]
    print(_markdown(gap_table({_name(run.path): run for run in loaded}), "part", "{:,.2f}"))
    first = loaded[0]
    for run in loaded[1:]:
        print(f"\nlateness gap by interval, {_name(run.path)} − {_name(first.path)} "
              f"(top {args.top}):")
        print(_markdown(lateness_gap(first, run, args.top), "interval start (UTC)",
                        "{:,.3f}"))
    return 0

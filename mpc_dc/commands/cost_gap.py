"""``mpc-dc cost-gap REFERENCE RUN [RUN ...]``: where the cost gap between runs comes from.

Prints each run's cost split into inference idle and active energy, other IT, renewable,
residual and lateness (:mod:`mpc_dc.cost_gap`), its difference to the first run, and per
further run the intervals where it paid the most lateness beyond the first. The runs
are directories of one scenario written by ``mpc-dc run --out`` or ``compare --runs``;
each column is named by its folder, or by its last path parts when two folders share a
name (``a/mpc``, ``b/mpc``). One directory given twice is refused.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mpc_dc.commands._common import markdown_table
from mpc_dc.commands._options import existing_dir, positive_int
from mpc_dc.cost_gap import gap_table, lateness_gap, load_run
from traces.errors import ConfigError


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


def labels(paths: Sequence[Path]) -> list[str]:
    """A column name per run directory: its folder name, or as many of its last path
    parts as tell it from the others (``a/run``, ``b/run``).

    Two directories of one name are the normal case (``compare --runs`` writes ``mpc``
    and ``baseline`` into each output folder), so they are told apart rather than
    refused; keyed by the bare name they shared one column and the table compared a
    run with itself.

    Raises
    ------
    ConfigError
        (source ``RUN``) one directory given twice (also through a link): its gap
        to itself is no comparison.
    """
    resolved = [p.resolve() for p in paths]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            first = paths[resolved.index(path)]
            also = "" if str(first) == str(paths[i]) else f" (as {first} and {paths[i]})"
            raise ConfigError("RUN", f"{paths[i]} given twice{also}; expected different "
                              "run directories")
    out = []
    for path in resolved:
        others = [q.parts for q in resolved if q != path]
        k = next(k for k in range(1, len(path.parts) + 1)
                 if all(q[-k:] != path.parts[-k:] for q in others))
        out.append(Path(*path.parts[-k:]).as_posix())
    return out


def _markdown(table: pd.DataFrame, first: str, fmt: str) -> str:
    """``table`` as Markdown, every column formatted with ``fmt``."""
    columns = {str(c): (str(c), fmt) for c in table.columns}
    return markdown_table(table.set_axis(list(columns), axis=1), first, columns,
                          lambda row, key, f: f.format(row[key]))


def main(args: argparse.Namespace) -> int:
    """Print the tables."""
    # Each run's files are read once, for the table and for its lateness gap.
    names = labels(args.runs)
    loaded = [load_run(p) for p in args.runs]
    print(_markdown(gap_table(dict(zip(names, loaded, strict=True))), "part", "{:,.2f}"))
    first = loaded[0]
    for name, run in zip(names[1:], loaded[1:], strict=True):
        print(f"\nlateness gap by interval, {name} − {names[0]} (top {args.top}):")
        print(_markdown(lateness_gap(first, run, args.top), "interval start (UTC)",
                        "{:,.3f}"))
    return 0

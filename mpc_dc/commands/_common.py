"""Pieces shared by the ``run``, ``compare`` and ``scenario`` commands (not a command)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mpc_dc.interrupt import hold_point
from mpc_dc.site.scenario import Scenario, controller_variant, default_scenario, load_scenario


def read_scenario(path: Path | None) -> Scenario:
    """The scenario file ``path``, or the embedded default when None."""
    return load_scenario(path) if path else default_scenario()


def with_data_dir(scenario: Scenario, data: Path | None) -> Scenario:
    """``scenario`` with ``data.dir`` replaced by ``--data`` when it is given."""
    if not data:
        return scenario
    return replace(scenario, data=replace(scenario.data, dir=str(data)))


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): scenario overrides (:func:`with_set_options`)."""
    from mpc_dc.commands._options import override

    parser.add_argument("--set", dest="overrides", type=override, action="append",
                        default=[], metavar="KEY=VALUE",
                        help="override a scenario key (repeatable; a TOML value), e.g. "
                        "--set controller.nowcast_tau_h=0 --set run.days=7")


def with_set_options(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """``scenario`` with the ``--set`` overrides applied, checked as a file's keys
    (:func:`~mpc_dc.site.scenario.with_overrides`)."""
    if not getattr(args, "overrides", None):
        return scenario
    from mpc_dc.site.data import SOURCE
    from mpc_dc.site.scenario import with_overrides

    return with_overrides(scenario, dict(args.overrides), args.scenario or SOURCE)


def with_run_overrides(scenario: Scenario, args: argparse.Namespace) -> tuple[Scenario, Path]:
    """Apply ``--data``, ``--set``, ``--controller`` (:func:`controller_variant`) and
    ``--days``.

    Returns
    -------
    scenario
        The overridden scenario.
    out : Path
        ``--out``, or ``runs/<name>-<UTC time>``.
    """
    scenario = with_set_options(with_data_dir(scenario, args.data), args)
    if args.controller:
        scenario = controller_variant(scenario, args.controller)
    if args.days:
        scenario = replace(scenario, run=replace(scenario.run, days=args.days))
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("runs") / f"{scenario.name}-{stamp}"
    return scenario, out


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[int], object]]]:
    """Yield ``progress(label, total) -> update``: one tqdm bar per label, closed on exit."""
    bars: list[tqdm] = []

    def progress(label: str, total: int) -> Callable[[int], object]:
        bar = tqdm(total=total, unit="step", desc=label, disable=not sys.stderr.isatty())
        bars.append(bar)

        def update(steps: int) -> None:
            bar.update(steps)
            hold_point("simulate")

        return update

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def write_comparison(out: Path, table: pd.DataFrame, markdown: str) -> None:
    """Write ``compare.csv`` and ``compare.md`` into the directory ``out`` atomically."""
    from mpc_dc.rundir import atomic_dir

    with atomic_dir(out, kind="compare") as tmp:
        table.to_csv(tmp / "compare.csv")
        (tmp / "compare.md").write_text(markdown + "\n", encoding="utf-8")
    print(f"written: {out}/compare.csv, compare.md")


def markdown_table(
    table: pd.DataFrame,
    first: str,
    columns: dict[str, tuple[str, str]],
    cell: Callable[[pd.Series, str, str], str],
) -> str:
    """Markdown table: one row per index label, ``cell(row, key, fmt)`` per column.

    Parameters
    ----------
    table
        Rows to show, labelled by the index.
    first
        Header of the label column.
    columns
        Column key -> (header, format string); keys missing from ``table`` are left out.
    cell
        Formats one value of a row.
    """
    shown = {k: v for k, v in columns.items() if k in table.columns}
    header = [first, *(name for name, _ in shown.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.iterrows():
        cells = [str(label)]
        cells.extend(cell(row, key, fmt) for key, (_, fmt) in shown.items())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

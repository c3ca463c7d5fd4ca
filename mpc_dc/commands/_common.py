"""Pieces shared by the commands (not a command): scenario options, progress bars,
tables, executor options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mpc_dc.commands._options import override, positive_int, scheduler_address
from mpc_dc.interrupt import hold_point
from mpc_dc.site.data import SOURCE
from mpc_dc.site.scenario import (
    Scenario,
    controller_variant,
    default_scenario,
    load_scenario,
    with_overrides,
)
from mpc_dc.sweep import DASHBOARD_DEFAULT, Executor, RunReport
from traces.errors import ConfigError


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
    parser.add_argument("--set", dest="overrides", type=override, action="append",
                        default=[], metavar="KEY=VALUE",
                        help="override a scenario key (repeatable; a TOML value), e.g. "
                        "--set controller.nowcast_tau_h=0 --set run.days=7")


def with_set_options(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """``scenario`` with the ``--set`` overrides applied, checked as a file's keys
    (:func:`~mpc_dc.site.scenario.with_overrides`)."""
    if not getattr(args, "overrides", None):
        return scenario
    return with_overrides(scenario, dict(args.overrides), args.scenario or SOURCE)


@contextmanager
def option_errors(option: str, value: object, source: str | Path) -> Iterator[None]:
    """A :class:`ConfigError` raised in the block, applying a command-line option to the
    scenario, names the scenario file ``source`` and the option with its value."""
    try:
        yield
    except ConfigError as err:
        named = source if err.source == SOURCE else err.source
        raise ConfigError(named, f"{err.message} (from {option} {value})", key=err.key) from None


def check_labels(scenario: Scenario, option: str, labels: Sequence[str],
                 source: str | Path) -> None:
    """Refuse, before anything runs, a label of ``option`` that does not apply to
    ``scenario`` (e.g. ``S4`` without a ``[fleet]``)."""
    for label in labels:
        with option_errors(option, label, source):
            controller_variant(scenario, label)


def with_days(scenario: Scenario, days: float | None, source: str | Path = SOURCE
              ) -> Scenario:
    """``scenario`` over ``days`` [d] (``--days``; None or 0: as it is); a length the
    scenario refuses names ``source`` and the option."""
    if not days:
        return scenario
    with option_errors("--days", f"{days:g}", source):
        return replace(scenario, run=replace(scenario.run, days=days))


def with_run_overrides(scenario: Scenario, args: argparse.Namespace,
                       source: str | Path = SOURCE) -> tuple[Scenario, Path]:
    """Apply ``--data``, ``--set``, ``--controller`` (:func:`controller_variant`) and
    ``--days``; an override the scenario refuses names ``source`` (the file) and the option.

    Returns
    -------
    scenario
        The overridden scenario.
    out : Path
        ``--out``, or ``runs/<name>-<UTC time>``.
    """
    scenario = with_set_options(with_data_dir(scenario, args.data), args)
    if args.controller:
        with option_errors("--controller", args.controller, source):
            scenario = controller_variant(scenario, args.controller)
    scenario = with_days(scenario, args.days, source)
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


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--workers``, ``--scheduler``, ``--dashboard`` (sweep, benchmark)."""
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


def executor_of(args: argparse.Namespace) -> tuple[Executor, int]:
    """The executor and worker count the options of :func:`add_executor_options` ask for."""
    executor: Executor = "dask" if args.scheduler or args.executor == "dask" else "local"
    return executor, args.workers or (2 if executor == "dask" else 1)


def print_report(report: RunReport, finished: int, total: int) -> None:
    """One progress line per finished run of a sweep."""
    extra = f" {report.wall_time_s:.1f} s" if report.status == "done" else ""
    extra += f" ({report.message})" if report.message else ""
    print(f"[{finished}/{total}] {report.status:<7} {report.run_id}{extra}", flush=True)


def failed_runs(failed: list[RunReport], total: int, what: str = "runs") -> int:
    """Exit code of a sweep (of ``total`` ``what``), with one line on stderr when runs
    failed.

    0 when none failed. 2 when a run was refused for bad input (``bad_input``: running
    it again cannot help, its input must change), naming the first such run and, after
    it, the first of any that failed otherwise. Else 1: the failures may be transient
    (a lost worker), and running the same command again retries exactly them.
    """
    if not failed:
        return 0
    refused = [r for r in failed if r.bad_input]
    others = [r for r in failed if not r.bad_input]
    if refused:
        first = refused[0]
        line = (f"{len(refused)} of {total} {what} refused for bad input (first "
                f"{first.run_id}: {first.message})")
        if others:
            line += (f"; {len(others)} more failed otherwise (first {others[0].run_id}: "
                     f"{others[0].message}); run the same command again to retry those")
        print(f"mpc-dc: error: {line}", file=sys.stderr)
        return 2
    first = failed[0]
    print(f"mpc-dc: error: {len(failed)} of {total} {what} failed (first {first.run_id}: "
          f"{first.message}); run the same command again to retry them", file=sys.stderr)
    return 1

"""Scenario sweeps: a ``[sweep]`` table expanded into runs, executed locally or on dask.

A sweep file is a scenario file of the one schema (inline ``[run]``, ``[data]``,
``[site]``, ``[controller]`` ... tables, or ``sweep.base = "path.toml"``) plus a
``[sweep]`` table (overrides are dotted keys of :func:`mpc_dc.site.scenario.with_overrides`;
list entries by position or name)::

    [sweep]
    name = "forecast-error"
    reference = { "controller.kind" = "perfect" }     # optional: regret partner
    list = [ { "controller.kind" = "perfect" },
             { "controller.forecaster" = "sarimax" } ]
    [sweep.grid]
    "site.campuses[0].other_it.deferrable_share" = [0.2, 0.4, 0.6]

The runs are every ``list`` entry combined with every point of the ``grid``
(cartesian product; a missing ``list`` is one empty entry, a missing ``grid`` one
empty point), then each ``extra`` entry once, not combined with the grid (e.g. the
perfect-foresight reference of a grid that varies only the forecasts). Each run gets
a deterministic id, a readable slug of its overrides and a hash of the base scenario
and the overrides, e.g.
``forecaster=sarimax__deferrable_share=0.2__1a2b3c4d5e``.

Output layout::

    OUT/
      .mpc-dc-output.json   the output marker (kind "sweep")
      sweep.json        the resolved sweep: base scenario, runs (id, overrides), status
      runs/<id>/        one run directory per run (written atomically by the runner)
      results.parquet   one row per run: run id, overrides, KPIs (no wall times)
      results.csv       the same table as CSV
      timings.csv       wall and solve times per run (these differ between executions)

Resume: a run directory is renamed into place only when complete, and its output
marker (``.mpc-dc-output.json``) records the SHA-256 of every file it holds. A run
whose directory is complete and intact is skipped; any other (unfinished, a file
deleted or corrupted since) is removed and run again, so a killed sweep run again
with the same command re-runs exactly the runs it lacks. The results table is
rebuilt from the run directories in expansion order, so the local and the dask
executors give identical tables.

Interruption: Ctrl-C or SIGTERM stops the workers of a local pool (they remove
their temporary run directories) and cancels the dask tasks; a pool worker whose
sweep process was killed outright notices within :data:`WATCHDOG_PERIOD_S` and
stops too, and a LocalCluster's workers end with the process that started them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import pandas as pd

from mpc_dc.config import reject_unknown_keys
from mpc_dc.errors import USER_ERRORS
from mpc_dc.interrupt import Terminated, hold_point
from mpc_dc.rundir import (
    RunDirExistsError,
    RunWriteError,
    clean_stale,
    pid_alive,
    prepare_output_dir,
    read_json_object,
    verify_output_dir,
    write_file_atomic,
    write_json,
)
from mpc_dc.sim.meter import costs_and_revenue_usd, pct_of_costs
from mpc_dc.site.data import SOURCE, errors_name
from mpc_dc.site.scenario import (
    Scenario,
    default_scenario,
    load_scenario,
    read_toml,
    scenario_from_table,
    scenario_to_mapping,
    with_overrides,
)
from traces.errors import ConfigError

logger = logging.getLogger(__name__)

Executor = Literal["local", "dask"]

SWEEP_KEYS = ("name", "base", "grid", "list", "extra", "reference")
"""Keys of the ``[sweep]`` table."""

TIMING_KPIS = (
    "wall_time_s",
    "setup_time_s",
    "dr_lead_in_time_s",
    "decide_time_total_s",
    "decide_time_median_s",
    "decide_time_p95_s",
    "solve_time_median_s",
    "solve_time_p95_s",
    "highs_time_median_s",
    "requests_per_wall_s",
    "offline_solve_wall_s",
)
"""KPIs that measure the machine, not the run: kept out of the results table."""

NESTED_KPIS = ("fallbacks", "faults", "formulations", "forms", "solve_statuses",
               "decision_projections", "requests_by_status", "arrival_drops",
               "faults_injected", "fault_intervals", "fault_effects",
               "fallbacks_in_fault_intervals")
"""Counter KPIs flattened to ``<name>.<key>`` columns (missing counts are 0); other
nested KPIs (``by_campus``, ``slo_attainment_by_model`` ...) are flattened alike."""

MAX_RUNS = 100_000
"""Largest sweep accepted (a typo such as a 1e6-point grid is an error, not a month)."""

DASHBOARD_DEFAULT = "127.0.0.1:0"
"""A LocalCluster's dashboard: this machine only, a free port (several sweeps may run)."""

SCHEDULER_TIMEOUT_S = 5.0
"""Longest wait for a remote dask scheduler to answer [s] (then one line, nothing created)."""

WATCHDOG_PERIOD_S = 0.2
"""How often a pool worker checks that the sweep process is still there [s]."""

STOP_GRACE_S = 10.0
"""Time pool workers get to clean up after SIGTERM before SIGKILL [s]."""


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes
    ----------
    run_id : str
        Deterministic id: readable slug + hash of base scenario and overrides.
    overrides : tuple of (str, value)
        Dotted-key overrides in the order the sweep file gives them.
    scenario : Scenario
        The base scenario with the overrides applied (validated).
    policy : str or None
        A policy named as on the command line (``package.module:Class`` or an
        entry-point name) run instead of the scenario's controller (``mpc-dc
        benchmark --policy``); sweep files never name one.
    source : str
        The file the run comes from (the sweep or suite file), named by an error the
        run meets only once its data are read; :data:`~mpc_dc.site.data.SOURCE` for none.
    origins : tuple of (str, str)
        Override key → the table of the file that gave it (``sweep.grid``,
        ``sweep.list[1]`` ...), named beside such an error on an overridden key.
    """

    run_id: str
    overrides: tuple[tuple[str, Any], ...]
    scenario: Scenario
    policy: str | None = None
    source: str = SOURCE
    origins: tuple[tuple[str, str], ...] = ()

    @property
    def override_dict(self) -> dict[str, Any]:
        """The overrides as a dict."""
        return dict(self.overrides)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed and validated sweep file.

    Attributes
    ----------
    name : str
    source : Path
        The sweep file.
    base : Scenario
        Scenario every run starts from.
    grid : tuple of (str, tuple of values)
        Dotted key → values; the runs take the cartesian product.
    cases : tuple of dict
        The ``list`` entries (each an override set).
    extra : tuple of dict
        The ``extra`` entries: override sets run once each, not combined with the grid.
    reference : dict
        Overrides that mark the regret reference run (e.g. perfect foresight); empty
        for none. A run's partner has the reference overrides and the same values as
        the run on every key outside the reference keys' tables.
    runs : tuple of SweepRun
        The expanded runs, in expansion order (list entries outer, grid inner).
    """

    name: str
    source: Path
    base: Scenario
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    cases: tuple[dict[str, Any], ...] = ()
    extra: tuple[dict[str, Any], ...] = ()
    reference: dict[str, Any] = field(default_factory=dict)
    runs: tuple[SweepRun, ...] = ()

    @property
    def override_keys(self) -> list[str]:
        """Every overridden key, in first-seen order."""
        keys: dict[str, None] = {}
        for run in self.runs:
            keys.update(dict.fromkeys(k for k, _ in run.overrides))
        return list(keys)


# ----------------------------------------------------------------------------- parse


def load_sweep(path: str | Path) -> SweepSpec:
    """Read, validate and expand a sweep file.

    Every run's scenario is built and validated here, before anything runs.

    Raises
    ------
    ConfigError
        One line naming the file and the key (``sweep.grid.<key>``,
        ``sweep.list[i].<key>`` ...) for any problem.
    """
    file = Path(path)
    table = read_toml(file, "sweep")
    if "sweep" not in table:
        raise ConfigError(file, "required table is missing; a sweep file needs a [sweep] "
                          "table with 'grid' and/or 'list'", key="sweep")
    raw = table.pop("sweep")
    if not isinstance(raw, dict):
        raise ConfigError(file, f"expected a table, got {raw!r}", key="sweep")
    reject_unknown_keys(file, raw, SWEEP_KEYS, "sweep.",
                        dotted_hint="; scenario overrides go in sweep.grid or sweep.list")
    base = _base_scenario(file, table, raw.get("base"))
    name = raw.get("name", base.name)
    if not isinstance(name, str) or not name:
        raise ConfigError(file, f"expected a non-empty string, got {name!r}", key="sweep.name")
    grid = _grid(file, raw.get("grid", {}))
    cases = _cases(file, raw.get("list", [{}]), "sweep.list")
    extra = _cases(file, raw.get("extra", []), "sweep.extra", empty=True)
    if not grid and cases == ({},) and not extra:
        raise ConfigError(file, "nothing to sweep; expected 'grid' and/or 'list'", key="sweep")
    reference = raw.get("reference", {})
    if not isinstance(reference, dict):
        raise ConfigError(file, f"expected a table of overrides, got {reference!r}",
                          key="sweep.reference")
    runs = expand(file, base, grid, cases, extra)
    if reference:
        with_overrides(base, reference, str(file))
        if not any(_matches(run.override_dict, reference) for run in runs):
            raise ConfigError(file, f"no run has the reference overrides {reference}; "
                              "expected the overrides of one of the runs (e.g. add them to "
                              "sweep.list)", key="sweep.reference")
    return SweepSpec(name, file, base, grid, cases, extra, reference, tuple(runs))


def data_configuration(scenario: Scenario) -> dict[str, Any]:
    """The part of ``scenario`` its exogenous data depend on: everything but the
    controller (of which only the horizon, the data's tail) and the serving fidelity."""
    table = scenario_to_mapping(scenario)
    table.pop("serving", None)
    table["controller"] = {"horizon_h": scenario.controller.horizon_h}
    return table


def check_sweep_data(spec: SweepSpec) -> int:
    """Read or generate the data of every run as ``scenario check`` does
    (:func:`mpc_dc.site.data.check_data`), once per distinct data configuration, so a
    run a sweep would refuse for its data (a series not covering history + run +
    horizon, a missing data folder) is refused before any run starts.

    Returns
    -------
    int
        The distinct data configurations checked.

    Raises
    ------
    ConfigError
        Naming the sweep file, the scenario key and the first run refused.
    TraceError
        A data file missing or malformed.
    """
    from mpc_dc.site.data import check_data

    seen: set[str] = set()
    for run in spec.runs:
        digest = payload_digest(data_configuration(run.scenario))
        if digest in seen:
            continue
        seen.add(digest)
        try:
            check_data(run.scenario, source=spec.source)
        except ConfigError as err:
            raise ConfigError(err.source, f"{err.message} (run {run.run_id})",
                              key=err.key) from None
    return len(seen)


def _base_scenario(file: Path, table: dict[str, Any], base: Any) -> Scenario:
    if base is None:
        if not table:
            return default_scenario()
        return scenario_from_table(table, file)
    if not isinstance(base, str):
        raise ConfigError(file, f"expected a path string, got {base!r}", key="sweep.base")
    if table:
        raise ConfigError(file, "give either sweep.base or inline scenario tables, not both "
                          f"(found {', '.join(table)})", key="sweep.base")
    path = Path(base) if Path(base).is_absolute() else file.parent / base
    if not path.is_file():
        raise ConfigError(file, f"base scenario {path} not found", key="sweep.base")
    return load_scenario(path)


def _grid(file: Path, grid: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(grid, dict):
        raise ConfigError(file, f"expected a table of key = [values], got {grid!r}",
                          key="sweep.grid")
    out = []
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(file, f"expected a non-empty list of values, got {values!r}",
                              key=f"sweep.grid.{key}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(file, f"repeated value in {values!r}", key=f"sweep.grid.{key}")
        out.append((key, tuple(values)))
    return tuple(out)


def _cases(file: Path, cases: Any, key: str, *, empty: bool = False
           ) -> tuple[dict[str, Any], ...]:
    """The override sets of ``sweep.list`` or ``sweep.extra`` (``key``), checked."""
    if not isinstance(cases, list) or not (cases or empty):
        what = "a list of tables" if empty else "a non-empty list of tables"
        raise ConfigError(file, f"expected {what}, got {cases!r}", key=key)
    for i, case in enumerate(cases):
        if not isinstance(case, dict):
            raise ConfigError(file, f"expected a table of overrides, got {case!r}",
                              key=f"{key}[{i}]")
    return tuple(cases)


def expand(
    source: str | Path,
    base: Scenario,
    grid: Sequence[tuple[str, Sequence[Any]]],
    cases: Sequence[dict[str, Any]] = ({},),
    extra: Sequence[dict[str, Any]] = (),
) -> list[SweepRun]:
    """Runs of ``cases`` × the cartesian product of ``grid``, then each of ``extra``
    once, each validated.

    Raises
    ------
    ConfigError
        A key in both a case and the grid, a repeated override set, an invalid
        override (unknown key with the nearest valid key, wrong type, out of range),
        or more than :data:`MAX_RUNS` runs.
    """
    n = len(cases) * int(np.prod([len(v) for _, v in grid])) if grid else len(cases)
    if n + len(extra) > MAX_RUNS:
        raise ConfigError(source, f"{n + len(extra)} runs; expected at most {MAX_RUNS}",
                          key="sweep")
    keys = [k for k, _ in grid]
    todo: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = []
    for i, case in enumerate(cases):
        where = f"sweep.list[{i}]" if cases != ({},) else "sweep.grid"
        for key in case:
            if key in keys:
                raise ConfigError(source, "given in both sweep.list and sweep.grid",
                                  key=f"{where}.{key}")
        label = where if not grid or where == "sweep.grid" else f"{where} x sweep.grid"
        todo += [(where, label, (*case.items(), *zip(keys, point, strict=True)))
                 for point in itertools.product(*(v for _, v in grid))]
    todo += [(f"sweep.extra[{i}]", f"sweep.extra[{i}]", tuple(case.items()))
             for i, case in enumerate(extra)]
    runs: list[SweepRun] = []
    seen: dict[str, int] = {}
    base_hash = base_digest(base)
    for where, label, overrides in todo:
        origins = tuple((k, "sweep.grid" if k in keys else where) for k, _ in overrides)
        try:
            scenario = with_overrides(base, dict(overrides), str(source))
        except ConfigError as err:
            raise ConfigError(source, f"{err.message} (override in {label})",
                              key=err.key) from None
        run_id = make_run_id(overrides, base_hash)
        if run_id in seen:
            raise ConfigError(source, f"run {run_id} appears twice", key=where)
        seen[run_id] = len(runs)
        runs.append(SweepRun(run_id, overrides, scenario, source=str(source),
                             origins=origins))
    return runs


def payload_digest(payload: Any) -> str:
    """SHA-256 [hex] of ``payload`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def base_digest(scenario: Scenario) -> str:
    """SHA-256 of the resolved scenario (the base of a sweep's run ids)."""
    return payload_digest(scenario_to_mapping(scenario))


def make_run_id(overrides: Sequence[tuple[str, Any]], base_hash: str = "") -> str:
    """Deterministic run id: ``<slug>__<hash>``.

    The slug is ``last-key=value`` pairs (readable, truncated to 80 characters; a key
    of a channel group keeps its group, ``price.bias=0.2``); the 10-hex-digit hash
    covers the base scenario (``base_hash``) and the sorted overrides, so ids are
    unique and stable across executions and machines.
    """
    parts = [f"{_key_text(key)}={_value_text(value)}" for key, value in overrides]
    slug = re.sub(r"[^A-Za-z0-9._=+-]", "-", "__".join(parts))[:80] or "base"
    digest = payload_digest({"base": base_hash,
                             "overrides": sorted(overrides, key=lambda kv: kv[0])})
    return f"{slug}__{digest[:10]}"


def _key_text(key: str) -> str:
    """The slug's name of a dotted key: its last part (two under ``controller.channels``)."""
    parts = key.split(".")
    return ".".join(parts[-2:]) if key.startswith("controller.channels.") else parts[-1]


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return payload_digest(value)[:6]
    return str(value)


def _matches(overrides: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(k in overrides and overrides[k] == v for k, v in wanted.items())


# ----------------------------------------------------------------------------- execute


@dataclass(frozen=True)
class RunReport:
    """What one task reports back.

    Attributes
    ----------
    run_id : str
    status : {"done", "skipped", "failed"}
    message : str
        The error for a failed run.
    wall_time_s : float [s]
    bad_input : bool
        The run failed on bad input (one of :data:`mpc_dc.errors.USER_ERRORS`, e.g. a
        scenario key refused once its data are read): running it again cannot help.
    """

    run_id: str
    status: Literal["done", "skipped", "failed"]
    message: str = ""
    wall_time_s: float = 0.0
    bad_input: bool = False


@dataclass(frozen=True)
class SweepOutcome:
    """A finished (or partly finished) sweep.

    Attributes
    ----------
    out : Path
    table : DataFrame
        The results table (also written as Parquet and CSV).
    reports : list of RunReport
        One per run, in expansion order.
    wall_time_s : float [s]
    """

    out: Path
    table: pd.DataFrame
    reports: list[RunReport]
    wall_time_s: float

    @property
    def failed(self) -> list[RunReport]:
        """Runs that failed this time."""
        return [r for r in self.reports if r.status == "failed"]


def execute_run(run: SweepRun, run_dir: str, plots: bool = False) -> RunReport:
    """Run one sweep run into ``run_dir`` (atomically); a task of every executor.

    A run that raises is reported as failed (logged with its traceback; bad input, one
    of :data:`~mpc_dc.errors.USER_ERRORS`, at info level, its traceback at debug level,
    and marked ``bad_input``) rather than raised, so that one bad run does not lose the
    others and dask does not retry a deterministic failure on other workers. An
    interruption (Ctrl-C, SIGTERM) is not a failure: it propagates, after the temporary
    run directory is removed.
    """
    from mpc_dc.fastpath import silence_highs_banner
    from mpc_dc.runner import run_scenario

    silence_highs_banner()
    tick = time.perf_counter()
    try:
        # A key refused only once the data are read names the sweep file, not the
        # placeholder of a scenario without a file, and the table that overrode it.
        with errors_name(run.source), _override_named(run):
            run_scenario(
                run.scenario,
                out=Path(run_dir),
                prepared=_prepared(run.scenario),
                plots=plots,
                progress=lambda steps: hold_point("simulate", run.run_id),
                extra_meta={"sweep": {"run_id": run.run_id, "overrides": run.override_dict}},
                policy=run.policy,
            )
    except Exception as err:  # reported per run; the sweep goes on
        message = " ".join(str(err).split()) or type(err).__name__
        bad_input = isinstance(err, USER_ERRORS)
        if not bad_input:
            # A bug or a transient failure: its type says what broke. Bad input is
            # one line naming its file and key, as `mpc-dc run` prints it.
            message = f"{type(err).__name__}: {message}"
        if bad_input:
            # Bad input names its key or file in one line, printed with the run's
            # progress line and the sweep's closing error; a traceback (-vv only) would
            # bury them, as `mpc-dc run` never prints one for bad input.
            logger.info("run %s failed: %s", run.run_id, message)
            logger.debug("run %s failed", run.run_id, exc_info=True)
        else:
            logger.exception("run %s failed", run.run_id)
        return RunReport(run.run_id, "failed", message, time.perf_counter() - tick,
                         bad_input)
    return RunReport(run.run_id, "done", "", time.perf_counter() - tick)


def _overridden_by(key: str, overrides: Sequence[str]) -> str | None:
    """The override of ``overrides`` that set ``key`` (the key itself, a table above it
    or a key inside it), or None when ``key`` comes from the base scenario."""
    for name in overrides:
        if name == key or any(a.startswith(b) and a[len(b)] in ".["
                              for a, b in ((key, name), (name, key)) if len(a) > len(b)):
            return name
    return None


@contextmanager
def _override_named(run: SweepRun) -> Iterator[None]:
    """A :class:`ConfigError` raised in the block on a key the run overrides says which
    table of the sweep file gave the override (as :func:`expand` says of a refused one)."""
    try:
        yield
    except ConfigError as err:
        origins = dict(run.origins)
        name = _overridden_by(err.key, list(origins)) if err.key else None
        if name is None:
            raise
        what = "override" if name == err.key else f"override {name!r}"
        raise ConfigError(err.source, f"{err.message} ({what} in {origins[name]})",
                          key=err.key) from None


_PREPARED: dict[str, Any] = {}
"""The last :func:`mpc_dc.runner.prepare` of this process, by :func:`~mpc_dc.runner.data_key`."""


def _prepared(scenario: Scenario) -> Any:
    """:func:`mpc_dc.runner.prepare` of ``scenario``, reused by the next run on the same data.

    Runs of one scenario under several controllers (a forecaster sweep, a benchmark
    suite) share their data, DR baseline and planning capacity, as
    :func:`mpc_dc.runner.compare` shares them; building them can take longer than the
    run (millions of requests). One entry: runs are submitted scenario by scenario.
    """
    from mpc_dc.runner import data_key, prepare

    key = data_key(scenario)
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(scenario)
    return _PREPARED[key]


def run_sweep(
    spec: SweepSpec,
    out: Path,
    *,
    executor: Executor = "local",
    workers: int = 1,
    scheduler: str | None = None,
    plots: bool = False,
    on_report: Callable[[RunReport, int, int], object] | None = None,
    dashboard: str = DASHBOARD_DEFAULT,
) -> SweepOutcome:
    """Execute ``spec`` into ``out``; skip finished runs; rebuild the results table.

    Parameters
    ----------
    spec : SweepSpec
    out : Path
        Sweep directory (created with the output marker; reused to resume).
    executor : {"local", "dask"}
        ``local``: in this process (``workers == 1``) or a process pool whose workers
        stop with the sweep. ``dask``: a ``distributed.LocalCluster`` of ``workers``
        single-threaded processes listening on this machine only, or the scheduler at
        ``scheduler`` (its workers must see ``out`` on a shared file system and have
        mpc-dc installed).
    workers : int
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); connected to before
        anything is created, :data:`SCHEDULER_TIMEOUT_S` at most.
    plots : bool
        Write each run's PNG plots.
    on_report : callable, optional
        ``on_report(report, finished, total)`` after each run.
    dashboard : str
        Listening address of a LocalCluster's dashboard (default: loopback, random port).

    Raises
    ------
    RunDirExistsError
        ``out`` is not a sweep directory, holds a different sweep, or another sweep is
        running in it.
    ConfigError
        The dask scheduler cannot be reached (nothing is created).
    RunWriteError
        Writing the results failed (earlier results are left intact).
    """
    out = Path(out)
    tick = time.perf_counter()
    if workers < 1:
        raise ConfigError("--workers", f"expected a whole number >= 1, got {workers}")
    prepare_output_dir(out, kind="sweep", check_only=True, legacy_file="sweep.json")
    _check_same_sweep(spec, out)
    runs_dir = out / "runs"
    # A run is redone unless written to the end with every file still of the SHA-256
    # recorded then (a deleted ledger or a truncated kpis.json is re-run, not counted).
    problems = {r.run_id: verify_output_dir(runs_dir / r.run_id) for r in spec.runs}
    todo = [r for r in spec.runs if problems[r.run_id] is not None]
    try:
        table, reports = _execute(spec, out, todo, problems, executor, workers, scheduler,
                                  plots, on_report, dashboard)
    except BaseException:
        if runs_dir.is_dir() and not scheduler:
            # Workers stopped by force (a LocalCluster's nanny, a pool worker past its
            # grace time) leave their temporary run directories; they are dead now.
            clean_stale(runs_dir, again=True)
        raise
    ordered = [reports[r.run_id] for r in spec.runs]
    return SweepOutcome(out, table, ordered, time.perf_counter() - tick)


def _execute(
    spec: SweepSpec,
    out: Path,
    todo: list[SweepRun],
    problems: dict[str, str | None],
    executor: Executor,
    workers: int,
    scheduler: str | None,
    plots: bool,
    on_report: Callable[[RunReport, int, int], object] | None,
    dashboard: str,
) -> tuple[pd.DataFrame, dict[str, RunReport]]:
    """The body of :func:`run_sweep`: results table and reports by run id."""
    runs_dir = out / "runs"
    with ExitStack() as stack:
        client = (stack.enter_context(_dask_client(workers, scheduler, dashboard))
                  if executor == "dask" and todo else None)
        prepare_output_dir(out, kind="sweep", legacy_file="sweep.json")
        stack.enter_context(_sweep_lock(out))
        runs_dir.mkdir(parents=True, exist_ok=True)
        clean_stale(runs_dir)
        write_file_atomic(out / "sweep.json", lambda p: write_json(p, manifest(spec)))
        for run in todo:
            _discard_unfinished(runs_dir / run.run_id, problems[run.run_id])
        reports = {r.run_id: RunReport(r.run_id, "skipped") for r in spec.runs
                   if problems[r.run_id] is None}
        logger.info("sweep %s: %d runs, %d finished already, %d to run (%s)", spec.name,
                    len(spec.runs), len(reports), len(todo), executor)
        total = len(spec.runs)

        def done(report: RunReport) -> None:
            reports[report.run_id] = report
            if on_report is not None:
                on_report(report, len(reports), total)

        for report in reports.values():
            if on_report is not None:
                on_report(report, len(reports), total)
        if todo:
            if client is not None:
                _run_dask(todo, runs_dir, client, plots, done)
            elif workers > 1:
                _run_pool(todo, runs_dir, workers, plots, done)
            else:
                try:
                    for run in todo:
                        done(execute_run(run, str(runs_dir / run.run_id), plots))
                finally:
                    _PREPARED.clear()  # the data of the last runs: not kept past the sweep
        table = results_table(spec, out)
        write_tables(out, table, timings_table(spec, out))
    return table, reports


def _discard_unfinished(run_dir: Path, problem: str | None) -> None:
    """Remove a run directory that is not a finished, intact run (it is run again).

    It lies in this sweep's own ``runs/`` folder (the sweep directory carries the
    output marker and the sweep lock is held), so nothing else is deleted.
    """
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    logger.warning("run %s is re-run: %s", run_dir.name, problem)
    try:
        if run_dir.is_dir() and not run_dir.is_symlink():
            shutil.rmtree(run_dir)
        else:
            run_dir.unlink()
    except OSError as err:
        raise RunWriteError(run_dir, err) from err


# ----------------------------------------------------------------------------- local pool

_TASK = {"running": False}
"""Whether this pool worker is inside a task (a SIGTERM then unwinds it)."""


def _worker_init(parent_pid: int) -> None:
    """Pool worker set-up: it stops with the sweep.

    * SIGINT is ignored: Ctrl-C reaches the whole terminal process group, and the
      sweep process stops its workers itself (SIGTERM), once;
    * SIGTERM inside a task unwinds it (its temporary run directory is removed)
      and ends the process; between tasks it ends the process at once;
    * a watchdog thread sends this process SIGTERM when its parent is gone (the
      sweep was killed with SIGKILL), so no worker runs on, writing, for minutes;
      if the process still runs :data:`STOP_GRACE_S` later, it ends it outright.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_on_term)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_PERIOD_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE_S)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="mpc-dc-parent-watchdog", daemon=True).start()


def _worker_on_term(signum: int, frame: FrameType | None) -> None:
    if _TASK["running"]:
        raise Terminated(signum)
    os._exit(128 + signum)


def _pool_task(run: SweepRun, run_dir: str, plots: bool) -> RunReport:
    """:func:`execute_run` in a pool worker; a SIGTERM ends the worker after cleanup."""
    _TASK["running"] = True
    try:
        return execute_run(run, run_dir, plots)
    except Terminated as stop:
        # The with-blocks have removed the temporary run directory; the executor's own
        # loop must not go on to the next task.
        os._exit(128 + stop.signum)
    finally:
        _TASK["running"] = False


def _run_pool(todo: list[SweepRun], runs_dir: Path, workers: int, plots: bool,
              done: Callable[[RunReport], None]) -> None:
    import multiprocessing

    # spawn: a clean interpreter per worker (fork with solver threads is unsafe).
    pool = ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(),))
    try:
        futures = {pool.submit(_pool_task, run, str(runs_dir / run.run_id), plots): run
                   for run in todo}
        for future in as_completed(futures):
            run = futures[future]
            try:
                done(future.result())
            except Exception as err:  # a worker process died; the run is retried on resume
                logger.error("run %s lost its worker: %s", run.run_id, err)
                done(RunReport(run.run_id, "failed", f"worker lost: {type(err).__name__}"))
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (interrupted sweep): SIGTERM, then SIGKILL after a grace time.

    ``shutdown`` alone would wait for the running tasks to finish. The worker
    processes are reached through the executor's ``_processes`` (there is no public
    accessor); SIGTERM makes each remove its temporary run directory and exit.
    """
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            logger.warning("worker %s did not stop within %g s; killed", process.pid,
                           STOP_GRACE_S)
            process.kill()
            process.join(1.0)


# ----------------------------------------------------------------------------- dask


@contextmanager
def _dask_client(workers: int, scheduler: str | None, dashboard: str) -> Iterator[Any]:
    """A dask client: of the scheduler at ``scheduler``, or of a new LocalCluster.

    The LocalCluster's scheduler and workers listen on 127.0.0.1 only and its
    dashboard on ``dashboard`` (loopback unless asked). Its worker processes end with
    this process, even when it is killed (distributed watches the parent).

    Raises
    ------
    ConfigError
        ``scheduler`` cannot be reached within :data:`SCHEDULER_TIMEOUT_S`.
    """
    from distributed import Client, LocalCluster

    # distributed logs its own start-up chatter at INFO; follow the caller's verbosity.
    dask_logger = logging.getLogger("distributed")
    previous = dask_logger.level
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        dask_logger.setLevel(logging.WARNING)
    cluster: LocalCluster | None = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            except (OSError, ValueError) as err:
                reason = " ".join(str(err).split()) or type(err).__name__
                raise ConfigError(
                    "--scheduler",
                    f"cannot reach the dask scheduler at {scheduler} within "
                    f"{SCHEDULER_TIMEOUT_S:g} s ({reason}); expected a running scheduler "
                    "(`dask scheduler`) reachable from this machine",
                ) from None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=dashboard,
                                   silence_logs=logging.CRITICAL)
            client = Client(cluster)
        try:
            yield client
        except BaseException:
            # Interrupted: the nanny's "still alive after 4 s, killing" and the comm
            # errors of heartbeats cut mid-flight (logged with their traceback) are
            # expected now; the user gets the one interruption line.
            dask_logger.setLevel(logging.CRITICAL)
            raise
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
        dask_logger.setLevel(previous)


def _run_dask(todo: list[SweepRun], runs_dir: Path, client: Any, plots: bool,
              done: Callable[[RunReport], None]) -> None:
    from distributed import as_completed as dask_completed

    futures = {
        client.submit(execute_run, run, str(runs_dir / run.run_id), plots,
                      key=f"mpc-dc-run-{run.run_id}", pure=False): run
        for run in todo
    }
    try:
        for future in dask_completed(list(futures)):
            run = futures[future]
            try:
                done(future.result())
            except Exception as err:  # KilledWorker and the like; retried on resume
                logger.error("run %s lost its worker: %s", run.run_id, err)
                done(RunReport(run.run_id, "failed", f"worker lost: {type(err).__name__}"))
    except BaseException:
        # Interrupted: nothing of this sweep may run on (a remote scheduler would keep
        # the queued runs otherwise).
        client.cancel(list(futures), force=True)
        raise


@contextmanager
def _sweep_lock(out: Path) -> Iterator[None]:
    """One sweep process per directory; a lock left by a killed sweep is taken over."""
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".sweep.lock"
    if lock.exists():
        try:
            pid = int(lock.read_text(encoding="utf-8").strip() or 0)
        except ValueError:
            pid = 0
        if pid and pid != os.getpid() and pid_alive(pid):
            raise RunDirExistsError(f"{out}: another sweep (pid {pid}) is running in this "
                                    "directory; wait for it or stop it")
        logger.info("taking over the lock of a stopped sweep (pid %s)", pid)
    lock.write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _check_same_sweep(spec: SweepSpec, out: Path) -> None:
    """Refuse to mix two different sweeps in one directory (runs would not line up)."""
    path = out / "sweep.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    if not isinstance(old, dict) or old.get("base_hash") != base_digest(spec.base):
        raise RunDirExistsError(f"{out}: holds a sweep with a different base scenario; "
                                "choose another --out")


def manifest(spec: SweepSpec) -> dict[str, Any]:
    """The resolved sweep as JSON-able data (written as ``sweep.json``)."""
    return {
        "name": spec.name,
        "source": str(spec.source),
        "base_hash": base_digest(spec.base),
        "base": scenario_to_mapping(spec.base),
        "grid": {k: list(v) for k, v in spec.grid},
        "list": list(spec.cases),
        "extra": list(spec.extra),
        "reference": spec.reference,
        "runs": [{"run_id": r.run_id, "overrides": r.override_dict} for r in spec.runs],
    }


# ----------------------------------------------------------------------------- results


def results_table(spec: SweepSpec, out: Path) -> pd.DataFrame:
    """One row per run in expansion order: id, status, overrides, KPIs (no wall times).

    Rebuilt from the run directories only, so it does not depend on the executor or
    on how often the sweep was resumed. Unfinished runs have ``status = "missing"``
    and empty KPIs. With a reference, ``regret_usd`` (net cost − the reference
    partner's net cost [$]) and ``regret_pct`` (it in % of the partner's
    ``costs_usd``, which has no revenue: a net cost can be near zero or negative; NaN
    when those costs are not positive).
    """
    rows: list[dict[str, Any]] = []
    for run in spec.runs:
        row: dict[str, Any] = {"run_id": run.run_id}
        row.update({k: None for k in spec.override_keys})
        row.update(run.override_dict)
        run_dir = out / "runs" / run.run_id
        if verify_output_dir(run_dir) is None:
            kpis = read_json_object(run_dir / "kpis.json")
            meta = read_json_object(run_dir / "metadata.json")
            row["status"] = "done"
            row["controller"] = meta.get("controller")
            row.update(_flat_kpis(kpis))
            if "costs_usd" not in kpis and "energy_import_usd" in kpis:
                # written before the KPIs had the net cost's two sides: split it the same way
                row["costs_usd"], row["revenue_usd"] = costs_and_revenue_usd(kpis)
        else:
            row["status"] = "missing"
        rows.append(row)
    table = pd.DataFrame(rows)
    front = ["run_id", "status", *spec.override_keys, "controller"]
    front = [c for c in front if c in table.columns]
    table = table[front + [c for c in table.columns if c not in front]]
    for column in table.columns:
        if column.split(".")[0] in NESTED_KPIS:
            filled = table[column].where(table["status"] != "done", table[column].fillna(0))
            table[column] = filled.astype("float64")
    if spec.reference and "cost_usd" in table.columns:
        table = _add_regret(spec, table)
    return table.reset_index(drop=True)


def _flat_kpis(kpis: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """KPIs as one level of ``a.b.c`` columns (timings left out)."""
    flat: dict[str, Any] = {}
    for key, value in kpis.items():
        if not prefix and key in TIMING_KPIS:
            continue
        if isinstance(value, Mapping):
            flat.update(_flat_kpis(dict(sorted(value.items())), f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _add_regret(spec: SweepSpec, table: pd.DataFrame) -> pd.DataFrame:
    ref_tables = {k.split(".")[0] for k in spec.reference}

    def shared(overrides: Mapping[str, Any]) -> str:
        kept = {k: v for k, v in overrides.items() if k.split(".")[0] not in ref_tables}
        return json.dumps(kept, sort_keys=True, default=str)

    cost = dict(zip(table["run_id"], table["cost_usd"], strict=True))
    costs = dict(zip(table["run_id"], table["costs_usd"], strict=True)) \
        if "costs_usd" in table.columns else {}
    partner: dict[str, str] = {}
    for run in spec.runs:
        if _matches(run.override_dict, spec.reference):
            partner.setdefault(shared(run.override_dict), run.run_id)
    refs = [partner.get(shared(run.override_dict)) for run in spec.runs]
    ref_cost = np.array([cost.get(r, np.nan) if r else np.nan for r in refs], dtype=float)
    ref_costs = np.array([costs.get(r, np.nan) if r else np.nan for r in refs], dtype=float)
    table = table.copy()
    table["reference_run_id"] = refs
    table["regret_usd"] = table["cost_usd"].astype(float) - ref_cost
    # of the partner's costs, not of its net cost (revenue can null or flip that)
    table["regret_pct"] = pct_of_costs(table["regret_usd"], ref_costs)
    return table


def timings_table(spec: SweepSpec, out: Path) -> pd.DataFrame:
    """Wall and solve times per finished run [s] (machine-dependent, kept apart)."""
    rows = []
    for run in spec.runs:
        run_dir = out / "runs" / run.run_id
        if verify_output_dir(run_dir) is None:
            kpis = read_json_object(run_dir / "kpis.json")
            rows.append({"run_id": run.run_id, **{k: kpis.get(k) for k in TIMING_KPIS}})
    return pd.DataFrame(rows, columns=["run_id", *TIMING_KPIS])


def write_tables(out: Path, table: pd.DataFrame, timings: pd.DataFrame) -> None:
    """Write ``results.parquet``, ``results.csv`` and ``timings.csv`` atomically."""
    write_file_atomic(out / "results.parquet", lambda p: table.to_parquet(p, index=False))
    write_file_atomic(out / "results.csv", lambda p: table.to_csv(p, index=False))
    write_file_atomic(out / "timings.csv", lambda p: timings.to_csv(p, index=False))

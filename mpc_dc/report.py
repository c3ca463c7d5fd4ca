"""Reports of a run or a sweep directory: a KPI table and plots, as HTML or Markdown.

* Run directory (``kpis.json``, ``ledger.parquet``): headline KPIs, cost
  components, power flows of a chosen local day, prices over the run.
* Benchmark directory (``scorecard.csv``, ``mpc-dc benchmark``): the summary per
  policy and the scorecard of each scenario.
* Sweep directory (``results.parquet``): the results table, regret against the
  reference (perfect foresight) versus the forecast error level per forecaster,
  regret versus the forecast MAE per channel group (the runs with forecast error
  on one group only, e.g. ``sweep_forecast_channels.toml``), the regret
  attribution by channel (a folder of ``mpc-dc compare --attribute``,
  :mod:`mpc_dc.attribution`), cost components per run, SLO attainment when the
  runs report it (fleet runs), and optionally the power flows of one run's day.

The HTML report is one self-contained file (PNG figures embedded as base64); the
Markdown report links its PNGs from a sibling ``<name>_files/`` folder (an mpc-dc
output folder, see :func:`mpc_dc.rundir.prepare_output_dir`). Both are written
through temporary names and renamed.

Names come from users (scenario names, override values, controller labels): the
HTML escapes them, the Markdown backslash-escapes every character Markdown would
read as syntax, and figures escape ``$`` so matplotlib does not parse them as
mathtext. A corrupt run or sweep directory (a truncated ``kpis.json``, a Parquet
file that is not one, a missing ``metadata.json``, JSON of the wrong type) ends in
one line naming the file (:class:`mpc_dc.rundir.RunDirCorruptError`).

Build (:func:`build_report`) and render (:func:`render_html`, :func:`render_markdown`)
are kept apart so tests can check the structure without parsing HTML.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mpc_dc.plots import draw_flows, draw_prices, site_totals
from mpc_dc.rundir import (
    RunDirCorruptError,
    prepare_output_dir,
    read_json_object,
    read_parquet_file,
    write_file_atomic,
)
from mpc_dc.site.scenario import CHANNEL_GROUPS
from traces.errors import ConfigError

logger = logging.getLogger(__name__)

ReportFormat = Literal["html", "md"]

#: Cost components of the ledger/KPIs: key, label, sign in the net cost.
COST_COMPONENTS: tuple[tuple[str, str, float], ...] = (
    ("energy_import_usd", "energy import", 1.0),
    ("export_revenue_usd", "export revenue", -1.0),
    ("demand_charge_usd", "demand charge", 1.0),
    ("carbon_cost_usd", "carbon", 1.0),
    ("dr_reward_usd", "DR reward", -1.0),
    ("dr_penalty_usd", "DR penalty", 1.0),
    ("unserved_penalty_usd", "unserved-work penalty", 1.0),
    ("missed_penalty_usd", "missed-deadline penalty", 1.0),
)
_COLORS = ("tab:red", "tab:blue", "tab:orange", "tab:gray", "tab:green", "tab:olive",
           "tab:purple", "tab:brown")

#: Headline KPIs of a run: key, label, unit, format.
RUN_KPIS: tuple[tuple[str, str, str, str], ...] = (
    ("cost_usd", "net cost", "$", "{:,.0f}"),
    ("costs_usd", "costs (net cost + revenue)", "$", "{:,.0f}"),
    ("revenue_usd", "revenue (export, DR reward)", "$", "{:,.0f}"),
    ("energy_import_usd", "energy import cost", "$", "{:,.0f}"),
    ("export_revenue_usd", "export revenue", "$", "{:,.0f}"),
    ("demand_charge_usd", "demand charge", "$", "{:,.0f}"),
    ("unserved_penalty_usd", "unserved-work penalty", "$", "{:,.0f}"),
    ("missed_penalty_usd", "missed-deadline penalty", "$", "{:,.0f}"),
    ("import_mwh", "grid import", "MWh", "{:,.1f}"),
    ("export_mwh", "grid export", "MWh", "{:,.1f}"),
    ("facility_energy_mwh", "facility energy", "MWh", "{:,.1f}"),
    ("inference_it_energy_mwh", "inference IT energy", "MWh", "{:,.1f}"),
    ("other_it_energy_mwh", "other IT energy", "MWh", "{:,.1f}"),
    ("carbon_t", "carbon", "t", "{:,.2f}"),
    ("renewable_used_mwh", "renewable used", "MWh", "{:,.1f}"),
    ("curtailed_mwh", "renewable curtailed", "MWh", "{:,.1f}"),
    ("self_consumption_share", "self-consumption share", "-", "{:.3f}"),
    ("peak_import_mw", "peak import", "MW", "{:,.1f}"),
    ("work_df_arrived_wu", "deferrable work arrived", "WU", "{:,.1f}"),
    ("work_df_missed_wu", "deferrable work missed", "WU", "{:,.3f}"),
    ("work_nd_unserved_wu", "non-deferrable work unserved", "WU", "{:,.3f}"),
    ("slo_attainment", "SLO attainment", "-", "{:.4f}"),
    ("slo_attainment_estimate", "SLO attainment (fluid estimate)", "-", "{:.4f}"),
    ("tokens_served", "tokens served", "tokens", "{:,.0f}"),
    ("tokens_unserved", "tokens unserved", "tokens", "{:,.0f}"),
    ("solves", "solves", "-", "{:d}"),
    ("fallbacks_total", "fallbacks", "-", "{:d}"),
    ("solve_time_median_s", "solve time (median)", "s", "{:.4f}"),
    ("wall_time_s", "simulation wall time", "s", "{:.1f}"),
)

#: Columns of the sweep results table shown in the report: column, header.
SWEEP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("controller", "controller"),
    ("cost_usd", "net cost [$]"),
    ("costs_usd", "costs [$]"),
    ("revenue_usd", "revenue [$]"),
    ("regret_usd", "regret [$]"),
    ("regret_pct", "regret [% of reference's costs]"),
    ("work_df_missed_wu", "missed [WU]"),
    ("slo_attainment", "SLO attainment [-]"),
    ("fallbacks_total", "fallbacks"),
    ("faults_total", "faults"),
)


@dataclass(frozen=True)
class Figure:
    """A PNG figure of the report."""

    name: str
    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A report section: heading, paragraphs, tables and figures, in that order."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[pd.DataFrame, ...] = ()
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class Report:
    """A built report (format-free)."""

    title: str
    kind: Literal["run", "sweep", "benchmark"]
    source: Path
    sections: list[Section] = field(default_factory=list)

    @property
    def figures(self) -> list[Figure]:
        """Every figure, in order."""
        return [f for s in self.sections for f in s.figures]


# ----------------------------------------------------------------------------- build


def detect(path: Path) -> Literal["run", "sweep", "benchmark"]:
    """Whether ``path`` is a run, a sweep or a benchmark directory (a sweep with a
    scorecard, ``mpc-dc benchmark``).

    Raises
    ------
    ConfigError
        Neither (one line naming the directory and what was expected).
    """
    path = Path(path)
    if (path / "kpis.json").is_file() and (path / "ledger.parquet").is_file():
        return "run"
    if (path / "scorecard.csv").is_file() and (path / "summary.csv").is_file():
        return "benchmark"
    if (path / "results.parquet").is_file():
        return "sweep"
    if not path.is_dir():
        raise ConfigError(path, "directory not found; expected a run or sweep directory")
    if any((path / name).exists() for name in RUN_FILES):
        # A run directory with a file gone: name that file, as a corrupt one is named.
        for name in RUN_FILES[:2]:
            file = path / name
            if not file.is_file():
                state = "not a file" if file.exists() else "file not found"
                raise RunDirCorruptError(file, f"{state}; expected a run directory written "
                                         "by mpc-dc run")
    raise ConfigError(path, "not a run or sweep directory; expected kpis.json and "
                      "ledger.parquet (a run) or results.parquet (a sweep)")


RUN_FILES = ("kpis.json", "ledger.parquet", "metadata.json", "scenario.json")
"""Files of a run directory: the first two make one, any makes a damaged one."""


def build_report(path: Path, *, day: str | None = None, run_id: str | None = None) -> Report:
    """Build the report of a run or sweep directory.

    Parameters
    ----------
    path : Path
    day : str, optional
        Local calendar day (``YYYY-MM-DD``) of the power-flow plot; default the
        run's first full local day.
    run_id : str, optional
        For a sweep: the run whose day of power flows is shown (default none).
    """
    path = Path(path)
    kind = detect(path)
    if kind == "run":
        return _run_report(path, day)
    if kind == "benchmark":
        return _benchmark_report(path)
    return _sweep_report(path, day, run_id)


def _run_report(path: Path, day: str | None) -> Report:
    kpis, ledger, meta, scenario = _read_run(path)
    tz = scenario.get("run", {}).get("local_tz", "America/New_York")
    name = str(meta.get("scenario", path.name))
    times = _interval_times(ledger)
    start = times[0].tz_convert(tz)
    days = len(times) / 96
    report = Report(f"Run report: {name}", "run", path)
    report.sections.append(Section(
        "Summary",
        (f"Controller {meta.get('controller', '?')}; {days:g} days from "
         f"{start:%Y-%m-%d %H:%M} ({tz}); seed {meta.get('seed', '?')}; "
         f"code {meta.get('git', '?')}.",),
        (kpi_table(kpis),),
    ))
    report.sections.append(Section(
        "Cost components", (), (),
        (Figure("cost_components", "Cost components of the run",
                png(_cost_bar(kpis, name)),
                "Positive bars add to the net cost, negative ones (export revenue) reduce it."),),
    ))
    chosen = pick_day(ledger, tz, day)
    report.sections.append(Section(
        f"Power flows on {chosen}", (), (),
        (Figure("power_flows_day", f"Power flows on {chosen}",
                png(_day_flows(ledger, tz, chosen, name)),
                "Export is drawn below zero; realized prices in the lower panel."),),
    ))
    report.sections.append(Section(
        "Prices", (), (),
        (Figure("prices", "Realized prices over the run", png(_prices(ledger, tz)), ""),),
    ))
    counts = {f"fallback: {k}": v for k, v in kpis.get("fallbacks", {}).items()}
    counts |= {f"fault: {k}": v for k, v in kpis.get("faults", {}).items()}
    counts |= {f"injected: {k}": v for k, v in kpis.get("faults_injected", {}).items() if v}
    counts |= {f"projected: {k}": v for k, v in kpis.get("decision_projections", {}).items()}
    if counts:
        table = pd.DataFrame({"event": list(counts), "count": list(counts.values())})
        report.sections.append(Section("Fallbacks and faults", (), (table,)))
    return report


LEDGER_COLUMNS = (
    "facility_power_mw",
    "renewable_used_mw",
    "renewable_available_mw",
    "import_mw",
    "export_mw",
    "import_price_usd_per_mwh",
    "export_price_usd_per_mwh",
)
"""Ledger columns the run report plots."""


def _read_run(path: Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any],
                                   dict[str, Any]]:
    """KPIs, ledger, metadata and scenario of a run directory, checked for the report.

    Raises
    ------
    RunDirCorruptError
        One line naming the file (and key or column) that is missing or corrupt; the
        files are checked in the order kpis, metadata, ledger, scenario.
    """
    what = "a run directory written by mpc-dc run"
    kpis = read_json_object(path / "kpis.json", what)
    _check_kpis(path / "kpis.json", kpis)
    meta = read_json_object(path / "metadata.json", what)
    ledger = read_parquet_file(path / "ledger.parquet", what)
    _check_ledger(path / "ledger.parquet", ledger)
    scenario_path = path / "scenario.json"
    scenario = read_json_object(scenario_path) if scenario_path.is_file() else {}
    _check_tz(scenario_path, scenario)
    return kpis, ledger, meta, scenario


def _check_kpis(file: Path, kpis: dict[str, Any]) -> None:
    """The KPIs the report shows are numbers, the fallback/fault counters objects of counts."""
    if "cost_usd" not in kpis:
        raise RunDirCorruptError(file, "missing; expected the KPIs of a run written by "
                                 "mpc-dc run", field="cost_usd")
    keys = dict.fromkeys([*(k for k, *_ in RUN_KPIS), *(k for k, *_ in COST_COMPONENTS)])
    for key in keys:
        value = kpis.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RunDirCorruptError(file, f"expected a number, got {value!r}", field=key)
    for key in ("fallbacks", "faults", "faults_injected"):
        value = kpis.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        ):
            raise RunDirCorruptError(file, f"expected an object of counts, got {value!r}",
                                     field=key)


def _check_ledger(file: Path, ledger: pd.DataFrame) -> None:
    """A non-empty ledger with one row per (UTC interval start, campus), the plotted
    columns numeric."""
    index = ledger.index
    times = index.get_level_values(0) if isinstance(index, pd.MultiIndex) else index
    if (not isinstance(index, pd.MultiIndex) or list(index.names) != ["interval_start_utc",
                                                                       "campus"]
            or not isinstance(times, pd.DatetimeIndex) or times.tz is None):
        raise RunDirCorruptError(file, "expected rows indexed by (interval_start_utc, "
                                 "campus), interval starts in UTC")
    if ledger.empty:
        raise RunDirCorruptError(file, "no rows; expected one per interval and campus of "
                                 "the run")
    for column in LEDGER_COLUMNS:
        if column not in ledger.columns:
            raise RunDirCorruptError(file, "missing column", field=column)
        if not pd.api.types.is_numeric_dtype(ledger[column]):
            raise RunDirCorruptError(file, f"expected numbers, got {ledger[column].dtype}",
                                     field=column)


def _check_tz(file: Path, scenario: dict[str, Any]) -> None:
    run = scenario.get("run", {})
    tz = run.get("local_tz") if isinstance(run, dict) else None
    if tz is None:
        return
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise RunDirCorruptError(file, f"unknown time zone {tz!r}; expected an IANA name like "
                                 "America/New_York", field="run.local_tz") from None


def kpi_table(kpis: dict[str, Any]) -> pd.DataFrame:
    """Headline KPIs as a table with a unit column (missing KPIs are left out)."""
    rows = []
    for key, label, unit, fmt in RUN_KPIS:
        value = kpis.get(key)
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            continue
        text = fmt.format(int(value)) if fmt == "{:d}" else fmt.format(float(value))
        rows.append({"KPI": label, "value": text, "unit": unit})
    return pd.DataFrame(rows, columns=["KPI", "value", "unit"])


def pick_day(ledger: pd.DataFrame, tz: str, day: str | None) -> str:
    """The local day to plot: ``day`` if inside the run, else the first full local day.

    Raises
    ------
    ConfigError
        ``day`` is not a date or not inside the run (names the days available).
    """
    local = _interval_times(ledger).tz_convert(tz)
    dates = pd.Index(local.date)
    counts = pd.Series(1, index=dates).groupby(level=0).sum()
    if day is not None:
        try:
            wanted = pd.Timestamp(day).date()
        except ValueError:
            raise ConfigError("--day", f"expected a date YYYY-MM-DD, got {day!r}") from None
        if wanted not in counts.index:
            raise ConfigError("--day", f"{day} is not in the run; expected a day from "
                              f"{counts.index[0]} to {counts.index[-1]}")
        return str(wanted)
    full = counts[counts >= 92]  # 92 on a spring-forward day
    return str(full.index[0] if len(full) else counts.index[0])


def _sweep_report(path: Path, day: str | None, run_id: str | None) -> Report:
    manifest_path = path / "sweep.json"
    manifest = read_json_object(manifest_path) if manifest_path.is_file() else {}
    if not isinstance(manifest.get("runs", []), list) or not isinstance(
            manifest.get("reference", {}), dict):
        raise RunDirCorruptError(manifest_path, "expected 'runs' as a list and 'reference' "
                                 "as an object (a sweep.json written by mpc-dc sweep)")
    results = path / "results.parquet"
    table = read_parquet_file(results, "a sweep directory written by mpc-dc sweep")
    for column in ("run_id", "status"):
        if column not in table.columns:
            raise RunDirCorruptError(results, "missing column", field=column)
    name = str(manifest.get("name", path.name))
    overrides = [c for c in table.columns if c in _override_keys(manifest, table)]
    table = table.copy()
    for key in overrides:
        table[key] = table[key].map(_listed)
    # Counted faults (KPIs), not the [faults] rates a sweep overrides.
    fault_cols = [c for c in table.columns if c.startswith("faults.") and c not in overrides]
    if fault_cols:
        table["faults_total"] = table[fault_cols].sum(axis=1)
    done = table[table["status"] == "done"]
    report = Report(f"Sweep report: {name}", "sweep", path)
    missing = len(table) - len(done)
    summary = [f"{len(table)} runs, {len(done)} complete"
               + (f", {missing} unfinished (run the sweep command again to finish them)"
                  if missing else "") + ".",
               "Overrides: " + (", ".join(overrides) or "none") + "."]
    if "regret_usd" in table.columns:
        ref = manifest.get("reference", {})
        summary.append("Regret is the net cost (costs − revenue) above the reference run "
                       "with the same other overrides "
                       f"({', '.join(f'{k} = {v}' for k, v in ref.items())}); in % it is "
                       "of that run's costs (no revenue), not of its net cost.")
    report.sections.append(Section("Summary", tuple(summary), (_sweep_table(table, overrides),)))
    if done.empty:
        return report
    attributed = (path / ATTRIBUTION_FILE).is_file()
    if attributed:
        report.sections.append(_attribution_section(path, name))
    else:
        report.sections.append(Section(
            "Regret vs forecast error", (), (),
            (Figure("regret_vs_error", "Regret vs forecast error level",
                    png(_regret_plot(done, overrides)),
                    "Curves: noisy Oracle over its error level (std at 24 h lead as a "
                    "fraction of the series std); dashed lines: forecasters without an "
                    "error level."),),
        ))
    channel = _channel_error_section(done, overrides)
    if channel is not None:
        report.sections.append(channel)
    report.sections.append(Section(
        "Cost components per run", (), (),
        (Figure("cost_components", "Cost components per run",
                png(_cost_bars(done)), ""),),
    ))
    slo = [c for c in ("slo_attainment", "slo_attainment_estimate") if c in done.columns]
    if slo and done[slo[0]].notna().any():
        report.sections.append(Section(
            "SLO attainment", (), (),
            (Figure("slo_attainment", "SLO attainment per run",
                    png(_slo_bars(done, slo[0])), ""),
             Figure("cost_vs_slo", "Cost against SLO attainment",
                    png(_frontier(done, slo[0])),
                    "One marker per run (net cost including the SLO term; hollow: the "
                    "same run without it, where the runs report it). The line joins the "
                    "runs no other run beats on both cost and SLO attainment."),),
        ))
    else:
        report.sections.append(Section(
            "SLO attainment",
            ("No SLO KPIs in these runs: RCDC runs schedule work units and have no "
             "request-level serving model (fleet runs report slo_attainment).",),
        ))
    if run_id is not None:
        run_dir = path / "runs" / run_id
        if run_id not in set(table["run_id"].astype(str)) or not run_dir.is_dir():
            raise ConfigError("--run", f"{run_id} is not a run of {path}")
        _, ledger, _, scenario = _read_run(run_dir)
        tz = scenario.get("run", {}).get("local_tz", "America/New_York")
        chosen = pick_day(ledger, tz, day)
        report.sections.append(Section(
            f"Power flows of {run_id} on {chosen}", (), (),
            (Figure("power_flows_day", f"Power flows on {chosen}",
                    png(_day_flows(ledger, tz, chosen, short_label(run_id))), ""),),
        ))
    return report


ATTRIBUTION_FILE = "attribution.csv"
"""The attribution table of a folder of ``mpc-dc compare --attribute``."""

MAE_PREFIX = "forecast_mae_by_group."
"""Results columns of each channel group's forecast MAE (flattened KPI)."""


def _attribution_section(path: Path, name: str) -> Section:
    """The regret attribution of an ``mpc-dc compare --attribute`` folder."""
    from mpc_dc.attribution import money, plot, read_attribution, sum_residuals

    table = read_attribution(path)
    residuals = sum_residuals(table)
    shown = table.assign(
        regret_usd=table["regret_usd"].map(money),
        share_pct=table["share_pct"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}"),
        perfect_value_usd=table["perfect_value_usd"].map(money),
        forecast_mae=table["forecast_mae"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}"),
    )[["forecaster", "term", "regret_usd", "share_pct", "perfect_value_usd", "forecast_mae",
       "mae_unit"]].rename(columns={
           "regret_usd": "regret [$]", "share_pct": "share [%]",
           "perfect_value_usd": "a perfect forecast removes [$]",
           "forecast_mae": "forecast MAE", "mae_unit": "MAE unit"}).fillna("")
    checks = "; ".join(f"{k}: {v:.3e} $" for k, v in residuals.items())
    return Section(
        "Regret attribution by forecast channel",
        ("Regret = cost of the MPC on forecasts minus the cost of the MPC on perfect "
         "forecasts (same horizon). A channel group's part is the regret with forecasts on "
         "that group only, every other group perfect; the interaction is the total minus "
         "the parts, so parts and interaction add up to the total (docs/forecasters.md).",
         f"Sum check (parts + interaction - total): {checks}."),
        (shown,),
        (Figure("regret_attribution", "Regret by forecast channel",
                png(plot(table, name)),
                "Bars: each group's part, the interaction and the total; diamonds: the "
                "regret a perfect forecast of the group removes with the others forecast."),),
    )


def _single_error_runs(done: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Runs with forecast error on exactly one channel group, by that group (a group's
    MAE is 0 when its forecaster is the Oracle)."""
    columns = [c for c in done.columns if c.startswith(MAE_PREFIX)]
    if not columns or "regret_usd" not in done.columns:
        return {}
    mae = done[columns].astype(float).fillna(0.0)
    wrong = mae > 0.0
    single = done[wrong.sum(axis=1) == 1]
    out: dict[str, pd.DataFrame] = {}
    order = {g: k for k, g in enumerate(CHANNEL_GROUPS)}
    for column in sorted(columns, key=lambda c: order.get(c.removeprefix(MAE_PREFIX), 99)):
        rows = single[wrong.loc[single.index, column]]
        if len(rows):
            out[column.removeprefix(MAE_PREFIX)] = rows.assign(_mae=mae.loc[rows.index, column])
    return out


def _series_label(row: pd.Series, overrides: list[str]) -> str:
    """What sets a run apart besides its error level and the group that carries the
    error: the remaining overrides (``bias=0.5, autocorrelation=0.9``)."""
    parts = []
    for key in overrides:
        last = key.rsplit(".", 1)[-1]
        if key in ("controller.kind", "controller.error_level") or (
                key.startswith("controller.channels.") and last in ("forecaster",
                                                                    "error_level")):
            continue
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            parts.append(f"{last}={value:g}" if isinstance(value, float) else f"{last}={value}")
    return ", ".join(parts) or "runs"


def _channel_error_section(done: pd.DataFrame, overrides: list[str]) -> Section | None:
    """Regret against forecast MAE, one panel per channel group, from the runs with
    error on that group only; None when the sweep has no such runs."""
    from mpc_dc.attribution import GROUP_UNITS

    panels = _single_error_runs(done)
    if not panels:
        return None
    rows = []
    for group, runs in panels.items():
        x, y = runs["_mae"].to_numpy(float), runs["regret_usd"].to_numpy(float)
        slope = float(x @ y / (x @ x))
        rows.append({"channel group": group, "runs": len(runs),
                     "MAE range": f"{x.min():.4g} - {x.max():.4g} {GROUP_UNITS[group]}",
                     "regret range [$]": f"{y.min():,.2f} - {y.max():,.2f}",
                     "regret per unit MAE [$]": f"{slope:,.4g}"})
    return Section(
        "Regret vs forecast error per channel",
        ("Each panel: the runs whose forecasts err on that channel group only (the Oracle on "
         "every other group), regret against the reference versus the group's forecast MAE "
         "(over every issue time and lead the controller asked for). 'Regret per unit MAE' "
         "is the least-squares slope through the origin.",),
        (pd.DataFrame(rows),),
        (Figure("regret_vs_channel_mae", "Regret vs forecast MAE per channel group",
                png(_channel_error_plot(panels, overrides)), ""),),
    )


def _channel_error_plot(panels: dict[str, pd.DataFrame], overrides: list[str]) -> plt.Figure:
    from mpc_dc.attribution import GROUP_UNITS

    n = len(panels)
    cols = 2 if n == 4 else min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, 4.6 * cols), 3.6 * rows + 0.6),
                             squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    cmap = plt.get_cmap("tab10")
    for ax, (group, runs) in zip(axes.flat, panels.items(), strict=False):
        labels = runs.apply(lambda r: _series_label(r, overrides), axis=1)
        for k, (label, part) in enumerate(runs.groupby(labels, sort=True)):
            line = part.sort_values("_mae")
            ax.plot(line["_mae"], line["regret_usd"], marker="o", color=cmap(k % 10),
                    label=plain(label))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(group.replace("_", "-"), fontsize=10)
        ax.set_xlabel(f"forecast MAE [{plain(GROUP_UNITS[group])}]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for row in axes:
        row[0].set_ylabel("regret vs reference [$]")
    fig.suptitle("Regret vs forecast error, per channel group (error on that group only)")
    return fig


def _benchmark_report(path: Path) -> Report:
    """The scorecard of ``mpc-dc benchmark``: the summary per policy, then one table per
    scenario (:mod:`mpc_dc.suite`)."""
    from mpc_dc.suite import SCORECARD_COLUMNS, SUMMARY_COLUMNS, display

    tables = {}
    for name, columns in (("scorecard.csv", SCORECARD_COLUMNS), ("summary.csv", SUMMARY_COLUMNS)):
        file = path / name
        try:
            table = pd.read_csv(file)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise RunDirCorruptError(file, f"not a CSV table ({type(err).__name__}); "
                                     "expected the file mpc-dc benchmark wrote") from None
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise RunDirCorruptError(file, "missing column", field=missing[0])
        tables[name] = table
    card, totals = tables["scorecard.csv"], tables["summary.csv"]
    manifest_path = path / "sweep.json"
    manifest = read_json_object(manifest_path) if manifest_path.is_file() else {}
    report = Report(str(manifest.get("name", f"Benchmark {path.name}")).capitalize(),
                    "benchmark", path)
    report.sections.append(Section("Summary", (
        "One row per policy. score: the mean over the scenarios of the share of the "
        "achievable saving it closes, (BAU − policy) / (BAU − offline optimum) of the cost "
        "with the suite's SLO penalty; 1 is the offline optimum, 0 business as usual (the "
        "baseline controller). Ratios (/ BAU) are to the baseline on the same scenario; "
        "cost vs BAU is the net cost over the baseline's in % of the baseline's costs "
        "(revenue not deducted: a net cost can be zero or negative). "
        "Definitions: docs/benchmark.md.",), (display(totals),)))
    for scenario, group in card.groupby("scenario", sort=False):
        report.sections.append(Section(str(scenario), (), (display(group, drop=("scenario",)),)))
    return report


def _override_keys(manifest: dict[str, Any], table: pd.DataFrame) -> list[str]:
    keys: dict[str, None] = {}
    for run in manifest.get("runs", []):
        overrides = run.get("overrides", {}) if isinstance(run, dict) else {}
        keys.update(dict.fromkeys(overrides if isinstance(overrides, dict) else {}))
    if not keys:  # no manifest: dotted scenario keys
        keys = dict.fromkeys(c for c in table.columns
                             if c.split(".")[0] in {"run", "data", "site", "controller"})
    return list(keys)


def _listed(value: Any) -> Any:
    """An override value a table can group on: a list (``dr.days``) as its items joined."""
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(str(v) for v in value)
    return value


def _sweep_table(table: pd.DataFrame, overrides: list[str]) -> pd.DataFrame:
    shown = pd.DataFrame({"run": [short_label(r) for r in table["run_id"]],
                          "status": table["status"]})
    for key in overrides:
        shown[key] = table[key].map(lambda v: "" if v is None or pd.isna(v) else v)
    for column, header in SWEEP_COLUMNS:
        if column not in table.columns:
            continue
        values = table[column]
        if column == "controller":
            shown[header] = values.fillna("")
        elif column.endswith("_pct"):
            shown[header] = values.map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        elif column in ("fallbacks_total", "faults_total"):
            shown[header] = values.map(lambda v: "" if pd.isna(v) else f"{int(v)}")
        elif column == "slo_attainment":
            shown[header] = values.map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
        else:
            shown[header] = values.map(lambda v: "" if pd.isna(v) else f"{v:,.1f}")
    return shown


def short_label(run_id: str) -> str:
    """Run id without its hash (``forecaster=sarimax__deferrable_share=0.2``)."""
    return re.sub(r"__[0-9a-f]{10}$", "", run_id)


# ----------------------------------------------------------------------------- figures


def png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def plain(text: object) -> str:
    """A user string shown as is in a figure: ``$`` escaped, so no mathtext is parsed.

    Matplotlib reads text between two ``$`` as mathtext (``_``, ``^``, ``\\`` are then
    commands, and a bad one raises when the figure is drawn); ``\\$`` is a literal
    dollar sign and leaves the rest of the text plain.
    """
    return str(text).replace("$", r"\$")


def _cost_bar(kpis: dict[str, Any], name: str) -> plt.Figure:
    labels, values, colors = [], [], []
    for (key, label, sign), color in zip(COST_COMPONENTS, _COLORS, strict=True):
        value = float(kpis.get(key, 0.0))
        if value or key in ("energy_import_usd", "export_revenue_usd"):
            labels.append(label)
            values.append(sign * value / 1000.0)
            colors.append(color)
    labels.append("net cost")
    values.append(float(kpis["cost_usd"]) / 1000.0)
    colors.append("black")
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.2))
    bars = ax.barh(labels, values, color=colors, alpha=0.8)
    ax.bar_label(bars, labels=[f"{v:,.1f}" for v in values], padding=3, fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("cost [k$] (negative = revenue)")
    ax.set_title(f"Cost components: {plain(name)}")
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.15)
    return fig


def _interval_times(ledger: pd.DataFrame) -> pd.DatetimeIndex:
    """Interval starts of a ledger (one per interval)."""
    return pd.DatetimeIndex(ledger.index.get_level_values("interval_start_utc").unique())


def _on_day(frame: pd.DataFrame, tz: str, day: str) -> pd.DataFrame:
    local = pd.DatetimeIndex(frame.index.get_level_values(0)).tz_convert(tz)
    return frame[np.asarray(local.date) == pd.Timestamp(day).date()]


def _day_flows(ledger: pd.DataFrame, tz: str, day: str, name: str) -> plt.Figure:
    part = _on_day(ledger, tz, day)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [2.2, 1]})
    draw_flows(ax, site_totals(part), tz)
    ax.set_title(f"Power flows of the site on {day} ({tz})\n{plain(name)}", fontsize=10)
    # Outside the axes: the load sits at the top of the frame at full utilisation.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    draw_prices(ax2, part, tz)
    ax2.set_xlabel(f"local time [{tz}]")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax2.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=ZoneInfo(tz)))
    return fig


def _prices(ledger: pd.DataFrame, tz: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    draw_prices(ax, ledger, tz)
    ax.set_xlabel(f"local time [{tz}]")
    ax.set_title("Realized prices")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d", tz=ZoneInfo(tz)))
    return fig


def _panels(done: pd.DataFrame, overrides: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """Split runs by their non-controller overrides (e.g. the deferrable share)."""
    keys = [k for k in overrides if not k.startswith("controller.")]
    if not keys:
        return [("all runs", done)]
    groups = done.groupby(keys, sort=True, dropna=False)
    return [(", ".join(f"{k.split('.')[-1]} = {plain(v)}" for k, v in
                       zip(keys, name if isinstance(name, tuple) else (name,), strict=True)),
             part) for name, part in groups][:6]


def _regret_plot(done: pd.DataFrame, overrides: list[str]) -> plt.Figure:
    metric, unit = (("regret_pct", "regret vs perfect foresight [% of its costs]")
                    if "regret_pct" in done.columns else ("cost_usd", "net cost [$]"))
    panels = _panels(done, overrides)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 4.6 * len(panels)), 4.2),
                             squeeze=False,
                             sharey=True)
    level = "controller.error_level"
    for ax, (title, part) in zip(axes[0], panels, strict=True):
        cmap = plt.get_cmap("tab10")
        for k, (controller, rows) in enumerate(part.groupby("controller", sort=True)):
            levels = rows[level] if level in rows.columns else pd.Series(dtype=float)
            color = cmap(k % 10)
            if levels.notna().sum() > 1:
                curve = rows.assign(_x=levels.astype(float)).sort_values("_x")
                ax.plot(curve["_x"], curve[metric], marker="o", color=color,
                        label=plain(controller))
            elif metric == "regret_pct" and (rows["regret_usd"].abs() < 1e-9).all():
                continue  # the reference itself: regret 0 by definition
            else:
                ax.axhline(float(rows[metric].mean()), color=color, ls="--",
                           label=plain(controller))
        if metric == "regret_pct":
            ax.axhline(0, color="black", lw=0.8, label="perfect foresight")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("forecast error level [-] (std at 24 h / series std)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(unit)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle("Regret vs forecast error, per forecaster")
    return fig


def _run_bars(done: pd.DataFrame) -> tuple[plt.Figure, plt.Axes, np.ndarray]:
    """A figure of one horizontal bar per run, labelled by its short run id, top down;
    the axes and the bars' positions."""
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(done) + 1.6))
    y = np.arange(len(done))
    ax.set_yticks(y, [plain(short_label(r)) for r in done["run_id"]], fontsize=7)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    return fig, ax, y


def _cost_bars(done: pd.DataFrame) -> plt.Figure:
    fig, ax, y = _run_bars(done)
    left_pos = np.zeros(len(done))
    left_neg = np.zeros(len(done))
    for (key, label, sign), color in zip(COST_COMPONENTS, _COLORS, strict=True):
        if key not in done.columns:
            continue
        values = sign * done[key].astype(float).fillna(0.0).to_numpy() / 1000.0
        if not np.any(values):
            continue
        left = np.where(values >= 0, left_pos, left_neg)
        ax.barh(y, values, left=left, color=color, alpha=0.8, label=label)
        left_pos += np.maximum(values, 0)
        left_neg += np.minimum(values, 0)
    ax.plot(done["cost_usd"].astype(float) / 1000.0, y, "k|", ms=12, mew=2, label="net cost")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("cost [k$] (negative = revenue)")
    ax.set_title("Cost components per run")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _slo_bars(done: pd.DataFrame, column: str) -> plt.Figure:
    fig, ax, y = _run_bars(done)
    ax.barh(y, 100.0 * done[column].astype(float), color="tab:green")
    ax.set_xlim(0, 100)
    ax.set_xlabel("SLO attainment [%]")
    ax.set_title("SLO attainment per run")
    return fig


def pareto_front(cost: np.ndarray, slo: np.ndarray) -> np.ndarray:
    """Indices of the runs no other run beats on both counts (lower or equal cost and
    higher or equal SLO attainment, one of them strictly), by ascending SLO attainment.

    Parameters
    ----------
    cost : ndarray [$]
        Net cost per run.
    slo : ndarray [-]
        SLO attainment per run.
    """
    keep = [i for i in range(len(cost))
            if not np.any((cost <= cost[i]) & (slo >= slo[i])
                          & ((cost < cost[i]) | (slo > slo[i])))]
    return np.array(sorted(keep, key=lambda i: (slo[i], cost[i])), dtype=int)


def _frontier(done: pd.DataFrame, column: str) -> plt.Figure:
    cost = done["cost_usd"].astype(float).to_numpy()
    slo = 100.0 * done[column].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("tab10")
    groups = done["controller"].astype(str) if "controller" in done.columns else pd.Series(
        ["runs"] * len(done), index=done.index)
    for k, name in enumerate(sorted(groups.unique())):
        sel = (groups == name).to_numpy()
        ax.scatter(slo[sel], cost[sel], color=cmap(k % 10), label=plain(name), zorder=3)
        if "cost_without_slo_usd" in done.columns:
            ax.scatter(slo[sel], done["cost_without_slo_usd"].astype(float).to_numpy()[sel],
                       facecolors="none", edgecolors=cmap(k % 10), zorder=2)
    ok = np.isfinite(cost) & np.isfinite(slo)
    front = np.flatnonzero(ok)[pareto_front(cost[ok], slo[ok])]
    ax.plot(slo[front], cost[front], color="black", lw=1, ls="--", label="non-dominated")
    for i in front:
        ax.annotate(plain(short_label(str(done["run_id"].iloc[i]))), (slo[i], cost[i]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("SLO attainment [%]")
    ax.set_ylabel("net cost [$]")
    ax.set_title("Cost against SLO attainment")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


# ----------------------------------------------------------------------------- render

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:13px;color:#555}"
)


def render_html(report: Report) -> str:
    """One self-contained HTML page (figures embedded as base64 PNG)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(report.title)}</h1>",
             f"<p>Source: <code>{html.escape(str(report.source))}</code></p>"]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        parts += [t.to_html(index=False, escape=True, border=0, na_rep="")
                  for t in section.tables]
        for fig in section.figures:
            data = base64.b64encode(fig.png).decode("ascii")
            parts.append(
                f'<figure id="{fig.name}"><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(fig.title)}">'
                + (f"<figcaption>{html.escape(fig.caption)}</figcaption>" if fig.caption else "")
                + "</figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]<>()#+!|$~&])")


def md_escape(text: object) -> str:
    """``text`` as literal Markdown: syntax characters backslash-escaped, one line.

    Covers emphasis, links and images, code, HTML tags and entities, headings,
    table pipes and math dollars; line breaks become spaces (a name must not start
    a heading or end a table row).
    """
    one_line = " ".join(str(text).splitlines())
    return _MARKDOWN_SYNTAX.sub(r"\\\1", one_line)


def md_code(text: object) -> str:
    """``text`` as a Markdown code span, fenced by more backticks than it holds."""
    one_line = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", one_line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table (no external dependency); every cell escaped with :func:`md_escape`."""
    def cell(value: Any) -> str:
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else value
        return md_escape(text)

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_markdown(report: Report, figure_dir: str) -> str:
    """Markdown text; figures are linked as ``<figure_dir>/<name>.png``."""
    parts = [f"# {md_escape(report.title)}", "", f"Source: {md_code(report.source)}", ""]
    for section in report.sections:
        parts += [f"## {md_escape(section.heading)}", ""]
        for paragraph in section.paragraphs:
            parts += [md_escape(paragraph), ""]
        for table in section.tables:
            parts += [markdown_table(table), ""]
        for fig in section.figures:
            link = urllib.parse.quote(f"{figure_dir}/{fig.name}.png")
            parts += [f"![{md_escape(fig.title)}]({link})", ""]
            if fig.caption:
                parts += [f"*{md_escape(fig.caption)}*", ""]
    return "\n".join(parts)


def write_report(
    path: Path,
    *,
    out: Path | None = None,
    fmt: ReportFormat = "html",
    day: str | None = None,
    run_id: str | None = None,
) -> Path:
    """Build and write the report of ``path``; return the report file.

    ``out`` defaults to ``<path>/report.html`` (or ``.md``). Files are written through
    temporary names and renamed, so a failed write leaves an earlier report intact.
    """
    report = build_report(Path(path), day=day, run_id=run_id)
    target = Path(out) if out is not None else Path(path) / f"report.{fmt}"
    if target.is_dir():
        raise ConfigError("--out", f"{target} is a directory; expected a report file path")
    if fmt == "html":
        text = render_html(report)
    else:
        folder = target.with_name(f"{target.stem}_files")
        prepare_output_dir(folder, kind="report")
        for fig in report.figures:
            write_file_atomic(folder / f"{fig.name}.png", _png_writer(fig.png))
        text = render_markdown(report, folder.name)
    write_file_atomic(target, lambda p: p.write_text(text, encoding="utf-8"))
    logger.info("report written to %s", target)
    return target


def _png_writer(png: bytes) -> Callable[[Path], object]:
    return lambda p: p.write_bytes(png)

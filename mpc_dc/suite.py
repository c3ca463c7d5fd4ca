"""Controller benchmarking: a suite of scenarios, every policy on each, one scorecard.

A suite file (TOML; the shipped ones are ``mpc_dc/suites/<name>.toml``) lists
scenarios and the built-in controllers to run on each::

    [suite]
    name = "standard"
    controllers = ["baseline", "sarimax", "seasonal_naive", "perfect", "offline"]
    slo_penalty_usd_per_request = 0.001
    overrides = { "controller.offline_mip_max_nodes" = 500 }   # every scenario
    [suite.sizes.default]
    days = 1.0
    [suite.sizes.tiny]
    days = 0.25
    overrides = { "controller.horizon_h" = 2.0 }

    [[scenarios]]
    name = "colocated-wholesale"
    scenario = "rcdc_nyiso_wholesale"   # a shipped example, or a path from this file
    days = 3.0                          # this scenario at the default size
    overrides = { ... }                 # dotted keys (mpc_dc.site.scenario.with_overrides)
    sizes.tiny = { "run.history_days" = 2 }

Each scenario runs under every controller label of ``controllers``
(:func:`~mpc_dc.site.scenario.controller_variant`; ``baseline`` and ``offline`` are
always added: the business-as-usual reference and the regret reference) and every
policy named on the command line (``--policy``, :mod:`mpc_dc.policy`; suite files
never name code). The runs are the runs of a sweep (:mod:`mpc_dc.sweep`): executed
locally or on dask, resumed when interrupted, the results table rebuilt from the
run directories, so both executors give the same table.

The scorecard (:func:`scorecard`, definitions in docs/benchmark.md) has one row per
scenario and policy and one summary row per policy (:func:`summary`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.config import reject_unknown_keys
from mpc_dc.sim.meter import pct_of_costs
from mpc_dc.site.scenario import (
    Scenario,
    controller_variant,
    example_path,
    load_scenario,
    read_toml,
    scenario_to_mapping,
    with_overrides,
)
from mpc_dc.sweep import SweepRun, SweepSpec, make_run_id, payload_digest
from traces.errors import ConfigError

SUITE_KEYS = ("name", "description", "controllers", "slo_penalty_usd_per_request",
              "overrides", "sizes")
"""Keys of the ``[suite]`` table."""
SCENARIO_KEYS = ("name", "scenario", "days", "overrides", "sizes")
"""Keys of a ``[[scenarios]]`` entry."""
SIZE_KEYS = ("days", "overrides")
"""Keys of a ``[suite.sizes.<size>]`` table."""

BASELINE = "baseline"
"""The business-as-usual controller every KPI is normalised to."""
OFFLINE = "offline"
"""The offline optimum: the regret reference."""


@dataclass(frozen=True)
class SuiteScenario:
    """One scenario of a suite, resolved for one size.

    Attributes
    ----------
    name : str
    scenario : Scenario
        With the suite's, the size's and the entry's overrides applied.
    notes : tuple of str
        What the size changed beyond the overrides (DR days or outages dropped
        because they no longer lie inside the shortened run).
    """

    name: str
    scenario: Scenario
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    """A parsed suite at one size.

    Attributes
    ----------
    name : str
    source : Path
    size : str
    controllers : tuple of str
        Built-in controller labels, ``baseline`` and ``offline`` included.
    slo_penalty_usd_per_request : float [$/request]
        Price of a request that misses its SLO in the summary score.
    scenarios : tuple of SuiteScenario
    """

    name: str
    source: Path
    size: str
    controllers: tuple[str, ...]
    slo_penalty_usd_per_request: float
    scenarios: tuple[SuiteScenario, ...]


def suite_path(name: str) -> Path:
    """A shipped suite (``mpc_dc/suites/<name>.toml``) or a suite file path."""
    shipped = Path(str(resources.files("mpc_dc") / "suites" / f"{name}.toml"))
    if shipped.is_file():
        return shipped
    return Path(name)


def shipped_suites() -> list[str]:
    """Names of the shipped suites."""
    folder = Path(str(resources.files("mpc_dc") / "suites"))
    return sorted(p.stem for p in folder.glob("*.toml"))


def _table(file: Path, value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(file, f"expected a table, got {value!r}", key=key)
    return value


def _days(file: Path, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise ConfigError(file, f"expected a number of days > 0, got {value!r}", key=key)
    return float(value)


def _size(file: Path, table: Mapping[str, Any], size: str, prefix: str
          ) -> tuple[float | None, dict[str, Any]]:
    """``days`` and ``overrides`` of ``size`` in ``table['sizes']`` (None, {} when absent)."""
    sizes = _table(file, table.get("sizes", {}), f"{prefix}sizes")
    if size not in sizes:
        return None, {}
    body = _table(file, sizes[size], f"{prefix}sizes.{size}")
    if prefix == "suite.":
        reject_unknown_keys(file, body, SIZE_KEYS, f"{prefix}sizes.{size}.")
        days = _days(file, body["days"], f"{prefix}sizes.{size}.days") if "days" in body \
            else None
        return days, _table(file, body.get("overrides", {}), f"{prefix}sizes.{size}.overrides")
    # A scenario's size is its overrides only (its days come from the suite's size).
    return None, body


def load_suite(name: str, *, size: str = "default", days: float | None = None,
               only: Sequence[str] = (), data_dir: str | None = None) -> Suite:
    """Read a suite, resolving every scenario at ``size``.

    Parameters
    ----------
    name : str
        A shipped suite name or a suite file.
    size : str
        A size of ``[suite.sizes]`` (``default`` need not be declared).
    days : float, optional
        Run length of every scenario [d], replacing the size's and the entries'.
    only : sequence of str
        Run only these scenarios (their names).
    data_dir : str, optional
        ``data.dir`` of every scenario (``--data``).

    Raises
    ------
    ConfigError
        One line naming the suite file and the key (or the scenario's key).
    """
    file = suite_path(name)
    if not file.is_file():
        known = ", ".join(shipped_suites())
        raise ConfigError(file, f"suite not found; expected a suite file or a shipped suite "
                          f"({known})")
    table = read_toml(file, "suite")
    reject_unknown_keys(file, table, ("suite", "scenarios"), "")
    head = _table(file, table.get("suite"), "suite")
    reject_unknown_keys(file, head, SUITE_KEYS, "suite.")
    sizes = _table(file, head.get("sizes", {}), "suite.sizes")
    if size != "default" and size not in sizes:
        raise ConfigError(file, f"no size {size!r}; sizes: default, "
                          f"{', '.join(s for s in sizes if s != 'default')}", key="suite.sizes")
    size_days, size_overrides = _size(file, head, size, "suite.")
    labels = head.get("controllers", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise ConfigError(file, f"expected a list of controller labels, got {labels!r}",
                          key="suite.controllers")
    controllers = tuple(dict.fromkeys([BASELINE, *labels, OFFLINE]))
    penalty = head.get("slo_penalty_usd_per_request", 0.0)
    if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not (
            math.isfinite(penalty) and penalty >= 0):
        raise ConfigError(file, f"expected a price >= 0 [$/request], got {penalty!r}",
                          key="suite.slo_penalty_usd_per_request")
    common = _table(file, head.get("overrides", {}), "suite.overrides")
    entries = table.get("scenarios")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(file, "expected at least one [[scenarios]] entry", key="scenarios")
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    for wanted in only:
        if wanted not in names:
            raise ConfigError("--scenarios", f"no scenario {wanted!r} in suite {file}; "
                              f"scenarios: {', '.join(map(str, names))}")
    resolved = []
    for i, entry in enumerate(entries):
        resolved.append(_scenario(file, _table(file, entry, f"scenarios[{i}]"), i, size,
                                  days if days is not None else size_days, common,
                                  size_overrides, data_dir))
    if len({s.name for s in resolved}) != len(resolved):
        raise ConfigError(file, "scenario names must be unique", key="scenarios")
    chosen = tuple(s for s in resolved if not only or s.name in only)
    return Suite(str(head.get("name", file.stem)), file, size, controllers, float(penalty),
                 chosen)


def _scenario(file: Path, entry: Mapping[str, Any], i: int, size: str, days: float | None,
              common: Mapping[str, Any], size_overrides: Mapping[str, Any],
              data_dir: str | None) -> SuiteScenario:
    prefix = f"scenarios[{i}]."
    reject_unknown_keys(file, entry, SCENARIO_KEYS, prefix)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(file, f"expected a non-empty name, got {name!r}", key=f"{prefix}name")
    ref = entry.get("scenario")
    if not isinstance(ref, str) or not ref:
        raise ConfigError(file, f"expected a shipped scenario name or a path, got {ref!r}",
                          key=f"{prefix}scenario")
    shipped = example_path(ref)
    path = shipped if shipped.is_file() else file.parent / ref
    if not path.is_file():
        raise ConfigError(file, f"no scenario {ref!r} (neither shipped nor {path})",
                          key=f"{prefix}scenario")
    scenario = load_scenario(path)
    own = _table(file, entry.get("overrides", {}), f"{prefix}overrides")
    _, own_size = _size(file, entry, size, prefix)
    overrides = {**common, **size_overrides, **own, **own_size}
    run_days = days if days is not None else (
        _days(file, entry["days"], f"{prefix}days") if "days" in entry else None)
    if run_days is not None:
        overrides["run.days"] = run_days
    if data_dir is not None:
        overrides["data.dir"] = data_dir
    where = f"{file} ({prefix.rstrip('.')})"
    notes: list[str] = []
    if run_days is not None:
        overrides, notes = _fit_events(scenario, overrides, where)
    return SuiteScenario(name, with_overrides(scenario, overrides, where), tuple(notes))


def _fit_events(scenario: Scenario, overrides: dict[str, Any], where: str
                ) -> tuple[dict[str, Any], list[str]]:
    """Drop the DR days and outages that no longer lie inside a shortened run."""
    start = pd.Timestamp(overrides.get("run.start", scenario.run.start)).tz_convert("UTC")
    end = start + pd.Timedelta(days=float(overrides["run.days"]))
    tz = str(overrides.get("run.local_tz", scenario.run.local_tz))
    notes = []
    days = list(overrides.get("dr.days", scenario.dr.days))
    kept = [d for d in days
            if pd.Timestamp(d).tz_localize(tz) >= start
            and (pd.Timestamp(d) + pd.Timedelta(days=1)).tz_localize(tz) <= end]
    if kept != days:
        notes.append(f"DR days {', '.join(sorted(set(days) - set(kept)))} outside the "
                     f"{overrides['run.days']:g}-day run: dropped")
        overrides["dr.days"] = kept
    outages = overrides.get("outages")
    if outages is None:
        outages = [o for o in scenario_to_mapping(scenario).get("outages", [])]
    inside = [o for o in outages
              if pd.Timestamp(o["start"]) >= start
              and pd.Timestamp(o["start"]) + pd.Timedelta(hours=float(o["hours"])) <= end]
    if len(inside) != len(outages):
        notes.append(f"{len(outages) - len(inside)} GPU outage(s) outside the run: dropped")
        overrides["outages"] = inside
    return overrides, notes


# ----------------------------------------------------------------------------- runs


def suite_sweep(suite: Suite, policies: Sequence[str] = ()) -> SweepSpec:
    """The suite's runs as a sweep: scenario by scenario, the controllers then the
    policies; each run's overrides are ``scenario`` and ``policy`` (the row labels)."""
    runs: list[SweepRun] = []
    for entry in suite.scenarios:
        for label in (*suite.controllers, *policies):
            policy = None if label in suite.controllers else label
            scenario = entry.scenario if policy else controller_variant(entry.scenario, label)
            overrides = (("scenario", entry.name), ("policy", label))
            digest = payload_digest({"scenario": scenario_to_mapping(scenario), "policy": policy})
            runs.append(SweepRun(make_run_id(overrides, digest), overrides, scenario, policy,
                                 source=str(suite.source)))
    return SweepSpec(f"benchmark {suite.name} ({suite.size})", suite.source,
                     suite.scenarios[0].scenario, runs=tuple(runs))


# ----------------------------------------------------------------------------- scorecard


SCORECARD_COLUMNS: tuple[str, ...] = (
    "scenario", "policy", "controller", "cost_usd", "regret_usd", "gap_closed",
    "cost_vs_baseline_pct", "slo_attainment", "slo_missed_requests", "carbon_t",
    "carbon_vs_baseline", "peak_import_mw", "peak_vs_baseline", "dr_compliance",
    "deadline_missed_wu", "projections", "decide_time_median_s", "offline_mip_gap_pct",
    "time_limit_hits", "node_limit_hits",
)
"""Columns of the scorecard (docs/benchmark.md)."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "policy", "score", "scenarios_scored", "cost_vs_baseline_pct", "carbon_vs_baseline",
    "slo_attainment", "dr_compliance", "projections", "decide_time_median_s",
    "time_limit_hits", "node_limit_hits",
)
"""Columns of the summary (docs/benchmark.md)."""


def _ratio(value: pd.Series, base: float) -> pd.Series:
    """``value / base`` where the base is positive (a ratio to zero explodes), else NaN."""
    return value / base if base > 0 and math.isfinite(base) else value * math.nan


def scorecard(results: pd.DataFrame, timings: pd.DataFrame, penalty_usd_per_request: float
              ) -> pd.DataFrame:
    """One row per (scenario, policy) of a suite's sweep results (docs/benchmark.md).

    Parameters
    ----------
    results : DataFrame
        :func:`mpc_dc.sweep.results_table` of :func:`suite_sweep` (columns
        ``scenario``, ``policy`` and the flattened KPIs).
    timings : DataFrame
        :func:`mpc_dc.sweep.timings_table` of the same sweep.
    penalty_usd_per_request : float [$/request]
        Price of a request missing its SLO in the effective cost of ``gap_closed``.
    """
    done = results[results["status"] == "done"].merge(
        timings[["run_id", "decide_time_median_s"]], on="run_id", how="left")
    rows = [_scenario_rows(str(name), group.set_index("policy"), penalty_usd_per_request)
            for name, group in done.groupby("scenario", sort=False)]
    if not rows:
        return pd.DataFrame(columns=list(SCORECARD_COLUMNS))
    return pd.concat(rows, ignore_index=True)


def _column(g: pd.DataFrame, key: str) -> pd.Series:
    """A KPI column as floats (NaN where a run does not report it)."""
    if key not in g.columns:
        return pd.Series(math.nan, index=g.index)
    return pd.to_numeric(g[key], errors="coerce").astype(float)


def _scenario_rows(name: str, g: pd.DataFrame, penalty: float) -> pd.DataFrame:
    """The scorecard rows of one scenario (``g``: its results indexed by policy)."""
    out = pd.DataFrame({"scenario": name, "policy": g.index, "controller": g["controller"]},
                       index=g.index)
    for key in ("cost_usd", "carbon_t", "peak_import_mw", "dr_compliance"):
        out[key] = _column(g, key)
    missed = _column(g, "slo_missed_requests")
    out["slo_missed_requests"] = missed
    # Request level reports the measured attainment, fluid level its estimate.
    out["slo_attainment"] = _column(g, "slo_attainment").fillna(
        _column(g, "slo_attainment_estimate"))
    cost = out["cost_usd"]
    out["regret_usd"] = cost - cost.get(OFFLINE, math.nan)
    # Of BAU's costs, never of its net cost, which export revenue and the DR reward can
    # bring to zero or below (docs/fleet_closed_loop.md, "Cost, costs, revenue and
    # percentages"); the difference stays one of net costs, so lost revenue counts.
    bau_costs = float(_column(g, "costs_usd").get(BASELINE, math.nan))
    out["cost_vs_baseline_pct"] = pct_of_costs(cost - cost.get(BASELINE, math.nan),
                                               bau_costs)
    effective = cost + penalty * missed.fillna(0.0)
    base = float(effective.get(BASELINE, math.nan))
    span = base - float(effective.get(OFFLINE, math.nan))
    # A scenario where even the optimum gains nothing over business as usual scores nothing.
    meaningful = math.isfinite(span) and span > 1e-9 * max(1.0, abs(base))
    out["gap_closed"] = (base - effective) / span if meaningful else math.nan
    for key, ratio in (("carbon_t", "carbon_vs_baseline"),
                       ("peak_import_mw", "peak_vs_baseline")):
        out[ratio] = _ratio(out[key], float(out[key].get(BASELINE, math.nan)))
    out["deadline_missed_wu"] = _column(g, "work_df_missed_wu")
    out["projections"] = _column(g, "decision_projections_total")
    out["decide_time_median_s"] = _column(g, "decide_time_median_s")
    out["offline_mip_gap_pct"] = 100.0 * _column(g, "offline_mip_gap")
    # The DR lead-in's solves count too: its meter is every baseline's.
    out["time_limit_hits"] = (_column(g, "solver_time_limit_hits")
                              + _column(g, "dr_lead_in_solver_time_limit_hits").fillna(0.0))
    # Reproducible (a node limit ends alike on any machine); the DR lead-in's count
    # too, as its incumbent plans make the meter of every baseline.
    out["node_limit_hits"] = (_column(g, "solver_node_limit_hits")
                              + _column(g, "dr_lead_in_solver_node_limit_hits").fillna(0.0))
    return out[list(SCORECARD_COLUMNS)]


def summary(card: pd.DataFrame) -> pd.DataFrame:
    """One row per policy: ``score`` = the mean ``gap_closed`` over the scenarios where it
    is defined, and the means of the normalised KPIs (docs/benchmark.md)."""
    out = []
    for policy, g in card.groupby("policy", sort=False):
        scored = g["gap_closed"].dropna()
        out.append({
            "policy": policy,
            "score": float(scored.mean()) if len(scored) else math.nan,
            "scenarios_scored": len(scored),
            "cost_vs_baseline_pct": float(g["cost_vs_baseline_pct"].mean()),
            "carbon_vs_baseline": float(g["carbon_vs_baseline"].mean()),
            "slo_attainment": float(g["slo_attainment"].mean()),
            "dr_compliance": float(g["dr_compliance"].mean()),
            "projections": float(g["projections"].sum()),
            "decide_time_median_s": float(np.nanmedian(g["decide_time_median_s"]))
            if g["decide_time_median_s"].notna().any() else math.nan,
            "time_limit_hits": float(g["time_limit_hits"].sum()),
            "node_limit_hits": float(g["node_limit_hits"].sum()),
        })
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def time_limit_notes(card: pd.DataFrame) -> list[str]:
    """A note per scorecard row with solves HiGHS stopped on its wall-clock limit: such
    a row depends on the machine's load, so another run of the suite may differ."""
    hit = card[card["time_limit_hits"].fillna(0) > 0]
    return [f"{r.scenario} / {r.policy}: {r.time_limit_hits:.0f} solve(s) stopped on the "
            "wall-clock limit (controller.time_limit_s or offline_time_limit_s): not "
            "reproducible" for r in hit.itertuples()]


# ----------------------------------------------------------------------------- display

_FORMATS: Mapping[str, tuple[str, str]] = {
    "score": ("score", "{:.3f}"),
    "scenarios_scored": ("scenarios", "{:.0f}"),
    "controller": ("controller", "{}"),
    "cost_usd": ("cost [$]", "{:,.2f}"),
    "regret_usd": ("regret [$]", "{:,.2f}"),
    "gap_closed": ("gap closed", "{:.3f}"),
    "cost_vs_baseline_pct": ("cost vs BAU [% of BAU costs]", "{:.2f}"),
    "slo_attainment": ("SLO att.", "{:.4f}"),
    "slo_missed_requests": ("SLO missed [req]", "{:,.0f}"),
    "carbon_t": ("carbon [t]", "{:,.3f}"),
    "carbon_vs_baseline": ("carbon / BAU", "{:.3f}"),
    "peak_import_mw": ("peak [MW]", "{:,.3f}"),
    "peak_vs_baseline": ("peak / BAU", "{:.3f}"),
    "dr_compliance": ("DR compliance", "{:.3f}"),
    "deadline_missed_wu": ("missed [WU]", "{:,.3f}"),
    "projections": ("projections", "{:.0f}"),
    "decide_time_median_s": ("decide med. [ms]", "ms"),
    "offline_mip_gap_pct": ("offline gap [%]", "{:.4f}"),
    "time_limit_hits": ("wall-limit hits", "{:.0f}"),
    "node_limit_hits": ("node-limit hits", "{:.0f}"),
}


def display(table: pd.DataFrame, drop: Sequence[str] = ()) -> pd.DataFrame:
    """``table`` with formatted cells and readable headers (``-``: not applicable)."""
    shown = pd.DataFrame(index=table.index)
    for column in table.columns:
        if column in drop:
            continue
        header, fmt = _FORMATS.get(column, (column, "{}"))

        def cell(value: Any, fmt: str = fmt) -> str:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "-"
            text = f"{1000.0 * float(value):.2f}" if fmt == "ms" else fmt.format(value)
            # A rounding residue shown as -0.000 reads as a sign; it is zero.
            return text[1:] if re.fullmatch(r"-0(\.0+)?", text) else text

        shown[header] = table[column].map(cell)
    return shown.reset_index(drop=True)


def scorecard_markdown(suite_name: str, size: str, card: pd.DataFrame, totals: pd.DataFrame,
                       notes: Sequence[str] = ()) -> str:
    """The scorecard as Markdown: the summary, then one table per scenario."""
    from mpc_dc.report import markdown_table

    parts = [f"# Benchmark scorecard: {suite_name} ({size})", "",
             "Definitions: docs/benchmark.md. BAU = the baseline controller on the same "
             "scenario; gap closed = (BAU − policy) / (BAU − offline optimum) of the cost "
             "with the SLO penalty; score = its mean over the scenarios; cost vs BAU = "
             "(policy − BAU) net cost in % of BAU's costs (revenue not deducted).", "",
             "## Summary", "", markdown_table(display(totals)), ""]
    if notes:
        parts += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    for scenario, group in card.groupby("scenario", sort=False):
        parts += [f"## {scenario}", "", markdown_table(display(group, drop=("scenario",))), ""]
    return "\n".join(parts)

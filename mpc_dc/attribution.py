"""Regret attribution by forecast channel: which forecast error cost the money.

``mpc-dc compare SCENARIO --attribute`` splits the regret of an MPC on forecasts —
its cost minus the cost of the same MPC (same horizon, same solver settings) on
perfect forecasts — into one part per group of forecast channels
(:data:`~mpc_dc.site.scenario.CHANNEL_GROUPS`: the price of every campus, the
renewable capacity factor, the token demand, the other-IT load and, when carbon is
priced, the carbon intensity) plus an interaction term.

The decomposition (docs/forecasters.md, "Regret attribution")
-------------------------------------------------------------
``C(S)`` is the cost of the closed loop in which the groups of ``S`` are forecast
(by the scenario's forecasters) and every other group is perfect (the Oracle on its
truth); ``N`` is every group, so ``C(N)`` is the forecast-driven run and ``C(∅)``
the perfect-foresight run (``controller.kind = "perfect"``). Then

* total regret ``R = C(N) − C(∅)``;
* part of group ``g`` (its main effect) ``m_g = C({g}) − C(∅)``: what ``g``'s
  forecast error costs when every other channel is known;
* interaction ``I = R − Σ_g m_g``: what the errors cost together beyond their
  separate costs (negative when they overlap: a deferral both a price error and a
  renewable error would cause is paid once);

so ``Σ_g m_g + I = R`` exactly. Each group also gets ``v_g = C(N) − C(N \\ {g})``,
the regret a perfect forecast of ``g`` alone would remove with every other channel
still forecast; ``v_g − m_g`` is the interaction ``g`` takes part in (for two groups
it is ``I`` itself). That is ``2 n + 2`` closed-loop runs for ``n`` groups
(:func:`plan_runs`), linear in ``n``, where a Shapley split needs ``2^n``; and the
main effects answer the question a forecast-error study asks of one channel, with
what the channels do together shown as its own term rather than spread over them.

A group whose forecaster is the Oracle already has ``C({g}) = C(∅)``: its part is
zero (the other-load group carries the deadline margin, which is off when its
forecast is exact: ``ControllerSpec.deadline_margin_steps``). Carbon intensity
without a carbon price enters no cost (the problem's carbon cost is price ×
intensity): it is not a group then, and its channel is the Oracle in every run.

The runs are a sweep (:mod:`mpc_dc.sweep`): resumable, run by a local process pool,
each into ``OUT/runs/<id>``; the attribution is written beside the results as
``attribution.csv``, ``attribution.md`` and ``attribution.png`` and shown by
``mpc-dc report OUT``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mpc_dc.control.forecasting import channels, group
from mpc_dc.rundir import RunDirCorruptError, write_file_atomic
from mpc_dc.site.data import SOURCE
from mpc_dc.site.scenario import (
    CHANNEL_GROUPS,
    FORECASTER_ALIASES,
    Scenario,
    check_forecaster,
    with_overrides,
)
from mpc_dc.sweep import (
    Executor,
    RunReport,
    SweepOutcome,
    SweepRun,
    SweepSpec,
    base_digest,
    make_run_id,
    run_sweep,
)
from traces.errors import ConfigError

logger = logging.getLogger(__name__)

GROUP_UNITS: Mapping[str, str] = {
    "price": "$/MWh",
    "renewable": "capacity factor [-]",
    "demand": "tokens/s",
    "other_load": "WU per interval",
    "carbon": "gCO2/kWh",
}
"""Unit of each group's forecast MAE (its channels' unit)."""

FILES = ("attribution.csv", "attribution.md", "attribution.png")
"""What :func:`write_attribution` writes into the output folder."""

COLUMNS = ("forecaster", "term", "regret_usd", "share_pct", "cost_usd",
           "perfect_value_usd", "forecast_mae", "mae_unit")
"""Columns of the attribution table (:func:`attribution_table`)."""

INTERACTION = "interaction"
TOTAL = "total"
PERFECT_RUN = "perfect"


def groups(scenario: Scenario) -> tuple[str, ...]:
    """The channel groups of ``scenario``'s site that can move its cost, in
    :data:`CHANNEL_GROUPS` order: every group with a channel
    (:func:`mpc_dc.control.forecasting.channels`), carbon only when it is priced."""
    site = scenario.site
    present = {group(c) for c in channels(site)}
    if site.carbon_price_usd_per_t <= 0:
        present.discard("carbon")
    return tuple(g for g in CHANNEL_GROUPS if g in present)


def forecaster_label(label: str) -> str:
    """``label`` of ``--forecasters`` as a forecaster name (aliases resolved).

    Raises
    ------
    ConfigError
        Not a forecaster of every channel (``baseline``, ``offline``, ``S4`` ...).
    """
    name = FORECASTER_ALIASES.get(label, label)
    try:
        check_forecaster(name, "forecasters", "--forecasters")
    except ConfigError as err:
        raise ConfigError("--forecasters", f"{err.message} (--attribute splits the "
                          "regret of an MPC on forecasts: give forecaster names)") from None
    return name


@dataclass(frozen=True)
class Plan:
    """The runs of an attribution and what each one is.

    Attributes
    ----------
    groups : tuple of str
        The groups the regret is split into (:func:`groups`).
    forecasters : tuple of str
        Forecaster names, one attribution each.
    runs : tuple of SweepRun
        The perfect-foresight run first, then per forecaster: every group forecast,
        each group alone forecast, each group alone perfect.
    roles : Mapping[str, tuple[str, str, str]]
        Run id → ``(forecaster, kind, group)`` with kind ``all``, ``only`` or
        ``all_but`` (``("", "perfect", "")`` for the perfect run).
    """

    groups: tuple[str, ...]
    forecasters: tuple[str, ...]
    runs: tuple[SweepRun, ...]
    roles: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)

    def run_id(self, forecaster: str, kind: str, group: str = "") -> str:
        """The id of one run of the plan."""
        for run_id, role in self.roles.items():
            if role == (forecaster, kind, group):
                return run_id
        raise KeyError((forecaster, kind, group))


def _oracle(groups: Iterable[str]) -> dict[str, Any]:
    return {f"controller.channels.{g}.forecaster": "oracle" for g in groups}


def plan_runs(scenario: Scenario, forecasters: Sequence[str],
              source: str | Path = SOURCE) -> Plan:
    """The ``2 n + 1`` runs per forecaster and the one perfect-foresight run.

    Every run is ``scenario`` with dotted-key overrides: ``controller.kind`` and
    ``controller.forecaster``, and ``controller.channels.<group>.forecaster =
    "oracle"`` on the groups that are perfect in it (on top of the scenario's own
    ``controller.channels``, so a group the scenario gives the Oracle stays perfect).
    """
    split = groups(scenario)
    names = tuple(dict.fromkeys(forecaster_label(f) for f in forecasters))
    kept = [g for g in CHANNEL_GROUPS if g not in split]
    # Unpriced carbon enters no cost: the Oracle in every run (its MAE then reads 0).
    fixed = _oracle(g for g in kept if g == "carbon")
    wanted: list[tuple[tuple[str, str, str], dict[str, Any]]] = [
        (("", "perfect", ""), {"controller.kind": "perfect"})]
    for name in names:
        base = {"controller.kind": "mpc", "controller.forecaster": name, **fixed}
        wanted.append(((name, "all", ""), base))
        wanted += [((name, "only", g), base | _oracle(h for h in split if h != g))
                   for g in split]
        wanted += [((name, "all_but", g), base | _oracle([g])) for g in split]
    base_hash = base_digest(scenario)
    runs: list[SweepRun] = []
    roles: dict[str, tuple[str, str, str]] = {}
    for role, overrides in wanted:
        forecaster, kind, grp = role
        slug = PERFECT_RUN if kind == "perfect" else "__".join(
            p for p in (forecaster, kind, grp) if p)
        items = tuple(overrides.items())
        digest = make_run_id(items, base_hash).rsplit("__", 1)[-1]
        run_id = f"{slug}__{digest}"
        runs.append(SweepRun(run_id, items, with_overrides(scenario, overrides, str(source)),
                             source=str(source)))
        roles[run_id] = role
    return Plan(split, names, tuple(runs), roles)


def sweep_spec(scenario: Scenario, plan: Plan, source: str | Path = SOURCE) -> SweepSpec:
    """The attribution as a sweep (its runs, regret against the perfect run)."""
    return SweepSpec(f"{scenario.name}-attribution", Path(str(source)), scenario,
                     reference={"controller.kind": "perfect"}, runs=plan.runs)


def attribution_table(plan: Plan, results: pd.DataFrame) -> pd.DataFrame:
    """The decomposition (module docstring) from a results table of the plan's runs.

    One row per forecaster and term: each group (``regret_usd`` = its main effect
    ``m_g``), ``interaction`` and ``total`` (``R``). ``share_pct`` is of ``R``;
    ``cost_usd`` is ``C({g})`` for a group, ``C(N)`` for the total;
    ``perfect_value_usd`` is ``v_g``; ``forecast_mae`` is the group's MAE in the
    forecast-driven run [``mae_unit``].

    Raises
    ------
    ValueError
        A run of the plan is missing from ``results`` or not finished.
    """
    done = results[results["status"] == "done"].set_index("run_id")
    missing = [r.run_id for r in plan.runs if r.run_id not in done.index]
    if missing:
        raise ValueError(f"attribution needs every run; not finished: {', '.join(missing)}")
    cost = done["cost_usd"].astype(float)
    rows: list[dict[str, Any]] = []
    perfect = float(cost[plan.run_id("", "perfect")])
    for name in plan.forecasters:
        everything = plan.run_id(name, "all")
        total = float(cost[everything]) - perfect
        parts: list[float] = []
        for g in plan.groups:
            alone = float(cost[plan.run_id(name, "only", g)])
            part = alone - perfect
            parts.append(part)
            mae_col = f"forecast_mae_by_group.{g}"
            mae = (float(done[mae_col].astype(float)[everything]) if mae_col in done.columns
                   else math.nan)
            rows.append({"forecaster": name, "term": g, "regret_usd": part,
                         "share_pct": _share(part, total), "cost_usd": alone,
                         "perfect_value_usd": float(cost[everything])
                         - float(cost[plan.run_id(name, "all_but", g)]),
                         "forecast_mae": mae, "mae_unit": GROUP_UNITS[g]})
        interaction = total - math.fsum(parts)
        rows.append({"forecaster": name, "term": INTERACTION, "regret_usd": interaction,
                     "share_pct": _share(interaction, total), "cost_usd": math.nan,
                     "perfect_value_usd": math.nan, "forecast_mae": math.nan,
                     "mae_unit": ""})
        rows.append({"forecaster": name, "term": TOTAL, "regret_usd": total,
                     "share_pct": _share(total, total), "cost_usd": float(cost[everything]),
                     "perfect_value_usd": total, "forecast_mae": math.nan, "mae_unit": ""})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _share(value: float, total: float) -> float:
    """``value`` in % of ``total`` (NaN for a zero total)."""
    return 100.0 * value / total if total else math.nan


def sum_residuals(table: pd.DataFrame) -> dict[str, float]:
    """Per forecaster: parts + interaction − total [$] (zero up to rounding)."""
    out = {}
    for name, rows in table.groupby("forecaster", sort=False):
        terms = rows.set_index("term")["regret_usd"].astype(float)
        out[str(name)] = math.fsum(terms.drop(TOTAL)) - float(terms[TOTAL])
    return out


def check_table(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` read from ``path`` if it is an attribution table, else one line.

    Raises
    ------
    RunDirCorruptError
        A column is missing, a figure is not a number, or a forecaster has no total.
    """
    for column in COLUMNS:
        if column not in table.columns:
            raise RunDirCorruptError(path, "missing column (an attribution table written "
                                     "by mpc-dc compare --attribute)", field=column)
    for column in ("regret_usd", "share_pct", "cost_usd", "perfect_value_usd",
                   "forecast_mae"):
        if not pd.api.types.is_numeric_dtype(table[column]):
            raise RunDirCorruptError(path, f"expected numbers, got {table[column].dtype}",
                                     field=column)
    for name, rows in table.groupby("forecaster", sort=False):
        if set(rows["term"]) & {TOTAL, INTERACTION} != {TOTAL, INTERACTION}:
            raise RunDirCorruptError(path, f"forecaster {name!r} has no '{TOTAL}' or "
                                     f"'{INTERACTION}' row", field="term")
    return table


def read_attribution(folder: Path) -> pd.DataFrame:
    """The attribution table of an output folder (``attribution.csv``), checked."""
    path = Path(folder) / FILES[0]
    try:
        table = pd.read_csv(path, keep_default_na=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as err:
        raise RunDirCorruptError(path, f"unreadable ({type(err).__name__}); expected an "
                                 "attribution table written by mpc-dc compare "
                                 "--attribute") from None
    return check_table(path, table)


def markdown(table: pd.DataFrame, title: str) -> str:
    """The attribution as Markdown: one table per forecaster and the sum check."""
    lines = [f"# Regret attribution: {title}", "",
             "Regret = cost of the MPC on forecasts − cost of the MPC on perfect forecasts "
             "(same horizon). Part of a channel group = cost with forecasts on that group "
             "only (perfect elsewhere) − perfect cost; interaction = total − the parts. "
             "'Perfect removes' = the regret a perfect forecast of that group alone "
             "removes, every other group forecast. Dollars rounded to the cent; the CSV "
             "holds the exact figures.", ""]
    residuals = sum_residuals(table)
    for name, rows in table.groupby("forecaster", sort=False):
        lines += [f"## {name}", "",
                  "| term | regret [$] | share [%] | perfect removes [$] | forecast MAE |",
                  "|---|---|---|---|---|"]
        for _, row in rows.iterrows():
            error = float(row["forecast_mae"])
            mae = "" if not math.isfinite(error) else f"{error:.4g} {row['mae_unit']}"
            value = ("" if row["term"] == INTERACTION
                     else money(float(row["perfect_value_usd"])))
            lines.append(f"| {row['term']} | {money(float(row['regret_usd']))} | "
                         f"{_pct(float(row['share_pct']))} | {value} | {mae} |")
        lines += ["", f"Check: parts + interaction − total = {residuals[str(name)]:.3e} $.",
                  ""]
    return "\n".join(lines)


def money(value: float) -> str:
    """Dollars to the cent (``""`` for NaN; never ``-0.00``)."""
    return "" if not math.isfinite(value) else f"{round(value, 2) + 0.0:,.2f}"


def _pct(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.1f}"


def plot(table: pd.DataFrame, title: str) -> plt.Figure:
    """Bar chart: per forecaster, each group's part, the interaction and the total
    (dark), with the regret a perfect forecast of the group removes as a marker."""
    from mpc_dc.report import plain

    names = list(dict.fromkeys(table["forecaster"]))
    terms = list(dict.fromkeys(table["term"]))
    fig, axes = plt.subplots(1, len(names), figsize=(max(6.5, 4.8 * len(names)),
                                                     0.55 * len(terms) + 1.8),
                             squeeze=False, sharex=True)
    colors = {g: plt.get_cmap("tab10")(k) for k, g in enumerate(CHANNEL_GROUPS)}
    for ax, name in zip(axes[0], names, strict=True):
        rows = table[table["forecaster"] == name].set_index("term").reindex(terms)
        values = rows["regret_usd"].astype(float).to_numpy()
        shades = [colors.get(t, "tab:gray" if t == INTERACTION else "black") for t in terms]
        y = np.arange(len(terms))
        bars = ax.barh(y, values, color=shades, alpha=0.85)
        ax.bar_label(bars, labels=[money(v) for v in values], padding=3, fontsize=8)
        removes = rows["perfect_value_usd"].astype(float).to_numpy()
        shown = np.isfinite(removes) & np.array([t not in (TOTAL, INTERACTION)
                                                 for t in terms])
        if shown.any():
            ax.plot(removes[shown], y[shown], "D", mfc="none", mec="black", ms=7,
                    label="a perfect forecast of the group\nremoves (others forecast)")
            ax.legend(fontsize=7, loc="best")
        ax.set_yticks(y, [t.replace("_", "-") for t in terms])
        ax.invert_yaxis()
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(plain(name), fontsize=10)
        ax.set_xlabel("regret vs perfect forecasts [$]")
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.2)
    fig.suptitle(f"Regret by forecast channel: {plain(title)}", fontsize=11)
    return fig


def write_attribution(out: Path, table: pd.DataFrame, title: str) -> list[Path]:
    """Write :data:`FILES` into ``out`` (each atomically); return their paths."""
    from mpc_dc.report import png

    out = Path(out)
    text = markdown(table, title)
    image = png(plot(table, title))
    return [
        write_file_atomic(out / FILES[0], lambda p: table.to_csv(p, index=False)),
        write_file_atomic(out / FILES[1], lambda p: p.write_text(text + "\n",
                                                                  encoding="utf-8")),
        write_file_atomic(out / FILES[2], lambda p: p.write_bytes(image)),
    ]


def attribute(
    scenario: Scenario,
    forecasters: Sequence[str],
    out: Path,
    *,
    workers: int = 1,
    executor: Executor = "local",
    on_report: Callable[[RunReport, int, int], object] | None = None,
    source: str | Path = SOURCE,
) -> tuple[pd.DataFrame | None, SweepOutcome]:
    """Run the attribution of ``scenario`` for each forecaster into ``out``.

    Returns the attribution table (None when a run failed: running the same call
    again retries the failed runs and skips the finished ones) and the sweep outcome.
    """
    plan = plan_runs(scenario, forecasters, source)
    outcome = run_sweep(sweep_spec(scenario, plan, source), out, executor=executor,
                        workers=workers, on_report=on_report)
    if outcome.failed:
        return None, outcome
    table = attribution_table(plan, outcome.table)
    write_attribution(out, table, scenario.name)
    logger.info("attribution written to %s", out)
    return table, outcome

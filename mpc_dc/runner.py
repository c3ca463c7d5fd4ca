"""The Python API of a run: scenario in, :class:`~mpc_dc.sim.engine.RunResult` (and a run dir) out.

>>> from mpc_dc.runner import run_scenario                                  # doctest: +SKIP
>>> from mpc_dc.scenario import default_scenario                            # doctest: +SKIP
>>> outcome = run_scenario(default_scenario())                              # doctest: +SKIP
>>> outcome.result.kpis["cost_usd"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mpc_dc.controllers import OfflinePolicy
from mpc_dc.scenario import Scenario, build_exogenous, build_policy, controller_variant
from mpc_dc.sim.engine import RunResult, simulate
from mpc_dc.sim.exogenous import RcdcExogenous

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """A finished run.

    Attributes
    ----------
    scenario : Scenario
    result : RunResult
    controller : str
    setup_time_s : float [s]
        Data loading, forecaster fitting and problem building.
    path : Path or None
        The run directory, when one was written.
    """

    scenario: Scenario
    result: RunResult
    controller: str
    setup_time_s: float
    path: Path | None = None


def run_scenario(
    scenario: Scenario,
    *,
    out: Path | None = None,
    exogenous: RcdcExogenous | None = None,
    progress: Callable[[int], object] | None = None,
    plots: bool = True,
    overwrite: bool = False,
    extra_meta: dict[str, Any] | None = None,
) -> RunOutcome:
    """Simulate ``scenario`` closed-loop; write a run directory when ``out`` is given.

    Parameters
    ----------
    scenario : Scenario
    out : Path, optional
        Run directory to write (atomically).
    exogenous : RcdcExogenous, optional
        Pre-built exogenous data (shared between the runs of a comparison).
    progress : callable, optional
        Called with 1 per simulated interval.
    plots : bool
        Write plots into the run directory.
    overwrite : bool
        Replace an existing run directory.
    extra_meta : dict, optional
        Added to ``metadata.json`` (a sweep records the run id and overrides).
    """
    from mpc_dc.rundir import check_target

    if out is not None:
        # Checked before any work so a mistake costs nothing.
        check_target(Path(out), overwrite=overwrite)
    tick = time.perf_counter()
    exo = exogenous if exogenous is not None else build_exogenous(scenario)
    policy = build_policy(scenario, exo)
    setup = time.perf_counter() - tick
    result = simulate(exo, policy, progress=progress)
    result.kpis["setup_time_s"] = setup
    result.kpis.update(result.stats.solve_kpis())
    if isinstance(policy, OfflinePolicy):
        result.kpis.update(policy.kpis())
    outcome = RunOutcome(scenario, result, policy.name, setup)
    if out is not None:
        outcome = replace(outcome, path=write_outcome(outcome, Path(out), plots=plots,
                                                     overwrite=overwrite,
                                                     extra_meta=extra_meta))
    return outcome


def write_outcome(outcome: RunOutcome, out: Path, *, plots: bool = True,
                  overwrite: bool = False, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the run directory of ``outcome`` (``extra_meta`` is added to its metadata)."""
    from mpc_dc.plots import plot_run
    from mpc_dc.rundir import write_run

    kpis = outcome.result.kpis
    meta: dict[str, Any] = {
        "scenario": outcome.scenario.name,
        "controller": outcome.controller,
        "seed": outcome.scenario.run.seed,
        "start_utc": outcome.scenario.run.start_ts.isoformat(),
        "intervals": kpis["intervals"],
        "wall_time_s": {"setup": outcome.setup_time_s, "simulation": kpis["wall_time_s"]},
        "created_utc": pd.Timestamp.now(tz="UTC").isoformat(),
        **(extra_meta or {}),
    }
    tz = outcome.scenario.run.local_tz
    return write_run(
        out,
        scenario=outcome.scenario,
        kpis=kpis,
        ledger=outcome.result.ledger,
        meta=meta,
        plot=(lambda ledger, folder: plot_run(ledger, folder, tz)) if plots else None,
        overwrite=overwrite,
    )


def no_colocation(scenario: Scenario) -> Scenario:
    """The same site without renewables, running work as it arrives (the reference)."""
    site = replace(scenario.site, renewable=replace(scenario.site.renewable, nameplate_mw=0.0))
    return replace(controller_variant(scenario, "baseline"), site=site)


OFFLINE_ROW = "offline optimum"
"""Row of :func:`compare` that every regret is measured against."""
PERFECT_ROW = "perfect forecasts, same horizon"
"""Row of :func:`compare` for the MPC with Oracle forecasts and the scenario's horizon."""
NO_COLOCATION_ROW = "no colocation"
"""Row of :func:`compare` for the site without renewables (base of the percentages)."""


def row_label(label: str) -> str:
    """The :func:`compare` row of a controller label (``oracle`` and ``perfect`` are one)."""
    if label == "offline":
        return OFFLINE_ROW
    if label in ("perfect", "oracle"):
        return PERFECT_ROW
    return label


def compare(
    scenario: Scenario,
    labels: Sequence[str],
    *,
    progress: Callable[[str, int], Callable[[int], object] | None] | None = None,
) -> pd.DataFrame:
    """Run ``scenario`` under each controller label on identical exogenous data.

    Labels: ``baseline``, ``offline``, ``perfect``/``oracle`` or a forecaster name.
    Rows: the no-colocation reference, the offline optimum and the perfect-forecast
    MPC with the scenario's horizon (both added when not asked for), then the other
    labels in the order given.

    Regret is measured against the offline optimum (perfect foresight over the
    whole run): ``regret_usd`` = cost − offline cost [$]. ``regret_pct`` is in %
    of the no-colocation cost, the same base as ``savings_pct``, so that
    ``regret_pct = savings_pct(offline) − savings_pct(row)``: the offline cost
    itself is net of export revenue and can be near zero or negative, which would
    inflate or flip a percentage of it (NaN when the no-colocation cost is not
    positive). The perfect-forecast row is not the reference: with a billing-period
    demand charge a rolling horizon is not perfect foresight.

    Columns: cost [$], profit vs no colocation [$] (= savings), savings [%],
    regret [$, %], ``mip_gap_pct`` (largest relative MIP gap a solve of the row
    ended with [%]; the offline row's is the gap of its whole-run solve; NaN
    without solves), ``solves_not_optimal`` (solves a limit stopped), deadline
    misses [WU], fallbacks, solve time median [ms], wall time [s].
    """
    exo = build_exogenous(scenario)
    rows: dict[str, dict[str, Any]] = {}
    # Same realized series; only the site loses its renewable plant.
    ref_scenario = no_colocation(scenario)
    reference = run_scenario(ref_scenario, exogenous=replace(exo, config=ref_scenario.site))
    rows[NO_COLOCATION_ROW] = _row(reference)
    wanted = {OFFLINE_ROW: "offline", PERFECT_ROW: "perfect"}
    for label in labels:
        wanted.setdefault(row_label(label), label)
    for row, label in wanted.items():
        callback = progress(label, exo.n_steps) if progress is not None else None
        outcome = run_scenario(controller_variant(scenario, label), exogenous=exo,
                               progress=callback)
        rows[row] = _row(outcome)
    table = pd.DataFrame.from_dict(rows, orient="index")
    base_cost = rows[NO_COLOCATION_ROW]["cost_usd"]
    pct_base = base_cost if base_cost > 0 else float("nan")
    table["profit_vs_no_colocation_usd"] = base_cost - table["cost_usd"]
    table["savings_pct"] = 100.0 * table["profit_vs_no_colocation_usd"] / pct_base
    table["regret_usd"] = table["cost_usd"] - rows[OFFLINE_ROW]["cost_usd"]
    table["regret_pct"] = 100.0 * table["regret_usd"] / pct_base
    return table


def _row(outcome: RunOutcome) -> dict[str, Any]:
    k = outcome.result.kpis
    return {
        "controller": outcome.controller,
        "cost_usd": k["cost_usd"],
        "energy_import_usd": k["energy_import_usd"],
        "export_revenue_usd": k["export_revenue_usd"],
        "demand_charge_usd": k["demand_charge_usd"],
        "import_mwh": k["import_mwh"],
        "export_mwh": k["export_mwh"],
        "peak_import_mw": k["peak_import_mw"],
        "deadline_missed_wu": k["work_df_missed_wu"],
        "fallbacks": k["fallbacks_total"],
        "mip_gap_pct": 100.0 * k["mip_gap_max"] if k["solves"] else float("nan"),
        "solves_not_optimal": k["solves"] - k["solve_statuses"].get("optimal", 0),
        "solve_median_ms": 1000.0 * k["solve_time_median_s"],
        "wall_time_s": k["wall_time_s"] + k["setup_time_s"],
    }

"""The closed loop as a simpy discrete-event simulation.

Four processes form a pipeline around each 15-minute boundary, linked by stores so
the order of events within one instant is fixed:

``controller`` ─decision→ ``plant`` ─record (at t+Δ)→ ``replay`` ─→ ``meter``
─boundary→ ``controller``

* controller (at ``t``): builds the observation (backlog, peak-to-date, battery) and
  asks the policy for the decision of ``[t, t+Δ)``;
* plant: executes it against the realized exogenous data, waits Δ;
* replay (at ``t+Δ``): releases the deferrable work submitted during the
  interval (the next window's batch; under ``on_arrival`` the plant released it
  into the interval itself), expires missed deadlines, and hands the policy the
  realized values published by ``t+Δ`` (no lookahead: a 15-min value now, an
  hourly one at the end of its hour,
  :meth:`~mpc_dc.sim.exogenous.RcdcExogenous.published_during`);
* meter: settles the interval at the realized prices; the demand charge on the
  last interval of each billing period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import simpy
from threadpoolctl import threadpool_limits

from mpc_dc.controllers import ControllerStats, Observation, Policy
from mpc_dc.params.site import BatteryParams
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.exogenous import RcdcExogenous
from mpc_dc.sim.invariants import InvariantError, check_battery_ledger
from mpc_dc.sim.meter import COST_COLUMNS, Meter, Penalties, net_cost_usd
from mpc_dc.sim.plant import IntervalRecord, RcdcPlant
from traces.grid import STEP, STEP_H

logger = logging.getLogger(__name__)

STEP_S = int(STEP.total_seconds())
_RECORD_FIELDS = tuple(f.name for f in fields(IntervalRecord))
"""Ledger columns from :class:`IntervalRecord`, all scalars (so no ``asdict`` deep copy)."""


@dataclass(frozen=True)
class RunResult:
    """Outcome of one closed-loop run.

    Attributes
    ----------
    ledger : DataFrame
        One row per interval (index: interval start, UTC), flows [MW], work [WU],
        prices [$/MWh] and cost components [$].
    kpis : dict
        Headline figures (see :func:`compute_kpis`).
    backlog : Backlog
        Deferrable work at the end of the run.
    stats : ControllerStats
    battery : BatteryParams or None
        The site's battery (for the state-of-charge check).
    initial_battery_mwh : float [MWh]
        Battery energy at the run start.
    """

    ledger: pd.DataFrame
    kpis: dict[str, Any]
    backlog: Backlog
    stats: ControllerStats
    battery: BatteryParams | None = None
    initial_battery_mwh: float = 0.0


def simulate(
    exo: RcdcExogenous,
    policy: Policy,
    *,
    penalties: Penalties | None = None,
    progress: Callable[[int], object] | None = None,
) -> RunResult:
    """Run ``policy`` closed-loop over the run period of ``exo``.

    Parameters
    ----------
    exo : RcdcExogenous
    policy : Policy
    penalties : Penalties, optional
    progress : callable, optional
        Called with 1 after each interval (e.g. ``tqdm.update``).
    """
    wall = time.perf_counter()
    env = simpy.Environment()
    plant = RcdcPlant(exo.config, exo.initial_battery_mwh)
    meter = Meter(exo.config.grid.tariff, exo.local_tz, penalties or Penalties())
    backlog = exo.initial_backlog()
    decisions: simpy.Store = simpy.Store(env)
    records: simpy.Store = simpy.Store(env)
    settle: simpy.Store = simpy.Store(env)
    boundaries: simpy.Store = simpy.Store(env)
    rows: list[dict[str, Any]] = []
    n = exo.n_steps
    # Billing period of every interval, computed once (a time-zone conversion each).
    periods = meter.billing_periods(pd.DatetimeIndex(exo.frame.index))

    def controller() -> Generator[simpy.Event, Any, None]:
        while True:
            step = yield boundaries.get()
            if step >= n:
                return
            obs = Observation(
                step=step,
                time=exo.time(step),
                backlog=backlog,
                peak_import_to_date_mw=meter.peak_to_date(periods[step]),
                battery_energy_mwh=plant.battery_energy_mwh,
            )
            tick = time.perf_counter()
            decision = policy.decide(obs)
            yield decisions.put((step, decision, time.perf_counter() - tick))

    def run_plant() -> Generator[simpy.Event, Any, None]:
        while True:
            step, decision, decide_s = yield decisions.get()
            if exo.releases_on_arrival:
                # Work arriving during the interval may run in it, like non-deferrable work.
                backlog.release(exo.deferrable_arrival_wu(step), exo.window_deadline(step))
            try:
                record = plant.execute(step, decision, exo.realized(step), backlog)
            except InvariantError as err:
                raise err.at(exo.time(step)) from None
            yield env.timeout(STEP_S)
            yield records.put((record, decide_s))

    def replay() -> Generator[simpy.Event, Any, None]:
        while True:
            record, decide_s = yield records.get()
            step = record.step
            arrival = exo.deferrable_arrival_wu(step)
            if not exo.releases_on_arrival:
                backlog.release(arrival, exo.window_deadline(step + 1))
            missed = backlog.expire(step + 1)
            # Only what is published by now: an hourly value at the end of its hour.
            for when, values in exo.published_during(step):
                policy.observe(when, values)
            yield settle.put((record, decide_s, arrival, missed))

    def run_meter() -> Generator[simpy.Event, Any, None]:
        while True:
            record, decide_s, arrival, missed = yield settle.get()
            step = record.step
            realized = exo.realized(step)
            costs = meter.settle(
                periods[step],
                import_mw=record.import_mw,
                export_mw=record.export_mw,
                import_price_usd_per_mwh=realized.import_price_usd_per_mwh,
                export_price_usd_per_mwh=realized.export_price_usd_per_mwh,
                unserved_wu=record.work_nd_unserved_wu,
                missed_wu=missed,
                period_ends=step == n - 1 or periods[step + 1] != periods[step],
            )
            rows.append(
                {
                    **{name: getattr(record, name) for name in _RECORD_FIELDS},
                    "import_price_usd_per_mwh": realized.import_price_usd_per_mwh,
                    "export_price_usd_per_mwh": realized.export_price_usd_per_mwh,
                    "renewable_cf": realized.renewable_cf,
                    "work_df_arrived_wu": arrival,
                    "work_df_missed_wu": missed,
                    "backlog_wu": backlog.total_wu,
                    "decide_time_s": decide_s,
                    **costs,
                }
            )
            if progress is not None:
                progress(1)
            yield boundaries.put(step + 1)

    for process in (controller, run_plant, replay, run_meter):
        env.process(process())
    boundaries.put(0)
    # The loop's linear algebra is tiny (Kalman filters, 3x3 states): multi-threaded
    # BLAS only adds synchronisation (forecasters/statistical.py has the measurement).
    with threadpool_limits(limits=1, user_api="blas"):
        env.run()
    if len(rows) != n:
        raise RuntimeError(f"simulation ended after {len(rows)} of {n} intervals")
    ledger = pd.DataFrame(
        rows, index=pd.DatetimeIndex([exo.time(r["step"]) for r in rows], name="interval_start_utc")
    )
    stats = getattr(policy, "stats", ControllerStats())
    kpis = compute_kpis(ledger, backlog, stats, time.perf_counter() - wall)
    kpis["work_df_arrived_wu"] += exo.batch_wu(0)
    result = RunResult(ledger=ledger, kpis=kpis, backlog=backlog, stats=stats,
                       battery=exo.config.battery, initial_battery_mwh=exo.initial_battery_mwh)
    check_invariants(result)
    return result


def compute_kpis(
    ledger: pd.DataFrame, backlog: Backlog, stats: ControllerStats, wall_time_s: float
) -> dict[str, Any]:
    """Headline figures of a run (costs [$], energy [MWh], work [WU], times [s])."""
    energy = (
        ledger[
            [
                "import_mw",
                "export_mw",
                "renewable_used_mw",
                "curtailed_mw",
                "renewable_available_mw",
                "site_load_mw",
            ]
        ].sum()
        * STEP_H
    )
    solve = np.asarray(stats.solve_times_s, dtype=float)
    highs = np.asarray(stats.highs_times_s, dtype=float)
    kpis: dict[str, Any] = {
        "intervals": len(ledger),
        "cost_usd": net_cost_usd(ledger),
        **{c: float(ledger[c].sum()) for c in COST_COLUMNS},
        "import_mwh": float(energy["import_mw"]),
        "export_mwh": float(energy["export_mw"]),
        "site_energy_mwh": float(energy["site_load_mw"]),
        "renewable_available_mwh": float(energy["renewable_available_mw"]),
        "renewable_used_mwh": float(energy["renewable_used_mw"]),
        "curtailed_mwh": float(energy["curtailed_mw"]),
        "self_consumption_mwh": float(energy["renewable_used_mw"] - energy["export_mw"]),
        "self_consumption_share": float(
            (energy["renewable_used_mw"] - energy["export_mw"]) / energy["site_load_mw"]
            if energy["site_load_mw"]
            else 0.0
        ),
        "peak_import_mw": float(ledger["import_mw"].max()),
        "work_nd_wu": float(ledger["work_nd_wu"].sum()),
        "work_nd_unserved_wu": float(ledger["work_nd_unserved_wu"].sum()),
        "work_df_arrived_wu": float(ledger["work_df_arrived_wu"].sum()),
        "work_df_done_wu": backlog.done_wu,
        "work_df_missed_wu": backlog.missed_wu,
        "work_df_pending_end_wu": backlog.total_wu,
        "deadline_miss_intervals": int((ledger["work_df_missed_wu"] > 1e-9).sum()),
        "solves": stats.solves,
        "fallbacks": dict(stats.fallbacks),
        "fallbacks_total": int(sum(stats.fallbacks.values())),
        "faults": dict(stats.faults),
        "formulations": dict(stats.formulations),
        "solve_time_median_s": float(np.median(solve)) if solve.size else 0.0,
        "solve_time_p95_s": float(np.percentile(solve, 95)) if solve.size else 0.0,
        "highs_time_median_s": float(np.nanmedian(highs)) if highs.size else 0.0,
        "decide_time_total_s": float(ledger["decide_time_s"].sum()),
        "wall_time_s": wall_time_s,
    }
    return kpis


def check_invariants(result: RunResult) -> None:
    """Check that the run's books close.

    * energy balance each interval (re-checked from the ledger);
    * import · export = 0 each interval;
    * battery state of charge: each interval follows from the previous one with the
      efficiencies and stays within its capacity (:func:`check_battery_ledger`);
    * deferrable work conserved: arrived (initial batch + submissions) = done +
      pending + missed;
    * settlement equals the ledger summed.

    Raises
    ------
    InvariantError
        One line naming the first interval (or the run total) that does not close.
    """
    led = result.ledger
    lhs = led["import_mw"] - led["export_mw"]
    rhs = (
        led["site_load_mw"]
        + led["battery_charge_mw"]
        - led["battery_discharge_mw"]
        - led["renewable_used_mw"]
    )
    off = (lhs - rhs).abs().to_numpy()
    if off.size and off.max() > 1e-6 * max(1.0, float(led["site_load_mw"].abs().max())):
        k = int(np.argmax(off))
        raise InvariantError(f"energy balance violated by {off[k]:.6g} MW", k, led.index[k])
    both = ((led["import_mw"] > 1e-7) & (led["export_mw"] > 1e-7)).to_numpy()
    if both.any():
        k = int(np.argmax(both))
        raise InvariantError("simultaneous import and export in the ledger", k, led.index[k])
    check_battery_ledger(led, result.battery, result.initial_battery_mwh)
    result.backlog.check_conservation()
    released = float(result.kpis["work_df_arrived_wu"])
    if abs(released - result.backlog.released_wu) > 1e-6 * max(1.0, released):
        raise InvariantError(
            f"released deferrable work {result.backlog.released_wu:.6f} WU != arrivals "
            f"{released:.6f} WU")
    done = float(led["work_df_done_wu"].sum())
    if abs(done - result.backlog.done_wu) > 1e-6 * max(1.0, done):
        raise InvariantError(
            f"deferrable work done {done:.6f} WU in the ledger != backlog's "
            f"{result.backlog.done_wu:.6f} WU")
    if abs(net_cost_usd(led) - result.kpis["cost_usd"]) > 1e-6 * max(
        1.0, abs(result.kpis["cost_usd"])
    ):
        raise InvariantError(
            f"settlement {result.kpis['cost_usd']:.2f} $ != the ledger summed "
            f"{net_cost_usd(led):.2f} $")

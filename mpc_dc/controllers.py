"""Controllers (policies): observation in, decision out. The simulator never sees cvxpy.

* :class:`BaselinePolicy` — no scheduling: deferrable work runs as soon as it is
  released, as fast as the site allows.
* :class:`MpcPolicy` — every 15 minutes: forecast every exogenous series over the
  horizon, set the parameters of the problem built once, solve, commit the first
  interval. With :class:`~forecasters.oracle.Oracle` forecasters it is the
  perfect-foresight controller (``perfect``).
* :class:`OfflinePolicy` — one solve over the whole run on the true data, then the
  plan is replayed: the offline full-horizon optimum.

Fallback chain of :class:`MpcPolicy` (each use logged with its reason and counted):
exact/auto solve → relaxed LP with repair → rule-based safe action (the baseline's
"as soon as possible" rule, which meets every deadline that can be met).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd

from forecasters.base import BaseForecaster, Forecaster
from mpc_dc.problem import (
    Formulation,
    HorizonInputs,
    InfeasibleInputError,
    Plan,
    PlantState,
    RcdcProblem,
    SolveResult,
    SolverOptions,
    SolveStatus,
    earliest_completion_wu,
    max_work_per_interval_wu,
)
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.exogenous import RcdcExogenous, deferrable_releases, window_end
from mpc_dc.sim.plant import Decision
from traces.grid import STEP

logger = logging.getLogger(__name__)

SOLVER_EXCEPTIONS: tuple[type[Exception], ...] = (RuntimeError, ValueError, ArithmeticError)
"""Exceptions a solve may raise (HiGHS/cvxpy trouble) that trigger the fallback chain."""


@dataclass(frozen=True)
class Observation:
    """What a controller sees at the start of interval ``step``.

    Attributes
    ----------
    step : int
        Interval index from the start of the run.
    time : Timestamp
        Interval start (UTC).
    backlog : Backlog
        Released, unfinished deferrable work (read it, do not change it).
    peak_import_to_date_mw : float [MW]
        Peak import so far in the current billing period.
    battery_energy_mwh : float [MWh]
    """

    step: int
    time: pd.Timestamp
    backlog: Backlog
    peak_import_to_date_mw: float
    battery_energy_mwh: float


class Policy(Protocol):
    """A controller."""

    name: str

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        """Receive realized exogenous values of the interval that started at ``time``.

        Called when they are published (an hourly value at the end of its hour), in
        time order per channel; ``values`` holds the channels published for that
        interval, possibly not all of them.
        """
        ...

    def decide(self, obs: Observation) -> Decision:
        """The decision for the interval starting at ``obs.time``."""
        ...


@dataclass
class ControllerStats:
    """Counters reported in the KPIs.

    Attributes
    ----------
    statuses : Counter[str]
        Solves per :class:`~mpc_dc.problem.SolveStatus`; ``feasible`` counts solves a
        time or gap limit stopped before the MIP tolerance was proven.
    mip_gap_max : float [-]
        Largest relative MIP gap any solve ended with (0 for LPs).
    """

    solves: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    solve_times_s: list[float] = field(default_factory=list)
    highs_times_s: list[float] = field(default_factory=list)
    formulations: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    mip_gap_max: float = 0.0

    def record(self, result: SolveResult) -> None:
        """Count one solve, its times, its status and its final MIP gap."""
        self.solves += 1
        self.solve_times_s.append(result.solve_time_s)
        self.highs_times_s.append(result.highs_time_s)
        self.formulations[str(result.formulation)] += 1
        self.statuses[str(result.status)] += 1
        if result.status.has_plan and np.isfinite(result.mip_gap):
            self.mip_gap_max = max(self.mip_gap_max, float(result.mip_gap))

    def solve_kpis(self) -> dict[str, Any]:
        """KPIs on the quality of the solves: statuses and the largest MIP gap [-]."""
        return {"solve_statuses": dict(self.statuses), "mip_gap_max": self.mip_gap_max}


def build_horizon(
    exo: RcdcExogenous,
    obs: Observation,
    forecasts: dict[str, np.ndarray],
    horizon_steps: int,
    deadline_margin_steps: int = 0,
) -> tuple[HorizonInputs, PlantState]:
    """Problem inputs and state for the horizon starting at ``obs``.

    Parameters
    ----------
    exo : RcdcExogenous
        Only its rules (tariff, share, deadlines, run length) are used.
    obs : Observation
    forecasts : dict[str, ndarray]
        Channel values for ``min(H, steps left)`` intervals from ``obs.time``.
    horizon_steps : int
        H. Intervals beyond the run end are padded: nothing arrives, nothing is
        priced, so the run is a closed finite problem.
    deadline_margin_steps : int
        The plan finishes deferrable work this many intervals before each deadline
        (never before the current interval): a hedge against under-forecast
        non-deferrable work taking the capacity the plan counted on.
    """
    H = horizon_steps
    n = len(forecasts["workload_wu"])
    import_price, export_price = exo.tariff_prices(forecasts["price_usd_per_mwh"])
    cf = np.clip(forecasts["renewable_cf"], 0.0, 1.0)
    pad = np.zeros(H - n)
    work = np.concatenate([np.maximum(forecasts["workload_wu"], 0.0), pad])
    inputs = HorizonInputs(
        np.concatenate([import_price, pad]),
        np.concatenate([export_price, pad]),
        np.concatenate([cf, pad]),
        (1.0 - exo.deferrable_share) * work,
    )
    due, available = obs.backlog.cumulative(obs.step, H, margin_steps=deadline_margin_steps)
    # Deferrable work released inside the horizon, by the loop's release rule on the
    # workload forecast. A window batch released at obs.step is in the backlog already.
    released = np.zeros(H)
    released[:n] = deferrable_releases(work[:n], exo.deferrable_share, exo.window_steps,
                                       exo.deferrable_release, first_step=obs.step,
                                       run_steps=exo.n_steps)
    if not exo.releases_on_arrival:
        released[0] = 0.0
    j = np.flatnonzero(released)
    ends = window_end(obs.step + j, exo.window_steps, exo.n_steps) - obs.step
    due_at = np.maximum(ends - deadline_margin_steps, j)
    due_new = np.zeros(H)
    np.add.at(due_new, due_at[due_at < H], released[j][due_at < H])
    state = PlantState(
        df_due_cum_wu=due + np.cumsum(due_new),
        df_available_cum_wu=available + np.cumsum(released),
        peak_import_to_date_mw=obs.peak_import_to_date_mw,
        battery_energy_mwh=obs.battery_energy_mwh,
    )
    return inputs, state


class BaselinePolicy:
    """No scheduling: process all released deferrable work at once (capped by the plant)."""

    name = "baseline"

    def __init__(self) -> None:
        self.stats = ControllerStats()

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        """Nothing to learn."""

    def decide(self, obs: Observation) -> Decision:
        """Run the whole backlog now."""
        return safe_action(obs, "baseline")


def safe_action(obs: Observation, source: str) -> Decision:
    """Rule-based fallback: the baseline's as-soon-as-possible rule."""
    return Decision(work_df_wu=obs.backlog.total_wu, source=source)


class MpcPolicy:
    """Receding-horizon MPC on forecasts; commits only the first interval.

    Parameters
    ----------
    exogenous : RcdcExogenous
        The run's definition (prices and tariff rule, deferrable share, deadlines,
        run length). Only its *rules* are used here, never its future values: the
        forecasters are the controller's only view of the future.
    forecasters : dict[str, Forecaster]
        One per channel of :data:`~mpc_dc.sim.exogenous.CHANNELS`, already fitted on
        the history before the run.
    horizon_steps : int
        H; with ``horizon_to_end`` the problem is built for the whole run and the
        horizon always reaches the run end.
    options : SolverOptions
    fault_rate : float [-]
        Test switch: the share of steps on which the solver is made to fail.
    fault_seed : int
    deadline_margin_steps : int
        See :func:`build_horizon`.
    """

    def __init__(
        self,
        exogenous: RcdcExogenous,
        forecasters: dict[str, Forecaster],
        horizon_steps: int = 96,
        *,
        horizon_to_end: bool = False,
        options: SolverOptions | None = None,
        fault_rate: float = 0.0,
        fault_seed: int = 0,
        deadline_margin_steps: int = 0,
        name: str = "mpc",
    ) -> None:
        self.name = name
        self.exogenous = exogenous
        self.forecasters = forecasters
        self.horizon_steps = exogenous.n_steps if horizon_to_end else horizon_steps
        self.options = options or SolverOptions()
        self.problem = RcdcProblem(exogenous.config, self.horizon_steps, "auto", self.options)
        self._relaxed: RcdcProblem | None = None
        self.deadline_margin_steps = deadline_margin_steps
        self.fault_rate = fault_rate
        self._fault_rng = np.random.default_rng(fault_seed)
        self.stats = ControllerStats()
        self._pending: dict[str, list[tuple[pd.Timestamp, float]]] = {c: [] for c in forecasters}

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        """Queue published values; forecasters are updated lazily before the next forecast."""
        for channel, value in values.items():
            rows = self._pending.get(channel)
            if rows is not None:
                rows.append((time, value))

    def _flush(self) -> None:
        for channel, rows in self._pending.items():
            if not rows:
                continue
            forecaster = self.forecasters[channel]
            if isinstance(forecaster, BaseForecaster) and (
                rows[-1][0] - rows[0][0] == (len(rows) - 1) * STEP
            ):
                # Consecutive intervals (one per step, or an hour's four quarters at
                # once): the first must be cutoff + 15 min, which update_values
                # checks; no index is needed.
                forecaster.update_values(rows[0][0], np.array([v for _, v in rows], dtype=float))
            else:
                index = pd.DatetimeIndex([t for t, _ in rows], name="interval_start_utc")
                forecaster.update(pd.Series([v for _, v in rows], index=index))
            rows.clear()

    def forecast(self, time: pd.Timestamp, steps: int) -> dict[str, np.ndarray]:
        """Point forecasts of every channel for ``steps`` intervals from ``time``."""
        self._flush()
        out: dict[str, np.ndarray] = {}
        for channel, forecaster in self.forecasters.items():
            if isinstance(forecaster, BaseForecaster):
                values = forecaster.predict_values(time, steps)
            else:
                values = forecaster.predict(time, steps).to_numpy(dtype=float)
            if not np.all(np.isfinite(values)):
                self.stats.faults["nan_forecast"] += 1
                logger.warning(
                    "non-finite %s forecast at %s; holding the last finite value", channel, time
                )
                values = pd.Series(values).ffill().fillna(0.0).to_numpy()
            out[channel] = values
        return out

    def horizon_inputs(self, obs: Observation) -> tuple[HorizonInputs, PlantState]:
        """Problem inputs and state at ``obs`` from forecasts and the observed state."""
        n = min(self.horizon_steps, self.exogenous.n_steps - obs.step)
        return build_horizon(self.exogenous, obs, self.forecast(obs.time, n), self.horizon_steps,
                             self.deadline_margin_steps)

    def decide(self, obs: Observation) -> Decision:
        """Forecast, solve (with the fallback chain), commit the first interval."""
        inputs, state = self._feasible(*self.horizon_inputs(obs))
        if self.fault_rate > 0 and self._fault_rng.random() < self.fault_rate:
            self.stats.faults["injected_solver_failure"] += 1
            return self._fallback(obs, inputs, state, "injected solver failure")
        try:
            result = self.problem.solve(inputs, state)
        except InfeasibleInputError as err:
            return self._fallback(obs, inputs, state, f"infeasible forecast: {err}", relaxed=False)
        except SOLVER_EXCEPTIONS as err:
            # A crashing solver must not end the run: count it and fall back.
            self.stats.faults["solver_exception"] += 1
            return self._fallback(obs, inputs, state,
                                  f"solver raised {type(err).__name__}: {err}")
        self.stats.record(result)
        if result.status.has_plan and result.plan is not None:
            return _first_interval(result, "mpc")
        return self._fallback(obs, inputs, state, f"{result.status}: {result.message}")

    def _feasible(
        self, inputs: HorizonInputs, state: PlantState
    ) -> tuple[HorizonInputs, PlantState]:
        """Project forecast inputs onto what the site can do.

        A forecast may predict more non-deferrable work than the site can run, or
        leave too little room to meet a deadline. The plan then does what it can:
        non-deferrable work is capped at capacity and each deadline asks for no
        more than the earliest-possible completion. Counted as faults, since the
        plant, not the plan, will reveal the real shortfall.
        """
        cap = max_work_per_interval_wu(self.exogenous.config, inputs)
        if np.any(inputs.work_nd_wu > cap):
            self.stats.faults["forecast_above_capacity"] += 1
            inputs = replace(inputs, work_nd_wu=np.minimum(inputs.work_nd_wu, cap))
        reachable = earliest_completion_wu(self.exogenous.config, inputs, state, wmax=cap)
        due = state.df_due_cum_wu
        if np.any(reachable < due - 1e-9 * (1.0 + due)):
            self.stats.faults["deadline_unreachable_in_forecast"] += 1
            state = replace(state, df_due_cum_wu=np.maximum.accumulate(np.minimum(due, reachable)))
        return inputs, state

    def _fallback(
        self,
        obs: Observation,
        inputs: HorizonInputs,
        state: PlantState,
        reason: str,
        *,
        relaxed: bool = True,
    ) -> Decision:
        if relaxed:
            if self._relaxed is None:
                self._relaxed = RcdcProblem(
                    self.exogenous.config, self.horizon_steps, Formulation.RELAXED, self.options
                )
            try:
                result = self._relaxed.solve(inputs, state)
            except InfeasibleInputError as err:
                self.stats.fallbacks["rule"] += 1
                logger.warning("step %d: %s; relaxation infeasible too (%s); committed the "
                               "rule-based safe action", obs.step, reason, err)
                return safe_action(obs, "fallback:rule")
            except SOLVER_EXCEPTIONS as err:
                self.stats.fallbacks["rule"] += 1
                logger.warning("step %d: %s; relaxation raised %s (%s); committed the "
                               "rule-based safe action", obs.step, reason,
                               type(err).__name__, err)
                return safe_action(obs, "fallback:rule")
            if result.status.has_plan and result.plan is not None:
                self.stats.fallbacks["relaxed_repair"] += 1
                logger.warning(
                    "step %d: %s; committed the repaired LP relaxation", obs.step, reason
                )
                self.stats.record(result)
                return _first_interval(result, "fallback:relaxed")
            reason = f"{reason}; relaxation also failed ({result.status})"
        self.stats.fallbacks["rule"] += 1
        logger.warning("step %d: %s; committed the rule-based safe action", obs.step, reason)
        return safe_action(obs, "fallback:rule")


def plan_decision(plan: Plan, k: int, source: str) -> Decision:
    """The decision of interval ``k`` of ``plan``: everything the plant must execute."""
    return Decision(
        work_df_wu=float(plan.work_df_wu[k]),
        battery_charge_mw=float(plan.battery_charge_mw[k]),
        battery_discharge_mw=float(plan.battery_discharge_mw[k]),
        curtailed_mw=float(plan.curtailed_mw[k]),
        planned_import_mw=float(plan.import_mw[k]),
        planned_export_mw=float(plan.export_mw[k]),
        source=source,
    )


def _first_interval(result: SolveResult, source: str) -> Decision:
    plan = result.plan
    assert plan is not None
    return plan_decision(plan, 0, source)


class OfflinePolicy:
    """The offline full-horizon optimum on the true data, replayed interval by interval.

    Not causal by construction: it is the reference the causal controllers are
    measured against, so it is solved with its own options (the scenario's
    ``controller.offline_time_limit_s`` and ``controller.offline_mip_rel_gap``, not the
    MPC's per-step ones), and a solve that a limit stopped before the tolerance was
    proven is logged as a warning and reported (:meth:`kpis`), never taken silently
    as optimal.

    Parameters
    ----------
    exogenous : RcdcExogenous
    options : SolverOptions, optional
        Options of the one whole-run solve (binaries integer on every interval).

    Raises
    ------
    RuntimeError
        When HiGHS ends without any plan (e.g. the time limit reached before a first
        incumbent); the message names the limit.
    """

    name = "offline"

    def __init__(self, exogenous: RcdcExogenous, options: SolverOptions | None = None) -> None:
        self.stats = ControllerStats()
        self.options = replace(options or SolverOptions(), integer_intervals=None)
        horizon = exogenous.n_steps
        problem = RcdcProblem(exogenous.config, horizon, "auto", self.options)
        obs = Observation(
            0, exogenous.start, exogenous.initial_backlog(), 0.0, exogenous.initial_battery_mwh
        )
        truth = {c: exogenous.frame[c].to_numpy(dtype=float) for c in exogenous.channels}
        inputs, state = build_horizon(exogenous, obs, truth, horizon)
        result = problem.solve(inputs, state)
        self.stats.record(result)
        if not result.status.has_plan or result.plan is None:
            raise RuntimeError(
                f"offline optimum not found: {result.status} ({result.message}) within the "
                f"offline time limit of {self.options.time_limit_s:g} s "
                "(controller.offline_time_limit_s)")
        if result.status is not SolveStatus.OPTIMAL:
            logger.warning(
                "offline optimum not proven: HiGHS stopped with a %.4g %% MIP gap "
                "(tolerance %.3g, time limit %g s: controller.offline_mip_rel_gap, "
                "controller.offline_time_limit_s); regrets against it are reported with "
                "that gap", 100.0 * result.mip_gap, self.options.mip_rel_gap,
                self.options.time_limit_s)
        self.result = result
        self.plan = result.plan

    def kpis(self) -> dict[str, Any]:
        """The offline solve in the KPIs.

        ``offline_status`` (``optimal``, or ``feasible`` when a limit stopped it),
        ``offline_mip_gap`` [-] (the relative MIP gap HiGHS ended with: distance from
        the plan's objective to the best proven bound, relative to the objective; 0
        for an LP) and ``offline_plan_cost_usd`` [$] (the plan's cost on the true
        data, before replay). Its solve time is ``solve_time_median_s`` (one solve).
        """
        return {
            "offline_status": str(self.result.status),
            "offline_mip_gap": float(self.result.mip_gap),
            "offline_plan_cost_usd": float(self.result.objective_usd),
        }

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        """Nothing to learn."""

    def decide(self, obs: Observation) -> Decision:
        """The offline plan's interval ``obs.step``."""
        return plan_decision(self.plan, obs.step, "offline")


"""The receding-horizon controller of a site: forecast, solve, commit the first interval.

Every 15 minutes :meth:`MpcPolicy.decide` turns the simulator's
:class:`~mpc_dc.sim.policy.Observation` and the channels' forecasts
(:mod:`mpc_dc.control.forecasting`) into the problem's inputs
(:func:`build_horizon`), solves the one problem of the site
(:class:`mpc_dc.problem.Problem`, built once) and commits interval 0 of the plan:
deferrable work, battery set-points, curtailment and planned grid flows per campus;
instances per pool and routing shares per model (:meth:`~mpc_dc.problem.Plan.decision`).

The horizon (:func:`build_horizon`), per campus
-------------------------------------------------
* prices: the forecast market price through the campus's tariff (π⁺, π⁻);
  carbon, renewable capacity factor (clipped to [0, 1]) as forecast;
* other IT: of the forecast workload ``W``, ``(1 − s) W`` is non-deferrable; the
  deferrable share is released inside the horizon by the campus's release rule
  (:func:`~mpc_dc.sim.exogenous.deferrable_releases`; a batch released at the
  current step is in the backlog already) and due by its window's end; with the
  released backlog (:meth:`~mpc_dc.sim.policy.CampusObservation.backlog_cumulative`)
  this gives the cumulative due and available work. A deadline margin brings every
  deadline forward (never before the current interval), and the non-deferrable work
  is planned at an upper quantile of its forecast (``controller.work_nd_quantile``):
  two hedges against under-forecast non-deferrable work taking the capacity the plan
  counted on. The quantile reserves capacity in proportion to the forecast's own
  uncertainty in every interval; the margin leaves the last intervals of each window
  idle whatever the prices there;
* state: billing-period peak import to date, battery energy;
* beyond the run end nothing arrives and nothing is priced: the run is a closed
  finite problem (as the offline optimum's).

Per model (:meth:`MpcPolicy.demand`): the token demand forecast, provisioned at a
quantile (``controller.demand_quantile``: queues grow in the bursts a point forecast
averages away; where the forecaster's spread is unknown yet, the fleet's serving
capacity, :func:`serving_capacity_tokens_per_s`); nowcast: the demand observed in the
last published interval ``y`` blended into the first hours,
``+ exp(−d/τ) (y − f)`` with ``d`` the time from the end of that interval to the end of
each planned one and ``f`` the point forecast (:mod:`forecasters.nowcast`;
``controller.nowcast_tau_h``, not for the Oracle, which needs no nowcast; the
quantile provisioned is shifted by the same amount); plus the
requests queued now, drained within the target time ``T`` on top of the forecast
arrivals: queue × mean output tokens per request observed so far / ``T`` in every
interval of ``[0, T)`` (``controller.backlog_drain_h``; with ``T`` = 15 min all of it
in the first interval, the feedback that clears a queue the forecast did not
foresee). What the plan cannot serve in time it carries and pays for when the
problem has the lateness block (``lateness``, :mod:`mpc_dc.blocks.lateness`). The
demand-response schedule (event flags and baseline) and the GPUs available are
known ahead and read from the run's data. Instances running or starting are the
fleet state; without switching flexibility the constant fleet may be re-sized at
the run start and at each local midnight (``run.local_tz``).

Price and renewable nowcast (:meth:`MpcPolicy.signal_nowcast`): the same blend of the
last published value into the point forecast of each price and renewable channel
(``controller.price_nowcast_tau_h``, ``controller.renewable_nowcast_tau_h``; not for
the Oracle), and the same shift of the price quantile read for curtailment. An hourly
price published at the end of its hour is 15–45 min older at the quarters after it:
``d`` counts from the end of the last interval published.

Curtailment (:meth:`MpcPolicy.confident_curtailment`): the plan curtails renewable
output while importing where the forecast import price is negative (paid to import);
the plant executes it whatever the realized price (which is not known when the
interval starts: the plant decides on no price the controller could not see). The
MPC commits it only where the forecast distribution puts the price of the committed
interval below zero with at least ``controller.curtail_confidence`` (its quantile at
that level is negative); elsewhere the renewable output serves the load. A surplus is
exported or spilled by the plant on the export price the plan was made on (the
committed interval's point forecast with the nowcast; the Oracle's: the truth),
which every decision carries (:attr:`~mpc_dc.sim.policy.CampusDecision.export_price_usd_per_mwh`).

Before solving, the inputs are projected on what the site can do
(:meth:`MpcPolicy.project`): non-deferrable work above capacity is capped, each
deadline asks no more than the earliest possible completion (counted as faults).

Fallback chain (each use logged with its reason and counted in ``stats.fallbacks``):
the committed form (round-and-fix of the committed interval's instance counts, the
exactness binaries integer there) → the LP relaxation of the relaxed formulation
with its first interval's instances rounded as round-and-fix rounds them
(:meth:`~mpc_dc.problem.Problem.round_first_interval`) → the rule-based safe action
(:func:`~mpc_dc.control.baseline.rule_decision`: the whole backlog, the rule fleet
for the forecast demand). A warm floor of instances per model is kept on every
committed decision. Injected faults (:mod:`mpc_dc.sim.faults`) fail the solve calls
of this chain where they are made; the horizon holds only what is known at the step
(:func:`mpc_dc.control.faults.known_now`: DR events announced, GPUs observed).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mpc_dc.control.baseline import rule_decision, with_min_instances
from mpc_dc.control.dr_notices import DrNotices
from mpc_dc.control.faults import known_now
from mpc_dc.control.forecasting import ChannelForecasts, group
from mpc_dc.problem import (
    Form,
    Formulation,
    HorizonInputs,
    InfeasibleInputError,
    LatenessPrices,
    PlantState,
    Problem,
    SolveResult,
    SolverOptions,
    earliest_completion_wu,
    max_work_per_interval_wu,
    with_instances,
)
from mpc_dc.sim.exogenous import SiteExogenous, column, deferrable_releases, window_end
from mpc_dc.sim.policy import CampusObservation, Decision, Observation
from mpc_dc.site.config import Site, tariff_prices
from traces.grid import STEP, local_days

if TYPE_CHECKING:
    from mpc_dc.sim.faults import FaultInjector

logger = logging.getLogger(__name__)

NOWCAST_GROUPS = ("demand", "price", "renewable")
"""Channel groups the MPC can nowcast (``nowcast_tau_steps``): the demand in
:meth:`MpcPolicy.demand`, prices and renewable output in :meth:`MpcPolicy.signal_nowcast`."""

SOLVER_EXCEPTIONS: tuple[type[Exception], ...] = (RuntimeError, ValueError, ArithmeticError)
"""Exceptions a solve may raise (HiGHS/cvxpy trouble) that trigger the fallback chain."""


@dataclass
class ControllerStats:
    """Counters of a controller, read by the simulator's KPIs.

    Attributes
    ----------
    solves : int
        Solves run (the committed form and the fallback LP each count one).
    fallbacks : Counter[str]
        Decisions not from the committed form, by path: ``lp_repair``, ``rule``.
    faults : Counter[str]
        Faults met: ``solver_exception``, ``nan_forecast``, ``forecaster_raised``,
        ``stale_forecast_used``, ``held_feed_value``, ``forecast_above_capacity``,
        ``deadline_unreachable_in_forecast``.
    solve_times_s, highs_times_s : list of float [s]
        Wall time of each solve; HiGHS's own time.
    formulations, forms, statuses : Counter[str]
        Solves per formulation, form and :class:`~mpc_dc.problem.SolveStatus`
        (``feasible``: a time or gap limit stopped it before its tolerance).
    mip_gap_max : float [-]
        Largest relative MIP gap a solve with a plan ended with (0 for LPs; NaN gaps,
        a tail left relaxed, are not counted).
    time_limit_hits : int
        Solves HiGHS stopped on its wall-clock limit in at least one run
        (:attr:`~mpc_dc.problem.SolveResult.time_limit_hit`): a run with any is not
        reproducible (its decisions depend on the machine's load).
    node_limit_hits : int
        Solves HiGHS stopped on its branch-and-bound node limit in at least one MIP
        run (:attr:`~mpc_dc.problem.SolveResult.node_limit_hit`): reproducible, but
        that run's plan is its incumbent at the limit, not the optimum to the gap.
    warm_start_failures : int
        Warm-started LP runs HiGHS failed on, each re-solved cold
        (:attr:`~mpc_dc.problem.SolveResult.warm_start_failures`): costs time, not
        the plan.
    chunk_mip_repairs, repairs_skipped : int
        Round-and-fix chunks repaired by a chunk MIP / kept as rounded with a token
        loss within ``controller.repair_token_share``
        (:attr:`~mpc_dc.problem.SolveResult.repairs_skipped`).
    """

    solves: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    solve_times_s: list[float] = field(default_factory=list)
    highs_times_s: list[float] = field(default_factory=list)
    formulations: Counter[str] = field(default_factory=Counter)
    forms: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    mip_gap_max: float = 0.0
    time_limit_hits: int = 0
    node_limit_hits: int = 0
    warm_start_failures: int = 0
    chunk_mip_repairs: int = 0
    repairs_skipped: int = 0

    def record(self, result: SolveResult) -> None:
        """Count one solve: times, formulation, form, status, final MIP gap, wall-clock
        and node-limit stops and warm starts re-solved cold."""
        self.solves += 1
        self.solve_times_s.append(result.solve_time_s)
        self.highs_times_s.append(result.highs_time_s)
        self.formulations[str(result.formulation)] += 1
        self.forms[str(result.form)] += 1
        self.statuses[str(result.status)] += 1
        self.time_limit_hits += int(result.time_limit_hit)
        self.node_limit_hits += int(result.node_limit_hit)
        self.warm_start_failures += result.warm_start_failures
        self.chunk_mip_repairs += result.chunk_mip_repairs
        self.repairs_skipped += result.repairs_skipped
        if result.status.has_plan and np.isfinite(result.mip_gap):
            self.mip_gap_max = max(self.mip_gap_max, float(result.mip_gap))


# ----------------------------------------------------------------------------- horizon


def run_slice(exo: SiteExogenous, col: str, step: int, n: int) -> np.ndarray:
    """Values of frame column ``col`` over run intervals ``[step, step + n)``."""
    first = exo.history_steps + step
    return exo.frame[col].to_numpy(dtype=float)[first: first + n]


def truth_values(exo: SiteExogenous, step: int, n: int) -> dict[str, np.ndarray]:
    """Every forecast channel's realized values over run intervals ``[step, step + n)``
    (the offline optimum's and the DR baseline's inputs)."""
    from mpc_dc.control.forecasting import channels

    return {c: run_slice(exo, c, step, n) for c in channels(exo.site)}


def start_observation(exo: SiteExogenous, step: int) -> Observation:
    """An observation at ``step`` with only the deferrable work released at it (the
    first windows' batches at step 0): the state an offline plan starts from."""
    campuses: dict[str, CampusObservation] = {}
    for c in exo.site.campuses:
        backlog: tuple[tuple[int, float], ...] = ()
        oit = c.other_it
        if oit is not None and oit.release == "window_start" and step % oit.window_steps == 0:
            amount = exo.batch_wu(c.name, step)
            if amount > 0:
                backlog = ((exo.window_deadline(c.name, step), amount),)
        battery = 0.0 if c.battery is None else c.battery.initial_energy_mwh
        campuses[c.name] = CampusObservation(backlog, 0.0, battery)
    return Observation(step=step, time=exo.time(step), campuses=campuses)


def build_horizon(
    exo: SiteExogenous,
    obs: Observation,
    values: Mapping[str, np.ndarray],
    horizon_steps: int,
    *,
    demand_tokens_per_s: np.ndarray | None = None,
    deadline_margin_steps: int = 0,
    may_reprovision: bool = True,
) -> tuple[HorizonInputs, PlantState]:
    """Problem inputs and state for the horizon starting at ``obs`` (module docstring).

    Parameters
    ----------
    exo : SiteExogenous
        Its rules (tariffs, deferrable shares and windows, run length) and what is
        known ahead (DR schedule, GPUs available); never its future channel values.
    obs : Observation
    values : Mapping[str, ndarray]
        Each channel (:func:`~mpc_dc.control.forecasting.channels`) over the
        ``n = min(H, steps left)`` intervals from ``obs.step``: forecasts, or the truth.
    horizon_steps : int
        H; intervals past the run end are padded (nothing arrives, nothing is priced).
    demand_tokens_per_s : ndarray (M, n), optional
        Token demand to plan for (default: the ``tokens_per_s[M]`` values).
    deadline_margin_steps : int
    may_reprovision : bool
        Sw off: whether the constant fleet may be re-sized at this step.
    """
    site = exo.site
    H, step = horizon_steps, obs.step
    n = min(H, exo.n_steps - step)
    C = len(site.campuses)
    price_im, price_ex = np.zeros((C, H)), np.zeros((C, H))
    carbon, cf, work_nd = np.zeros((C, H)), np.zeros((C, H)), np.zeros((C, H))
    due, available = np.zeros((C, H)), np.zeros((C, H))
    for i, c in enumerate(site.campuses):
        pi_im, pi_ex = tariff_prices(values[column("price_usd_per_mwh", c.name)][:n],
                                     c.grid.tariff)
        price_im[i, :n], price_ex[i, :n] = pi_im, pi_ex
        carbon_col = column("carbon_gco2_per_kwh", c.name)
        if carbon_col in values:  # not forecast where carbon has no price
            carbon[i, :n] = np.maximum(values[carbon_col][:n], 0.0)
        if c.renewable is not None:
            cf[i, :n] = np.clip(values[column("renewable_cf", c.name)][:n], 0.0, 1.0)
        oit = c.other_it
        if oit is None:
            continue
        work = np.maximum(values[column("workload_wu", c.name)][:n], 0.0)
        work_nd[i, :n] = (1.0 - oit.deferrable_share) * work
        d0, a0 = obs.campuses[c.name].backlog_cumulative(step, H,
                                                         margin_steps=deadline_margin_steps)
        # Deferrable work released inside the horizon, by the loop's release rule on
        # the workload values. A window batch released at obs.step is in the backlog.
        released = np.zeros(H)
        released[:n] = deferrable_releases(work, oit.deferrable_share, oit.window_steps,
                                           oit.release, first_step=step, run_steps=exo.n_steps)
        if oit.release != "on_arrival":
            released[0] = 0.0
        j = np.flatnonzero(released)
        ends = window_end(step + j, oit.window_steps, exo.n_steps) - step
        due_at = np.maximum(ends - deadline_margin_steps, j)
        due_new = np.zeros(H)
        inside = due_at < H
        np.add.at(due_new, due_at[inside], released[j][inside])
        due[i], available[i] = d0 + np.cumsum(due_new), a0 + np.cumsum(released)
    M = len(site.models)
    demand = np.zeros((M, H))
    if M:
        given = (np.vstack([values[column("tokens_per_s", m)][:n] for m in site.models])
                 if demand_tokens_per_s is None else np.asarray(demand_tokens_per_s))
        demand[:, :n] = np.maximum(given[:, :n], 0.0)
    optional: dict[str, Any] = {}
    events = [column("dr_event", c.name) for c in site.campuses]
    if any(e in exo.frame.columns for e in events):
        flags = np.zeros((C, H))
        base = np.zeros((C, H))
        for i, c in enumerate(site.campuses):
            if events[i] in exo.frame.columns:
                flags[i, :n] = np.nan_to_num(run_slice(exo, events[i], step, n)) > 0.5
                name = column("dr_baseline_mw", c.name)
                if name in exo.frame.columns:
                    base[i, :n] = np.where(flags[i, :n] > 0, np.nan_to_num(
                        run_slice(exo, name, step, n)), 0.0)
        optional.update(dr_event=flags, dr_baseline_mw=base)
    gpu_cols = [column("gpus_available", c.name) for c in site.campuses]
    if any(g in exo.frame.columns for g in gpu_cols):
        gpus = np.array([[float(c.gpus)] * H for c in site.campuses])
        for i, g in enumerate(gpu_cols):
            if g in exo.frame.columns:
                gpus[i, :n] = np.nan_to_num(run_slice(exo, g, step, n), nan=gpus[i, 0])
        optional["gpus_available"] = gpus
    inputs = HorizonInputs.build(site, H, import_price_usd_per_mwh=price_im,
                                 export_price_usd_per_mwh=price_ex, demand_tokens_per_s=demand,
                                 carbon_gco2_per_kwh=carbon, renewable_cf=cf,
                                 work_nd_wu=work_nd, **optional)
    state = PlantState(
        instances_running=obs.fleet(), may_reprovision=may_reprovision,
        df_due_cum_wu=due, df_available_cum_wu=available,
        peak_import_to_date_mw=np.array([obs.campuses[c.name].peak_import_to_date_mw
                                         for c in site.campuses]),
        battery_energy_mwh=np.array([obs.campuses[c.name].battery_energy_mwh
                                     for c in site.campuses]))
    return inputs, state


def has_dr_events(exo: SiteExogenous) -> bool:
    """Whether any campus has a demand-response event in the run."""
    cols = [column("dr_event", c.name) for c in exo.site.campuses]
    return any(c in exo.frame.columns and bool((run_slice(exo, c, 0, exo.n_steps) > 0.5).any())
               for c in cols)


def drain_shares(drain_steps: float, n: int) -> np.ndarray:
    """Share of each of ``n`` intervals inside the drain window ``[0, T)`` (T =
    ``drain_steps`` intervals, > 0): ``clip(T − k, 0, 1)`` [-]; they sum to T (within n)."""
    return np.clip(drain_steps - np.arange(n), 0.0, 1.0)


def tokens_per_request(exo: SiteExogenous) -> np.ndarray:
    """Mean output tokens per request of each model (``site.models`` order) over the
    history a planner knows at the run start [tokens]: the workload's token mix
    (``exo.request_mix``), else the published demand history, else 1."""
    out = np.ones(len(exo.site.models))
    for m, model in enumerate(exo.site.models):
        mix = exo.request_mix.get(model)
        if mix is not None:
            out[m] = mix.response_tokens
            continue
        tok = exo.published_history(column("tokens_per_s", model)).to_numpy(dtype=float)
        req = exo.published_history(column("requests_per_h", model)).to_numpy(dtype=float)
        ok = np.isfinite(tok) & np.isfinite(req)
        if req[ok].sum() > 0:
            out[m] = max(float(tok[ok].sum()) * 3600.0 / float(req[ok].sum()), 1.0)
    return out


def lateness_prices(exo: SiteExogenous, late_usd_per_request: float,
                    late_usd_per_s: float, congestion_share: float = 0.0,
                    congestion_weights: tuple[tuple[float, ...], ...] = (),
                    warmup: bool = False) -> LatenessPrices | None:
    """The lateness block's prices per token from prices per request [$/request] and
    per second late [$/s], on each model's mean output tokens per request
    (:func:`tokens_per_request`), with the congestion share [-] or per-model knee
    weights [-] (:func:`mpc_dc.blocks.lateness.define_congestion`), and whether the
    warm-up overload is priced (:func:`mpc_dc.blocks.lateness.define_warmup_overload`);
    None without pools or when both prices are 0."""
    if not exo.site.pools:
        return None
    return LatenessPrices.per_request(late_usd_per_request, late_usd_per_s,
                                      tokens_per_request(exo), congestion_share,
                                      congestion_weights, warmup)


def serving_capacity_tokens_per_s(site: Site) -> np.ndarray:
    """Most each model could be served at with the whole fleet to itself [tokens/s].

    ``cap[m] = Σ_c max_q floor(G[c] / g[m,q]) · ρ̄ · μ[m,q]``, per model in
    ``site.models`` order (an upper bound: the models share the GPUs).
    """
    fleet = site.fleet
    out = np.zeros(len(site.models))
    if fleet is None:
        return out
    for i, m in enumerate(site.models):
        for c in site.campuses:
            out[i] += max(((c.gpus // fleet.table.get(m, q).gpus_per_instance)
                           * fleet.utilization_cap * fleet.capacity(m, q)
                           for q in fleet.precisions(m)), default=0.0)
    return out


def project(site: Site, inputs: HorizonInputs, state: PlantState, faults: Counter[str]
            ) -> tuple[HorizonInputs, PlantState]:
    """Inputs on what the site can do: non-deferrable work capped at capacity, each
    deadline asking no more than the earliest completion (each counted in ``faults``:
    the plant, not the plan, will reveal the real shortfall)."""
    cap = max_work_per_interval_wu(site, inputs)
    if np.any(inputs.work_nd_wu > cap):
        faults["forecast_above_capacity"] += 1
        inputs = inputs.with_fields(work_nd_wu=np.minimum(inputs.work_nd_wu, cap))
    due = state.df_due_cum_wu
    if due is not None and due.any():
        reachable = earliest_completion_wu(site, inputs, state, wmax=cap)
        if np.any(reachable < due - 1e-9 * (1.0 + due)):
            faults["deadline_unreachable_in_forecast"] += 1
            state = replace(state,
                            df_due_cum_wu=np.maximum.accumulate(np.minimum(due, reachable),
                                                                axis=1))
    return inputs, state


# ----------------------------------------------------------------------------- policy


class MpcPolicy:
    """Receding-horizon MPC on forecasts; commits only the first interval.

    Parameters
    ----------
    exo : SiteExogenous
        The run's definition: its rules and what is known ahead (module docstring),
        never its future channel values (the forecasts are the only view of those).
    forecasts : ChannelForecasts
        Fitted on the history before the run.
    horizon_steps : int
        H; with ``horizon_to_end`` the problem spans the whole run and the horizon
        always reaches its end, at 15-min resolution, with whole instances in every
        interval (as the offline optimum has them).
    options : SolverOptions, optional
        Default: one committed interval, its binaries integer, the tail relaxed.
    demand_quantile : float, optional
        Provision this quantile of the demand forecast (None: the point forecast).
    min_instances_per_model : int [instances]
        Warm floor on every committed decision.
    deadline_margin_steps : int [intervals]
    work_nd_quantile : float, optional
        Plan the non-deferrable other-IT work at this quantile of its forecast (None:
        the point forecast).
    curtail_confidence : float [-]
        Commit a planned curtailment while importing only where the import price is
        negative with at least this probability (0.5: the point forecast's sign).
    lateness : LatenessPrices, optional
        Carry and price the backlog the plan leaves (the lateness block); None: what a
        column cannot serve is unserved.
    nowcast_tau_steps : float or Mapping[str, float] [intervals]
        Time constant of the nowcast per channel group of :data:`NOWCAST_GROUPS`
        (absent or 0: none); a float is the demand's.
    drain_steps : float [intervals]
        Target time to drain an observed queue, on top of the forecast arrivals (> 0).
    faults : FaultInjector, optional
        Fails the solve calls where it injects solver faults (:mod:`mpc_dc.sim.faults`).
    name : str
    """

    def __init__(
        self,
        exo: SiteExogenous,
        forecasts: ChannelForecasts,
        horizon_steps: int = 96,
        *,
        horizon_to_end: bool = False,
        options: SolverOptions | None = None,
        demand_quantile: float | None = None,
        min_instances_per_model: int = 0,
        deadline_margin_steps: int = 0,
        work_nd_quantile: float | None = None,
        curtail_confidence: float = 0.5,
        lateness: LatenessPrices | None = None,
        nowcast_tau_steps: float | Mapping[str, float] = 0.0,
        drain_steps: float = 1.0,
        faults: FaultInjector | None = None,
        name: str = "mpc",
    ) -> None:
        taus = (dict(nowcast_tau_steps) if isinstance(nowcast_tau_steps, Mapping)
                else {"demand": float(nowcast_tau_steps)})
        if (not set(taus) <= set(NOWCAST_GROUPS) or not all(t >= 0 for t in taus.values())
                or not drain_steps > 0):
            raise ValueError(f"MpcPolicy: expected nowcast_tau_steps >= 0 (per group of "
                             f"{NOWCAST_GROUPS}) and drain_steps > 0, got "
                             f"{nowcast_tau_steps!r} and {drain_steps!r}")
        self.name = name
        self.exo = exo
        self.site = exo.site
        self.stats = ControllerStats()
        self.forecasts = forecasts
        forecasts.faults = self.stats.faults
        forecasts.published = self._published
        self.horizon_steps = exo.n_steps if horizon_to_end else horizon_steps
        # An MPC commits one interval: its binaries are integer there only (DESIGN.md 4).
        self.options = options or SolverOptions(binary_intervals=1)
        if horizon_to_end and self.site.pools:
            # The offline optimum counts whole instances in every interval. A relaxed
            # tail runs fractions of idle instances at a fraction of their power, so the
            # plan defers work to power it does not have: the to-the-end MPC would solve
            # another problem than the offline one (3 x its cost on the combined site of
            # tests/test_combined_loop.py). Rounded at once: one LP re-solve per step.
            self.options = replace(self.options, committed_intervals=self.horizon_steps,
                                   round_chunk_intervals=self.horizon_steps, fine_steps=None)
        self.demand_response = has_dr_events(exo)
        self.lateness = lateness
        self.dr_notices = DrNotices(exo)
        self.problem = Problem(self.site, self.horizon_steps, self.options,
                               demand_response=self.demand_response, lateness=lateness)
        self._relaxed: Problem | None = None
        self.demand_quantile = demand_quantile
        self.min_instances_per_model = min_instances_per_model
        self.deadline_margin_steps = deadline_margin_steps
        self.work_nd_quantile = work_nd_quantile
        self.curtail_confidence = float(curtail_confidence)
        self.nowcast_tau = {g: float(t) for g, t in taus.items()}
        # What the price and renewable nowcast added to the last horizon's point
        # forecasts, and its issue time (the curtailment's quantile is shifted alike).
        self._signal_shifts: tuple[pd.Timestamp, dict[str, np.ndarray]] | None = None
        self.drain_steps = float(drain_steps)
        self.injector = faults
        self._capacity = serving_capacity_tokens_per_s(self.site)
        self._tz = exo.local_tz
        # Whether each run interval starts at a local midnight, by its UTC start [ns]:
        # converted once for the run rather than a Timestamp per step.
        run_index = pd.DatetimeIndex(exo.run_index)
        self._midnight: dict[int, bool] = dict(zip(
            run_index.as_unit("ns").asi8.tolist(),
            (local_days(run_index, self._tz)[1] == 0).tolist(), strict=True))
        self.last_result: SolveResult | None = None
        self.last_inputs: tuple[HorizonInputs, PlantState] | None = None
        # Output tokens and requests seen so far per model (mean tokens per request).
        self._tokens_seen = np.zeros(len(self.site.models))
        self._requests_seen = np.zeros(len(self.site.models))
        for m, model in enumerate(self.site.models):
            tok = exo.published_history(column("tokens_per_s", model)).to_numpy(dtype=float)
            req = exo.published_history(column("requests_per_h", model)).to_numpy(dtype=float)
            ok = np.isfinite(tok) & np.isfinite(req)
            self._tokens_seen[m] = float(tok[ok].sum()) * STEP.total_seconds()
            self._requests_seen[m] = float(req[ok].sum()) * STEP.total_seconds() / 3600.0

    # -- observations -------------------------------------------------------------------
    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Queue published values for the forecasters; count tokens and requests seen;
        keep the DR baselines announced."""
        self.forecasts.observe(time, values)
        self.dr_notices.observe(time, values)
        for m, model in enumerate(self.site.models):
            tok = values.get(column("tokens_per_s", model))
            req = values.get(column("requests_per_h", model))
            if tok is not None and req is not None and np.isfinite(tok) and np.isfinite(req):
                self._tokens_seen[m] += float(tok) * STEP.total_seconds()
                self._requests_seen[m] += float(req) * STEP.total_seconds() / 3600.0

    def _published(self, channel: str, time: pd.Timestamp) -> pd.Timestamp:
        """Last interval of ``channel`` its publication rule has delivered by ``time``."""
        return self.exo.last_published(channel, int((time - self.exo.run_start) // STEP))

    # -- the horizon --------------------------------------------------------------------
    def demand(self, obs: Observation, n: int, point: Mapping[str, np.ndarray]) -> np.ndarray:
        """Token demand to provision (M, n) [tokens/s]: the forecast at the quantile, the
        nowcast and the queue drained within the target time (module docstring)."""
        models = self.site.models
        if not models:
            return np.zeros((0, n))
        points = np.vstack([point[column("tokens_per_s", m)] for m in models])
        if self.demand_quantile is None:
            rows = points
        else:
            rows = np.vstack([self.forecasts.quantile(column("tokens_per_s", m), obs.time, n,
                                                      self.demand_quantile) for m in models])
        rows = rows + self.nowcast(obs, points)
        demand = np.maximum(rows, 0.0)
        # A quantile whose spread is not known yet is +inf, not the point forecast:
        # provision what the fleet can serve until the spread is known.
        demand = np.where(np.isfinite(demand), demand, self._capacity[:, None])
        queue = obs.queue_by_model()
        share = drain_shares(self.drain_steps, n) / self.drain_steps
        for m, model in enumerate(models):
            q = queue.get(model, 0.0)
            if q > 0 and self._requests_seen[m] > 0:
                demand[m] += (q * self._tokens_seen[m] / self._requests_seen[m]
                              / STEP.total_seconds()) * share
        return demand

    def nowcast(self, obs: Observation, points: np.ndarray) -> np.ndarray:
        """What the nowcast adds to the demand forecast (M, n) [tokens/s]: the last
        published demand blended in with weights decaying from the end of its interval
        (:meth:`ChannelForecasts.nowcast`); zeros without a time constant or an
        observation."""
        tau = self.nowcast_tau.get("demand", 0.0)
        return np.vstack([self.forecasts.nowcast(column("tokens_per_s", m), obs.time,
                                                 points[i], tau)
                          for i, m in enumerate(self.site.models)])

    def signal_nowcast(self, obs: Observation, point: Mapping[str, np.ndarray]
                       ) -> dict[str, np.ndarray]:
        """What the nowcast adds to the point forecast of each price and renewable
        channel with a time constant (n,) [channel units]
        (:meth:`ChannelForecasts.nowcast`; the demand's is in :meth:`demand`)."""
        shifts: dict[str, np.ndarray] = {}
        for channel, values in point.items():
            kind = group(channel)
            tau = self.nowcast_tau.get(kind, 0.0)
            if kind != "demand" and tau > 0:
                shifts[channel] = self.forecasts.nowcast(channel, obs.time, values, tau)
        return shifts

    def may_reprovision(self, obs: Observation) -> bool:
        """Sw off: the constant fleet is sized at the run start and each local midnight."""
        if obs.step == 0:
            return True
        midnight = self._midnight.get(pd.Timestamp(obs.time).value)
        if midnight is None:  # not a run interval (a caller's own observation)
            midnight = bool(local_days(pd.DatetimeIndex([obs.time]), self._tz)[1][0] == 0)
        return midnight

    def horizon_inputs(self, obs: Observation) -> tuple[HorizonInputs, PlantState]:
        """Inputs and state at ``obs`` from the forecasts and the observed state."""
        n = min(self.horizon_steps, self.exo.n_steps - obs.step)
        point = self.forecasts.predict(obs.time, n)
        shifts = self.signal_nowcast(obs, point)
        self._signal_shifts = (pd.Timestamp(obs.time), shifts)
        point = {c: v + shifts[c] if c in shifts else v for c, v in point.items()}
        inputs, state = build_horizon(self.exo, obs, point, self.horizon_steps,
                                      demand_tokens_per_s=self.demand(obs, n, point),
                                      deadline_margin_steps=self.deadline_margin_steps,
                                      may_reprovision=self.may_reprovision(obs))
        if self.work_nd_quantile is not None:
            inputs = inputs.with_fields(work_nd_wu=self.reserved_work_nd(
                obs, n, inputs.work_nd_wu, self.work_nd_quantile))
        return self.dr_notices.apply(obs.step, known_now(self.exo, obs, inputs)), state

    def reserved_work_nd(self, obs: Observation, n: int, work_nd: np.ndarray,
                         level: float) -> np.ndarray:
        """Non-deferrable work to reserve capacity for (C, H) [WU]: ``(1 − s)`` times the
        ``level`` quantile of each campus's workload forecast over the first ``n``
        intervals; ``work_nd`` (the point forecast's) where the quantile is not finite
        (its spread not known yet) and past ``n``."""
        out = np.array(work_nd, dtype=float, copy=True)
        for i, c in enumerate(self.site.campuses):
            if c.other_it is None:
                continue
            q = self.forecasts.quantile(column("workload_wu", c.name), obs.time, n,
                                        level)[:n]
            reserved = (1.0 - c.other_it.deferrable_share) * np.maximum(q, 0.0)
            out[i, :n] = np.where(np.isfinite(reserved), reserved, out[i, :n])
        return out

    def confident_curtailment(self, obs: Observation, decision: Decision) -> Decision:
        """``decision`` with each campus's curtailment withdrawn unless the
        ``curtail_confidence`` quantile of its import price forecast for the committed
        interval is negative (module docstring), shifted as the point forecast by the
        price nowcast. Withdrawing it only lowers the import: the renewable output it
        frees serves the load."""
        campuses = dict(decision.campuses)
        shifts = ({} if self._signal_shifts is None or self._signal_shifts[0] != obs.time
                  else self._signal_shifts[1])
        for c in self.site.campuses:
            own = decision.campus(c.name)
            if own.curtailed_mw <= 0.0 or c.renewable is None:
                continue
            channel = column("price_usd_per_mwh", c.name)
            q = self.forecasts.quantile(channel, obs.time, 1, self.curtail_confidence)[:1]
            if channel in shifts:
                q = q + shifts[channel][:1]
            import_price, _ = tariff_prices(q, c.grid.tariff)
            # An unknown spread (+inf at a level above the median) is no confidence.
            if not import_price[0] < 0.0:
                logger.debug("step %d: %s: curtailment of %.4f MW withdrawn (import price "
                             "at the %.2f quantile %.2f $/MWh)", obs.step, c.name,
                             own.curtailed_mw, self.curtail_confidence, import_price[0])
                campuses[c.name] = replace(own, curtailed_mw=0.0)
        if campuses == dict(decision.campuses):
            return decision
        return replace(decision, campuses=campuses)

    # -- decide -------------------------------------------------------------------------
    def decide(self, obs: Observation) -> Decision:
        """Forecast, solve (with the fallback chain), commit the first interval."""
        inputs, state = project(self.site, *self.horizon_inputs(obs), self.stats.faults)
        self.last_inputs = (inputs, state)
        decision = self._decide(obs, inputs, state)
        if self.curtail_confidence > 0.5:
            decision = self.confident_curtailment(obs, decision)
        fleet = with_min_instances(self.site, decision.fleet, obs.fleet(),
                                   self.min_instances_per_model)
        return decision if fleet is decision.fleet else replace(decision, fleet=fleet)

    def _decide(self, obs: Observation, inputs: HorizonInputs, state: PlantState) -> Decision:
        try:
            if self.injector is not None:
                self.injector.solve("main", obs.step)
            result = self.problem.solve(inputs, state, Form.COMMITTED_INTEGER)
        except InfeasibleInputError as err:
            return self._fallback(obs, inputs, state, f"infeasible forecast: {err}",
                                  relaxed=False)
        except SOLVER_EXCEPTIONS as err:
            # A crashing solver must not end the run: count it and fall back.
            self.stats.faults["solver_exception"] += 1
            return self._fallback(obs, inputs, state,
                                  f"solver raised {type(err).__name__}: {err}")
        self.stats.record(result)
        self.last_result = result
        if result.status.has_plan and result.plan is not None:
            return result.plan.decision(0, "mpc")
        return self._fallback(obs, inputs, state, f"{result.status}: {result.message}")

    def relaxed_problem(self) -> Problem:
        """The LP relaxation's problem (relaxed formulation), built on first use."""
        if self._relaxed is None:
            self._relaxed = Problem(self.site, self.horizon_steps, self.options,
                                    formulation=Formulation.RELAXED,
                                    demand_response=self.demand_response,
                                    lateness=self.lateness)
        return self._relaxed

    def _fallback(self, obs: Observation, inputs: HorizonInputs, state: PlantState,
                  reason: str, *, relaxed: bool = True) -> Decision:
        if relaxed:
            problem = self.relaxed_problem()
            try:
                if self.injector is not None:
                    self.injector.solve("fallback", obs.step)
                lp = problem.solve(inputs, state, Form.LP)
            except SOLVER_EXCEPTIONS as err:
                reason = f"{reason}; the LP raised {type(err).__name__} ({err})"
            else:
                self.stats.record(lp)
                if lp.status.has_plan and lp.plan is not None:
                    self.stats.fallbacks["lp_repair"] += 1
                    logger.warning("step %d: %s; committed the LP relaxation with its first "
                                   "interval rounded", obs.step, reason)
                    plan = lp.plan
                    if self.site.pools:
                        plan = with_instances(plan, problem.round_first_interval(plan))
                    return plan.decision(0, "fallback:lp_repair")
                reason = f"{reason}; the LP failed too ({lp.status}: {lp.message})"
        self.stats.fallbacks["rule"] += 1
        logger.warning("step %d: %s; committed the rule-based safe action", obs.step, reason)
        return rule_decision(self.site, obs, list(inputs.demand_tokens_per_s[:, 0]),
                             "fallback:rule")

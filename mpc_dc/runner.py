"""The Python API of a run: scenario in, :class:`~mpc_dc.sim.engine.RunResult` (and a run dir) out.

>>> from mpc_dc.runner import run_scenario                                  # doctest: +SKIP
>>> from mpc_dc.site.scenario import default_scenario                       # doctest: +SKIP
>>> outcome = run_scenario(default_scenario())                              # doctest: +SKIP
>>> outcome.result.kpis["cost_usd"]                                          # doctest: +SKIP

A run (:func:`run_scenario`): the exogenous data (:func:`mpc_dc.site.data.build_site_exogenous`,
synthetic or real per campus), the capacity the optimizer plans with on the workload's
token mix (:func:`with_capacity`), the demand-response baseline (:func:`dr_baseline`),
the controller of ``[controller]`` (:func:`build_policy`), the faults of ``[faults]``
(:func:`fault_injector`), the closed loop (:func:`mpc_dc.sim.engine.simulate`) and the
run directory
(:func:`mpc_dc.sim.engine.save_run`). :func:`compare` runs one scenario under several
controllers on identical data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from forecasters.base import InsufficientHistoryError
from mpc_dc.blocks.lateness import calibrated_knee_weights
from mpc_dc.control.baseline import BaselinePolicy
from mpc_dc.control.forecasting import (
    ChannelForecasts,
    ForecastErrors,
    choices,
    make_forecasters,
)
from mpc_dc.control.mpc import (
    MpcPolicy,
    build_horizon,
    lateness_prices,
    start_observation,
    truth_values,
)
from mpc_dc.control.offline import OfflinePolicy
from mpc_dc.params.power_line import workload_power_lines
from mpc_dc.policy import PolicyContext, make_policy
from mpc_dc.problem import LatenessPrices, Problem, SolverOptions, SolveStatus, solve_day
from mpc_dc.sim.bursts import BURST_UTILISATIONS
from mpc_dc.sim.dr_program import exogenous_lead_in_days, with_notice
from mpc_dc.sim.engine import RunResult, save_run, simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.faults import FaultInjector, FaultSpec
from mpc_dc.sim.meter import pct_of_costs
from mpc_dc.sim.policy import Policy
from mpc_dc.sim.publication import PublicationLagError
from mpc_dc.sim.serving import workload_capacity
from mpc_dc.site.config import Fleet, Site
from mpc_dc.site.data import SOURCE, DataFiles, build_site_exogenous, errors_name
from mpc_dc.site.scenario import (
    ControllerSpec,
    Scenario,
    controller_variant,
    scenario_to_mapping,
)
from traces.datasets import DEFAULT_MAX_GAP
from traces.errors import ConfigError
from traces.grid import STEPS_PER_DAY

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """A finished run.

    Attributes
    ----------
    scenario : Scenario
        As run: the capacity the optimizer planned with filled in.
    result : RunResult
    controller : str
    setup_time_s : float [s]
        Data, DR baseline, forecaster fitting and problem building.
    path : Path or None
        The run directory, when one was written.
    """

    scenario: Scenario
    result: RunResult
    controller: str
    setup_time_s: float
    path: Path | None = None


# ----------------------------------------------------------------------------- data


def with_capacity(scenario: Scenario, exo: SiteExogenous) -> Scenario:
    """``scenario`` with ``fleet.capacity_tokens_per_s`` and the power line
    (``fleet.power_intercept_w``, ``fleet.power_slope_j_per_token``) filled from the
    workload.

    Every pool the scenario does not set gets
    :func:`~mpc_dc.sim.serving.workload_capacity` on the history's token mix
    (``exo.request_mix``) at the serving TPOT targets, and
    :func:`~mpc_dc.params.power_line.workload_power_lines` at ``ρ̄`` times that
    capacity: the optimizer then plans with the throughput the simulator's curves
    give on these requests, and with the power they draw at the planned utilisation.
    """
    fleet = scenario.fleet
    if fleet is None:
        return scenario
    found = workload_capacity(scenario.site, exo.request_mix, scenario.serving.tpot_slo_s)
    capacity = {**found, **fleet.capacity_tokens_per_s}
    lines = workload_power_lines(scenario.site, exo.request_mix, capacity)
    filled = replace(
        fleet, capacity_tokens_per_s=capacity,
        power_intercept_w={**{k: v.intercept_w for k, v in lines.items()},
                           **fleet.power_intercept_w},
        power_slope_j_per_token={**{k: v.slope_j_per_token for k, v in lines.items()},
                                 **fleet.power_slope_j_per_token})
    return scenario if filled == fleet else replace(scenario, fleet=filled)


def workload_figures(fleet: Fleet, base: Fleet) -> Fleet:
    """``fleet`` with the workload figures :func:`with_capacity` filled in ``base``
    (capacity and power line): a variant of a prepared scenario plans as it does."""
    return replace(fleet, capacity_tokens_per_s=base.capacity_tokens_per_s,
                   power_intercept_w=base.power_intercept_w,
                   power_slope_j_per_token=base.power_slope_j_per_token)


def dr_baseline(scenario: Scenario, exo: SiteExogenous) -> dict[str, np.ndarray] | None:
    """The DR baseline of each campus over the run [MW] under ``site.dr.baseline =
    "s1_plan"``: S1's offline day plan (``prior_days``: :mod:`mpc_dc.sim.dr_program`).

    On each DR day (``[dr] days``, local days of ``run.local_tz``): the import of the
    site's business-as-usual plan of that day — the fleet without flexibility (S1)
    and every other block as configured, planned on the day's realized data, with
    no DR programme — as in the DR study. A day that is not 96 intervals (a
    daylight-saving day) gets no baseline (0, with a warning). None without events.
    """
    if not scenario.dr.days:
        return None
    site = scenario.site
    if site.fleet is not None:
        site = replace(site, fleet=replace(site.fleet, flexibility="S1"))
    # An offline day plan: the offline node limit keeps it machine-independent.
    nodes = scenario.controller.offline_mip_max_nodes
    problem = Problem(site, STEPS_PER_DAY, SolverOptions(mip_max_nodes=nodes),
                      demand_response=False)
    s1 = replace(exo, site=site) if site != exo.site else exo
    out = {c.name: np.zeros(exo.n_steps) for c in site.campuses}
    local = exo.run_index.tz_convert(scenario.run.local_tz)
    days = pd.Index(local.tz_localize(None).normalize())
    for day in scenario.dr.days:
        steps = np.flatnonzero(days == pd.Timestamp(day))
        if steps.size != STEPS_PER_DAY:
            logger.warning("DR day %s has %d intervals, not %d; no baseline", day,
                           steps.size, STEPS_PER_DAY)
            continue
        first = int(steps[0])
        inputs, state = build_horizon(s1, start_observation(s1, first),
                                      truth_values(s1, first, STEPS_PER_DAY), STEPS_PER_DAY)
        inputs = replace(inputs, dr_event=None, dr_baseline_mw=None)
        result = solve_day(problem, inputs, state)
        if result.plan is None:
            raise RuntimeError(f"S1 baseline of DR day {day} failed: {result.message}")
        if result.status is not SolveStatus.OPTIMAL:
            # a node or time limit stopped the day plan: the baseline is its incumbent
            logger.warning("S1 baseline of DR day %s: %s (%s); its plan is used", day,
                           result.status.value, result.message)
        for i, c in enumerate(site.campuses):
            out[c.name][first: first + STEPS_PER_DAY] = result.plan.import_mw[i]
    return out


def prepare(scenario: Scenario, *, source: str | Path = SOURCE, max_gap_steps: int = 0,
            files: DataFiles | None = None) -> tuple[Scenario, SiteExogenous]:
    """The scenario as run (capacity filled in) and its exogenous data with the DR
    baseline (``s1_plan``) or the events' notices (``prior_days``); ``source`` (the
    scenario file) is named in errors; runs of at most ``max_gap_steps`` missing
    intervals [15-min intervals] in the data's run and tail are interpolated
    (:func:`~mpc_dc.site.data.require_coverage`), longer ones refused; data files are
    read through ``files`` when given (:class:`~mpc_dc.site.data.DataFiles`). Too short a
    history is a :class:`ConfigError` (:func:`history_errors`)."""
    with history_errors(scenario, source):
        exo = build_site_exogenous(scenario, source=source, max_gap_steps=max_gap_steps,
                                   files=files)
        scenario = with_capacity(scenario, exo)
        if scenario.site.dr.baseline == "prior_days":
            # No baseline before the run: the programme computes it from the meter.
            return scenario, with_notice(replace(exo, site=scenario.site), source)
        baseline = dr_baseline(scenario, replace(exo, site=scenario.site))
    frame = exo.frame
    if baseline is not None:
        frame = frame.copy()
        first = exo.history_steps
        for name, values in baseline.items():
            col = np.zeros(len(frame))
            col[first: first + exo.n_steps] = values
            frame[column("dr_baseline_mw", name)] = col
    return scenario, replace(exo, site=scenario.site, frame=frame)


def data_key(scenario: Scenario) -> str:
    """What :func:`prepare` of ``scenario`` depends on, as a digest: every table but
    ``[controller]``, of which only the horizon (the data's tail) and the node limit of
    the DR baseline's day plans (:func:`dr_baseline`) count."""
    table = scenario_to_mapping(scenario)
    table["controller"] = {"horizon_h": scenario.controller.horizon_h,
                           "offline_mip_max_nodes": scenario.controller.offline_mip_max_nodes}
    text = json.dumps(table, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def on_site(exo: SiteExogenous, site: Site) -> SiteExogenous:
    """``exo`` for ``site`` (a variant of its site: other levers or blocks)."""
    return exo if exo.site == site else replace(exo, site=site)


def lead_in_scenario(scenario: Scenario, days: int) -> Scenario:
    """The DR programme's lead-in of ``scenario``: its ``days`` [d] just before the run
    start, with the same site, controller and data, and no DR event or fault.

    A workload placed relative to the run start keeps its place in time: BurstGPT's
    day 0 (``workload.requests.first_day``) stays where the run puts it, ``days``
    earlier in the lead-in's days. With ``first_day >= days`` the lead-in starts that
    many BurstGPT days earlier (the trace runs on into the run); otherwise its days
    before BurstGPT's day 0 carry the site's ordinary pre-run workload (the generator's
    conversation stream, as the forecasters' history), not BurstGPT started anew,
    whose API-burst days 9 and 10 would otherwise fall in a lead-in of two weeks and
    more. ``days`` is whole weeks (:func:`~mpc_dc.sim.dr_program.lead_in_days`), so
    the weekday alignment holds either way.
    """
    start = scenario.run.start_ts - pd.Timedelta(days=days)
    requests = scenario.workload.requests
    requests = replace(requests, first_day=requests.first_day - days)
    return replace(scenario, run=replace(scenario.run, start=start.isoformat(), days=days),
                   dr=replace(scenario.dr, days=()), faults=FaultSpec(),
                   workload=replace(scenario.workload, requests=requests))


@dataclass(frozen=True)
class LeadIn:
    """What the DR lead-in (:func:`with_meter_history`) took, for the run's KPIs: its
    own KPIs are not kept, yet its meter feeds every baseline.

    Attributes
    ----------
    time_s : float [s]
        Its wall time (0 without a lead-in).
    solver_time_limit_hits : int
        Its HiGHS runs stopped on their wall-clock limit: with any, the baselines and
        the run's DR settlement depend on the machine's load.
    solver_node_limit_hits : int
        Its MIP runs stopped on their node limit (``controller.mip_max_nodes``): the
        meter behind the baselines comes from incumbent plans (reproducible).
    fallbacks_total : int
        Its steps that committed a fallback instead of the solve.
    """

    time_s: float = 0.0
    solver_time_limit_hits: int = 0
    solver_node_limit_hits: int = 0
    fallbacks_total: int = 0


def with_meter_history(scenario: Scenario, exo: SiteExogenous, *, policy: str | None = None,
                       source: str | Path = SOURCE, files: DataFiles | None = None
                       ) -> tuple[SiteExogenous, LeadIn]:
    """``exo`` with the DR programme's meter history before the run, and what its lead-in
    took (:class:`LeadIn`: wall time [s], solves stopped on the wall clock, fallbacks).

    Under ``site.dr.baseline = "prior_days"`` with ``lead_in`` and events whose
    reference days reach before the run (:func:`~mpc_dc.sim.dr_program.lead_in_days`),
    the lead-in (:func:`lead_in_scenario`) is simulated with the run's controller
    (``policy``: as :func:`run_scenario`'s) and its metered import becomes
    ``exo.dr_meter_history_mw``; it is not settled, and none of it is in the run's
    KPIs or ledger, except what :class:`LeadIn` counts (KPIs ``dr_lead_in_*``).
    Otherwise ``exo`` itself (and an empty :class:`LeadIn`).

    The lead-in's data are the run's sources over its period, read through ``files``
    (:func:`prepare`'s of the run, so nothing is read twice; None: read afresh); a gap
    of at most 1 h in them is interpolated (``max_gap_steps`` of :func:`prepare`), a
    longer one refused.

    Raises
    ------
    ConfigError
        Naming ``source`` and ``site.dr.lead_in`` when the data do not cover the
        lead-in (with its forecaster history) or have a longer gap there.
    """
    days = exogenous_lead_in_days(exo)
    if days == 0 or exo.dr_meter_history_mw is not None:
        return exo, LeadIn()
    tick = time.perf_counter()
    lead = lead_in_scenario(scenario, days)
    try:
        # The lead-in's data may hold short gaps the reported run refuses (NYISO RT 2022
        # misses single hours in March): up to 1 h is interpolated, as CAISO's always is.
        prepared = prepare(lead, source=source, max_gap_steps=DEFAULT_MAX_GAP, files=files)
    except ConfigError as err:
        raise ConfigError(source, f"the DR baseline's lead-in of {days} d from "
                          f"{lead.run.start_ts:%Y-%m-%d %H:%M} UTC: {err.message}; set "
                          "site.dr.lead_in = false, a shorter site.dr.lookback_days or "
                          "start the run later", key="site.dr.lead_in") from None
    outcome = run_scenario(lead, prepared=prepared, plots=False, policy=policy,
                           source=source)
    lead_kpis = outcome.result.kpis
    hits = int(lead_kpis.get("solver_time_limit_hits", 0))
    node_hits = int(lead_kpis.get("solver_node_limit_hits", 0))
    # The lead-in's KPIs are not kept: a solve of it that stopped at a limit or fell
    # back must still say so (here and in the run's KPIs), since its meter feeds every
    # baseline.
    if hits or node_hits or lead_kpis.get("fallbacks_total"):
        logger.warning("DR lead-in: %d solve(s) stopped at the wall-clock limit, %d at "
                       "the node limit, fallbacks %s; the baselines rest on that meter "
                       "history", hits, node_hits, dict(lead_kpis.get("fallbacks") or {}))
    ledger = outcome.result.ledger
    history = ledger["import_mw"].to_numpy(dtype=float).reshape(lead.run.n_steps, -1)
    wall = time.perf_counter() - tick
    logger.info("DR lead-in: %d d from %s simulated with %s in %.1f s (meter history of "
                "the programme's baselines)", days, lead.run.start_ts, outcome.controller,
                wall)
    return replace(exo, dr_meter_history_mw=history), LeadIn(
        wall, hits, node_hits, int(lead_kpis.get("fallbacks_total", 0)))


# ----------------------------------------------------------------------------- policy


def solver_options(spec: ControllerSpec) -> SolverOptions:
    """The MPC's HiGHS limits, committed intervals and horizon resolution (15-min
    columns throughout when the horizon reaches the run end)."""
    fine = None if spec.horizon_to_end or spec.fine_steps >= spec.horizon_steps else max(
        spec.fine_steps, spec.integer_intervals)
    return SolverOptions(
        committed_intervals=spec.integer_intervals, binary_intervals=spec.integer_intervals,
        round_up_trial=spec.prices_bursts,
        time_limit_s=spec.time_limit_s, mip_rel_gap=spec.mip_rel_gap,
        mip_max_nodes=spec.mip_max_nodes, repair_token_share=spec.repair_token_share,
        fine_steps=fine,
        coarse_block_steps=max(1, spec.coarse_block_steps),
        far_start_steps=None if fine is None else max(spec.far_start_steps, fine),
        far_block_steps=max(1, spec.far_block_steps))


def offline_options(spec: ControllerSpec) -> SolverOptions:
    """The offline optimum's own limits (``offline_time_limit_s``, ``offline_mip_rel_gap``,
    ``offline_mip_max_nodes``), on every run of its solve."""
    # The regret reference repairs every rounding loss: its own error must stay far
    # below the regrets measured against it.
    return SolverOptions(time_limit_s=spec.offline_time_limit_s,
                         mip_rel_gap=spec.offline_mip_rel_gap, repair_token_share=0.0,
                         mip_max_nodes=spec.offline_mip_max_nodes,
                         full_time_limit_s=spec.offline_time_limit_s,
                         full_mip_rel_gap=spec.offline_mip_rel_gap,
                         full_mip_max_nodes=spec.offline_mip_max_nodes)


def plan_lateness(scenario: Scenario, exo: SiteExogenous) -> LatenessPrices | None:
    """The prices of lateness in the plan's objective: ``[serving]``'s late prices ×
    ``controller.lateness_weight`` per token (:func:`~mpc_dc.control.mpc.lateness_prices`),
    with ``controller.congestion_share``, or where :func:`congestion_calibration` is
    ``"history"`` the knee weights of each model's bursts over the history
    (:func:`history_knee_weights`), and the warm-up overload with
    ``controller.warmup_lateness``; None without a fleet or with a zero weight (no
    lateness block)."""
    weight = scenario.controller.lateness_weight
    if scenario.fleet is None or weight <= 0:
        return None
    serving = scenario.serving
    knees = (history_knee_weights(exo)
             if congestion_calibration(scenario, exo) == "history" else ())
    return lateness_prices(exo, weight * serving.late_usd_per_request,
                           weight * serving.late_usd_per_s, scenario.controller.congestion_share,
                           knees, warmup=scenario.controller.warmup_lateness)


def models_without_bursts(exo: SiteExogenous) -> list[str]:
    """The site's models whose history has no requests to measure bursts on (not in
    ``exo.burst_late_share``), in site order."""
    return [m for m in exo.site.models if m not in exo.burst_late_share]


def congestion_calibration(scenario: Scenario, exo: SiteExogenous
                           ) -> Literal["share", "history"]:
    """Where the plan's congestion knee weights come from: ``controller.congestion_calibration``,
    with ``"auto"`` resolved to ``"history"`` where ``exo``'s history holds requests of
    every model (``exo.burst_late_share``), else to ``"share"``, logged at INFO with
    the models missing (an explicit ``"history"`` then raises in
    :func:`history_knee_weights`)."""
    chosen = scenario.controller.congestion_calibration
    if chosen != "auto":
        return chosen
    missing = models_without_bursts(exo)
    if missing:
        logger.info("controller.congestion_calibration = 'auto': 'share' (congestion_share "
                    "%g at every knee), the history has no requests of %s to measure "
                    "their bursts on", scenario.controller.congestion_share,
                    ", ".join(missing))
        return "share"
    return "history"


def history_knee_weights(exo: SiteExogenous) -> tuple[tuple[float, ...], ...]:
    """Congestion knee weights [-] of each model (``site.models`` order) from the late
    share of its history's bursts (``exo.burst_late_share``,
    :func:`~mpc_dc.blocks.lateness.calibrated_knee_weights`).

    Raises
    ------
    ConfigError
        (source :data:`~mpc_dc.site.data.SOURCE`, key ``controller.congestion_calibration``)
        a model without that share (no requests in the history): bad input, which the
        CLI reports in one line, not a bug.
    """
    missing = models_without_bursts(exo)
    if missing:
        raise ConfigError(SOURCE, f"'history' needs history requests of every model; none "
                          f"of {', '.join(missing)} to measure their bursts on (use "
                          f"'share')", key="controller.congestion_calibration")
    return tuple(calibrated_knee_weights(BURST_UTILISATIONS, exo.burst_late_share[m])
                 for m in exo.site.models)


def fault_injector(scenario: Scenario, exo: SiteExogenous) -> FaultInjector | None:
    """The injector of the scenario's ``[faults]`` on ``exo``, seeded from ``run.seed``
    (None when every rate is 0)."""
    if not scenario.faults.active:
        return None
    return FaultInjector(scenario.faults, exo, scenario.run.seed)


def build_policy(scenario: Scenario, exo: SiteExogenous,
                 faults: FaultInjector | None = None) -> Policy:
    """The scenario's controller, ready to run on ``exo`` (fitted on its history).

    ``baseline``: :class:`~mpc_dc.control.baseline.BaselinePolicy`; ``offline``:
    :class:`~mpc_dc.control.offline.OfflinePolicy`; ``mpc``: :class:`MpcPolicy` with
    ``controller.forecaster`` on every channel (``controller.channels``: another on a
    group of channels), its point forecasts scored (:class:`ForecastErrors`);
    ``perfect``: the same with Oracle forecasts (no deadline margin, no nowcast). The
    MPC prices lateness in its plans
    (:func:`plan_lateness`); the offline optimum does not (the regret reference plans
    with the unserved penalty, and its cost is judged with the SLO term as every
    row's): a whole-run plan with the lateness block leaves a model without instances
    for hours and carries its demand, while the plant drops the requests of a model
    without a route. ``faults`` injects into the MPC's solves and forecasts (the rule
    and the offline plan make none).
    """
    spec = scenario.controller
    if spec.kind == "baseline":
        return BaselinePolicy(exo, spec.min_instances_per_model)
    if spec.kind == "offline":
        return OfflinePolicy(exo, offline_options(spec))
    forecasts = ChannelForecasts(make_forecasters(
        exo, spec.forecaster, seed=scenario.run.seed, groups=choices(spec),
        price_known_ahead=spec.price_known_ahead), injector=faults,
        errors=ForecastErrors.of(exo))
    return MpcPolicy(
        exo, forecasts, spec.horizon_steps, horizon_to_end=spec.horizon_to_end,
        options=solver_options(spec), demand_quantile=spec.demand_quantile or None,
        min_instances_per_model=spec.min_instances_per_model,
        deadline_margin_steps=spec.deadline_margin_steps, work_nd_quantile=spec.work_nd_level,
        curtail_confidence=spec.curtail_confidence,
        lateness=plan_lateness(scenario, exo), nowcast_tau_steps=spec.nowcast_taus_steps,
        drain_steps=spec.backlog_drain_steps, faults=faults, name=policy_name(spec))


def policy_name(spec: ControllerSpec) -> str:
    """``perfect``, ``mpc[sarimax]``, or with the channel groups whose forecaster differs
    from ``controller.forecaster``: ``mpc[sarimax; price=oracle, demand=oracle]``."""
    if spec.kind == "perfect":
        return "perfect"
    own = [f"{g}={spec.group_forecaster(g)}" for g in spec.channels
           if spec.group_forecaster(g) != spec.forecaster]
    return f"mpc[{spec.forecaster}" + (f"; {', '.join(own)}]" if own else "]")


# ----------------------------------------------------------------------------- run


@contextmanager
def history_errors(scenario: Scenario, source: str | Path = SOURCE) -> Iterator[None]:
    """Too short a history before the run is bad input, not a bug: a forecaster that
    cannot fit on it (:class:`~forecasters.base.InsufficientHistoryError`, raised when the
    controller is built or at its first forecast) or a publication lag reaching before
    it (:class:`~mpc_dc.sim.publication.PublicationLagError`, when the data are
    prepared) becomes a :class:`ConfigError` naming ``run.history_days``."""
    try:
        yield
    except PublicationLagError as err:
        # Only a run with no history at all can hit it: an hourly value is published at
        # the end of its hour, so a start off the hour needs the hour begun before it.
        raise ConfigError(source, f"{scenario.run.history_days} d of history: {err}; "
                          "expected run.history_days >= 1 (or a run.start on the hour)",
                          key="run.history_days") from err
    except InsufficientHistoryError as err:
        need_days = math.ceil(err.need_hours / 24)
        raise ConfigError(
            source, f"{scenario.run.history_days} d of history is too little for forecaster "
            f"'{err.forecaster}': it {err.shortfall}; expected run.history_days >= "
            f"{need_days} (more if the history has gaps or the run starts off the hour)",
            key="run.history_days") from err


def run_scenario(
    scenario: Scenario,
    out: Path | None = None,
    *,
    prepared: tuple[Scenario, SiteExogenous] | None = None,
    progress: Callable[[int], object] | None = None,
    plots: bool = True,
    overwrite: bool = False,
    extra_meta: dict[str, Any] | None = None,
    source: str | Path = SOURCE,
    policy: str | None = None,
) -> RunOutcome:
    """Simulate ``scenario`` closed-loop; write a run directory when ``out`` is given.

    Parameters
    ----------
    scenario : Scenario
    out : Path, optional
        Run directory to write (atomically).
    prepared : (Scenario, SiteExogenous), optional
        :func:`prepare` of a scenario with the same data (shared by the runs of a
        comparison); its capacity is kept, its site replaced by ``scenario``'s.
    progress : callable, optional
        Called with 1 per simulated interval.
    plots : bool
        Write plots into the run directory.
    overwrite : bool
        Replace an existing run directory.
    extra_meta : dict, optional
        Added to ``metadata.json`` (a sweep records the run id and overrides).
    source : str or Path
        Named in data errors (the scenario file).
    policy : str, optional
        A policy named as on the command line (``package.module:Class`` or an
        installed entry-point name, :func:`mpc_dc.policy.load_policy_class`), built
        with the run's :class:`~mpc_dc.policy.PolicyContext` instead of the
        scenario's ``[controller]``.
    """
    from mpc_dc.rundir import check_target

    if out is not None:
        # Checked before any work so a mistake costs nothing.
        check_target(Path(out), overwrite=overwrite)
    tick = time.perf_counter()
    # The files the run reads, for its DR lead-in to read none again.
    files = DataFiles()
    if prepared is None:
        scenario, exo = prepare(scenario, source=source, files=files)
    else:
        base, exo = prepared
        if scenario.fleet is not None and base.fleet is not None:
            scenario = replace(scenario, fleet=workload_figures(scenario.fleet, base.fleet))
        exo = on_site(exo, scenario.site)
    prepared_s = time.perf_counter() - tick
    # The lead-in is timed apart (kpis["dr_lead_in_time_s"]): it is a whole run of its own.
    with history_errors(scenario, source):
        exo, lead_in = with_meter_history(scenario, exo, policy=policy, source=source,
                                          files=files)
        del files  # frees the files' frames before the simulation
        tick = time.perf_counter()
        injector = fault_injector(scenario, exo)
        if injector is not None:
            exo = injector.announce(exo)
        controller = (build_policy(scenario, exo, injector) if policy is None
                      else make_policy(policy, PolicyContext.from_exogenous(scenario, exo)))
        setup = prepared_s + time.perf_counter() - tick
        result = simulate(exo, controller, serving=scenario.serving.config(),
                          progress=progress, faults=injector,
                          fast_layer=scenario.controller.fast_layer)
    kpis = result.kpis
    kpis["setup_time_s"] = setup
    history = exo.dr_meter_history_mw
    kpis["dr_lead_in_days"] = 0 if history is None else len(history) // STEPS_PER_DAY
    kpis["dr_lead_in_time_s"] = lead_in.time_s
    # Not the run's own solves (solver_time_limit_hits, fallbacks_total), but the
    # baselines', so a run with any is not reproducible either.
    kpis["dr_lead_in_solver_time_limit_hits"] = lead_in.solver_time_limit_hits
    kpis["dr_lead_in_solver_node_limit_hits"] = lead_in.solver_node_limit_hits
    kpis["dr_lead_in_fallbacks_total"] = lead_in.fallbacks_total
    kpis["controller"] = controller.name
    if policy is not None:
        kpis["policy"] = policy
    if scenario.fleet is not None:
        kpis["flexibility"] = str(scenario.fleet.flexibility)
        kpis["capacity_tokens_per_s"] = dict(scenario.fleet.capacity_tokens_per_s)
        kpis["power_intercept_w"] = dict(scenario.fleet.power_intercept_w)
        kpis["power_slope_j_per_token"] = dict(scenario.fleet.power_slope_j_per_token)
    if isinstance(controller, OfflinePolicy):
        kpis.update(controller.kpis())
    if isinstance(controller, MpcPolicy) and controller.forecasts.errors is not None:
        kpis["forecast_mae"] = controller.forecasts.errors.mae()
        kpis["forecast_mae_by_group"] = controller.forecasts.errors.mae_by_group()
    outcome = RunOutcome(scenario, result, controller.name, setup)
    if out is not None:
        outcome = replace(outcome, path=write_outcome(outcome, Path(out), plots=plots,
                                                     overwrite=overwrite,
                                                     extra_meta=extra_meta))
    return outcome


def write_outcome(outcome: RunOutcome, out: Path, *, plots: bool = True,
                  overwrite: bool = False, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the run directory of ``outcome`` (``extra_meta`` is added to its metadata)."""
    from mpc_dc.plots import plot_run

    kpis = outcome.result.kpis
    sc = outcome.scenario
    meta: dict[str, Any] = {
        "scenario": sc.name,
        "controller": outcome.controller,
        "seed": sc.run.seed,
        "start_utc": sc.run.start_ts.isoformat(),
        "local_tz": sc.run.local_tz,
        "wall_time_s": {"setup": outcome.setup_time_s, "simulation": kpis["wall_time_s"],
                        "dr_lead_in": kpis.get("dr_lead_in_time_s", 0.0)},
        "created_utc": pd.Timestamp.now(tz="UTC").isoformat(),
        **(extra_meta or {}),
    }
    tz = sc.run.local_tz
    return save_run(outcome.result, out, scenario=scenario_to_mapping(sc), meta=meta,
                    overwrite=overwrite,
                    plot=(lambda ledger, folder: plot_run(ledger, folder, tz)) if plots
                    else None)


# ----------------------------------------------------------------------------- compare


REFERENCE_ROW = "no colocation, no flexibility"
"""Row of :func:`compare`: the business-as-usual reference (base of profit and %)."""
OFFLINE_ROW = "offline optimum"
"""Row of :func:`compare` that every regret is measured against."""
PERFECT_ROW = "perfect forecasts, same horizon"
"""Row of :func:`compare` for the MPC with Oracle forecasts and the scenario's horizon."""


def reference_scenario(scenario: Scenario) -> Scenario:
    """Business as usual: every campus without renewable, battery or export; the fleet
    without flexibility (S1); the baseline rule (:mod:`mpc_dc.control.baseline`)."""
    campuses = tuple(replace(c, renewable=None, battery=None,
                             grid=replace(c.grid, export_limit_mw=0.0))
                     for c in scenario.site.campuses)
    fleet = (None if scenario.fleet is None
             else replace(scenario.fleet, flexibility="S1"))
    out = replace(scenario, site=replace(scenario.site, campuses=campuses), fleet=fleet)
    return controller_variant(out, "baseline")


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
    policies: Sequence[str] = (),
    progress: Callable[[str, int], Callable[[int], object] | None] | None = None,
    out_dir: Path | None = None,
    source: str | Path = SOURCE,
) -> pd.DataFrame:
    """Run ``scenario`` under each label and each policy on identical exogenous data.

    Labels (:func:`~mpc_dc.site.scenario.controller_variant`): ``baseline``,
    ``offline``, ``perfect``/``oracle``, a forecaster name, ``S1``..``S6``,
    ``fluid``/``request``, ``fast``/``nofast``, combined with ``+``. Policies: named
    as on the command line (``package.module:Class`` or an installed entry-point name,
    :func:`mpc_dc.policy.load_policy_class`), each a row labelled by its name as
    given. Rows: the business-as-usual reference (:func:`reference_scenario`), the
    offline optimum and the perfect-forecast MPC with the scenario's horizon (both
    added when not asked for), then the labels and the policies in the order given.

    Columns: ``cost_usd`` (net cost: the meter's plus the price of lateness, the SLO term,
    :mod:`mpc_dc.sim.lateness`) [$] and its two sides ``costs_usd`` (every cost term, the
    SLO term included) and ``revenue_usd`` (export revenue + DR reward), net = costs −
    revenue [$]; ``cost_without_slo_usd`` (the net without the SLO term) and
    ``lateness_usd`` (the SLO term) [$], ``late_requests``; ``profit_vs_reference_usd`` =
    reference net − net [$] and ``savings_pct`` (% of the reference's costs);
    ``regret_usd`` = net − offline net [$] (both with the SLO term: a controller cannot
    gain by serving late) and ``regret_pct`` in % of the reference's costs, the savings'
    base, so that ``regret_pct = savings_pct(offline) − savings_pct(row)``;
    ``regret_perfect_usd`` = net − the perfect-forecast row's net [$] and
    ``regret_perfect_pct`` in % of the perfect-forecast row's costs. Differences are of net
    costs (lost revenue counts), percentages of costs (no revenue): a net cost can be near
    zero or negative where export revenue or DR rewards are large, which would inflate or
    flip a percentage of it (NaN when the base's costs are not positive;
    :func:`with_regrets`). The perfect-forecast row is not the reference of ``regret_usd``:
    with a billing-period demand charge or a coarse horizon tail a rolling horizon is not
    perfect foresight; its regret is the forecasts' price at the same horizon.
    ``slo_attainment`` (request level; the fluid estimate at fluid fidelity) [-];
    ``ttft_p99_s`` (request level) [s]; ``fast_layer`` (on or off) and its
    ``fast_instances_started``, ``fast_requests_rerouted``, ``fast_precision_moves``;
    ``dr_reward_usd``, ``dr_penalty_usd`` [$], ``dr_energy_savings_mwh`` [MWh],
    ``dr_compliance`` (event rows at or under the committed cap) and
    ``dr_under_programme_cap`` (at or under ``f · b``) [-], NaN without events;
    ``import_mwh``, ``export_mwh``, ``self_consumption_mwh`` (renewable consumed on site)
    [MWh]; ``carbon_t`` [t]; ``mip_gap_pct`` (largest relative MIP gap of the row's solves;
    the offline row's is its whole-run plan's certified gap to the bound [%]; NaN without
    solves); ``solves_not_optimal``; ``deadline_missed_wu``; ``tokens_unserved``;
    ``fallbacks``; ``solve_median_ms``; ``wall_time_s`` (setup + simulation + the DR
    lead-in, :func:`with_meter_history`; the offline row's includes its solve).

    Parameters
    ----------
    out_dir : Path, optional
        Write each row's run directory under it (``<out_dir>/<label>``).
    """
    from mpc_dc.rundir import check_target

    # Every variant and run directory is checked before the data are read: a bad label
    # costs nothing. The variants need not be of the prepared scenario: a run on
    # ``prepared`` takes its capacity from it.
    with errors_name(source):
        wanted: dict[str, Scenario] = {REFERENCE_ROW: reference_scenario(scenario),
                                       OFFLINE_ROW: controller_variant(scenario, "offline"),
                                       PERFECT_ROW: controller_variant(scenario, "perfect")}
        names = {REFERENCE_ROW: "reference", OFFLINE_ROW: "offline", PERFECT_ROW: "perfect"}
        for label in labels:
            row = row_label(label)
            if row not in wanted:
                wanted[row] = controller_variant(scenario, label)
                names[row] = label
    policy_of: dict[str, str] = {}
    for spec in policies:
        if spec not in wanted:
            wanted[spec] = scenario
            names[spec] = spec
            policy_of[spec] = spec
    targets = {row: None if out_dir is None else Path(out_dir) / run_dir_name(names[row])
               for row in wanted}
    for target in targets.values():
        if target is not None:
            check_target(target, offers_overwrite=False)
    prepared = prepare(scenario, source=source)
    rows: dict[str, dict[str, Any]] = {}
    created = out_dir is not None and not Path(out_dir).exists()
    written: list[Path] = []
    try:
        for row, variant in wanted.items():
            callback = (progress(names[row], variant.run.n_steps) if progress is not None
                        else None)
            outcome = run_scenario(variant, targets[row], prepared=prepared,
                                   progress=callback, plots=False, policy=policy_of.get(row),
                                   source=source)
            if outcome.path is not None:
                written.append(outcome.path)
            rows[row] = summary_row(outcome)
    except BaseException:
        # A row refused (e.g. too little history for its forecaster) or interrupted: the
        # rows written so far are part of a comparison that was not made, and would block
        # the same command run again (its run directories exist).
        _remove_runs(written, Path(out_dir) if created and out_dir is not None else None)
        raise
    return with_regrets(pd.DataFrame.from_dict(rows, orient="index"))


def _remove_runs(written: Sequence[Path], created: Path | None) -> None:
    """Remove the run directories ``written`` and the folder ``created`` for them (when
    it is left empty); a failure to remove is logged, not raised over the first error."""
    for path in written:
        try:
            shutil.rmtree(path)
        except OSError as err:
            logger.warning("could not remove %s of the failed comparison: %s", path, err)
    if created is not None and created.is_dir() and not any(created.iterdir()):
        created.rmdir()


def with_regrets(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (:func:`summary_row` rows indexed by row label, with the reference,
    offline and perfect-forecast rows) with the profit, savings and regret columns of
    :func:`compare`.

    Every difference is of net costs (a lost export sale counts as much as a dearer
    import); every percentage is of a row's ``costs_usd`` (no revenue), so that
    revenue cannot shrink, null or flip its denominator.
    """
    table = table.copy()
    net = table["cost_usd"].astype(float)
    costs_of = table["costs_usd"].astype(float)
    table["profit_vs_reference_usd"] = float(net[REFERENCE_ROW]) - net
    table["savings_pct"] = pct_of_costs(table["profit_vs_reference_usd"],
                                        costs_of[REFERENCE_ROW])
    table["regret_usd"] = net - float(net[OFFLINE_ROW])
    table["regret_pct"] = pct_of_costs(table["regret_usd"], costs_of[REFERENCE_ROW])
    table["regret_perfect_usd"] = net - float(net[PERFECT_ROW])
    table["regret_perfect_pct"] = pct_of_costs(table["regret_perfect_usd"],
                                               costs_of[PERFECT_ROW])
    return table


def run_dir_name(label: str) -> str:
    """A folder name for a row label (``S4+fluid`` -> ``S4_fluid``, ``pkg.mod:Cls`` ->
    ``pkg.mod_Cls``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


def summary_row(outcome: RunOutcome) -> dict[str, Any]:
    """One :func:`compare` row of a run (see its columns)."""
    k = outcome.result.kpis
    offline = "offline_mip_gap" in k
    gap = (k["offline_mip_gap"] if offline
           else k["mip_gap_max"] if k["solves"] else math.nan)
    row: dict[str, Any] = {
        "controller": outcome.controller,
        "flexibility": k.get("flexibility", ""),
        "fidelity": k.get("fidelity", ""),
        "cost_usd": k["cost_usd"],
        "cost_without_slo_usd": k["cost_without_slo_usd"],
        "costs_usd": k["costs_usd"],
        "revenue_usd": k["revenue_usd"],
        "lateness_usd": k.get("lateness_usd", 0.0),
        "late_requests": k.get("late_requests", 0.0),
        "energy_import_usd": k["energy_import_usd"],
        "export_revenue_usd": k["export_revenue_usd"],
        "demand_charge_usd": k["demand_charge_usd"],
        "dr_reward_usd": k["dr_reward_usd"],
        "dr_penalty_usd": k["dr_penalty_usd"],
        "dr_energy_savings_mwh": k["dr_energy_savings_mwh"],
        "dr_compliance": k["dr_compliance"],
        "dr_under_programme_cap": k["dr_under_programme_cap"],
        "slo_attainment": k.get("slo_attainment", k.get("slo_attainment_estimate", math.nan)),
        "ttft_p99_s": k.get("ttft_p99_s", math.nan),
        "fast_layer": k.get("fast_layer_enabled", False),
        "fast_instances_started": k.get("fast_instances_started", 0.0),
        "fast_requests_rerouted": k.get("fast_requests_rerouted", 0.0),
        "fast_precision_moves": k.get("fast_precision_moves", 0.0),
        "import_mwh": k["import_mwh"],
        "export_mwh": k["export_mwh"],
        "self_consumption_mwh": k["self_consumption_mwh"],
        "peak_import_mw": k["peak_import_mw"],
        "carbon_t": k["carbon_t"],
        "deadline_missed_wu": k["work_df_missed_wu"],
        "tokens_unserved": k.get("tokens_unserved", 0.0),
        "fallbacks": k["fallbacks_total"],
        "mip_gap_pct": 100.0 * gap if math.isfinite(gap) else math.nan,
        "solves_not_optimal": k["solves"] - k["solve_statuses"].get("optimal", 0),
        "node_limit_hits": k.get("solver_node_limit_hits", 0),
        "solve_median_ms": 1000.0 * k["solve_time_median_s"],
        "wall_time_s": k["wall_time_s"] + k["setup_time_s"] + k.get("dr_lead_in_time_s", 0.0),
    }
    if offline:
        row["offline_method"] = k["offline_method"]
    for model, v in k.get("slo_attainment_by_model", {}).items():
        row[f"slo[{model}]"] = v
    return row

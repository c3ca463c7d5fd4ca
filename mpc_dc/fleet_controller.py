"""Fleet MPC policy: forecasts in, one :class:`FleetDecision` per interval out.

The serving simulator (mpc_dc/sim, issue 7) calls :meth:`FleetMpcPolicy.decide`
with a :class:`FleetObservation` and feeds realized values through
:meth:`FleetMpcPolicy.observe`; the policy never sees simulator internals.
Fallback chain, each step logged with its reason and counted:
committed-integer (round-and-fix on the warm LP) → LP relaxation with a rounding
repair of the first interval → rule-based safe action (enough BF16 instances for
the forecast demand, fixed campus shares). :func:`solve_day` is the offline
(perfect-foresight) day plan used by the DR study.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecasters import make_forecaster
from forecasters.base import BaseForecaster
from mpc_dc.fleet_problem import (
    FleetForm,
    FleetInputs,
    FleetPlan,
    FleetProblem,
    FleetSolveResult,
    FleetState,
    round_instances,
)
from mpc_dc.params.fleet import FleetConfig, PoolKey
from mpc_dc.sim.fleet_decision import FleetDecision
from traces.grid import STEP

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetObservation:
    """What the policy sees at the start of an interval.

    Parameters
    ----------
    step : int
        Interval counter of the run.
    time : pandas.Timestamp
        Start of the interval to decide (UTC).
    instances_running : Mapping[PoolKey, int]
        Instances serving now.
    instances_starting : Mapping[PoolKey, int]
        Instances loading (counted as running for the next decision).
    peak_to_date_mw : float [MW]
        Highest facility power so far in the billing period (informational).
    """

    step: int
    time: pd.Timestamp
    instances_running: Mapping[PoolKey, int] = field(default_factory=dict)
    instances_starting: Mapping[PoolKey, int] = field(default_factory=dict)
    peak_to_date_mw: float = 0.0

    def fleet(self) -> dict[PoolKey, int]:
        """Running plus starting instances per pool."""
        out = dict(self.instances_running)
        for k, v in self.instances_starting.items():
            out[k] = out.get(k, 0) + v
        return out


def rule_decision(config: FleetConfig, demand_tokens_per_s: Sequence[float],
                  source: str = "rule") -> FleetDecision:
    """Safe action: enough BF16 instances for ``demand`` at fixed campus shares.

    ``n[c,m] = ceil(φ[c] D[m] / (ρ̄ μ[m,BF16]))``, capped by the campus's GPUs
    (models served in order; what does not fit is left to the serving layer).

    Parameters
    ----------
    demand_tokens_per_s : sequence [tokens/s]
        One value per model in ``config.models`` order.
    """
    shares = config.fixed_shares()
    inst: dict[PoolKey, int] = {}
    route: dict[PoolKey, float] = {}
    for campus in config.campuses:
        free = campus.gpus
        for m, d in zip(config.models, demand_tokens_per_s, strict=True):
            row = config.table.get(m, "BF16")
            want = int(np.ceil(shares[campus.name] * max(d, 0.0)
                               / (config.utilization_cap * row.tokens_per_s_at_slo) - 1e-9))
            n = min(want, free // row.gpus_per_instance)
            free -= n * row.gpus_per_instance
            inst[(campus.name, m, "BF16")] = n
            route[(campus.name, m, "BF16")] = shares[campus.name]
    return FleetDecision(inst, {k: v for k, v in route.items() if v > 0}, {}, source)


class RuleFleetPolicy:
    """Rule-based policy: BF16 only, fixed shares, sized for the demand forecast.

    Parameters
    ----------
    config : FleetConfig
    demand_forecaster : str
        Name for :func:`forecasters.make_forecaster`, one per model.
    """

    def __init__(self, config: FleetConfig, demand_forecaster: str = "persistence") -> None:
        self.config = config
        self._demand = {m: make_forecaster(demand_forecaster) for m in config.models}
        self._seen: dict[str, list[tuple[pd.Timestamp, float]]] = {m: [] for m in config.models}

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Realized values of interval ``time``: ``demand_tokens_per_s[MODEL]`` keys."""
        for m in self.config.models:
            key = f"demand_tokens_per_s[{m}]"
            if key in values:
                _feed(self._demand[m], time, float(values[key]))

    def decide(self, observation: FleetObservation) -> FleetDecision:
        """Fleet for the interval starting at ``observation.time``."""
        demand = [_predict(self._demand[m], observation.time, 1)[0] for m in self.config.models]
        return rule_decision(self.config, demand)


def _feed(forecaster: BaseForecaster, time: pd.Timestamp, value: float) -> None:
    series = pd.Series([value], index=pd.DatetimeIndex([time], name="interval_start_utc"))
    if forecaster.cutoff is None:
        forecaster.fit(series)
    elif time > forecaster.cutoff:
        forecaster.update(series)


def _predict(forecaster: BaseForecaster, issue: pd.Timestamp, horizon: int) -> np.ndarray:
    if forecaster.cutoff is None:
        return np.zeros(horizon)
    return np.asarray(forecaster.predict(issue, horizon), dtype=float)


class FleetMpcPolicy:
    """Receding-horizon fleet MPC committing the first interval.

    Parameters
    ----------
    problem : FleetProblem
        Built once for the configuration and horizon.
    demand_forecaster, price_forecaster, carbon_forecaster : str
        Names for :func:`forecasters.make_forecaster` (one instance per model /
        campus); ``oracle`` needs ``truth`` through ``forecaster_params``.
    forecaster_params : Mapping[str, Mapping], optional
        Extra constructor arguments per series key (``demand_tokens_per_s[M]``,
        ``lmp_usd_per_mwh[C]``, ``carbon_gco2_per_kwh[C]``).
    dr_event, dr_baseline_mw : pandas.DataFrame, optional
        Known DR schedule: one column per campus, on the 15-min grid.

    Attributes
    ----------
    fallbacks : collections.Counter
        How many decisions came from each fallback, by reason.
    last_result : FleetSolveResult or None
    """

    def __init__(self, problem: FleetProblem, *, demand_forecaster: str = "seasonal_naive_daily",
                 price_forecaster: str = "seasonal_naive_daily",
                 carbon_forecaster: str = "seasonal_naive_daily",
                 forecaster_params: Mapping[str, Mapping[str, object]] | None = None,
                 dr_event: pd.DataFrame | None = None,
                 dr_baseline_mw: pd.DataFrame | None = None) -> None:
        self.problem = problem
        cfg = problem.config
        params = forecaster_params or {}
        self.keys = ([f"demand_tokens_per_s[{m}]" for m in cfg.models]
                     + [f"lmp_usd_per_mwh[{c.price_node}]" for c in cfg.campuses]
                     + [f"carbon_gco2_per_kwh[{c.name}]" for c in cfg.campuses])
        kinds = ([demand_forecaster] * len(cfg.models) + [price_forecaster] * len(cfg.campuses)
                 + [carbon_forecaster] * len(cfg.campuses))
        self.forecasters: dict[str, BaseForecaster] = {
            k: make_forecaster(name, **dict(params.get(k, {})))
            for k, name in zip(self.keys, kinds, strict=True)}
        self.dr_event = dr_event
        self.dr_baseline_mw = dr_baseline_mw
        self.fallbacks: Counter[str] = Counter()
        self.last_result: FleetSolveResult | None = None
        self.solve_times_s: list[float] = []

    def fit(self, history: pd.DataFrame) -> FleetMpcPolicy:
        """Fit every forecaster on past data (columns named as :attr:`keys`)."""
        for k, f in self.forecasters.items():
            f.fit(history[k].astype(float))
        return self

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Realized values of the interval starting at ``time`` (keys as :attr:`keys`)."""
        for k, f in self.forecasters.items():
            if k in values:
                _feed(f, time, float(values[k]))

    def forecast_inputs(self, time: pd.Timestamp) -> FleetInputs:
        """Forecast :class:`FleetInputs` for the horizon starting at ``time``."""
        H, cfg = self.problem.horizon_steps, self.problem.config
        pred = {k: _predict(f, time, H) for k, f in self.forecasters.items()}
        M, C = len(cfg.models), len(cfg.campuses)
        demand = np.maximum(np.vstack([pred[k] for k in self.keys[:M]]), 0.0)
        price = np.vstack([pred[k] for k in self.keys[M:M + C]])
        carbon = np.maximum(np.vstack([pred[k] for k in self.keys[M + C:]]), 0.0)
        index = pd.date_range(time, periods=H, freq=STEP)
        event = base = None
        if self.dr_event is not None and self.dr_baseline_mw is not None:
            names = list(cfg.campus_names)
            event = self.dr_event.reindex(index).fillna(0.0)[names].to_numpy().T
            base = self.dr_baseline_mw.reindex(index).fillna(0.0)[names].to_numpy().T
        return FleetInputs(demand, price, carbon, event, base)

    def decide(self, observation: FleetObservation) -> FleetDecision:
        """Commit the first interval: committed-integer → LP + repair → rule."""
        inputs = self.forecast_inputs(observation.time)
        cfg = self.problem.config
        state = FleetState(observation.fleet(),
                           may_reprovision=_is_day_start(observation.time))
        result = self.problem.solve(inputs, state, FleetForm.COMMITTED_INTEGER)
        self.last_result = result
        if result.plan is not None and np.isfinite(result.objective_usd):
            self.solve_times_s.append(result.solve_time_s)
            return result.plan.decision(0, source="mpc")
        self.fallbacks["committed_integer_failed"] += 1
        logger.warning("step %d: committed-integer solve failed (%s); trying LP + repair",
                       observation.step, result.message)
        lp = self.problem.solve(inputs, state, FleetForm.LP)
        if lp.plan is not None:
            gpus = np.array([[c.gpus] for c in cfg.campuses], dtype=float)
            prev = np.array([float(state.instances_running.get(k, 0))
                             for k in self.problem.ctx.pools])
            n = round_instances(self.problem.ctx, lp.plan.instances[:, :1],
                                lp.plan.tokens_per_s[:, :1], prev, gpus)
            plan = _with_instances(lp.plan, n)
            return plan.decision(0, source="lp_repair")
        self.fallbacks["lp_failed"] += 1
        logger.warning("step %d: LP relaxation failed too (%s); rule-based safe action",
                       observation.step, lp.message)
        return rule_decision(cfg, list(inputs.demand_tokens_per_s[:, 0]), source="rule_fallback")


def _is_day_start(time: pd.Timestamp) -> bool:
    local = pd.Timestamp(time).tz_convert("America/Los_Angeles")
    return bool(local.hour == 0 and local.minute == 0)


def _with_instances(plan: FleetPlan, n: np.ndarray) -> FleetPlan:
    inst = plan.instances.copy()
    inst[:, : n.shape[1]] = n
    return FleetPlan(plan.pools, plan.models, plan.campuses, inst, plan.starts,
                     plan.tokens_per_s, plan.unserved_tokens_per_s, plan.campus_power_mw,
                     plan.dr_reduction_mw, plan.dr_excess_mw)


def solve_day(problem: FleetProblem, inputs: FleetInputs, state: FleetState | None = None,
              candidates: Sequence[FleetPlan] = ()) -> FleetSolveResult:
    """Offline (perfect-foresight) day plan with integer instances in every interval.

    Round-and-fix over the whole horizon (its gap to the LP bound is certified in
    ``mip_gap``); each candidate plan from a scenario with fewer levers (feasible
    here: see :meth:`Flexibility.covers`) is re-costed with its instances fixed, and
    the cheapest plan is returned, so more levers never cost more.
    """
    best = problem.solve(inputs, state, FleetForm.COMMITTED_INTEGER,
                         integer_intervals=problem.horizon_steps)
    for cand in candidates:
        alt = problem.solve(inputs, state, FleetForm.LP, fix_instances=problem.map_plan(cand))
        if alt.plan is not None and (best.plan is None
                                     or alt.objective_usd < best.objective_usd - 1e-9):
            logger.info("a plan with fewer levers is cheaper (%.2f < %.2f $); using it",
                        alt.objective_usd, best.objective_usd)
            best = alt
    return best

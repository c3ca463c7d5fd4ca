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
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from forecasters import make_forecaster
from forecasters.base import BaseForecaster
from forecasters.presets import Quantity, make_for
from mpc_dc.fleet_problem import (
    FleetForm,
    FleetInputs,
    FleetPlan,
    FleetProblem,
    FleetSolveResult,
    FleetState,
    routing_shares,
)
from mpc_dc.params.fleet import FleetConfig, PoolKey
from mpc_dc.sim.fleet_decision import FleetDecision
from mpc_dc.sim.fleet_engine import ServingObservation
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
    queue_requests : Mapping[str, float] [requests]
        Requests waiting for a slot per model (the serving backlog).
    """

    step: int
    time: pd.Timestamp
    instances_running: Mapping[PoolKey, int] = field(default_factory=dict)
    instances_starting: Mapping[PoolKey, int] = field(default_factory=dict)
    peak_to_date_mw: float = 0.0
    queue_requests: Mapping[str, float] = field(default_factory=dict)

    def fleet(self) -> dict[PoolKey, int]:
        """Running plus starting instances per pool."""
        out = dict(self.instances_running)
        for k, v in self.instances_starting.items():
            out[k] = out.get(k, 0) + v
        return out

    @classmethod
    def from_serving(cls, obs: ServingObservation) -> FleetObservation:
        """Adapter from the simulator's :class:`ServingObservation`.

        Ready instances are ``instances_running``; committed but not yet ready ones
        (loading) are ``instances_starting``.
        """
        starting = {k: max(int(v) - int(obs.instances_ready.get(k, 0)), 0)
                    for k, v in obs.instances.items()}
        running = {k: min(int(obs.instances_ready.get(k, 0)), int(v))
                   for k, v in obs.instances.items()}
        queue: dict[str, float] = {}
        for k, q in obs.queue_requests.items():
            queue[k[1]] = queue.get(k[1], 0.0) + float(q)
        return cls(obs.step, pd.Timestamp(obs.time), running,
                   {k: v for k, v in starting.items() if v > 0}, queue_requests=queue)


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
    planned: dict[PoolKey, float] = {}
    for campus in config.campuses:
        free = campus.gpus
        for m, d in zip(config.models, demand_tokens_per_s, strict=True):
            row = config.table.get(m, "BF16")
            cap = config.utilization_cap * row.tokens_per_s_at_slo
            want = int(np.ceil(shares[campus.name] * max(d, 0.0) / cap - 1e-9))
            n = min(want, free // row.gpus_per_instance)
            free -= n * row.gpus_per_instance
            inst[(campus.name, m, "BF16")] = n
            planned[(campus.name, m, "BF16")] = min(shares[campus.name] * max(d, 0.0), n * cap)
    # Shares only to pools that get instances (a share on a pool without capacity
    # leaves its requests queued forever).
    return FleetDecision(inst, routing_shares(inst, planned, config.models, _mu(config)),
                         planned, source)


def _mu(config: FleetConfig) -> dict[PoolKey, float]:
    return {k: config.row(k).tokens_per_s_at_slo for k in config.pools}


def serving_capacity_tokens_per_s(config: FleetConfig) -> np.ndarray:
    """Most each model could be served at with the whole fleet to itself [tokens/s].

    ``cap[m] = Σ_c max_q floor(G[c] / g[m,q]) · ρ̄ · μ[m,q]``, per model in
    ``config.models`` order (an upper bound: the models share the GPUs).
    """
    out = np.zeros(len(config.models))
    for i, m in enumerate(config.models):
        for campus in config.campuses:
            out[i] += max(
                ((campus.gpus // config.row(k).gpus_per_instance) * config.utilization_cap
                 * config.row(k).tokens_per_s_at_slo
                 for k in config.pools if k[0] == campus.name and k[1] == m), default=0.0)
    return out


def with_min_instances(config: FleetConfig, decision: FleetDecision,
                       current: Mapping[PoolKey, int], min_per_model: int) -> FleetDecision:
    """Keep at least ``min_per_model`` instances of every model (a warm floor).

    A plan for zero forecast demand leaves a model without an instance, so a request
    arriving anyway could not be served (and, unrouted, would not be seen by the
    demand forecaster either). Missing instances are added to the model's pool with
    the most instances now (no start), else to BF16 at the campus with the most free
    GPUs; routing is then recomputed over the pools with instances.

    Parameters
    ----------
    current : Mapping[PoolKey, int]
        Instances running or starting now.
    min_per_model : int [instances]
    """
    if min_per_model <= 0:
        return decision
    inst = {k: int(v) for k, v in decision.instances.items()}
    changed = False
    for m in config.models:
        have = sum(v for k, v in inst.items() if k[1] == m)
        if have >= min_per_model:
            continue
        pools = [k for k in config.pools if k[1] == m]
        running = [k for k in pools if current.get(k, 0) > 0]
        if running:
            pool = max(running, key=lambda k: current.get(k, 0))
        else:
            used = {c.name: sum(config.row(k).gpus_per_instance * v for k, v in inst.items()
                                if k[0] == c.name) for c in config.campuses}
            free = {c.name: c.gpus - used[c.name] for c in config.campuses}
            bf16 = [k for k in pools if k[2] == "BF16"] or pools
            pool = max(bf16, key=lambda k: free[k[0]])
        inst[pool] = inst.get(pool, 0) + (min_per_model - have)
        changed = True
    if not changed:
        return decision
    planned = dict(decision.planned_tokens_per_s)
    return FleetDecision(inst, routing_shares(inst, planned, config.models, _mu(config)),
                         planned, decision.source)


class RuleFleetPolicy:
    """Rule-based policy: BF16 only, fixed shares, sized for the demand forecast.

    Parameters
    ----------
    config : FleetConfig
    demand_forecaster : str
        Name for :func:`forecasters.make_forecaster`, one per model.
    min_instances_per_model : int [instances]
        Warm floor (see :func:`with_min_instances`).
    """

    def __init__(self, config: FleetConfig, demand_forecaster: str = "persistence",
                 min_instances_per_model: int = 0) -> None:
        self.config = config
        self.name = "rule"
        self.min_instances_per_model = min_instances_per_model
        self._demand = {m: make_forecaster(demand_forecaster) for m in config.models}
        self._seen: dict[str, list[tuple[pd.Timestamp, float]]] = {m: [] for m in config.models}

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Realized values of interval ``time``: ``demand_tokens_per_s[MODEL]`` keys
        (or the simulator's ``tokens_per_s[MODEL]``)."""
        for m in self.config.models:
            for key in (f"demand_tokens_per_s[{m}]", f"tokens_per_s[{m}]"):
                if key in values:
                    _feed(self._demand[m], time, float(values[key]))
                    break

    def decide(self, observation: FleetObservation) -> FleetDecision:
        """Fleet for the interval starting at ``observation.time``."""
        demand = [_predict(self._demand[m], observation.time, 1)[0] for m in self.config.models]
        return with_min_instances(self.config, rule_decision(self.config, demand),
                                  observation.fleet(), self.min_instances_per_model)


def _feed(forecaster: BaseForecaster, time: pd.Timestamp, value: float) -> None:
    """Hand ``forecaster`` one published value; a forecaster without history starts from
    it (its spread is then unknown: wide quantiles, see forecasters.base)."""
    series = pd.Series([value], index=pd.DatetimeIndex([time], name="interval_start_utc"))
    if forecaster.cutoff is None:
        forecaster.fit(series)
    elif time > forecaster.cutoff:
        forecaster.update(series)


def _predict(forecaster: BaseForecaster, issue: pd.Timestamp, horizon: int,
             quantile: float | None = None) -> np.ndarray:
    """Point forecast, or the ``quantile`` forecast when given (zeros before any data;
    ``±inf`` where the forecaster's spread is still unknown)."""
    if forecaster.cutoff is None:
        return np.zeros(horizon)
    if quantile is not None:
        bands = forecaster.predict_quantiles(issue, horizon, [quantile])
        return np.asarray(bands.iloc[:, 0], dtype=float)
    return np.asarray(forecaster.predict(issue, horizon), dtype=float)


@dataclass
class FleetPolicyStats:
    """Solver bookkeeping of a fleet policy (read by the simulator's KPIs).

    Attributes
    ----------
    solves : int
        Decisions asked for.
    fallbacks : collections.Counter
        Decisions that did not come from the committed-integer solve, by reason.
    solve_times_s : list of float [s]
        Wall time of every successful committed-integer solve.
    """

    solves: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    solve_times_s: list[float] = field(default_factory=list)


#: Forecaster settings (``forecasters.presets``) of each kind of series.
QUANTITY_OF: dict[str, Quantity] = {"demand": "request_rate", "price": "price",
                                    "carbon": "carbon"}


class FleetMpcPolicy:
    """Receding-horizon fleet MPC committing the first interval.

    Parameters
    ----------
    problem : FleetProblem
        Built once for the configuration and horizon.
    demand_forecaster, price_forecaster, carbon_forecaster : str
        Names for :func:`forecasters.presets.make_for` (one instance per model /
        campus) with the settings of ``request_rate``, ``price`` and ``carbon``;
        ``oracle`` needs ``truth`` through ``forecaster_params``.
    forecaster_params : Mapping[str, Mapping], optional
        Extra constructor arguments per series key (``demand_tokens_per_s[M]``,
        ``lmp_usd_per_mwh[C]``, ``carbon_gco2_per_kwh[C]``).
    dr_event, dr_baseline_mw : pandas.DataFrame, optional
        Known DR schedule: one column per campus, on the 15-min grid.
    min_instances_per_model : int [instances]
        Warm floor applied to every committed decision (see
        :func:`with_min_instances`); 0 commits the plan as it is.
    name : str
        Label in KPIs and tables.

    Notes
    -----
    :meth:`observe` accepts the optimizer's keys and the simulator's
    (``tokens_per_s[M]`` for demand, ``carbon_gco2_per_kwh[<carbon_zone>]``), so the
    policy plugs into :func:`mpc_dc.sim.fleet_engine.simulate_fleet` with
    ``observation=FleetObservation.from_serving``.

    Attributes
    ----------
    stats : FleetPolicyStats
    last_result : FleetSolveResult or None
    """

    def __init__(self, problem: FleetProblem, *, demand_forecaster: str = "seasonal_naive_daily",
                 price_forecaster: str = "seasonal_naive_daily",
                 carbon_forecaster: str = "seasonal_naive_daily",
                 forecaster_params: Mapping[str, Mapping[str, object]] | None = None,
                 dr_event: pd.DataFrame | None = None,
                 dr_baseline_mw: pd.DataFrame | None = None,
                 min_instances_per_model: int = 0,
                 demand_quantile: float | None = None,
                 name: str = "mpc") -> None:
        if demand_quantile is not None and not 0.0 < demand_quantile < 1.0:
            raise ValueError(f"demand_quantile must be in (0, 1), got {demand_quantile}")
        self.demand_quantile = demand_quantile
        self.problem = problem
        self.name = name
        cfg = problem.config
        params = forecaster_params or {}
        self.keys = ([f"demand_tokens_per_s[{m}]" for m in cfg.models]
                     + [f"lmp_usd_per_mwh[{c.price_node}]" for c in cfg.campuses]
                     + [f"carbon_gco2_per_kwh[{c.name}]" for c in cfg.campuses])
        kinds = ([(demand_forecaster, QUANTITY_OF["demand"])] * len(cfg.models)
                 + [(price_forecaster, QUANTITY_OF["price"])] * len(cfg.campuses)
                 + [(carbon_forecaster, QUANTITY_OF["carbon"])] * len(cfg.campuses))
        self.forecasters: dict[str, BaseForecaster] = {
            k: make_for(name_, quantity, **dict(params.get(k, {})))
            for k, (name_, quantity) in zip(self.keys, kinds, strict=True)}
        # Simulator column names of the same series (the optimizer's keys also work).
        self.aliases: dict[str, str] = {f"tokens_per_s[{m}]": f"demand_tokens_per_s[{m}]"
                                        for m in cfg.models}
        for c in cfg.campuses:
            self.aliases.setdefault(f"carbon_gco2_per_kwh[{c.carbon_zone}]",
                                    f"carbon_gco2_per_kwh[{c.name}]")
        self.dr_event = dr_event
        self.dr_baseline_mw = dr_baseline_mw
        self.min_instances_per_model = min_instances_per_model
        self.stats = FleetPolicyStats()
        self.last_result: FleetSolveResult | None = None
        self._tokens_seen = dict.fromkeys(cfg.models, 0.0)
        self._requests_seen = dict.fromkeys(cfg.models, 0.0)
        self._capacity = serving_capacity_tokens_per_s(cfg)

    @property
    def fallbacks(self) -> Counter[str]:
        """How many decisions came from each fallback, by reason."""
        return self.stats.fallbacks

    @property
    def solve_times_s(self) -> list[float]:
        """Wall time of each successful committed-integer solve [s]."""
        return self.stats.solve_times_s

    def fit(self, history: pd.DataFrame) -> FleetMpcPolicy:
        """Fit every forecaster on past data (columns named as :attr:`keys` or aliases)."""
        frame = history.rename(columns={a: k for a, k in self.aliases.items()
                                        if a in history.columns and k not in history.columns})
        for k, f in self.forecasters.items():
            f.fit(frame[k].astype(float))
        return self

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Realized values of the interval starting at ``time`` (keys as :attr:`keys`)."""
        mapped = {self.aliases.get(k, k): v for k, v in values.items()}
        for k, f in self.forecasters.items():
            if k in mapped:
                _feed(f, time, float(mapped[k]))
        for m in self.problem.config.models:
            tok, req = values.get(f"tokens_per_s[{m}]"), values.get(f"requests_per_h[{m}]")
            if tok is not None and req is not None:
                self._tokens_seen[m] += float(tok) * STEP.total_seconds()
                self._requests_seen[m] += float(req) * STEP.total_seconds() / 3600.0

    def backlog_tokens_per_s(self, queue_requests: Mapping[str, float]) -> np.ndarray:
        """Serving backlog as extra demand of the first interval [tokens/s], per model.

        ``queue × mean output tokens per request (observed so far) / 900 s``: the
        feedback that makes the plan clear a queue its forecast did not foresee.
        """
        out = np.zeros(len(self.problem.config.models))
        for i, m in enumerate(self.problem.config.models):
            q = float(queue_requests.get(m, 0.0))
            if q > 0 and self._requests_seen[m] > 0:
                out[i] = q * self._tokens_seen[m] / self._requests_seen[m] / STEP.total_seconds()
        return out

    def forecast_inputs(self, time: pd.Timestamp) -> FleetInputs:
        """Forecast :class:`FleetInputs` for the horizon starting at ``time``."""
        H, cfg = self.problem.horizon_steps, self.problem.config
        M, C = len(cfg.models), len(cfg.campuses)
        # Demand is provisioned for a high quantile, not its mean: queues grow in the
        # bursts a point forecast averages away (the SLO is decided there).
        pred = {k: _predict(self.forecasters[k], time, H, self.demand_quantile if i < M else None)
                for i, k in enumerate(self.keys)}
        demand = np.maximum(np.vstack([pred[k] for k in self.keys[:M]]), 0.0)
        # A quantile whose spread is not known yet (too little history) is +inf, not the
        # point forecast: provision what the fleet can serve until the spread is known.
        demand = np.where(np.isfinite(demand), demand, self._capacity[:, None])
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
        decision = self._decide(observation)
        return with_min_instances(self.problem.config, decision, observation.fleet(),
                                  self.min_instances_per_model)

    def _decide(self, observation: FleetObservation) -> FleetDecision:
        self.stats.solves += 1
        inputs = self.forecast_inputs(observation.time)
        backlog = self.backlog_tokens_per_s(observation.queue_requests)
        if backlog.any():
            demand = np.array(inputs.demand_tokens_per_s)
            demand[:, 0] += backlog
            inputs = replace(inputs, demand_tokens_per_s=demand)
        cfg = self.problem.config
        state = FleetState(observation.fleet(),
                           may_reprovision=_is_day_start(observation.time))
        result = self.problem.solve(inputs, state, FleetForm.COMMITTED_INTEGER)
        self.last_result = result
        if result.plan is not None and np.isfinite(result.objective_usd):
            self.stats.solve_times_s.append(result.solve_time_s)
            return result.plan.decision(0, source="mpc")
        self.stats.fallbacks["committed_integer_failed"] += 1
        logger.warning("step %d: committed-integer solve failed (%s); trying LP + repair",
                       observation.step, result.message)
        lp = self.problem.solve(inputs, state, FleetForm.LP)
        if lp.plan is not None:
            n = self.problem.round_first_interval(lp.plan)
            return _with_instances(lp.plan, n).decision(0, source="lp_repair")
        self.stats.fallbacks["lp_failed"] += 1
        logger.warning("step %d: LP relaxation failed too (%s); rule-based safe action",
                       observation.step, lp.message)
        return rule_decision(cfg, list(inputs.demand_tokens_per_s[:, 0]), source="rule_fallback")


def _is_day_start(time: pd.Timestamp) -> bool:
    local = pd.Timestamp(time).tz_convert("America/Los_Angeles")
    return bool(local.hour == 0 and local.minute == 0)


def _with_instances(plan: FleetPlan, n: np.ndarray) -> FleetPlan:
    inst = plan.instances.copy()
    inst[:, : n.shape[1]] = n
    return replace(plan, instances=inst)


def solve_day(problem: FleetProblem, inputs: FleetInputs, state: FleetState | None = None,
              candidates: Sequence[FleetPlan] = ()) -> FleetSolveResult:
    """Offline (perfect-foresight) day plan with integer instances in every interval.

    Round-and-fix over the whole horizon (its gap to the LP bound is certified in
    ``mip_gap``); each candidate plan from a scenario with fewer levers (feasible
    here: see :meth:`Flexibility.covers`) is re-costed with its instances fixed, and
    the cheapest plan is returned: from the same ``state`` and ``inputs``, more
    levers never cost more. ``lp_bound_usd`` and ``mip_gap`` are always those of
    this problem's relaxation, also when a candidate is returned (its own LP run
    with fixed instances is no bound).
    """
    own = problem.solve(inputs, state, FleetForm.COMMITTED_INTEGER,
                        integer_intervals=problem.horizon_steps)
    best = own
    for cand in candidates:
        alt = problem.solve(inputs, state, FleetForm.LP, fix_instances=problem.map_plan(cand))
        if alt.plan is not None and (best.plan is None
                                     or alt.objective_usd < best.objective_usd - 1e-9):
            logger.info("a plan with fewer levers is cheaper (%.2f < %.2f $); using it",
                        alt.objective_usd, best.objective_usd)
            best = alt
    if best is not own and np.isfinite(own.lp_bound_usd):
        gap = (best.objective_usd - own.lp_bound_usd) / max(abs(best.objective_usd), 1e-9)
        best = replace(best, lp_bound_usd=own.lp_bound_usd, mip_gap=max(gap, 0.0),
                       message="a plan with fewer levers, re-costed")
    return best

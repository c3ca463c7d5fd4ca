"""The inference-fleet closed loop: simpy control ticks over request-level or fluid serving.

Processes (one simpy environment, times in seconds from the run start):

``controller`` ─decision→ ``serving`` ─stats (at t+Δ)→ ``meter`` ─boundary→ ``controller``

* controller (at ``t``): builds a :class:`ServingObservation` (committed and ready
  instances, queues, last interval's demand) and asks the fleet policy for the
  :class:`~mpc_dc.sim.fleet_decision.FleetDecision` of ``[t, t+Δ)``; a decision
  naming unknown pools is cleaned (counted under ``engine_faults``), never fatal;
* serving: applies it to the server of the chosen fidelity
  (:class:`~mpc_dc.sim.serving.RequestLevelServer` or
  :class:`~mpc_dc.sim.fluid.FluidServer`), serves the interval's requests and
  starts one ``instance ready`` process per scale-up that fires after the load
  time (the instances are counted ready from then on);
* meter (at ``t+Δ``): settles every pool's IT energy at its campus's realized
  price and carbon intensity (facility energy = PUE × IT energy), appends the
  ledger rows and hands the policy what is observable now (no lookahead): the
  interval's demand, and each price or carbon value once it is published
  (:attr:`FleetExogenous.publication`: a 15-min price now, an hourly carbon
  intensity at the end of its hour, all four quarters at once).

Costs per pool and interval (Δ = 0.25 h)::

    energy_cost_usd = lmp[c] [$/MWh] × PUE[c] × E_IT [MWh]
    carbon_kg       = κ[c] [gCO2/kWh] × PUE[c] × E_IT [kWh] / 1000
    carbon_cost_usd = carbon_price [$/t] × carbon_kg / 1000
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import simpy

from mpc_dc.params.fleet import FleetConfig
from mpc_dc.rundir import atomic_dir
from mpc_dc.sim.arrivals import STEP_S, RequestArrays
from mpc_dc.sim.fleet_decision import FleetDecision, PoolKey
from mpc_dc.sim.fluid import FluidServer, Server
from mpc_dc.sim.publication import ObservationSchedule
from mpc_dc.sim.serving import (
    DROPPED_NO_ROUTE,
    FINISHED,
    IN_SERVICE,
    QUEUED,
    STATUS_NAMES,
    IntervalStats,
    PoolSpec,
    RequestLevelServer,
    ServingOutcome,
    tpot_s,
)
from mpc_dc.site.config import Site
from traces.errors import ConfigError
from traces.grid import STEP, Publication

logger = logging.getLogger(__name__)

LEDGER_COLUMNS: tuple[str, ...] = (
    "instances",
    "ready_instance_s",
    "instance_s",
    "arrivals",
    "arrived_tokens",
    "started",
    "queue_end",
    "tokens_decoded",
    "planned_tokens_per_s",
    "busy_slot_s",
    "idle_energy_j",
    "active_energy_j",
    "it_energy_kwh",
    "facility_energy_kwh",
    "lmp_usd_per_mwh",
    "carbon_gco2_per_kwh",
    "energy_cost_usd",
    "carbon_kg",
    "carbon_cost_usd",
)

_FROM_STATS: tuple[str, ...] = tuple(
    c for c in LEDGER_COLUMNS if c in {f.name for f in fields(IntervalStats)}
)
"""Ledger columns copied as they are from :class:`IntervalStats`."""


class FleetPolicy(Protocol):
    """A fleet controller: any object with ``decide`` and ``observe``."""

    def decide(self, obs: Any) -> FleetDecision:
        """The decision for the interval starting at the observation's time."""
        ...

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        """Realized values of the interval that started at ``time``."""
        ...


@dataclass(frozen=True)
class ServingObservation:
    """What the serving side reports to a fleet policy at an interval start.

    Attributes
    ----------
    step : int
    time : Timestamp
        Interval start (UTC).
    instances : dict[PoolKey, int]
        Committed instances (loading or online).
    instances_ready : dict[PoolKey, int]
        Instances ready to serve at ``time``.
    queue_requests : dict[PoolKey, float] [requests]
        Requests waiting for a slot.
    last_demand_tokens_per_s : dict[str, float] [tokens/s]
        Output-token demand per model in the previous interval (0 at the start).
    """

    step: int
    time: pd.Timestamp
    instances: dict[PoolKey, int]
    instances_ready: dict[PoolKey, int]
    queue_requests: dict[PoolKey, float]
    last_demand_tokens_per_s: dict[str, float]


@dataclass(frozen=True)
class FleetExogenous:
    """Realized prices and carbon intensities on the run's 15-min grid.

    Parameters
    ----------
    frame : DataFrame
        Index ``interval_start_utc``; columns ``lmp_usd_per_mwh[<price_node>]``
        [$/MWh] and ``carbon_gco2_per_kwh[<carbon_zone>]`` [gCO2/kWh] for every
        campus of the configuration.
    publication : Mapping[str, Publication]
        When each column's value becomes observable (from the source's metadata,
        :attr:`traces.grid.TraceMetadata.publication`); a column without a rule is
        observed at the end of its 15-min interval.

    Raises
    ------
    ConfigError
        When the run starts inside a source interval of a column (e.g. at ``:15``
        for an hourly series): the forecasters' history would hold values not yet
        published at the start.
    """

    frame: pd.DataFrame
    publication: Mapping[str, Publication] = field(default_factory=dict)

    def __post_init__(self) -> None:
        columns = [str(c) for c in self.frame.columns]
        late = [c for c, rule in self.publication.items()
                if rule.observable_before(self.start) < self.start]
        if late:
            rule = self.publication[late[0]]
            raise ConfigError(
                "fleet run",
                f"starts at {self.start}, inside a source interval of {late} "
                f"({rule.source_step} values published {rule.lag} after their end); expected "
                "a start on a publication boundary (the hour, for hourly series)",
                key="run.start",
            )
        schedule = ObservationSchedule(self.start, self.n_steps, columns,
                                       self.frame.to_numpy(dtype=float), 0, self.publication)
        object.__setattr__(self, "_schedule", schedule)

    def published_during(self, step: int) -> list[tuple[int, dict[str, float]]]:
        """Column values published during interval ``step``, by interval position (in order)."""
        schedule: ObservationSchedule = self._schedule  # type: ignore[attr-defined]
        return schedule.published_during(step)

    @property
    def start(self) -> pd.Timestamp:
        """Run start (UTC)."""
        return pd.Timestamp(self.frame.index[0])

    @property
    def n_steps(self) -> int:
        """Intervals of the run."""
        return len(self.frame)

    @classmethod
    def constant(
        cls,
        config: FleetConfig,
        start: pd.Timestamp | str,
        n_steps: int,
        lmp_usd_per_mwh: float = 50.0,
        carbon_gco2_per_kwh: float = 250.0,
    ) -> FleetExogenous:
        """Flat prices and intensities (tests)."""
        index = pd.date_range(
            pd.Timestamp(start), periods=n_steps, freq="15min", name="interval_start_utc"
        )
        cols: dict[str, float] = {}
        for c in config.campuses:
            cols[f"lmp_usd_per_mwh[{c.price_node}]"] = lmp_usd_per_mwh
            cols[f"carbon_gco2_per_kwh[{c.carbon_zone}]"] = carbon_gco2_per_kwh
        return cls(pd.DataFrame(cols, index=index))


@dataclass(frozen=True)
class ServingConfig:
    """How serving is simulated and judged.

    Parameters
    ----------
    fidelity : str
        ``"request"`` (request level) or ``"fluid"``.
    ttft_slo_s : Mapping[str, float] [s]
        Time-to-first-token target per model; ``default_ttft_slo_s`` otherwise.
    default_ttft_slo_s : float [s]
    tpot_slo_s : Mapping[str, float] [s/token]
        Target on the time per output token after the first (TPOT, a request's mean
        inter-token latency) per model; otherwise the pool's quantization-table ITL
        SLO (``itl_slo_p90_ms``).
    slots_per_instance : int, optional
        Override of every pool's ``max_batch`` (queueing tests).
    request_samples : int, optional
        Per-request rows kept in the result (uniform sample, seeded); all when None.
    sample_seed : int
    """

    fidelity: str = "request"
    ttft_slo_s: Mapping[str, float] = field(default_factory=dict)
    default_ttft_slo_s: float = 2.0
    tpot_slo_s: Mapping[str, float] = field(default_factory=dict)
    slots_per_instance: int | None = None
    request_samples: int | None = 200_000
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.fidelity not in ("request", "fluid"):
            raise ValueError(
                f"ServingConfig.fidelity: expected 'request' or 'fluid', got {self.fidelity!r}"
            )

    def ttft_slo(self, model: str) -> float:
        """TTFT target of ``model`` [s]."""
        return float(self.ttft_slo_s.get(model, self.default_ttft_slo_s))

    def tpot_slo(self, pool: PoolSpec) -> float:
        """TPOT target of a pool [s/token]: the model's, else the pool's ITL SLO
        (``inf`` when it has none)."""
        if pool.key[1] in self.tpot_slo_s:
            return float(self.tpot_slo_s[pool.key[1]])
        return math.inf if pool.itl_slo_s is None else float(pool.itl_slo_s)


@dataclass(frozen=True)
class FleetRunResult:
    """Outcome of one fleet closed-loop run.

    Attributes
    ----------
    ledger : DataFrame
        One row per (interval, pool); index ``(interval_start_utc, campus, model,
        precision)``; columns :data:`LEDGER_COLUMNS` (energies [J] and [kWh], costs [$]).
    kpis : dict
        Headline figures (see :func:`fleet_kpis`).
    requests : DataFrame or None
        Per-request samples (request level only).
    outcome : ServingOutcome or None
        All per-request records (request level only).
    decisions : list of FleetDecision
    slo : tuple of ndarray or None
        :func:`slo_met` of ``outcome`` under the run's serving configuration
        (request level only).
    """

    ledger: pd.DataFrame
    kpis: dict[str, Any]
    requests: pd.DataFrame | None
    outcome: ServingOutcome | None
    decisions: list[FleetDecision]
    slo: tuple[np.ndarray, np.ndarray] | None = None


def pool_specs(config: FleetConfig, slots_per_instance: int | None = None) -> tuple[PoolSpec, ...]:
    """Serving figures of every pool of ``config`` from its quantization table."""
    return tuple(PoolSpec.from_row(k, config.row(k), slots_per_instance) for k in config.pools)


def simulate_fleet(
    config: FleetConfig,
    exo: FleetExogenous,
    requests: RequestArrays,
    policy: FleetPolicy,
    serving: ServingConfig | None = None,
    *,
    observation: Callable[[ServingObservation], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FleetRunResult:
    """Run ``policy`` closed-loop over ``exo``'s intervals.

    Parameters
    ----------
    config : FleetConfig
        Campuses, models and pools (and the quantization table).
    exo : FleetExogenous
    requests : RequestArrays
        Arrivals in seconds from ``exo.start``; models named as ``config.models``.
    policy : FleetPolicy
    serving : ServingConfig, optional
    observation : callable, optional
        Maps the :class:`ServingObservation` to the policy's own observation type
        (default: the policy receives the ServingObservation).
    progress : callable, optional
        Called with 1 after each interval.
    """
    serving = serving or ServingConfig()
    wall = time.perf_counter()
    n = exo.n_steps
    pools = pool_specs(config, serving.slots_per_instance)
    keys = [p.key for p in pools]
    index_of = {k: i for i, k in enumerate(keys)}
    P = len(pools)
    missing = set(requests.models) - set(config.models)
    if missing:
        raise ValueError(f"requests name models {sorted(missing)} the fleet does not serve")
    server: Server
    if serving.fidelity == "request":
        server = RequestLevelServer(pools, _reindex_models(requests, config.models), n)
    else:
        agg = _reindex_models(requests, config.models).per_interval(n)
        server = FluidServer(pools, config.models, agg, n)
    campus_pos = {c.name: i for i, c in enumerate(config.campuses)}
    pool_campus = np.array([campus_pos[k[0]] for k in keys])
    pue = np.array([config.campuses[c].pue for c in pool_campus])
    lmp = np.column_stack(
        [exo.frame[f"lmp_usd_per_mwh[{c.price_node}]"].to_numpy(float) for c in config.campuses]
    )
    carbon = np.column_stack(
        [
            exo.frame[f"carbon_gco2_per_kwh[{c.carbon_zone}]"].to_numpy(float)
            for c in config.campuses
        ]
    )
    cols = {c: np.zeros((n, P)) for c in LEDGER_COLUMNS}
    decisions: list[FleetDecision] = []
    decide_s = np.zeros(n)
    faults: Counter[str] = Counter()
    ready_now = np.zeros(P, dtype=np.int64)
    last_demand = {m: 0.0 for m in config.models}
    times = exo.frame.index
    pool_model = np.array([config.models.index(key[1]) for key in keys])

    env = simpy.Environment()
    to_serving: simpy.Store = simpy.Store(env)
    to_meter: simpy.Store = simpy.Store(env)
    boundaries: simpy.Store = simpy.Store(env)

    def instance_ready(pool: int, count: int, delay: float) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(delay)
        ready_now[pool] += count

    def controller() -> Generator[simpy.Event, Any, None]:
        while True:
            step = yield boundaries.get()
            if step >= n:
                return
            inst_now = server.committed_instances()
            obs = ServingObservation(
                step=step,
                time=pd.Timestamp(times[step]),
                instances={k: int(inst_now[i]) for i, k in enumerate(keys)},
                instances_ready={k: int(ready_now[i]) for i, k in enumerate(keys)},
                queue_requests={
                    k: float(server.queue_history[step - 1, i]) if step else 0.0
                    for i, k in enumerate(keys)
                },
                last_demand_tokens_per_s=dict(last_demand),
            )
            tick = time.perf_counter()
            decision = policy.decide(observation(obs) if observation else obs)
            decide_s[step] = time.perf_counter() - tick
            yield to_serving.put((step, _clean(decision, index_of, faults)))

    def run_serving() -> Generator[simpy.Event, Any, None]:
        while True:
            step, decision = yield to_serving.get()
            decisions.append(decision)
            target = np.zeros(P, dtype=np.int64)
            for k, v in decision.instances.items():
                target[index_of[k]] = v
            before = server.committed_instances()
            for i in np.flatnonzero(target != before):
                if target[i] > before[i]:
                    env.process(
                        instance_ready(int(i), int(target[i] - before[i]), pools[i].load_time_s)
                    )
                else:
                    ready_now[i] = max(0, ready_now[i] - int(before[i] - target[i]))
            stats = server.run_interval(step, target, decision.routing_share)
            planned = np.array([decision.planned_tokens_per_s.get(k, 0.0) for k in keys])
            yield env.timeout(STEP_S)
            yield to_meter.put((stats, planned))

    def run_meter() -> Generator[simpy.Event, Any, None]:
        while True:
            stats, planned = yield to_meter.get()
            k = stats.step
            _settle(
                cols,
                k,
                stats,
                planned,
                lmp[k][pool_campus],
                carbon[k][pool_campus],
                pue,
                config.carbon_price_usd_per_t,
            )
            demand = np.bincount(
                pool_model, weights=stats.arrived_tokens, minlength=len(config.models)
            )
            agg_req = np.bincount(
                pool_model,
                weights=np.asarray(stats.arrivals, dtype=float),
                minlength=len(config.models),
            )
            served: dict[str, float] = {}
            for m, model in enumerate(config.models):
                last_demand[model] = float(demand[m]) / STEP_S
                served[f"tokens_per_s[{model}]"] = last_demand[model]
                served[f"requests_per_h[{model}]"] = float(agg_req[m]) * 3600.0 / STEP_S
            # Demand is the simulator's own count (known now); prices and carbon only
            # once published, possibly for earlier intervals, in time order.
            published = exo.published_during(k)
            if not published or published[-1][0] != k:
                published.append((k, {}))
            for pos, values in published:
                if pos == k:
                    values.update(served)
                policy.observe(exo.start + pos * STEP, values)
            if progress is not None:
                progress(1)
            yield boundaries.put(k + 1)

    for process in (controller, run_serving, run_meter):
        env.process(process())
    boundaries.put(0)
    env.run()
    if len(decisions) != n:
        raise RuntimeError(f"fleet simulation ended after {len(decisions)} of {n} intervals")
    ledger = _ledger(cols, times, keys)
    outcome = server.outcome() if isinstance(server, RequestLevelServer) else None
    slo = slo_met(outcome, config, serving) if outcome is not None else None
    wall_s = time.perf_counter() - wall
    kpis = fleet_kpis(
        ledger, config, serving, outcome, server, policy, decide_s, faults, wall_s, slo=slo
    )
    samples = request_frame(outcome, config, serving, slo=slo) if outcome is not None else None
    result = FleetRunResult(ledger, kpis, samples, outcome, decisions, slo)
    check_fleet_invariants(result)
    return result


def _reindex_models(requests: RequestArrays, models: tuple[str, ...]) -> RequestArrays:
    if requests.models == models:
        return requests
    remap = np.array([models.index(m) for m in requests.models], dtype=np.int32)
    return RequestArrays(
        requests.arrival_s,
        remap[requests.model],
        requests.request_tokens,
        requests.response_tokens,
        requests.source,
        models,
        requests.stats,
    )


def _clean(
    decision: FleetDecision, index_of: Mapping[PoolKey, int], faults: Counter[str]
) -> FleetDecision:
    unknown = [k for k in (*decision.instances, *decision.routing_share) if k not in index_of]
    if not unknown:
        return decision
    faults["unknown_pool_in_decision"] += 1
    logger.warning("decision names unknown pools %s; they are ignored", sorted(set(unknown)))
    shares = {k: v for k, v in decision.routing_share.items() if k in index_of}
    totals: dict[str, float] = {}
    for k, v in shares.items():
        totals[k[1]] = totals.get(k[1], 0.0) + v
    shares = {k: v / totals[k[1]] for k, v in shares.items() if totals[k[1]] > 0}
    return FleetDecision(
        {k: v for k, v in decision.instances.items() if k in index_of},
        shares,
        {k: v for k, v in decision.planned_tokens_per_s.items() if k in index_of},
        decision.source + "+cleaned",
    )


def _settle(
    cols: dict[str, np.ndarray],
    k: int,
    stats: IntervalStats,
    planned: np.ndarray,
    lmp: np.ndarray,
    carbon: np.ndarray,
    pue: np.ndarray,
    carbon_price_usd_per_t: float,
) -> None:
    """Meter of one interval: energy [J → kWh], costs [$] (module docstring)."""
    for name in _FROM_STATS:
        cols[name][k] = getattr(stats, name)
    cols["planned_tokens_per_s"][k] = planned
    it_kwh = (stats.idle_energy_j + stats.active_energy_j) / 3.6e6
    fac_kwh = it_kwh * pue
    cols["it_energy_kwh"][k] = it_kwh
    cols["facility_energy_kwh"][k] = fac_kwh
    cols["lmp_usd_per_mwh"][k] = lmp
    cols["carbon_gco2_per_kwh"][k] = carbon
    cols["energy_cost_usd"][k] = lmp * fac_kwh / 1000.0
    cols["carbon_kg"][k] = carbon * fac_kwh / 1000.0
    cols["carbon_cost_usd"][k] = carbon_price_usd_per_t * cols["carbon_kg"][k] / 1000.0


def _ledger(cols: dict[str, np.ndarray], times: pd.Index, keys: list[PoolKey]) -> pd.DataFrame:
    n, P = len(times), len(keys)
    index = pd.MultiIndex.from_arrays(
        [
            np.repeat(np.asarray(times), P),
            np.tile([k[0] for k in keys], n),
            np.tile([k[1] for k in keys], n),
            np.tile([k[2] for k in keys], n),
        ],
        names=["interval_start_utc", "campus", "model", "precision"],
    )
    return pd.DataFrame({c: cols[c].reshape(-1) for c in LEDGER_COLUMNS}, index=index)


def slo_met(
    outcome: ServingOutcome, config: FleetConfig | Site, serving: ServingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per request: whether it met its SLO, and whether that is decided by the run end.

    A request meets the SLO when its TTFT is within the model's target and its
    time per output token (:func:`~mpc_dc.sim.serving.tpot_s`) within the TPOT target
    (:meth:`ServingConfig.tpot_slo`). A request still queued is undecided while its
    age at the run end is within the TTFT target (then it is left out), a miss after;
    one still decoding is judged on its TTFT alone.

    Returns
    -------
    met, decided : ndarray of bool
    """
    ttft_ok, tpot_ok, decided = slo_parts(outcome, config, serving)
    return ttft_ok & tpot_ok & decided, decided


def slo_parts(
    outcome: ServingOutcome, config: FleetConfig | Site, serving: ServingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per request: TTFT within target, TPOT within target, decided (see :func:`slo_met`).

    Returns
    -------
    ttft_ok, tpot_ok, decided : ndarray of bool
    """
    req = outcome.requests
    ttft_target = np.array([serving.ttft_slo(m) for m in req.models])[req.model]
    target = np.array([serving.tpot_slo(p) for p in outcome.pools] + [np.inf])
    pool = np.where(outcome.pool >= 0, outcome.pool, len(outcome.pools))
    ttft = outcome.ttft_s()
    tp = tpot_s(outcome)
    with np.errstate(invalid="ignore"):
        ttft_ok = ttft <= ttft_target + 1e-9
        tpot_ok = ~(tp > target[pool] * (1 + 1e-9))
    waiting = outcome.status == QUEUED
    decided = (outcome.status >= 0) & ~(waiting & (outcome.end_s - req.arrival_s <= ttft_target))
    return ttft_ok, tpot_ok, decided


def fleet_kpis(
    ledger: pd.DataFrame,
    config: FleetConfig,
    serving: ServingConfig,
    outcome: ServingOutcome | None,
    server: Server,
    policy: Any,
    decide_s: np.ndarray,
    faults: Counter[str],
    wall_s: float,
    *,
    slo: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Headline figures: cost by component [$], energy [MWh], tokens, latency [s], SLO.

    ``slo`` is :func:`slo_met` of ``outcome`` when already computed.
    """
    tot = ledger.sum()
    tokens = float(tot["tokens_decoded"])
    it_j = float(tot["idle_energy_j"] + tot["active_energy_j"])
    kpis: dict[str, Any] = {
        "fidelity": serving.fidelity,
        "intervals": int(ledger.index.get_level_values(0).nunique()),
        # queued requests moved off pools the controller left without instances
        "requeued_requests": float(server.requeued_requests),
        "cost_usd": float(tot["energy_cost_usd"] + tot["carbon_cost_usd"]),
        "energy_cost_usd": float(tot["energy_cost_usd"]),
        "carbon_cost_usd": float(tot["carbon_cost_usd"]),
        "carbon_t": float(tot["carbon_kg"]) / 1000.0,
        "it_energy_mwh": it_j / 3.6e9,
        "facility_energy_mwh": float(tot["facility_energy_kwh"]) / 1000.0,
        "idle_energy_mwh": float(tot["idle_energy_j"]) / 3.6e9,
        "tokens_served": tokens,
        "tokens_arrived": float(tot["arrived_tokens"]),
        "energy_per_token_j": it_j / tokens if tokens else math.nan,
        "queue_mean_requests": float(ledger["queue_end"].groupby(level=0).sum().mean()),
        "queue_max_requests": float(ledger["queue_end"].groupby(level=0).sum().max()),
        "decide_time_total_s": float(decide_s.sum()),
        "decide_time_median_s": float(np.median(decide_s)) if decide_s.size else 0.0,
        "decide_time_p95_s": float(np.percentile(decide_s, 95)) if decide_s.size else 0.0,
        "engine_faults": dict(faults),
        "wall_time_s": wall_s,
    }
    stats = getattr(policy, "stats", None)
    if stats is not None:
        kpis["solves"] = int(getattr(stats, "solves", 0))
        fb = dict(getattr(stats, "fallbacks", {}))
        kpis["fallbacks"] = fb
        kpis["fallbacks_total"] = int(sum(fb.values()))
        st = np.asarray(getattr(stats, "solve_times_s", []), dtype=float)
        kpis["solve_time_median_s"] = float(np.median(st)) if st.size else 0.0
        kpis["solve_time_p95_s"] = float(np.percentile(st, 95)) if st.size else 0.0
    if outcome is not None:
        req = outcome.requests
        counts = outcome.status_counts()
        kpis["requests"] = int((outcome.status >= 0).sum())
        kpis["requests_by_status"] = counts
        kpis["arrival_drops"] = dict(req.stats.dropped)
        kpis["requests_per_wall_s"] = len(req) / wall_s if wall_s > 0 else math.inf
        unserved = np.isin(outcome.status, (QUEUED, DROPPED_NO_ROUTE))
        kpis["tokens_unserved"] = float(req.response_tokens[unserved].sum()) + float(
            (
                req.response_tokens[outcome.status == IN_SERVICE]
                - outcome.tokens_decoded[outcome.status == IN_SERVICE]
            ).sum()
        )
        ttft = outcome.ttft_s()
        lat = outcome.latency_s()
        for name, values in (("ttft", ttft), ("tpot", tpot_s(outcome)), ("latency", lat)):
            v = values[~np.isnan(values)]
            for q in (50, 95, 99):
                kpis[f"{name}_p{q}_s"] = float(np.percentile(v, q)) if v.size else math.nan
        met, decided = slo if slo is not None else slo_met(outcome, config, serving)
        ttft_ok, tpot_ok, _ = slo_parts(outcome, config, serving)

        def share(ok: np.ndarray, sel: np.ndarray) -> float:
            return float(ok[sel].mean()) if sel.any() else math.nan

        kpis["slo_attainment"] = share(met, decided)
        kpis["slo_ttft_attainment"] = share(ttft_ok, decided)
        kpis["slo_tpot_attainment"] = share(tpot_ok, decided)
        kpis["slo_attainment_by_model"] = {
            model: share(met, decided & (req.model == m)) for m, model in enumerate(req.models)
        }
        campus_of = np.array([p.key[0] for p in outcome.pools] + [""])
        pool_campus = campus_of[np.where(outcome.pool >= 0, outcome.pool, len(outcome.pools))]
        kpis["slo_attainment_by_campus"] = {
            c.name: share(met, decided & (pool_campus == c.name)) for c in config.campuses
        }
    else:
        assert isinstance(server, FluidServer)
        kpis["tokens_unserved"] = float(server.backlog_tokens.sum())
        kpis["requests_per_wall_s"] = math.nan
        kpis["slo_attainment_estimate"] = _fluid_slo(server, ledger, serving)
    return kpis


def _fluid_slo(server: FluidServer, ledger: pd.DataFrame, serving: ServingConfig) -> float:
    """Share of requests arriving where the fluid estimates of TTFT (wait + prefill) and
    of TPOT meet their targets [-]."""
    arrivals = ledger["arrivals"].to_numpy().reshape(server.est_wait_s.shape)
    ttft = np.array([serving.ttft_slo(p.key[1]) for p in server.pools])
    tpot = np.array([serving.tpot_slo(p) for p in server.pools])
    ok = (server.est_wait_s <= ttft) & (server.est_tpot_s <= tpot * (1 + 1e-9))
    total = arrivals.sum()
    return float((arrivals * ok).sum() / total) if total else math.nan


def request_frame(
    outcome: ServingOutcome,
    config: FleetConfig | Site,
    serving: ServingConfig,
    *,
    slo: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per-request samples (all, or a seeded uniform sample of ``serving.request_samples``).

    ``slo`` is :func:`slo_met` of ``outcome`` when already computed.
    """
    req = outcome.requests
    n = len(req)
    idx = np.arange(n)
    if serving.request_samples is not None and n > serving.request_samples:
        rng = np.random.default_rng(serving.sample_seed)
        idx = np.sort(rng.choice(n, serving.request_samples, replace=False))
    met, decided = slo if slo is not None else slo_met(outcome, config, serving)
    pool = outcome.pool[idx]
    names = [f"{k[0]}/{k[1]}/{k[2]}" for k in (p.key for p in outcome.pools)] + [""]
    return pd.DataFrame(
        {
            "request_id": idx,
            "arrival_s": req.arrival_s[idx],
            "model": pd.Categorical.from_codes(
                req.model[idx], categories=pd.Index(list(req.models))
            ),
            "pool": pd.Categorical.from_codes(
                np.where(pool >= 0, pool, len(names) - 1), categories=pd.Index(names)
            ),
            "request_tokens": req.request_tokens[idx],
            "response_tokens": req.response_tokens[idx],
            "start_s": outcome.start[idx],
            "first_token_s": outcome.first_token[idx],
            "finish_s": outcome.finish[idx],
            "status": pd.Categorical.from_codes(
                np.maximum(outcome.status[idx], 0), categories=pd.Index(list(STATUS_NAMES))
            ),
            "tokens_decoded": outcome.tokens_decoded[idx],
            "energy_j": outcome.energy_j[idx],
            "slo_met": met[idx],
            "slo_decided": decided[idx],
        }
    )


def slo_by_pool_interval(
    result: FleetRunResult,
    config: FleetConfig,
    serving: ServingConfig,
    *,
    slo: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """SLO attainment per (arrival interval, pool) of a request-level run [-].

    ``slo`` is :func:`slo_met` of ``result.outcome`` when already computed (e.g.
    ``result.slo`` when ``serving`` is the run's own configuration).

    Returns
    -------
    DataFrame indexed like the ledger with ``requests`` and ``slo_attainment``.
    """
    out = result.outcome
    if out is None:
        raise ValueError("SLO by interval needs a request-level run")
    met, decided = slo if slo is not None else slo_met(out, config, serving)
    P = len(out.pools)
    n = len(result.ledger) // P
    k = np.minimum((out.requests.arrival_s // STEP_S).astype(np.int64), n - 1)
    sel = decided & (out.pool >= 0)
    flat = k[sel] * P + out.pool[sel]
    total = np.bincount(flat, minlength=n * P)
    good = np.bincount(flat, weights=met[sel].astype(float), minlength=n * P)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, good / np.maximum(total, 1), np.nan)
    return pd.DataFrame({"requests": total, "slo_attainment": share}, index=result.ledger.index)


def check_fleet_invariants(result: FleetRunResult) -> None:
    """Assert the books close: request statuses, tokens and energy, records vs ledger."""
    led = result.ledger
    energy = led["idle_energy_j"] + led["active_energy_j"]
    if not np.allclose(energy / 3.6e6, led["it_energy_kwh"], rtol=1e-12, atol=1e-9):
        raise AssertionError("ledger IT energy != idle + active")
    if result.outcome is not None:
        # check() also closes the request statuses.
        result.outcome.check(ledger_active_energy_j=float(led["active_energy_j"].sum()))
        finished = result.outcome.status == FINISHED
        if np.any(result.outcome.finish[finished] < result.outcome.requests.arrival_s[finished]):
            raise AssertionError("a request finished before it arrived")


def save_fleet_run(result: FleetRunResult, directory: str | Path) -> Path:
    """Write ``ledger.parquet``, ``requests.parquet`` (if any) and ``kpis.json``.

    Written through :func:`mpc_dc.rundir.atomic_dir` (a temporary sibling renamed into
    place), so no half-written run remains.

    Raises
    ------
    RunDirExistsError
        (a :class:`FileExistsError`) if ``directory`` exists already.
    RunWriteError
        If writing fails with an :class:`OSError`.
    """
    target = Path(directory)
    with atomic_dir(target) as tmp:
        result.ledger.reset_index().to_parquet(tmp / "ledger.parquet", index=False)
        if result.requests is not None:
            result.requests.to_parquet(tmp / "requests.parquet", index=False)
        (tmp / "kpis.json").write_text(
            json.dumps(result.kpis, indent=2, default=float, sort_keys=True)
        )
    return target

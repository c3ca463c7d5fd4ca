"""The one closed loop: a simpy simulation of a site's campuses, its inference fleet and a policy.

Four processes form a pipeline around each 15-minute boundary, linked by stores so
the order of events within one instant is fixed (times in seconds from the run
start):

``controller`` ─decision→ ``plant`` ─records (at t+Δ)→ ``replay`` ─→ ``meter``
─boundary→ ``controller``

* controller (at ``t``): builds the :class:`~mpc_dc.sim.policy.Observation` (per
  campus: released deferrable work by deadline, billing-period peak import to
  date, battery energy; fleet: instances running and still loading per pool,
  queued requests per pool) and asks the policy for the
  :class:`~mpc_dc.sim.policy.Decision` of ``[t, t+Δ)``, and projects it on what the
  site can do in ``t`` (:mod:`mpc_dc.sim.projection`: unknown names dropped, more
  GPUs than the campus has scaled down, routing shares normalised, battery
  set-points clipped ...; each projection counted in the KPI
  ``decision_projections``), so no decision is ever fatal.
* plant (at ``t``): serving of the interval's requests on the committed
  instances and routing shares (request level,
  :class:`~mpc_dc.sim.serving.RequestLevelServer`, or fluid,
  :class:`~mpc_dc.sim.fluid.FluidServer`: routing per the shares, scale-up with
  the load time, drain on scale-down, re-dispatch of queues stranded on pools
  left without instances), which gives each campus's inference IT energy; then
  each campus's plant (:class:`~mpc_dc.sim.plant.CampusPlant`: other-IT work,
  renewable, battery, grid, shedding order; a decision without the export price it
  was committed on gets the last published one, :meth:`_Loop.committed`, never the
  interval's realized price); under ``on_arrival`` a campus's
  deferrable work arriving in the interval is released into it first. Waits Δ.
  With the fast layer (``fast_layer``, :mod:`mpc_dc.sim.fast_layer`) serving is a
  simpy process of its own that decides at ``t`` (it may keep and start instances and
  move shares) and, at request level, wakes every ``period_s`` inside the interval,
  serving the requests up to each wake-up first; its GPUs and power are bounded by
  each campus's free GPUs and the plant's headroom
  (:meth:`~mpc_dc.sim.plant.CampusPlant.inference_headroom_mw`); the campus plants
  then run on the served interval's energy at ``t+Δ``.
* replay (at ``t+Δ``): releases the deferrable work submitted during the
  interval (``window_start``: the next window's batch), expires missed deadlines,
  and hands the policy what is published by now
  (:meth:`~mpc_dc.sim.exogenous.SiteExogenous.published_during`: a 15-min value
  now, an hourly one at the end of its hour; demand ``tokens_per_s[M]`` and
  ``requests_per_h[M]`` at the end of its interval).
* meter (at ``t+Δ``): settles each campus (:class:`~mpc_dc.sim.meter.CampusMeter`)
  and writes the ledger rows; under ``site.dr.baseline = "prior_days"`` the DR events
  whose notice is ``t+Δ`` then get their baseline from the ledger's import so far,
  written into the ledger, settled against and handed to the policy
  (:mod:`mpc_dc.sim.dr_program`).

Faults (:mod:`mpc_dc.sim.faults`, when an injector is given): the plant's (GPU losses,
instance crashes) strike after the decision, before serving; a feed outage withholds
values from what replay hands the policy; the observation reports each campus's GPUs of
the last interval; the ledger gets ``faults_active`` and the KPIs the fault counts.

Outputs (:class:`RunResult`): a ledger with one row per (interval, campus)
(:data:`LEDGER_COLUMNS` plus, with a fleet, tokens, instances per (model,
precision) and each model's routed share), a table per (interval, pool)
(:data:`POOL_COLUMNS`), KPIs (:func:`compute_kpis`), per-request samples. The
books are checked after every run (:func:`check_invariants`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import simpy
from threadpoolctl import threadpool_limits

from mpc_dc.rundir import write_run
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.dr_program import ProgramBaseline, program_of
from mpc_dc.sim.exogenous import CampusRealized, SiteExogenous
from mpc_dc.sim.exogenous import column as exo_column
from mpc_dc.sim.fast_layer import (
    DR_CAMPUS_COLUMNS,
    DR_POOL_COLUMNS,
    FAST_CAMPUS_COLUMNS,
    FAST_POOL_COLUMNS,
    CampusLimits,
    FastLayer,
    FastLayerConfig,
)
from mpc_dc.sim.fluid import FluidServer, Server
from mpc_dc.sim.invariants import (
    InvariantError,
    check_battery_ledger,
    check_campus_ledger,
    check_deadlines,
    check_token_book,
    check_work_ledger,
)
from mpc_dc.sim.lateness import (
    LATENESS_COLUMNS,
    RequestLatenessToDate,
    fluid_book,
    fluid_late_share,
    request_book,
)
from mpc_dc.sim.meter import (
    COST_COLUMNS,
    CREDIT_COLUMNS,
    METER_COLUMNS,
    SERVICE_COST_COLUMNS,
    CampusMeter,
    Penalties,
    audit_settlement,
    billing_periods,
    costs_and_revenue_usd,
    net_cost_usd,
)
from mpc_dc.sim.plant import (
    RECORD_COLUMNS,
    CampusPlant,
    CampusRecord,
    Setpoints,
    committed_cap_mw,
)
from mpc_dc.sim.policy import (
    CampusDecision,
    CampusObservation,
    Decision,
    FleetDecision,
    Observation,
    Policy,
    PoolKey,
)
from mpc_dc.sim.projection import project_decision
from mpc_dc.sim.serving import (
    DROPPED_NO_ROUTE,
    FINISHED,
    IN_SERVICE,
    QUEUED,
    IntervalStats,
    PoolSpec,
    RequestLevelServer,
    ServingConfig,
    ServingOutcome,
    request_frame,
    slo_met,
    slo_parts,
    tpot_s,
)
from mpc_dc.site.config import Site, tariff_prices
from traces.grid import STEP, STEP_H

if TYPE_CHECKING:
    from mpc_dc.sim.faults import FaultInjector

logger = logging.getLogger(__name__)

STEP_S = int(STEP.total_seconds())
J_PER_MWH = 3.6e9

_EXO_COLUMNS: tuple[str, ...] = (
    "price_usd_per_mwh",
    "import_price_usd_per_mwh",
    "export_price_usd_per_mwh",
    "carbon_gco2_per_kwh",
    "renewable_cf",
    "dr_event",
    "dr_baseline_mw",
)
_WORK_COLUMNS: tuple[str, ...] = ("work_df_arrived_wu", "work_df_missed_wu", "backlog_wu")

LEDGER_COLUMNS: tuple[str, ...] = (
    "step",
    *RECORD_COLUMNS,
    *_WORK_COLUMNS,
    *_EXO_COLUMNS,
    *METER_COLUMNS,
)
"""Numeric columns of every (interval, campus) ledger row (plus ``decision_source``):
flows [MW], battery energy [MWh], work [WU], prices [$/MWh], carbon [gCO2/kWh] and
[kg], costs [$] (:mod:`mpc_dc.sim.plant`, :mod:`mpc_dc.sim.meter`)."""

FLEET_CAMPUS_COLUMNS: tuple[str, ...] = ("tokens_served", "tokens_arrived", "requests_arrived",
                                         *LATENESS_COLUMNS, *FAST_CAMPUS_COLUMNS,
                                         *DR_CAMPUS_COLUMNS)
"""Per-campus serving totals of a run with a fleet [tokens], [requests], the lateness
of its pools (late requests, seconds late [s], ``lateness_usd`` [$], a cost the net cost
includes: :func:`~mpc_dc.sim.meter.net_cost_usd`) and the fast layer's actions
(:data:`~mpc_dc.sim.fast_layer.FAST_CAMPUS_COLUMNS`, and those holding the DR cap,
:data:`~mpc_dc.sim.fast_layer.DR_CAMPUS_COLUMNS`; zeros without it); the ledger also has
``instances[model/precision]`` [-] and ``routing_share[model]`` [-] (committed)."""

POOL_COLUMNS: tuple[str, ...] = (
    "instances",
    "ready_instance_s",
    "instance_s",
    "arrivals",
    "arrived_tokens",
    "started",
    "queue_end",
    "tokens_decoded",
    "planned_tokens_per_s",
    "routing_share",
    "busy_slot_s",
    "prefill_tokens",
    "decode_steps",
    "idle_energy_j",
    "active_energy_j",
    "it_energy_kwh",
    "facility_energy_kwh",
    *LATENESS_COLUMNS,
    *FAST_POOL_COLUMNS,
    *DR_POOL_COLUMNS,
)
"""Columns of the (interval, pool) table: serving figures of
:class:`~mpc_dc.sim.serving.IntervalStats` (``decode_steps`` NaN at fluid fidelity,
which has no steps), the committed routing share and planned tokens [tokens/s], IT
and facility energy [kWh], the lateness of the requests that arrived in the
interval (:mod:`mpc_dc.sim.lateness`: late requests, seconds late, their price [$]) and
the fast layer's actions (:data:`~mpc_dc.sim.fast_layer.FAST_POOL_COLUMNS` and
:data:`~mpc_dc.sim.fast_layer.DR_POOL_COLUMNS`, zeros without it). Energy costs are
settled per campus (its grid connection), not per pool."""

_FROM_STATS: tuple[str, ...] = (
    "instances", "ready_instance_s", "instance_s", "arrivals", "arrived_tokens", "started",
    "queue_end", "tokens_decoded", "busy_slot_s", "prefill_tokens", "decode_steps",
    "idle_energy_j", "active_energy_j",
)


@dataclass(frozen=True)
class ServingBook:
    """Serving totals the invariants check (arrays over run intervals and pools).

    Attributes
    ----------
    requests_offered : ndarray [requests], (n_steps,)
        Requests of the run arriving in each interval.
    dropped_no_route : ndarray [requests], (n_steps,)
        Requests whose model had no pool with a positive share.
    tokens_backlog_end : ndarray [tokens], (P,)
        Fluid only: response tokens still waiting at the run end (zeros at request level).
    queued_tokens, moved_tokens : ndarray [tokens], (n_steps, P), or None
        Fluid only: response tokens waiting at each interval's end, and moved in by
        re-dispatch at its start (minus moved out), per pool.
    """

    requests_offered: np.ndarray
    dropped_no_route: np.ndarray
    tokens_backlog_end: np.ndarray
    queued_tokens: np.ndarray | None = None
    moved_tokens: np.ndarray | None = None


@dataclass(frozen=True)
class RunResult:
    """Outcome of one closed-loop site run.

    Attributes
    ----------
    site : Site
    ledger : DataFrame
        One row per (interval, campus); index ``(interval_start_utc, campus)``.
    pools : DataFrame or None
        One row per (interval, pool); index ``(interval_start_utc, campus, model,
        precision)``; None without a fleet.
    kpis : dict
        Headline figures (:func:`compute_kpis`).
    backlogs : Mapping[str, Backlog]
        Deferrable work at the end, per campus with other IT.
    decisions : tuple of Decision
        As committed (after projection), one per interval.
    decide_time_s : ndarray [s]
        Wall time of each ``policy.decide``.
    settlement : Mapping[str, Mapping[str, float]]
        The meters' books: each cost component summed per campus [$].
    initial_battery_mwh : Mapping[str, float] [MWh]
    initial_backlog_wu : Mapping[str, float] [WU]
        Deferrable work pending at the run start, per campus with other IT.
    requests : DataFrame or None
        Per-request samples (request level).
    outcome : ServingOutcome or None
        All per-request records (request level).
    slo : tuple of ndarray or None
        :func:`~mpc_dc.sim.serving.slo_met` of ``outcome``.
    serving_book : ServingBook or None
    penalties : Penalties
    local_tz : str
    serving : ServingConfig or None
        How serving was simulated and judged (with a fleet): SLOs and lateness prices.
    fast_actions : DataFrame or None
        The fast layer's actions (:attr:`~mpc_dc.sim.fast_layer.FastLayer.actions`);
        None when it is off or there is no fleet.
    slo_parts : tuple of ndarray or None
        :func:`~mpc_dc.sim.serving.slo_parts` of ``outcome`` (TTFT met, TPOT met,
        decided).
    fluid_late_share : ndarray or None
        Fluid fidelity: the share of each (interval, pool)'s arrivals estimated late
        (:func:`~mpc_dc.sim.lateness.fluid_late_share`), (n_steps, P) [-]; estimated once
        for the lateness book and the SLO estimate.
    """

    site: Site
    ledger: pd.DataFrame
    pools: pd.DataFrame | None
    kpis: dict[str, Any]
    backlogs: Mapping[str, Backlog]
    decisions: tuple[Decision, ...]
    decide_time_s: np.ndarray
    settlement: Mapping[str, Mapping[str, float]]
    initial_battery_mwh: Mapping[str, float]
    initial_backlog_wu: Mapping[str, float]
    requests: pd.DataFrame | None
    outcome: ServingOutcome | None
    slo: tuple[np.ndarray, np.ndarray] | None
    serving_book: ServingBook | None
    penalties: Penalties
    local_tz: str
    serving: ServingConfig | None = None
    fast_actions: pd.DataFrame | None = None
    slo_parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    fluid_late_share: np.ndarray | None = None

    def campus_ledger(self, campus: str) -> pd.DataFrame:
        """The ledger rows of one campus, indexed by interval start."""
        led = self.ledger
        return led[led.index.get_level_values("campus") == campus].droplevel("campus")


class _Fleet:
    """The serving side of a run: server, pool bookkeeping, instances still loading."""

    def __init__(self, exo: SiteExogenous, serving: ServingConfig,
                 fast_layer: FastLayerConfig | None = None) -> None:
        site = exo.site
        assert exo.requests is not None  # checked by SiteExogenous
        self.keys: tuple[PoolKey, ...] = site.pools
        self.specs = tuple(PoolSpec.from_row(k, site.row(k), serving.slots_per_instance)
                           for k in self.keys)
        self.index_of = {k: i for i, k in enumerate(self.keys)}
        n = exo.n_steps
        self.server: Server
        if serving.fidelity == "request":
            if not isinstance(exo.requests, RequestArrays):
                raise ValueError("request-level serving needs the requests themselves; this run "
                                 "has per-interval aggregates only (serving.fidelity = 'fluid')")
            self.server = RequestLevelServer(self.specs, exo.requests, n)
        else:
            self.server = FluidServer(self.specs, site.models, exo.requests.per_interval(n), n)
        names = site.campus_names
        P, C = len(self.keys), len(names)
        self.campus_of = np.array([names.index(k[0]) for k in self.keys])
        self.campus_matrix = np.zeros((C, P))
        self.campus_matrix[self.campus_of, np.arange(P)] = 1.0
        self.pue = np.array([site.campuses[c].pue for c in self.campus_of])
        self.gpus_per_instance = np.array([site.row(k).gpus_per_instance for k in self.keys])
        # Ready times [s] of instances still loading, per pool (cancelled latest first
        # on scale-down, as the servers do).
        self.loading: list[list[float]] = [[] for _ in self.keys]
        self.cols = {c: np.zeros((n, P)) for c in POOL_COLUMNS}
        self.dropped = np.zeros(n)
        self.fast: FastLayer | None = None
        if fast_layer is not None and fast_layer.enabled:
            prior = {m: mix.response_tokens for m, mix in exo.request_mix.items()}
            self.fast = FastLayer(site, self.specs, fast_layer, exo.requests, n, prior,
                                  serving.fidelity)
            # The layer writes its columns of the pool table.
            self.cols.update(self.fast.cols)

    def observe(self, step: int) -> tuple[dict[PoolKey, int], dict[PoolKey, int],
                                          dict[PoolKey, float]]:
        """Instances running and loading, and queued requests, at the start of ``step``."""
        now = step * STEP_S
        loading = self.loading
        for i, ready in enumerate(loading):
            if ready:
                # An instance ready exactly at ``now`` serves from ``now`` on.
                loading[i] = [r for r in ready if r > now]
        starting = dict(zip(self.keys, map(len, loading), strict=True))
        committed = self.server.committed_instances().tolist()
        running = {k: c - starting[k] for k, c in zip(self.keys, committed, strict=True)}
        waiting = self.server.queue_history[step - 1].tolist() if step else [0.0] * len(loading)
        queue = dict(zip(self.keys, map(float, waiting), strict=True))
        return running, starting, queue

    def target(self, fleet: FleetDecision) -> np.ndarray:
        """Committed instances per pool [-], (P,)."""
        target = np.zeros(len(self.keys), dtype=np.int64)
        for key, count in fleet.instances.items():
            target[self.index_of[key]] = count
        return target

    def serve(self, step: int, target: np.ndarray, fleet: FleetDecision) -> IntervalStats:
        """Apply the committed instances ``target`` (:meth:`target`) and the shares at the
        interval start; serve it."""
        self._apply_target(step, target)
        stats = self.server.run_interval(step, target, fleet.routing_share)
        self._record(step, stats, fleet)
        return stats

    def serve_fast(self, env: simpy.Environment, step: int, target: np.ndarray,
                   fleet: FleetDecision, limits: CampusLimits
                   ) -> Generator[simpy.Event, Any, IntervalStats]:
        """:meth:`serve` with the fast layer (a simpy process from the interval start):
        its decision at the boundary, then, at request level, its wake-ups inside."""
        fast = self.fast
        assert fast is not None
        plan = fast.at_boundary(step, self.server, target, fleet.routing_share, limits)
        self._apply_target(step, plan.target)
        server = self.server
        if isinstance(server, RequestLevelServer):
            stats = yield env.process(fast.serve(
                env, server, step, plan.target, plan.shares, limits,
                lambda pool, ready: self.loading[pool].append(ready)))
        else:
            stats = server.run_interval(step, plan.target, plan.shares)
        self._record(step, stats, fleet)
        return stats

    def _apply_target(self, step: int, target: np.ndarray) -> None:
        """Keep the ready times of loading instances in step with a change of the
        committed instances to ``target`` at the start of ``step``."""
        now = step * STEP_S
        before = self.server.committed_instances()
        for i in np.flatnonzero(target != before):
            change = int(target[i] - before[i])
            if change > 0:
                self.loading[i].extend([now + self.specs[i].load_time_s] * change)
            else:
                self.loading[i].sort()
                del self.loading[i][max(len(self.loading[i]) + change, 0):]

    def _record(self, step: int, stats: IntervalStats, fleet: FleetDecision) -> None:
        """Write the interval's row of the pool table."""
        cols = self.cols
        for name in _FROM_STATS:
            value = getattr(stats, name)
            cols[name][step] = np.nan if value is None else value
        cols["planned_tokens_per_s"][step] = [fleet.planned_tokens_per_s.get(k, 0.0)
                                              for k in self.keys]
        cols["routing_share"][step] = [fleet.routing_share.get(k, 0.0) for k in self.keys]
        it_kwh = (stats.idle_energy_j + stats.active_energy_j) / 3.6e6
        cols["it_energy_kwh"][step] = it_kwh
        cols["facility_energy_kwh"][step] = it_kwh * self.pue
        self.dropped[step] = stats.dropped_no_route

    def inference_it_mw(self, stats: IntervalStats) -> np.ndarray:
        """IT power of inference per campus over the interval [MW], (C,)."""
        energy_j = stats.idle_energy_j + stats.active_energy_j
        return np.asarray(self.campus_matrix @ energy_j) / J_PER_MWH / STEP_H


class _Loop:
    """State and processes of one run (module docstring)."""

    def __init__(self, exo: SiteExogenous, policy: Policy, serving: ServingConfig,
                 penalties: Penalties, progress: Callable[[int], object] | None,
                 faults: FaultInjector | None = None,
                 fast_layer: FastLayerConfig | None = None) -> None:
        self.exo, self.policy, self.progress, self.serving = exo, policy, progress, serving
        self.injector = faults
        site = exo.site
        self.site = site
        self.names = site.campus_names
        self.plants = [CampusPlant(c) for c in site.campuses]
        # The export price a decision without one is committed on, (n, C) [$/MWh]: the
        # last published market price through each campus's tariff (an hourly price:
        # the last whole hour's), what a policy without a forecast knows at t.
        self.published_export_price = np.column_stack([
            tariff_prices(exo.last_published_values(exo_column("price_usd_per_mwh", c.name)),
                          c.grid.tariff)[1] for c in site.campuses])
        self.meters = [CampusMeter(c, site.carbon_price_usd_per_t, site.dr, penalties)
                       for c in site.campuses]
        self.backlogs: list[Backlog | None] = [
            exo.initial_backlog(c.name) if c.other_it is not None else None
            for c in site.campuses]
        self.on_arrival = [b is not None and exo.releases_on_arrival(c.name)
                           for b, c in zip(self.backlogs, site.campuses, strict=True)]
        self.fleet = _Fleet(exo, serving, fast_layer) if site.fleet is not None else None
        self._lateness_to_date: RequestLatenessToDate | None = None
        # fluid: the lateness of each interval booked so far [$], summed up to it
        self._fluid_late_to_date = np.zeros(0)
        n, C = exo.n_steps, len(site.campuses)
        self.times = list(exo.run_index)
        self.periods = billing_periods(exo.run_index, exo.local_tz)
        self.block = np.zeros((n, C, len(LEDGER_COLUMNS)))
        # What does not depend on the run is filled up front.
        self.block[:, :, 0] = np.arange(n)[:, None]
        first = LEDGER_COLUMNS.index(_EXO_COLUMNS[0])
        for j, name in enumerate(("price", "import_price", "export_price", "carbon", "cf",
                                  "event", "baseline")):
            self.block[:, :, first + j] = exo.realized_array(name)
        self._record_cols = slice(1, 1 + len(RECORD_COLUMNS) + len(_WORK_COLUMNS))
        self._meter_cols = slice(first + len(_EXO_COLUMNS), len(LEDGER_COLUMNS))
        self.sources: list[str] = []
        self.decisions: list[Decision] = []
        self.decide_s = np.zeros(n)
        self.projections: Counter[str] = Counter()
        self.exo_gpus = exo.realized_array("gpus")
        # The plant holds each event interval's committed cap (site.dr.enforce_cap).
        self.enforce_cap = site.dr.enforce_cap
        # The DR programme's own baseline (site.dr.baseline = "prior_days"), from the ledger.
        self.program: ProgramBaseline | None = program_of(exo)

    # -- processes --------------------------------------------------------------------------
    def controller(self, boundaries: simpy.Store,
                   to_plant: simpy.Store) -> Generator[simpy.Event, Any, None]:
        """At each boundary: observe, ask the policy, pass the cleaned decision on."""
        n = self.exo.n_steps
        while True:
            step = yield boundaries.get()
            if step >= n:
                return
            obs = self.observation(step)
            tick = time.perf_counter()
            decision = self.policy.decide(obs)
            self.decide_s[step] = time.perf_counter() - tick
            yield to_plant.put((step, self.project(step, decision)))

    def run_plant(self, env: simpy.Environment, to_plant: simpy.Store,
                  to_replay: simpy.Store) -> Generator[simpy.Event, Any, None]:
        """Serve the interval, run every campus's plant, wait the interval."""
        exo = self.exo
        C = len(self.names)
        while True:
            step, decision = yield to_plant.get()
            self.decisions.append(decision)
            realized = exo.realized(step)
            if self.program is not None:
                # the fast layer's DR cap is the programme's announced baseline
                realized = self.program.realized(step, realized)
            for c, name in enumerate(self.names):
                backlog = self.backlogs[c]
                if backlog is not None and self.on_arrival[c]:
                    # Work arriving during the interval may run in it, like ND work.
                    backlog.release(exo.deferrable_arrival_wu(name, step),
                                    exo.window_deadline(name, step))
            # Each campus's decision, set-points and committed DR cap, computed once for
            # the fast layer's limits and the plants alike.
            decided = [self.committed(step, c, decision.campus(name))
                       for c, name in enumerate(self.names)]
            starts = [plant.setpoints(d, r, backlog) for plant, d, r, backlog in zip(
                self.plants, decided, realized, self.backlogs, strict=True)]
            fraction = self.site.dr.cap_fraction_of_baseline
            caps = [committed_cap_mw(r, d, fraction)
                    for d, r in zip(decided, realized, strict=True)]
            inference = np.zeros(C)
            fleet = self.fleet
            if fleet is not None:
                target = fleet.target(decision.fleet)
                if self.injector is not None:
                    target = self.injector.before_serving(step, fleet, target)
                if fleet.fast is None:
                    stats = fleet.serve(step, target, decision.fleet)
                else:
                    stats = yield env.process(fleet.serve_fast(
                        env, step, target, decision.fleet,
                        self.limits(step, realized, starts, caps)))
                inference = fleet.inference_it_mw(stats)
            records: list[CampusRecord] = []
            for c, name in enumerate(self.names):
                try:
                    records.append(self.plants[c].execute(
                        step, decided[c], realized[c], self.backlogs[c],
                        float(inference[c]), caps[c], self.enforce_cap, starts[c]))
                except InvariantError as err:
                    raise InvariantError(f"campus {name}: {err.message}", err.step,
                                         exo.time(step)) from None
            # The fast layer has served the interval already (its end is now).
            yield env.timeout((step + 1) * STEP_S - env.now)
            yield to_replay.put((step, decision, realized, records))

    def replay(self, to_replay: simpy.Store,
               to_meter: simpy.Store) -> Generator[simpy.Event, Any, None]:
        """At the interval end: release and expire deferrable work, publish observations."""
        exo = self.exo
        while True:
            step, decision, realized, records = yield to_replay.get()
            work: list[tuple[float, float]] = []
            for c, name in enumerate(self.names):
                backlog = self.backlogs[c]
                if backlog is None:
                    work.append((0.0, 0.0))
                    continue
                arrival = exo.deferrable_arrival_wu(name, step)
                if not self.on_arrival[c]:
                    backlog.release(arrival, exo.window_deadline(name, step + 1))
                due = backlog.overdue_wu(step + 1)
                missed = backlog.expire(step + 1)
                try:
                    check_deadlines(step, name, due, missed, backlog.overdue_wu(step + 1))
                except InvariantError as err:
                    raise err.at(exo.time(step)) from None
                work.append((arrival, missed))
            # Only what is published by now: an hourly value at the end of its hour.
            published = exo.published_during(step)
            if self.injector is not None:
                published = self.injector.published(step, published)
            for when, values in published:
                self.policy.observe(when, values)
            yield to_meter.put((step, decision, realized, records, work))

    def run_meter(self, to_meter: simpy.Store,
                  boundaries: simpy.Store) -> Generator[simpy.Event, Any, None]:
        """Settle every campus, write the ledger rows, open the next boundary."""
        n = self.exo.n_steps
        while True:
            # realized as the plant saw it (with the programme's announced baseline)
            step, decision, realized, records, work = yield to_meter.get()
            period = self.periods[step]
            ends = step == n - 1 or self.periods[step + 1] != period
            row = self.block[step]
            for c, record in enumerate(records):
                arrival, missed = work[c]
                backlog = self.backlogs[c]
                row[c, self._meter_cols] = self.meters[c].settle(
                    period, import_mw=record.import_mw, export_mw=record.export_mw,
                    realized=realized[c], unserved_wu=record.work_nd_unserved_wu,
                    missed_wu=missed, period_ends=ends)
                row[c, self._record_cols] = (*record.values(), arrival, missed,
                                             0.0 if backlog is None else backlog.total_wu)
            self.sources.append(decision.source)
            if self.progress is not None:
                self.progress(1)
            if self.program is not None:
                self.announce_dr(step + 1)
            yield boundaries.put(step + 1)

    # -- helpers ----------------------------------------------------------------------------
    def announce_dr(self, step: int) -> None:
        """The DR events whose notice is ``step``: baseline from the ledger's import so
        far into the ledger, event and baseline published to the policy."""
        assert self.program is not None
        imp = LEDGER_COLUMNS.index("import_mw")
        base = LEDGER_COLUMNS.index("dr_baseline_mw")
        for e in self.program.publish(step, self.block[:step, :, imp]):
            self.block[e.steps, e.campus, base] = self.program.baseline_mw[e.steps, e.campus]
            for k, values in self.program.messages(e, self.names[e.campus]):
                self.policy.observe(self.times[k], values)

    def observation(self, step: int) -> Observation:
        """What the policy sees at the start of ``step``."""
        period = self.periods[step]
        gpus = (self.exo_gpus[max(step - 1, 0)] if self.injector is None
                else self.injector.gpus_available(step))
        campuses = {
            name: CampusObservation(
                backlog_wu=() if b is None else tuple(sorted(b.pending.items())),
                peak_import_to_date_mw=m.peak_to_date(period),
                battery_energy_mwh=p.battery_energy_mwh,
                gpus_available=float(g),
            )
            for name, b, m, p, g in zip(self.names, self.backlogs, self.meters, self.plants,
                                        gpus, strict=True)
        }
        if self.fleet is None:
            return Observation(step=step, time=self.times[step], campuses=campuses)
        running, starting, queue = self.fleet.observe(step)
        return Observation(step=step, time=self.times[step], campuses=campuses,
                           instances_running=running, instances_starting=starting,
                           queue_requests=queue)

    def limits(self, step: int, realized: Sequence[CampusRealized],
               starts: Sequence[Setpoints], caps: Sequence[float | None]) -> CampusLimits:
        """What bounds the fast layer in ``step``: GPUs available per campus (fewer in
        an ``[[outages]]`` entry and, with faults, less those a GPU loss took:
        :meth:`~mpc_dc.sim.faults.FaultInjector.gpus_in`), the inference power each
        campus may average without shedding anything committed or crossing its import
        limit or, in a DR event, its committed cap
        (:meth:`~mpc_dc.sim.plant.CampusPlant.inference_headroom_mw`) and, with
        ``site.dr.enforce_cap``, the inference power it may average in an event with
        the cap held by the plant's levers
        (:meth:`~mpc_dc.sim.plant.CampusPlant.inference_cap_mw`; inf elsewhere).
        Without enforcement the cap the layer's starts keep within is the programme's,
        ``f · b``, as before the committed cap existed. ``starts`` and ``caps``: the
        campuses' set-points and committed caps of the interval, as the plants run them."""
        if not self.enforce_cap:
            fraction = self.site.dr.cap_fraction_of_baseline
            caps = [fraction * r.dr_baseline_mw if r.dr_event else None for r in realized]
        headroom = [plant.inference_headroom_mw(start, cap)
                    for plant, start, cap in zip(self.plants, starts, caps, strict=True)]
        hard = [math.inf if cap is None or not self.enforce_cap
                else plant.inference_cap_mw(start, cap)
                for plant, start, cap in zip(self.plants, starts, caps, strict=True)]
        gpus = (self.exo_gpus[step] if self.injector is None
                else self.injector.gpus_in(step))
        return CampusLimits(np.array(gpus, dtype=float), 1e6 * np.array(headroom),
                            1e6 * np.array(hard))

    def lateness_to_date_usd(self, step: int) -> float:
        """The price of the lateness certain by the end of ``step`` [$], served that far
        (:mod:`mpc_dc.sim.lateness`; 0 without a fleet): fluid, the lateness of the
        intervals up to ``step`` (each estimated as its interval closes); request level,
        that of the requests as they stood then
        (:meth:`~mpc_dc.sim.serving.ServingOutcome.at`), booked incrementally
        (:class:`~mpc_dc.sim.lateness.RequestLatenessToDate`: steps asked in order)."""
        fleet = self.fleet
        if fleet is None:
            return 0.0
        server, serving = fleet.server, self.serving
        if isinstance(server, FluidServer):
            # each row is its interval's own estimate, final once served: estimate only
            # the rows not booked yet (the late share costs more than a sum per row)
            done = self._fluid_late_to_date.size
            if step >= done:
                book = fluid_book(server, serving, fleet.cols["arrivals"], upto=step + 1,
                                  start=done)
                rows = book.lateness_usd[done:step + 1].sum(axis=1)
                before = self._fluid_late_to_date[-1] if done else 0.0
                self._fluid_late_to_date = np.concatenate(
                    [self._fluid_late_to_date, before + np.cumsum(rows)])
            return float(self._fluid_late_to_date[step])
        if self._lateness_to_date is None:
            self._lateness_to_date = RequestLatenessToDate(server, self.site, serving)
        return self._lateness_to_date.usd((step + 1) * STEP_S)

    def committed(self, step: int, c: int, decision: CampusDecision) -> CampusDecision:
        """Campus ``c``'s decision with the export price it is executed on: its own, or
        where it gives none (NaN) the last published one (:attr:`published_export_price`),
        so the plant never acts on a price not yet published (DESIGN.md §8)."""
        if math.isfinite(decision.export_price_usd_per_mwh):
            return decision
        return replace(decision,
                       export_price_usd_per_mwh=float(self.published_export_price[step, c]))

    def project(self, step: int, decision: Decision) -> Decision:
        """The decision projected on what the site can do now, each projection counted
        and logged once per run and rule (:mod:`mpc_dc.sim.projection`)."""
        index_of = {} if self.fleet is None else self.fleet.index_of
        projected, counts = project_decision(self.site, decision, self.plants, index_of,
                                             self.exo_gpus[step])
        for rule in counts:
            if not self.projections[rule]:
                logger.warning("decision of %r at step %d: %s; projected on what the site "
                               "can do (counted in decision_projections)", decision.source,
                               step, rule.replace("_", " "))
        self.projections.update(counts)
        return projected

    # -- results ----------------------------------------------------------------------------
    def ledger(self) -> pd.DataFrame:
        """The (interval, campus) ledger: :data:`LEDGER_COLUMNS`, the decision's source
        and, with a fleet, the campus's serving totals, instances and routed shares."""
        n, C = len(self.times), len(self.names)
        index = pd.MultiIndex.from_arrays(
            [np.repeat(np.asarray(self.exo.run_index), C), np.tile(np.array(self.names), n)],
            names=["interval_start_utc", "campus"])
        led = pd.DataFrame(self.block.reshape(n * C, -1), index=index, columns=LEDGER_COLUMNS)
        led["step"] = led["step"].astype(np.int64)
        led["dr_event"] = led["dr_event"] > 0.5
        led["decision_source"] = np.repeat(np.array(self.sources, dtype=object), C)
        if self.fleet is None:
            return led
        fleet = self.fleet
        cols = fleet.cols

        def per_campus(values: np.ndarray) -> np.ndarray:
            """Pool values (n, P) summed over each campus's pools, flattened (n·C,)."""
            return np.asarray(values @ fleet.campus_matrix.T).reshape(-1)

        extra: dict[str, np.ndarray] = {
            name: per_campus(cols[pool_column]) for name, pool_column in zip(
                FLEET_CAMPUS_COLUMNS, ("tokens_decoded", "arrived_tokens", "arrivals",
                                       *LATENESS_COLUMNS,
                                       *FAST_POOL_COLUMNS[:len(FAST_CAMPUS_COLUMNS)],
                                       *DR_POOL_COLUMNS),
                strict=True)}
        for model in self.site.models:
            for precision in dict.fromkeys(k[2] for k in fleet.keys if k[1] == model):
                mine = np.array([k[1:] == (model, precision) for k in fleet.keys])
                extra[f"instances[{model}/{precision}]"] = per_campus(cols["instances"] * mine)
        for model in self.site.models:
            mine = np.array([k[1] == model for k in fleet.keys])
            extra[f"routing_share[{model}]"] = per_campus(cols["routing_share"] * mine)
        return pd.concat([led, pd.DataFrame(extra, index=index)], axis=1)

    def pool_table(self) -> pd.DataFrame | None:
        """The (interval, pool) table (:data:`POOL_COLUMNS`); None without a fleet."""
        if self.fleet is None:
            return None
        keys = self.fleet.keys
        n, P = len(self.times), len(keys)
        index = pd.MultiIndex.from_arrays(
            [np.repeat(np.asarray(self.exo.run_index), P), np.tile([k[0] for k in keys], n),
             np.tile([k[1] for k in keys], n), np.tile([k[2] for k in keys], n)],
            names=["interval_start_utc", "campus", "model", "precision"])
        return pd.DataFrame({c: self.fleet.cols[c].reshape(-1) for c in POOL_COLUMNS},
                            index=index)


def simulation(
    exo: SiteExogenous,
    policy: Policy,
    *,
    serving: ServingConfig | None = None,
    penalties: Penalties | None = None,
    progress: Callable[[int], object] | None = None,
    faults: FaultInjector | None = None,
    fast_layer: FastLayerConfig | None = None,
) -> Generator[tuple[simpy.Environment, _Loop], None, RunResult]:
    """The closed loop of ``policy`` over the run period of ``exo``, as a generator.

    It yields ``(env, loop)`` once the processes are set up; the caller runs ``env``
    to its end, at once (:func:`simulate`) or interval by interval (the Gymnasium
    environment, :mod:`mpc_dc.gym_env`), then resumes the generator, which returns
    the :class:`RunResult` (:func:`finish`).

    Parameters
    ----------
    exo : SiteExogenous
    policy : Policy
    serving : ServingConfig, optional
        Fidelity, SLOs and samples of the inference serving (used with a fleet).
    penalties : Penalties, optional
        Prices of unserved and missed other-IT work.
    progress : callable, optional
        Called with 1 after each interval (e.g. ``tqdm.update``).
    faults : FaultInjector, optional
        Injects the plant's and the publication's faults (:mod:`mpc_dc.sim.faults`;
        the policy holds the same injector for its own); adds ``faults_active`` to the
        ledger and the fault KPIs.
    fast_layer : FastLayerConfig, optional
        The fast layer inside the interval (:mod:`mpc_dc.sim.fast_layer`); None or
        disabled: none (the default of this function; scenarios switch it with
        ``[controller.fast_layer]``).

    Raises
    ------
    InvariantError
        When a book does not close (:func:`check_invariants`); a simulator defect.
    """
    wall = time.perf_counter()
    exo.check_dr_baseline()
    serving = serving or ServingConfig()
    penalties = penalties or Penalties()
    loop = _Loop(exo, policy, serving, penalties, progress, faults, fast_layer)
    initial_battery = {p.campus.name: p.battery_energy_mwh for p in loop.plants}
    # From the exogenous rule, not the backlog: the books check the backlog against it.
    initial_backlog = {name: exo.batch_wu(name, 0) for name, b in zip(loop.names, loop.backlogs,
                                                                      strict=True)
                       if b is not None}
    env = simpy.Environment()
    boundaries, to_plant, to_replay, to_meter = (simpy.Store(env) for _ in range(4))
    env.process(loop.controller(boundaries, to_plant))
    env.process(loop.run_plant(env, to_plant, to_replay))
    env.process(loop.replay(to_replay, to_meter))
    env.process(loop.run_meter(to_meter, boundaries))
    boundaries.put(0)
    yield env, loop
    n = exo.n_steps
    if len(loop.sources) != n:
        raise RuntimeError(f"simulation ended after {len(loop.sources)} of {n} intervals")
    fleet = loop.fleet
    outcome = None
    slo = parts = None
    samples = None
    book = None
    fluid_estimate: tuple[np.ndarray, np.ndarray] | None = None
    if fleet is not None:
        assert exo.requests is not None
        server = fleet.server
        if isinstance(server, RequestLevelServer):
            outcome = server.outcome()
            # judged once, for the samples, the lateness and the KPIs
            parts = slo_parts(outcome, exo.site, serving)
            slo = slo_met(outcome, exo.site, serving, parts)
            samples = request_frame(outcome, exo.site, serving, slo=slo)
        offered = np.diff(exo.requests.interval_bounds(n)).astype(float)
        if isinstance(server, FluidServer):
            book = ServingBook(offered, fleet.dropped.copy(), server.backlog_tokens.copy(),
                               server.queued_tokens, server.moved_tokens)
            fluid_estimate = fluid_late_share(server, serving)
            late = fluid_book(server, serving, fleet.cols["arrivals"],
                              estimate=fluid_estimate)
        else:
            book = ServingBook(offered, fleet.dropped.copy(), np.zeros(len(fleet.keys)))
            assert outcome is not None
            late = request_book(outcome, exo.site, serving, n, parts=parts)
        fleet.cols.update(late.columns())
    ledger = loop.ledger()
    if faults is not None:
        ledger["faults_active"] = faults.ledger_column()
    pools = loop.pool_table()
    result = RunResult(
        site=exo.site, ledger=ledger, pools=pools, kpis={},
        backlogs={name: b for name, b in zip(loop.names, loop.backlogs, strict=True)
                  if b is not None},
        decisions=tuple(loop.decisions), decide_time_s=loop.decide_s,
        settlement={m.campus.name: dict(m.totals) for m in loop.meters},
        initial_battery_mwh=initial_battery, initial_backlog_wu=initial_backlog,
        requests=samples, outcome=outcome, slo=slo, slo_parts=parts,
        fluid_late_share=None if fluid_estimate is None else fluid_estimate[0],
        serving_book=book, penalties=penalties, local_tz=exo.local_tz,
        serving=serving if fleet is not None else None,
        fast_actions=None if fleet is None or fleet.fast is None else fleet.fast.actions)
    initial_batches = sum(initial_backlog.values())
    kpis = compute_kpis(result, policy, serving, loop.projections, time.perf_counter() - wall,
                        fluid=fleet.server if fleet is not None and isinstance(
                            fleet.server, FluidServer) else None,
                        requeued=0.0 if fleet is None else float(fleet.server.requeued_requests),
                        initial_batches_wu=initial_batches)
    if fleet is not None:
        kpis["fast_layer_enabled"] = fleet.fast is not None
    result.kpis.update(kpis)
    if faults is not None:
        result.kpis.update(faults.kpis(loop.sources))
        faults.log_summary()
    over = result.kpis["import_over_limit_intervals"]
    if over:
        logger.warning("import above the connection limit in %d (interval, campus) rows, "
                       "%.3f MWh in all: inference drew more than the campus could shed",
                       over, result.kpis["import_over_limit_mwh"])
    check_invariants(result)
    return result


def finish(run: Generator[tuple[simpy.Environment, _Loop], None, RunResult]) -> RunResult:
    """Resume :func:`simulation` ``run`` after its ``env`` has run out: the
    :class:`RunResult`."""
    try:
        next(run)
    except StopIteration as stop:
        result: RunResult = stop.value
        return result
    raise RuntimeError("simulation() yielded twice")


def simulate(
    exo: SiteExogenous,
    policy: Policy,
    *,
    serving: ServingConfig | None = None,
    penalties: Penalties | None = None,
    progress: Callable[[int], object] | None = None,
    faults: FaultInjector | None = None,
    fast_layer: FastLayerConfig | None = None,
) -> RunResult:
    """Run ``policy`` closed-loop over the run period of ``exo`` in one go: the
    :func:`simulation` with these arguments (parameters and errors as there)."""
    run = simulation(exo, policy, serving=serving, penalties=penalties, progress=progress,
                     faults=faults, fast_layer=fast_layer)
    env, _ = next(run)
    # The loop's linear algebra is tiny (Kalman filters, 3x3 states): multi-threaded
    # BLAS only adds synchronisation (forecasters/statistical.py has the measurement).
    with threadpool_limits(limits=1, user_api="blas"):
        env.run()
    return finish(run)


# ----------------------------------------------------------------------------- KPIs


def compute_kpis(
    result: RunResult,
    policy: Any,
    serving: ServingConfig,
    projections: Mapping[str, int],
    wall_time_s: float,
    *,
    fluid: FluidServer | None = None,
    requeued: float = 0.0,
    initial_batches_wu: float = 0.0,
) -> dict[str, Any]:
    """Headline figures of a run, one meaning per key.

    Costs [$] (net ``cost_usd``, which includes the price of lateness with a fleet,
    ``cost_without_slo_usd`` without it, its two sides ``costs_usd`` (every term but the
    credits, the price of lateness included) and ``revenue_usd`` (export revenue + DR
    reward), ``cost_usd = costs_usd − revenue_usd``
    (:func:`~mpc_dc.sim.meter.costs_and_revenue_usd`), and each
    :data:`~mpc_dc.sim.meter.COST_COLUMNS` component), energy [MWh], carbon [t], other-IT
    work [WU], solver and decision times [s], faults, the solves HiGHS stopped on its
    wall-clock limit (``solver_time_limit_hits``: a run with any is not reproducible) and
    on its node limit (``solver_node_limit_hits``: reproducible, an incumbent plan), the
    warm-started LP runs HiGHS failed on and re-solved cold (``warm_start_failures``),
    the roundings repaired by a chunk MIP or kept within ``controller.repair_token_share``
    (``chunk_mip_repairs``, ``repairs_skipped``), the
    decision projections (:mod:`mpc_dc.sim.projection`), DR compliance; with a fleet,
    serving figures (requests, tokens, latency percentiles [s], SLO attainment [-] and
    requests that missed their SLO: counted at request level, estimated at fluid level;
    ``late_requests``, ``late_s`` [s] and ``lateness_usd`` [$],
    :mod:`mpc_dc.sim.lateness`); ``by_campus`` holds the per-campus energy and cost (with
    its lateness). ``work_df_arrived_wu`` counts the first windows' batches (released at
    the start) besides the submissions during the run.
    """
    # Column access on the (interval, campus) index costs a MultiIndex view each time.
    led = result.ledger.reset_index(drop=True)
    C = len(result.site.campuses)
    n = len(led) // C
    flows = ["import_mw", "export_mw", "renewable_used_mw", "curtailed_mw",
             "renewable_available_mw", "facility_power_mw", "it_inference_mw", "it_other_mw",
             "import_over_limit_mw"]
    energy = led[flows].sum() * STEP_H
    site_import = led["import_mw"].to_numpy().reshape(n, C).sum(axis=1)
    decide = result.decide_time_s
    stats = getattr(policy, "stats", None)
    solve = np.asarray(getattr(stats, "solve_times_s", []), dtype=float)
    highs = np.asarray(getattr(stats, "highs_times_s", []), dtype=float)
    fallbacks = dict(getattr(stats, "fallbacks", {}))
    facility = float(energy["facility_power_mw"])
    self_mwh = float(energy["renewable_used_mw"] - energy["export_mw"])
    cost = net_cost_usd(led)
    costs, revenue = costs_and_revenue_usd(led)
    kpis: dict[str, Any] = {
        "intervals": n,
        "campuses": len(result.site.campuses),
        "cost_usd": cost,
        # its two sides: percentages of cost are of costs_usd, never of the net
        "costs_usd": costs,
        "revenue_usd": revenue,
        # the same without the price of lateness (the SLO term; 0 without a fleet)
        "cost_without_slo_usd": cost - (float(led["lateness_usd"].sum())
                                        if "lateness_usd" in led else 0.0),
        **{c: float(led[c].sum()) for c in COST_COLUMNS},
        "carbon_t": float(led["carbon_kg"].sum()) / 1000.0,
        "import_mwh": float(energy["import_mw"]),
        "export_mwh": float(energy["export_mw"]),
        "facility_energy_mwh": facility,
        "it_energy_mwh": float(energy["it_inference_mw"] + energy["it_other_mw"]),
        "inference_it_energy_mwh": float(energy["it_inference_mw"]),
        "other_it_energy_mwh": float(energy["it_other_mw"]),
        "renewable_available_mwh": float(energy["renewable_available_mw"]),
        "renewable_used_mwh": float(energy["renewable_used_mw"]),
        "curtailed_mwh": float(energy["curtailed_mw"]),
        "self_consumption_mwh": self_mwh,
        "self_consumption_share": self_mwh / facility if facility else 0.0,
        "peak_import_mw": float(site_import.max()) if site_import.size else 0.0,
        "import_over_limit_mwh": float(energy["import_over_limit_mw"]),
        "import_over_limit_intervals": int((led["import_over_limit_mw"] > 0).sum()),
        "work_nd_wu": float(led["work_nd_wu"].sum()),
        "work_nd_unserved_wu": float(led["work_nd_unserved_wu"].sum()),
        "work_df_arrived_wu": float(led["work_df_arrived_wu"].sum()) + initial_batches_wu,
        "work_df_done_wu": float(sum(b.done_wu for b in result.backlogs.values())),
        "work_df_missed_wu": float(sum(b.missed_wu for b in result.backlogs.values())),
        "work_df_pending_end_wu": float(sum(b.total_wu for b in result.backlogs.values())),
        "deadline_miss_intervals": int((led["work_df_missed_wu"] > 1e-9).sum()),
        **_dr_kpis(led),
        "dr_cap_enforced": result.site.dr.enforce_cap,
        "solves": int(getattr(stats, "solves", 0)),
        "fallbacks": fallbacks,
        "fallbacks_total": int(sum(fallbacks.values())),
        "faults": dict(getattr(stats, "faults", {})),
        "formulations": dict(getattr(stats, "formulations", {})),
        "forms": dict(getattr(stats, "forms", {})),
        "solve_statuses": dict(getattr(stats, "statuses", {})),
        "mip_gap_max": float(getattr(stats, "mip_gap_max", 0.0)),
        # Not a timing: any hit makes the run's results depend on the machine's load.
        "solver_time_limit_hits": int(getattr(stats, "time_limit_hits", 0)),
        # Deterministic, but a stopped MIP run planned on its incumbent, not the optimum.
        "solver_node_limit_hits": int(getattr(stats, "node_limit_hits", 0)),
        # Warm bases HiGHS failed on, each re-solved cold: time lost, not the plan.
        "warm_start_failures": int(getattr(stats, "warm_start_failures", 0)),
        # Roundings that lost tokens: repaired by a chunk MIP, or kept (a loss within
        # controller.repair_token_share of the interval's demand, priced as late).
        "chunk_mip_repairs": int(getattr(stats, "chunk_mip_repairs", 0)),
        "repairs_skipped": int(getattr(stats, "repairs_skipped", 0)),
        "solve_time_median_s": float(np.median(solve)) if solve.size else 0.0,
        "solve_time_p95_s": float(np.percentile(solve, 95)) if solve.size else 0.0,
        "highs_time_median_s": float(np.nanmedian(highs)) if highs.size else 0.0,
        "decide_time_total_s": float(decide.sum()),
        "decide_time_median_s": float(np.median(decide)) if decide.size else 0.0,
        "decide_time_p95_s": float(np.percentile(decide, 95)) if decide.size else 0.0,
        "decision_projections": dict(projections),
        "decision_projections_total": int(sum(projections.values())),
        "wall_time_s": wall_time_s,
        "by_campus": _by_campus(led, result.site),
    }
    if result.pools is not None:
        kpis.update(_serving_kpis(result, serving, fluid, requeued, wall_time_s))
    return kpis


def _dr_kpis(led: pd.DataFrame) -> dict[str, Any]:
    """``dr_event_intervals``: (interval, campus) rows in a DR event; ``dr_compliance``:
    the share of them whose import kept at or under the committed cap
    (``dr_committed_cap_mw``, :func:`~mpc_dc.sim.plant.committed_cap_mw`; NaN without
    events) [-]; ``dr_under_programme_cap``: the share at or under the programme's cap
    ``f · b`` the penalty is settled on (no ``dr_excess_mw``) [-];
    ``dr_energy_savings_mwh``: the energy imported below the baseline in them,
    ``Σ (b − m) · Δ`` [MWh] (negative when above it), apart from the money;
    ``dr_revenue_usd``: reward minus penalty [$]; what the plant's levers did for the
    cap: ``dr_relief_mwh`` (import they took off, ``Σ dr_relief_mw · Δ``) [MWh] and
    ``dr_deferred_wu`` (work deferred) [WU]; with a fleet, the fast layer's
    :data:`~mpc_dc.sim.fast_layer.DR_CAMPUS_COLUMNS` summed."""
    event = led["dr_event"].to_numpy(dtype=bool)
    imp = led["import_mw"].to_numpy()[event]
    cap = led["dr_committed_cap_mw"].to_numpy()[event]
    committed = imp <= cap + 1e-9 * np.maximum(1.0, np.abs(cap))
    kept = led["dr_excess_mw"].to_numpy()[event] <= 1e-9
    saved = float(led["dr_reduction_mw"].to_numpy()[event].sum()) * STEP_H
    out: dict[str, Any] = {
        "dr_event_intervals": int(event.sum()),
        "dr_compliance": float(committed.mean()) if committed.size else math.nan,
        "dr_under_programme_cap": float(kept.mean()) if kept.size else math.nan,
        "dr_energy_savings_mwh": saved,
        "dr_revenue_usd": float(led["dr_reward_usd"].sum() - led["dr_penalty_usd"].sum()),
        "dr_relief_mwh": float(led["dr_relief_mw"].sum()) * STEP_H,
        "dr_deferred_wu": float(led["dr_deferred_wu"].sum()),
    }
    for name in DR_CAMPUS_COLUMNS:
        if name in led:
            out[name] = float(led[name].sum())
    return out


def _by_campus(led: pd.DataFrame, site: Site) -> dict[str, dict[str, float]]:
    """Energy [MWh], peak import [MW] and cost [$] of each campus (``led``: the ledger's
    rows in order, interval by interval, campuses in site order)."""
    out: dict[str, dict[str, float]] = {}
    C = len(site.campuses)
    for c, name in enumerate(site.campus_names):
        rows = led.iloc[c::C]
        out[name] = {
            "cost_usd": net_cost_usd(rows),
            "import_mwh": float(rows["import_mw"].sum() * STEP_H),
            "export_mwh": float(rows["export_mw"].sum() * STEP_H),
            "facility_energy_mwh": float(rows["facility_power_mw"].sum() * STEP_H),
            "curtailed_mwh": float(rows["curtailed_mw"].sum() * STEP_H),
            "peak_import_mw": float(rows["import_mw"].max()),
            "carbon_t": float(rows["carbon_kg"].sum()) / 1000.0,
        }
    return out


def _serving_kpis(result: RunResult, serving: ServingConfig, fluid: FluidServer | None,
                  requeued: float, wall_time_s: float) -> dict[str, Any]:
    """Serving figures (the fleet loop's, without its cost keys: those are per campus)."""
    pools = result.pools
    assert pools is not None
    tot = pools.sum()
    tokens = float(tot["tokens_decoded"])
    it_j = float(tot["idle_energy_j"] + tot["active_energy_j"])
    queue = pools["queue_end"].groupby(level=0).sum()
    kpis: dict[str, Any] = {
        "fidelity": serving.fidelity,
        # queued requests moved off pools the controller left without instances
        "requeued_requests": requeued,
        "idle_energy_mwh": float(tot["idle_energy_j"]) / J_PER_MWH,
        "tokens_served": tokens,
        "tokens_arrived": float(tot["arrived_tokens"]),
        "energy_per_token_j": it_j / tokens if tokens else math.nan,
        "queue_mean_requests": float(queue.mean()),
        "queue_max_requests": float(queue.max()),
        # the price of lateness is in cost_usd (net_cost_usd); here its parts
        "late_requests": float(tot["late_requests"]),
        "late_s": float(tot["late_s"]),
        "lateness_usd": float(tot["lateness_usd"]),
        "quality_loss_max_pct_points": _quality_loss_max(pools, result.site),
        # The fast layer's actions (zeros without it), named as the ledger's columns.
        **{key: float(tot[column]) for key, column in zip(
            FAST_CAMPUS_COLUMNS, FAST_POOL_COLUMNS, strict=False)},
    }
    outcome = result.outcome
    if outcome is not None:
        req = outcome.requests
        kpis["requests"] = int((outcome.status >= 0).sum())
        kpis["requests_by_status"] = outcome.status_counts()
        kpis["arrival_drops"] = dict(req.stats.dropped)
        kpis["requests_per_wall_s"] = len(req) / wall_time_s if wall_time_s > 0 else math.inf
        in_service = outcome.status == IN_SERVICE
        kpis["tokens_unserved"] = float(
            req.response_tokens[np.isin(outcome.status, (QUEUED, DROPPED_NO_ROUTE))].sum()
        ) + float((req.response_tokens[in_service] - outcome.tokens_decoded[in_service]).sum())
        # Decoded, then discarded when their instance died (the requests started again).
        kpis["tokens_lost"] = (0.0 if outcome.tokens_lost is None
                               else float(outcome.tokens_lost.sum()))
        for name, values in (("ttft", outcome.ttft_s()), ("tpot", tpot_s(outcome)),
                             ("latency", outcome.latency_s())):
            v = values[~np.isnan(values)]
            # One call for the three levels: one partition of the ~10⁷ values instead
            # of three (the same order statistics, interpolated alike: the same figures).
            levels = (50, 95, 99)
            found = np.percentile(v, levels).tolist() if v.size else [math.nan] * len(levels)
            for q, value in zip(levels, found, strict=True):
                kpis[f"{name}_p{q}_s"] = float(value)
        assert result.slo is not None and result.slo_parts is not None
        met, decided = result.slo
        ttft_ok, tpot_ok, _ = result.slo_parts

        def share(ok: np.ndarray, sel: np.ndarray) -> float:
            return float(ok[sel].mean()) if sel.any() else math.nan

        kpis["slo_attainment"] = share(met, decided)
        kpis["slo_missed_requests"] = int((decided & ~met).sum())
        kpis["slo_ttft_attainment"] = share(ttft_ok, decided)
        kpis["slo_tpot_attainment"] = share(tpot_ok, decided)
        kpis["slo_attainment_by_model"] = {
            model: share(met, decided & (req.model == m)) for m, model in enumerate(req.models)}
        campus_of = np.array([p.key[0] for p in outcome.pools] + [""])
        pool_campus = campus_of[np.where(outcome.pool >= 0, outcome.pool, len(outcome.pools))]
        kpis["slo_attainment_by_campus"] = {
            name: share(met, decided & (pool_campus == name))
            for name in result.site.campus_names}
    elif fluid is not None:
        kpis["tokens_unserved"] = float(fluid.backlog_tokens.sum())
        kpis["requests_per_wall_s"] = math.nan
        arrivals = pools["arrivals"].to_numpy().reshape(fluid.est_wait_s.shape)
        # the share of each pool-interval's arrivals estimated late (lateness.py), the
        # estimate simulation() made once for the lateness book
        late_share = result.fluid_late_share
        assert late_share is not None
        total = arrivals.sum()
        missed = float((arrivals * late_share).sum())
        kpis["slo_attainment_estimate"] = 1.0 - missed / total if total else math.nan
        kpis["slo_missed_requests"] = missed
    return kpis


def _quality_loss_max(pools: pd.DataFrame, site: Site) -> float:
    """Largest request-weighted mean quality loss of one model's routed requests in one
    interval [points] (``Σ_p δ_p · arrivals_p / Σ_p arrivals_p`` over the model's
    pools; the budget ``fleet.quality_budget_pct_points`` bounds it in plan); 0 without
    requests."""
    keys = list(dict.fromkeys(zip(*(pools.index.get_level_values(n)
                                    for n in ("campus", "model", "precision")), strict=True)))
    arrivals = pools["arrivals"].to_numpy().reshape(-1, len(keys))
    loss = np.array([max(site.row(k).quality_loss_pct_points, 0.0) for k in keys])
    worst = 0.0
    for model in site.models:
        mine = np.array([k[1] == model for k in keys])
        count = arrivals[:, mine].sum(axis=1)
        summed = arrivals[:, mine] @ loss[mine]
        if (count > 0).any():
            worst = max(worst, float((summed[count > 0] / count[count > 0]).max()))
    return worst


# ----------------------------------------------------------------------------- invariants


def check_invariants(result: RunResult) -> None:
    """Check that the run's books close.

    * per (interval, campus): energy balance, facility = PUE × IT, import · export
      = 0, flows within limits (:func:`~mpc_dc.sim.invariants.check_campus_ledger`);
    * battery state of charge per campus (:func:`check_battery_ledger`; the plant
      checks it as it moves);
    * deferrable work per campus and interval: pending = pending before + arrived −
      done − missed (:func:`~mpc_dc.sim.invariants.check_work_ledger`); over the run,
      released (initial batch + submissions) = done + pending + missed, and the
      ledger's done and missed equal the backlog's; deadlines are checked in the loop
      at each interval end (:func:`~mpc_dc.sim.invariants.check_deadlines`);
    * settlement: every cost of every row equals the meter's rule re-applied to the
      row's flows and prices, demand charges to the billing-period peaks, and each
      campus's summed costs equal its meter's book
      (:func:`~mpc_dc.sim.meter.audit_settlement`); the KPIs' net cost equals the
      ledger's, and its two sides ``costs_usd`` and ``revenue_usd`` the ledger's
      non-credit and credit terms with ``cost_usd = costs_usd − revenue_usd``;
    * serving: requests offered = routed + dropped each interval; tokens, inference
      IT energy and lateness per campus = the sum of its pools; lateness priced as the
      serving prices it, late requests = SLO misses (request level); fluid: each
      campus's token book per interval (:func:`~mpc_dc.sim.invariants.check_token_book`);
      request level: request statuses, the tokens of each pool's requests vs the pool
      table over the run (per-request records carry no interval); tokens offered =
      served + unserved (request level) or arrived = served + still queued (fluid).

    Raises
    ------
    InvariantError
        One line naming the first interval (and campus) or the run total that does
        not close.
    """
    led = result.ledger
    site = result.site
    check_campus_ledger(led, site)
    for campus in site.campuses:
        rows = result.campus_ledger(campus.name)
        try:
            check_battery_ledger(rows, campus.battery,
                                 result.initial_battery_mwh.get(campus.name, 0.0))
        except InvariantError as err:
            raise InvariantError(f"campus {campus.name}: {err.message}", err.step,
                                 err.time) from None
    _check_work(result)
    audit_settlement(led, site, result.penalties, result.local_tz, result.settlement)
    total = net_cost_usd(led)
    if abs(total - result.kpis["cost_usd"]) > 1e-6 * max(1.0, abs(total)):
        raise InvariantError(f"cost_usd {result.kpis['cost_usd']:.6f} $ != the ledger summed "
                             f"{total:.6f} $")
    _check_cost_sides(led, result.kpis)
    if result.pools is not None:
        _check_serving(result)


def _check_cost_sides(led: pd.DataFrame, kpis: Mapping[str, Any]) -> None:
    """``costs_usd`` and ``revenue_usd`` are the ledger's non-credit and credit terms
    summed (each column summed apart, not through the KPIs' helper), and
    ``cost_usd = costs_usd − revenue_usd``."""
    terms = [(name, float(led[name].sum())) for name in (*COST_COLUMNS, *SERVICE_COST_COLUMNS)
             if name in led]
    revenue = sum(value for name, value in terms if name in CREDIT_COLUMNS)
    costs = sum(value for name, value in terms if name not in CREDIT_COLUMNS)
    for key, summed in (("costs_usd", costs), ("revenue_usd", revenue)):
        if not _close(float(kpis[key]), summed):
            raise InvariantError(f"{key} {kpis[key]:.6f} $ != the ledger's "
                                 f"{'credit' if key == 'revenue_usd' else 'non-credit'} "
                                 f"terms summed {summed:.6f} $")
    net = float(kpis["costs_usd"]) - float(kpis["revenue_usd"])
    if not _close(float(kpis["cost_usd"]), net):
        raise InvariantError(f"cost_usd {kpis['cost_usd']:.6f} $ != costs_usd − revenue_usd "
                             f"{net:.6f} $")


def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def _check_work(result: RunResult) -> None:
    led = result.ledger
    for name, backlog in result.backlogs.items():
        check_work_ledger(result.campus_ledger(name), result.initial_backlog_wu[name], name)
        try:
            backlog.check_conservation()
        except InvariantError as err:
            raise InvariantError(f"campus {name}: {err.message}") from None
        rows = result.campus_ledger(name)
        for column, book in (("work_df_done_wu", backlog.done_wu),
                             ("work_df_missed_wu", backlog.missed_wu)):
            if not _close(float(rows[column].sum()), book, 1e-6):
                raise InvariantError(f"campus {name}: {column} summed {rows[column].sum():.6f} "
                                     f"WU != the backlog's {book:.6f} WU")
    released = sum(b.released_wu for b in result.backlogs.values())
    arrived = float(result.kpis["work_df_arrived_wu"])
    if not _close(released, arrived, 1e-6):
        raise InvariantError(f"released deferrable work {released:.6f} WU != arrivals "
                             f"{arrived:.6f} WU")
    without = [c.name for c in result.site.campuses if c.name not in result.backlogs]
    if without:
        rows = led[led.index.get_level_values("campus").isin(without)]
        work = rows[["work_nd_wu", "work_df_done_wu", "it_other_mw"]].abs().to_numpy()
        if work.size and work.max() > 0:
            k = int(np.argmax(work.max(axis=1) > 0))
            raise InvariantError(f"campus {rows.index[k][1]}: other-IT work without other IT",
                                 int(rows["step"].to_numpy()[k]), rows.index[k][0])


def _check_serving(result: RunResult) -> None:
    pools, led, book = result.pools, result.ledger, result.serving_book
    assert pools is not None and book is not None
    n = len(book.requests_offered)
    P = len(pools) // max(n, 1)
    arrivals = pools["arrivals"].to_numpy().reshape(n, P).sum(axis=1)
    off = np.abs(arrivals + book.dropped_no_route - book.requests_offered) > 1e-6 * np.maximum(
        1.0, book.requests_offered)
    if off.any():
        k = int(np.argmax(off))
        raise InvariantError(
            f"requests: {arrivals[k]:.6g} routed + {book.dropped_no_route[k]:.6g} dropped != "
            f"{book.requests_offered[k]:.6g} offered", k,
            led.index[k * len(result.site.campuses)][0])
    pairs = [("tokens_served", "tokens_decoded", 1.0),
             ("it_inference_mw", "it_energy_kwh", 1e-3 / STEP_H),
             *((c, c, 1.0) for c in LATENESS_COLUMNS)]
    for column, per_pool, scale in pairs:
        # A campus without pools serves nothing.
        theirs = (pools[per_pool].groupby(level=["interval_start_utc", "campus"]).sum()
                  .reindex(led.index, fill_value=0.0).to_numpy() * scale)
        mine = led[column].to_numpy()
        bad = np.abs(mine - theirs) > 1e-9 * np.maximum(1.0, np.abs(mine))
        if bad.any():
            k = int(np.argmax(bad))
            raise InvariantError(f"campus {led.index[k][1]}: {column} {mine[k]:.9g} != its "
                                 f"pools' {theirs[k]:.9g}", int(led["step"].to_numpy()[k]),
                                 led.index[k][0])
    if book.queued_tokens is not None and book.moved_tokens is not None:
        site = result.site
        keys = site.pools
        matrix = np.array([[k[0] == c for k in keys] for c in site.campus_names], dtype=float)
        check_token_book(book.queued_tokens, pools["arrived_tokens"].to_numpy().reshape(n, P),
                         book.moved_tokens, pools["tokens_decoded"].to_numpy().reshape(n, P),
                         matrix, site.campus_names,
                         pd.DatetimeIndex(led.index.get_level_values(0)[::len(site.campuses)]))
    _check_lateness(result)
    kpis = result.kpis
    outcome = result.outcome
    if outcome is not None:
        try:
            # check() also closes the request statuses.
            outcome.check(ledger_active_energy_j=float(pools["active_energy_j"].sum()),
                          ledger_tokens=pools["tokens_decoded"].to_numpy().reshape(n, P).sum(
                              axis=0))
        except AssertionError as err:
            raise InvariantError(f"serving records: {err}") from None
        finished = outcome.status == FINISHED
        if np.any(outcome.finish[finished] < outcome.requests.arrival_s[finished]):
            raise InvariantError("a request finished before it arrived")
        # Unserved counts the in-service requests' tokens left at the run end; served
        # counts tokens decoded then lost with their instance.
        offered = float(outcome.requests.response_tokens[outcome.status >= 0].sum())
        served = kpis["tokens_served"] - kpis["tokens_lost"]
        if not _close(served + kpis["tokens_unserved"], offered):
            raise InvariantError(f"tokens: {served:.6g} served + {kpis['tokens_unserved']:.6g} "
                                 f"unserved != {offered:.6g} offered (lost to killed "
                                 f"instances: {kpis['tokens_lost']:.6g})")
    elif not _close(kpis["tokens_served"] + float(book.tokens_backlog_end.sum()),
                    kpis["tokens_arrived"]):
        raise InvariantError(f"tokens: {kpis['tokens_served']:.6g} served + "
                             f"{book.tokens_backlog_end.sum():.6g} queued != "
                             f"{kpis['tokens_arrived']:.6g} arrived")


def _check_lateness(result: RunResult) -> None:
    """Each row's ``lateness_usd`` is the serving's prices applied to its late requests
    and seconds; at request level the late requests are the SLO misses."""
    led, serving = result.ledger, result.serving
    assert serving is not None
    want = serving.lateness_usd(led["late_requests"].to_numpy(), led["late_s"].to_numpy())
    got = led["lateness_usd"].to_numpy()
    bad = np.abs(got - want) > 1e-9 * np.maximum(1.0, np.abs(want))
    if bad.any():
        k = int(np.argmax(bad))
        raise InvariantError(f"campus {led.index[k][1]}: lateness_usd {got[k]:.9g} $ != "
                             f"{want[k]:.9g} $ priced from its late requests and seconds",
                             int(led["step"].to_numpy()[k]), led.index[k][0])
    if result.slo is not None:
        met, decided = result.slo
        misses = int((decided & ~met).sum())
        booked = float(led["late_requests"].sum())
        if booked != misses:
            raise InvariantError(f"late requests: {booked:.0f} booked != {misses} SLO misses")


# ----------------------------------------------------------------------------- run directory


def save_run(
    result: RunResult,
    directory: str | Path,
    *,
    scenario: Any | None = None,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    plot: Callable[[pd.DataFrame, Path], list[Path]] | None = None,
) -> Path:
    """Write a run directory atomically (:func:`mpc_dc.rundir.write_run`).

    Files: ``ledger.parquet`` (interval × campus), ``pools.parquet`` (interval ×
    pool, with a fleet), ``requests.parquet`` (per-request samples, request level),
    ``fast_actions.parquet`` (the fast layer's actions, when it ran),
    ``kpis.json``, ``metadata.json`` (``meta`` + versions + git hash) and
    ``scenario.json`` (the resolved ``scenario`` dataclass, when given); ``plot(ledger,
    folder)`` draws into ``plots/`` when given.

    Raises
    ------
    RunDirExistsError
        (a :class:`FileExistsError`) if ``directory`` exists and not ``overwrite``.
    RunWriteError
        If writing fails with an :class:`OSError`; nothing partial is left.
    """
    tables: dict[str, pd.DataFrame] = {}
    if result.pools is not None:
        tables["pools"] = result.pools
    if result.requests is not None:
        tables["requests"] = result.requests
    if result.fast_actions is not None:
        tables["fast_actions"] = result.fast_actions
    info = {"intervals": result.kpis.get("intervals"),
            "campuses": list(result.site.campus_names),
            "wall_time_s": {"simulation": result.kpis.get("wall_time_s")}, **(meta or {})}
    return write_run(Path(directory), scenario=scenario, kpis=result.kpis, ledger=result.ledger,
                     meta=info, tables=tables, overwrite=overwrite, plot=plot)

"""Fault injection: the ``[faults]`` table, its seeded schedule and the hooks that inject
each fault class where it happens in a real site.

Every class is a scenario key holding a rate in [0, 1] (0 by default: no fault), the
probability of the fault at each *opportunity*:

========================  ===================================  ================================
class                     opportunity                          injected at
========================  ===================================  ================================
``main_solve``            each MPC decision                    the control layer's solve call
                                                               of the committed form raises
``fallback_solve``        each fallback LP solve               the LP solve of the fallback
                                                               chain raises
``price_feed``            each interval: an outage starts      what the simulator publishes to
                          (``feed_outage_intervals`` long)     the policy: no price or carbon
``renewable_feed``        ditto                                ... no renewable capacity factor
``telemetry_feed``        ditto                                ... no other-IT work, token or
                                                               request count
``forecaster_exception``  each (interval, channel) forecast    the forecaster call raises
``stale_forecast``        each interval but the first          the forecasts are not refreshed
``gpu_loss``              each interval: a loss starts at one  the plant: the campus has
                          campus with GPUs not losing already  ``gpu_loss_fraction`` fewer GPUs
                                                               for ``gpu_loss_intervals``
``instance_crash``        each interval                        the plant: one running instance
                                                               dies
``dr_late``               each DR event (a campus's block of   the exogenous announcement: the
                          consecutive event intervals)         event is announced only
                                                               ``dr_late_notice_h`` ahead
========================  ===================================  ================================

What each fault does and how the loop copes with it:

* a solver fault raises :class:`InjectedFaultError` (a ``RuntimeError``) inside the solve
  call; the MPC's fallback chain catches it (committed form → LP relaxation with its
  first interval rounded → the rule-based safe action) and counts it;
* a feed outage withholds every value of the feed's channels published during the
  outage, for good (a lost message is not re-sent); the forecasters forecast from their
  last published value (:meth:`forecasters.base.BaseForecaster.staleness_steps`) and
  the MPC flags each channel forecast from a value older than its publication rule
  allows (``held_feed_value``);
* a forecaster exception makes the channel's forecast the last published value held
  flat (``forecaster_raised``); a stale forecast reuses the previous interval's
  forecasts moved on by one interval (``stale_forecast_used``)
  (:class:`~mpc_dc.control.forecasting.ChannelForecasts`);
* a GPU loss strikes at an interval start, after the decision: instances on GPUs
  the campus no longer has die (draining ones first, then loading ones, then the
  least occupied running ones), their in-flight requests requeued, and the committed
  instances are capped (the pool with the most instances gives one up first) for as
  long as it lasts. The controller sees it in the next observation
  (:attr:`~mpc_dc.sim.policy.CampusObservation.gpus_available`) and takes it to last
  over its horizon;
* an instance crash kills one running instance (drawn among all running instances of
  the fleet), its in-flight requests requeued; the decision's instance count is kept,
  so a replacement starts loading at once;
* a late DR event: the controller's horizon does not show it until its announcement
  (:meth:`~mpc_dc.sim.exogenous.SiteExogenous.dr_unannounced`); the meter settles it
  all the same.

Each class draws from its own generator, seeded from ``run.seed`` and the class, so a
run is reproducible and the faults of one class do not move with another's rate; a
rate of 0 draws nothing that changes the run. Every injection is logged (info level;
a summary at the end at warning level), written to the ledger (``faults_active``: the
classes active in each interval at each campus, ``;``-separated; a GPU loss, a crash
and a late DR event on their campus's rows, the others on every row) and counted in
the KPIs (``faults_injected``: events per class; ``fault_intervals``: intervals each
class was active in; ``fault_effects``: :data:`EFFECTS`;
``fallbacks_in_fault_intervals``: the fallbacks of the intervals with a fault active).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.site.data import SOURCE
from traces.errors import ConfigError
from traces.grid import STEP, STEP_H

if TYPE_CHECKING:
    from mpc_dc.sim.engine import _Fleet

logger = logging.getLogger(__name__)

FAULT_CLASSES: tuple[str, ...] = (
    "main_solve",
    "fallback_solve",
    "price_feed",
    "renewable_feed",
    "telemetry_feed",
    "forecaster_exception",
    "stale_forecast",
    "gpu_loss",
    "instance_crash",
    "dr_late",
)
"""The fault classes (module docstring), in ledger and KPI order."""

FEEDS: Mapping[str, tuple[str, ...]] = {
    "price_feed": ("price_usd_per_mwh", "carbon_gco2_per_kwh"),
    "renewable_feed": ("renewable_cf",),
    "telemetry_feed": ("workload_wu", "tokens_per_s", "requests_per_h"),
}
"""Quantities (column prefixes) each feed class withholds."""

EFFECTS: tuple[str, ...] = (
    "instances_crashed",
    "instances_lost_to_gpu_loss",
    "instances_capped",
    "requests_requeued",
    "tokens_lost",
    "feed_values_withheld",
)
"""What the faults did (KPI ``fault_effects``): instances killed by crashes and by GPU
losses, committed instances the plant could not run, in-flight requests requeued,
tokens decoded then discarded [tokens], published values withheld from the policy."""

_SEED_TAG = 18
"""Mixed into every class's seed (issue 18), apart from the other generators of a run."""


@dataclass(frozen=True)
class FaultSpec:
    """The ``[faults]`` table: a rate per class (module docstring) and the fault shapes.

    Parameters
    ----------
    main_solve, fallback_solve, price_feed, renewable_feed, telemetry_feed,
    forecaster_exception, stale_forecast, gpu_loss, instance_crash, dr_late : float [-]
        Probability of the fault at each opportunity, in [0, 1].
    feed_outage_intervals : int [intervals]
        Length of a feed outage, >= 1.
    gpu_loss_intervals : int [intervals]
        Length of a GPU loss, >= 1.
    gpu_loss_fraction : float [-]
        Share of the campus's GPUs lost (rounded up to whole GPUs), in (0, 1].
    dr_late_notice_h : float [h]
        Notice of a late DR event: announced this long before its first interval
        (rounded up to whole intervals), >= 0; the programme's own notice is the
        whole run (events are announced before it).
    """

    main_solve: float = 0.0
    fallback_solve: float = 0.0
    price_feed: float = 0.0
    renewable_feed: float = 0.0
    telemetry_feed: float = 0.0
    forecaster_exception: float = 0.0
    stale_forecast: float = 0.0
    gpu_loss: float = 0.0
    instance_crash: float = 0.0
    dr_late: float = 0.0
    feed_outage_intervals: int = 4
    gpu_loss_intervals: int = 8
    gpu_loss_fraction: float = 0.5
    dr_late_notice_h: float = 1.0

    def __post_init__(self) -> None:
        for name in FAULT_CLASSES:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(SOURCE, f"expected a rate in [0, 1], got {rate}",
                                  key=f"faults.{name}")
        for name in ("feed_outage_intervals", "gpu_loss_intervals"):
            if getattr(self, name) < 1:
                raise ConfigError(SOURCE, f"expected a positive number of intervals, got "
                                  f"{getattr(self, name)}", key=f"faults.{name}")
        if not 0.0 < self.gpu_loss_fraction <= 1.0:
            raise ConfigError(SOURCE, f"expected a share in (0, 1], got "
                              f"{self.gpu_loss_fraction}", key="faults.gpu_loss_fraction")
        if self.dr_late_notice_h < 0:
            raise ConfigError(SOURCE, f"expected a duration >= 0 h, got "
                              f"{self.dr_late_notice_h}", key="faults.dr_late_notice_h")

    @property
    def active(self) -> bool:
        """Whether any class has a positive rate."""
        return any(getattr(self, name) > 0 for name in FAULT_CLASSES)


class InjectedFaultError(RuntimeError):
    """Raised where a fault is injected into a call (a solve, a forecast)."""

    def __init__(self, fault: str, step: int, where: str = "") -> None:
        self.fault = fault
        self.step = step
        at = f" ({where})" if where else ""
        super().__init__(f"injected fault {fault!r} at step {step}{at}")


@dataclass(frozen=True)
class GpuLoss:
    """One GPU-loss event: ``gpus`` lost at campus ``campus`` (index) over ``[start, end)``."""

    start: int
    end: int
    campus: int
    gpus: int


class FaultInjector:
    """The fault schedule of one run and its injection hooks (module docstring).

    Parameters
    ----------
    spec : FaultSpec
    exo : SiteExogenous
        The run (steps, campuses, GPUs, DR events).
    seed : int
        ``run.seed``.
    """

    def __init__(self, spec: FaultSpec, exo: SiteExogenous, seed: int) -> None:
        self.spec = spec
        self.n_steps = n = exo.n_steps
        self.run_start = exo.run_start
        self.campuses = exo.site.campus_names
        C = len(self.campuses)
        self.events: Counter[str] = Counter(dict.fromkeys(FAULT_CLASSES, 0))
        self.effects: dict[str, float] = dict.fromkeys(EFFECTS, 0.0)
        self.active = np.zeros((len(FAULT_CLASSES), n, C), dtype=bool)
        self._rng = {name: np.random.default_rng(
            np.random.SeedSequence([seed % 2**63, _SEED_TAG, k]))
            for k, name in enumerate(FAULT_CLASSES)}
        self._main = self._draw("main_solve", n)
        self._stale = self._draw("stale_forecast", n)
        self._stale[0] = False  # nothing to reuse before the first forecast
        self._stale_seen: set[int] = set()
        self._down: dict[str, np.ndarray] = {}
        self._outage_starts: dict[str, set[int]] = {}
        for feed in FEEDS:
            self._down[feed], self._outage_starts[feed] = self._outages(feed)
        self._crash = self._draw("instance_crash", n)
        self._crash_pick = self._rng["instance_crash"].random((n, 2))
        self._planned = np.asarray(exo.realized_array("gpus"), dtype=float)
        self._lost, self._losses = self._gpu_losses(exo)
        self._announced = self._late_announcements(exo)
        self._channels: dict[str, int] = {}
        self._forecast_u = np.zeros((n, 0))
        self._forecast_seen: set[tuple[int, int]] = set()

    # -- the schedule -------------------------------------------------------------------
    def _draw(self, name: str, n: int) -> np.ndarray:
        """Per-opportunity hits of class ``name`` over ``n`` opportunities."""
        return self._rng[name].random(n) < getattr(self.spec, name)

    def _outages(self, feed: str) -> tuple[np.ndarray, set[int]]:
        """Intervals the feed is down, and the outages' first intervals: an outage
        starts where drawn unless one runs."""
        start = self._draw(feed, self.n_steps)
        down = np.zeros(self.n_steps, dtype=bool)
        starts: set[int] = set()
        until = 0
        for s in np.flatnonzero(start):
            if s >= until:
                until = int(s) + self.spec.feed_outage_intervals
                down[s:until] = True
                starts.add(int(s))
        return down, starts

    def _gpu_losses(self, exo: SiteExogenous) -> tuple[np.ndarray, list[GpuLoss]]:
        """GPUs lost per (interval, campus) and the loss events."""
        n, campuses = self.n_steps, exo.site.campuses
        lost = np.zeros((n, len(campuses)))
        rng = self._rng["gpu_loss"]
        start = self._draw("gpu_loss", n)
        pick = rng.random(n)
        with_gpus = [i for i, c in enumerate(campuses) if c.gpus > 0]
        events: list[GpuLoss] = []
        for s in np.flatnonzero(start):
            free = [i for i in with_gpus if lost[s, i] == 0]
            if not free:
                continue
            i = free[min(int(pick[s] * len(free)), len(free) - 1)]
            gpus = math.ceil(self.spec.gpu_loss_fraction * campuses[i].gpus - 1e-9)
            end = min(int(s) + self.spec.gpu_loss_intervals, n)
            lost[s:end, i] = gpus
            events.append(GpuLoss(int(s), end, i, gpus))
        return lost, events

    def _late_announcements(self, exo: SiteExogenous) -> dict[str, np.ndarray]:
        """Per campus with a late event: the step each run interval's event flag is
        announced at (0: before the run). Late events are counted and marked here:
        the announcement is part of the exogenous data."""
        out: dict[str, np.ndarray] = {}
        notice = math.ceil(self.spec.dr_late_notice_h / STEP_H - 1e-9)
        rng = self._rng["dr_late"]
        first = exo.history_steps
        for i, c in enumerate(exo.site.campuses):
            name = column("dr_event", c.name)
            if name not in exo.frame.columns:
                continue
            flags = np.nan_to_num(exo.frame[name].to_numpy(dtype=float)[
                first: first + self.n_steps]) > 0.5
            edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
            announced = np.zeros(self.n_steps, dtype=np.int64)
            for start, end in zip(edges[::2], edges[1::2], strict=True):
                # One draw per event whatever the rate, so events keep their draws.
                if rng.random() >= self.spec.dr_late or start - notice <= 0:
                    continue
                announced[start:end] = start - notice
                self._record("dr_late", range(start, end), i, count=1)
                logger.info("DR event at campus %s from step %d announced late, at step %d",
                            c.name, start, start - notice)
            if announced.any():
                out[c.name] = announced
        return out

    def _record(self, fault: str, steps: range | int, campus: int | None = None, *,
                count: int = 1) -> None:
        """Count ``count`` events of ``fault`` and mark it active in ``steps``."""
        self.events[fault] += count
        k = FAULT_CLASSES.index(fault)
        where = slice(None) if campus is None else campus
        if isinstance(steps, range):
            self.active[k, steps.start:steps.stop, where] = True
        else:
            self.active[k, steps, where] = True

    def step_of(self, time: pd.Timestamp) -> int:
        """Run step of the interval starting at ``time``."""
        return int((pd.Timestamp(time) - self.run_start) // STEP)

    # -- the exogenous side -------------------------------------------------------------
    def announce(self, exo: SiteExogenous) -> SiteExogenous:
        """``exo`` with the late DR announcements (itself when none is late)."""
        if not self._announced:
            return exo
        # A programme's notice (mpc_dc.sim.dr_program) may already be later than 0.
        merged = dict(exo.dr_announced_at)
        for name, at in self._announced.items():
            merged[name] = np.maximum(merged[name], at) if name in merged else at
        return replace(exo, dr_announced_at=merged)

    # -- the control layer ----------------------------------------------------------------
    def solve(self, which: str, step: int) -> None:
        """Raise :class:`InjectedFaultError` if the ``main`` or ``fallback`` solve of ``step``
        fails (called inside the solve's error handling)."""
        if which == "main":
            fault, hit = "main_solve", bool(self._main[step])
        elif which == "fallback":
            rate = self.spec.fallback_solve
            fault = "fallback_solve"
            hit = rate > 0 and bool(self._rng[fault].random() < rate)
        else:
            raise ValueError(f"solve: expected 'main' or 'fallback', got {which!r}")
        if hit:
            self._record(fault, step)
            logger.info("step %d: injected %s", step, fault)
            raise InjectedFaultError(fault, step)

    def register_channels(self, channels: Sequence[str]) -> None:
        """The forecast channels (in a fixed order): one draw per (interval, channel)."""
        self._channels = {c: k for k, c in enumerate(channels)}
        self._forecast_u = self._rng["forecaster_exception"].random(
            (self.n_steps, len(self._channels)))

    def forecast(self, channel: str, time: pd.Timestamp) -> None:
        """Raise :class:`InjectedFaultError` if the forecaster of ``channel`` fails at ``time``
        (every call of that interval fails; the event is counted once)."""
        rate = self.spec.forecaster_exception
        k = self._channels.get(channel)
        if rate <= 0 or k is None:
            return
        step = self.step_of(time)
        if not 0 <= step < self.n_steps or self._forecast_u[step, k] >= rate:
            return
        if (step, k) not in self._forecast_seen:
            self._forecast_seen.add((step, k))
            self._record("forecaster_exception", step)
            logger.info("step %d: injected forecaster_exception on %s", step, channel)
        raise InjectedFaultError("forecaster_exception", step, channel)

    def stale(self, time: pd.Timestamp) -> bool:
        """Whether the forecasts of the interval starting at ``time`` are not refreshed."""
        step = self.step_of(time)
        if not 0 <= step < self.n_steps or not self._stale[step]:
            return False
        if step not in self._stale_seen:
            self._stale_seen.add(step)
            self._record("stale_forecast", step)
            logger.info("step %d: injected stale_forecast", step)
        return True

    # -- the simulator ----------------------------------------------------------------------
    def published(self, step: int, items: list[tuple[pd.Timestamp, dict[str, float]]]
                  ) -> list[tuple[pd.Timestamp, dict[str, float]]]:
        """What reaches the policy of the values published during ``step``: the
        channels of every feed down in ``step`` withheld."""
        down = [feed for feed, mask in self._down.items() if mask[step]]
        if not down:
            return items
        for feed in down:
            if step in self._outage_starts[feed]:
                self._record(feed, step)
                logger.info("step %d: injected %s (%d intervals)", step, feed,
                            self.spec.feed_outage_intervals)
            else:
                self.active[FAULT_CLASSES.index(feed), step] = True
        prefixes = tuple(f"{q}[" for feed in down for q in FEEDS[feed])
        out = []
        for when, values in items:
            kept = {k: v for k, v in values.items() if not k.startswith(prefixes)}
            self.effects["feed_values_withheld"] += len(values) - len(kept)
            if kept:
                out.append((when, kept))
        return out

    def gpus_available(self, step: int) -> np.ndarray:
        """GPUs each campus had in the last interval, as the plant reports them at the
        start of ``step`` [GPUs], (C,)."""
        if step == 0:
            return self._planned[0].copy()
        return self.gpus_in(step - 1)

    def gpus_in(self, step: int) -> np.ndarray:
        """GPUs each campus has in ``step``: its GPUs (fewer in an outage) less those
        a GPU loss took [GPUs], (C,)."""
        return np.maximum(self._planned[step] - self._lost[step], 0.0)

    def before_serving(self, step: int, fleet: _Fleet, target: np.ndarray) -> np.ndarray:
        """Crashes and GPU losses at the start of ``step``, after the decision: kill
        instances (requeueing their requests) and cap the committed ``target``."""
        now = float(step * STEP.total_seconds())
        if self._crash[step]:
            self._crash_one(step, fleet, now)
        for loss in self._losses:
            if loss.start <= step < loss.end:
                if step == loss.start:
                    self._record("gpu_loss", range(loss.start, loss.end), loss.campus)
                    logger.info("step %d: injected gpu_loss at campus %s (%d GPUs, %d "
                                "intervals)", step, self.campuses[loss.campus], loss.gpus,
                                loss.end - loss.start)
                target = self._cap(step, loss.campus, fleet, target, now)
        return target

    def _crash_one(self, step: int, fleet: _Fleet, now: float) -> None:
        ready = fleet.server.ready_instances(now)
        total = int(ready.sum())
        if total == 0:
            return
        u_pool, u_inst = self._crash_pick[step]
        p = int(np.searchsorted(np.cumsum(ready), min(int(u_pool * total), total - 1),
                                side="right"))
        killed = fleet.server.kill(p, now, 1, kinds=("ready",), pick=float(u_inst))
        self._record("instance_crash", step, int(fleet.campus_of[p]))
        self._count_kill(killed, "instances_crashed")
        logger.info("step %d: injected instance_crash in pool %s (%d requests requeued)",
                    step, fleet.keys[p], killed.requests)

    def _cap(self, step: int, campus: int, fleet: _Fleet, target: np.ndarray,
             now: float) -> np.ndarray:
        """Kill what the campus's remaining GPUs cannot hold; cap ``target`` to them."""
        available = float(self.gpus_in(step)[campus])
        pools = np.flatnonzero(fleet.campus_of == campus)
        gpus = fleet.gpus_per_instance[pools].astype(float)
        server = fleet.server
        alive = server.alive_instances()[pools]
        while float(alive @ gpus) > available + 1e-9:
            at = int(np.argmax(alive))
            p = int(pools[at])
            killed = server.kill(p, now, 1)
            if killed.instances == 0:
                break
            if killed.loading:
                loading = sorted(fleet.loading[p])
                fleet.loading[p] = loading[: len(loading) - killed.loading]
            self._count_kill(killed, "instances_lost_to_gpu_loss")
            alive[at] -= killed.instances
        committed = server.committed_instances()[pools]
        room = available - float((alive - committed) @ gpus)
        capped = target.copy()
        mine = capped[pools]
        while mine.size and float(mine @ gpus) > room + 1e-9 and mine.max() > 0:
            mine[int(np.argmax(mine))] -= 1
        self.effects["instances_capped"] += int((target[pools] - mine).sum())
        capped[pools] = mine
        return capped

    def _count_kill(self, killed: Any, what: str) -> None:
        self.effects[what] += killed.instances
        self.effects["requests_requeued"] += killed.requests
        self.effects["tokens_lost"] += killed.tokens_lost

    # -- results ----------------------------------------------------------------------------
    def ledger_column(self) -> np.ndarray:
        """``faults_active`` of every (interval, campus) ledger row, intervals then
        campuses: the active classes, ``;``-separated ('' when none)."""
        n, C = self.n_steps, len(self.campuses)
        out = np.full(n * C, "", dtype=object)
        rows = np.flatnonzero(self.active.any(axis=0).reshape(-1))
        flat = self.active.reshape(len(FAULT_CLASSES), -1)
        for r in rows:
            out[r] = ";".join(FAULT_CLASSES[k] for k in np.flatnonzero(flat[:, r]))
        return out

    def kpis(self, decision_sources: Sequence[str]) -> dict[str, Any]:
        """The fault KPIs (module docstring); ``decision_sources``: one per interval."""
        anywhere = np.asarray(self.active.any(axis=2), dtype=bool)
        hit = np.asarray(anywhere.any(axis=0), dtype=bool).tolist()
        following: Counter[str] = Counter(
            s.partition(":")[2] for s, h in zip(decision_sources, hit, strict=True)
            if h and s.startswith("fallback:"))
        effects: dict[str, float | int] = {
            k: float(v) if k == "tokens_lost" else int(v) for k, v in self.effects.items()}
        return {
            "faults_injected": {name: int(self.events[name]) for name in FAULT_CLASSES},
            "faults_injected_total": int(sum(self.events.values())),
            "fault_intervals": {name: int(anywhere[k].sum())
                                for k, name in enumerate(FAULT_CLASSES)},
            "fault_effects": effects,
            "fallbacks_in_fault_intervals": dict(following),
        }

    def log_summary(self) -> None:
        """One warning line with the faults injected (none: nothing)."""
        hit = {k: v for k, v in self.events.items() if v}
        if hit:
            logger.warning("injected %d faults: %s", sum(hit.values()),
                           ", ".join(f"{k} {v}" for k, v in hit.items()))

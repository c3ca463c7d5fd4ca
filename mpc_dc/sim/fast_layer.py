"""The fast layer: a reactive controller inside the 15-minute interval (issue 16).

The policy (the slow planner, e.g. the MPC) commits instances and routing shares at each
15-min boundary. The fast layer is part of the plant-side control: a simpy process that
wakes at the boundary, right after the decision, and every ``period_s`` inside the
interval (``t0 + k · period_s < t0 + 900 s``), and acts on what has happened by then.
At request level it also wakes between two of these

* **at a surge**: at the first arrival ``t`` (at least ``W = surge_window_s`` after the
  last wake-up) at which a model's arrivals over ``[t − W, t)`` number more than ``r W
  + 3 √(r W)``, with ``r`` the larger of what its committed instances serve (ready and
  loading, ``Σ n_p μ_p``) and the rate it acted on at its last wake-up: a count beyond
  the Poisson noise of a rate those instances serve. There it sizes on the larger of
  the ``W`` and the ``lookback_s`` rates (the long window dilutes an onset);
* **when an instance it started gets ready**, to move load to it at once.

At each wake-up:

* **observed** at time ``t``: instances per pool (ready, loading, draining), requests
  queued per pool, each model's arrival rate ``λ_m`` over ``[t − lookback_s, t)``
  [requests/s], each model's mean response length ``R_m`` over the intervals published
  so far (the history's mix before the first one), the interval's inference IT energy
  so far. Nothing of a request arriving after ``t`` is read.
* **sizing**: one instance of pool ``p = (c, m, q)`` serves ``μ_p = ρ̄ · μ[m, q] / R_m``
  requests/s (the planner's capacity at the SLO, ``Fleet.capacity``, under the
  utilisation cap ρ̄); the pool must serve ``need_p = λ_m · s_p + queue_p / drain_s``
  (its share ``s_p`` of the model's arrivals, and its queue drained within
  ``drain_s``).

Actions, in this order:

(b, c) **move new requests** of a pool whose ready instances cannot cover its need
  (``need_p > ready_p · μ_p``) to pools of the same model with spare ready capacity:
  another campus when the fleet has the spatial lever, another precision when it has
  the quantization lever (a pool differing in both needs both), preferring no quality
  change, then the same campus, then the most spare. Only requests arriving after the
  decision move; queued ones stay. A precision move is allowed within the quality
  budget left by the plan: with ``δ_p`` the pool's quality loss and ``δ̄`` the fleet's
  budget, the moves of model ``m`` in an interval add at most
  ``(δ̄ − Σ_p δ_p s_p) · N_m`` to the summed loss of its ``N_m`` requests so far, checked
  request by request in arrival order (so the interval's request-weighted loss stays
  within ``δ̄`` whenever the plan's is). Never into a campus whose DR cap may hold a
  pool below its full batch: the cap's power caps ("The DR cap", 3) are sized on the
  plan's shares, and could hold the destination at batch 0, where the moved requests
  wait. At request level a campus is closed to these moves from a wake-up at which the
  cap put one of its pools under a power cap until the next; the moves planned at a
  wake-up (or the boundary) into a campus the cap then puts under a power cap are
  taken back. A campus in an event whose cap lets every pool run at its full batch
  stays open (its ready instances serve what moves in within the cap). At fluid
  fidelity every campus holding a DR cap is closed (below).
(a) **start instances** for what is still short, ``need_p − moved out + moved in −
  (ready_p + loading_p) · μ_p``, rounded up: at the boundary first by keeping instances
  the plan would stop (no warm-up), then new ones on free GPUs of the pool's campus,
  then (spatial lever) of the same model and precision at other campuses. At a surge
  wake-up, with the quantization lever (``soonest_precision``), new instances go first
  to the model's other precisions that load sooner (qwen3-235b: FP8 147.5 s against
  BF16's 265 s),
  soonest first, the pool's campus first, as far as the quality budget left lets them
  serve what is short (``(δ̄ − Σ_p δ_p s_p) λ_m`` less what the moves took, over
  ``δ_h − δ_p``); what their loading instances will serve beyond their own need
  counts against later shortfalls, so a later wake-up does not start them twice. Only
  at a surge: a shortfall the plan's instances nearly cover (a periodic wake-up) moves
  only its excess to another pool, and an instance started there would mostly idle. A new
  instance draws power from its start and serves only after its load time
  (``load_time_s``), as the plan's own. Starting needs the switching lever: a fleet
  without it keeps its size.
(d) **re-dispatch queued requests** (request level, inside the interval, spatial
  or quantization lever; first at each wake-up, so that (b, c) see the queues it leaves): a queue is
  served first-come first-served, so every request that joins a pool behind a
  backlog waits for it, however idle the same model's pools at other campuses are
  (at a burst onset: the backlog built while the started instances loaded). Among
  the pools of one model and precision, with ``r_p = ready_p · μ_p − λ_p`` a pool's
  drain rate (``λ_p`` its share of the observed arrivals by the plan's shares), the
  group's ``Q`` queued requests are spread so that each queue drains in the same time: a
  pool with ``r_p > 0`` holds ``Q · r_p / Σ r⁺``, one without none (the expected
  wait ``q_p / r_p`` equal everywhere, as a load balancer joining the shortest
  expected wait does). The newest of a surplus move first, whole requests only, to
  the largest deficit first, into the destination's queue in arrival order; the
  precision stays (no quality change), and no request moves into a campus holding
  a DR cap. With the quantization lever (``soonest_precision``) the same balance is
  then struck among all of a model's pools the levers join (a burst's backlog at BF16
  to the FP8 instances started for it once they are ready), moving across precisions
  only requests that arrived in the interval and no more than the budget left allows
  (``δ̄ − Σ_p δ_p s_p`` times the model's requests so far, less the loss already
  added, as for new requests).

**Limits.** GPUs: the campus's available GPUs less those of committed and draining
instances. Power: the campus's inference IT power may average at most
:meth:`~mpc_dc.sim.plant.CampusPlant.inference_headroom_mw` over the interval (the
plant's own rules: the import limit without shedding anything the plan committed, and
the committed DR cap ``cap_fraction_of_baseline × baseline`` in an event interval).
The layer counts the energy already drawn and every instance, new or old, at its full
power ``P(B)`` (the batch curve at its largest batch; its peak over ``0..B`` for a curve
that does not rise with the batch) for the rest of the interval, so
its actions never take the campus above either. The plan's own excess is the plan's.

**The DR cap** (``site.dr.enforce_cap``, request level): in an event interval the
plant must keep the campus's import within the committed cap
(:func:`~mpc_dc.sim.plant.committed_cap_mw`), so its inference power may average at
most ``CampusLimits.inference_cap_w`` (:meth:`~mpc_dc.sim.plant.CampusPlant.inference_cap_mw`:
what the plant's own levers — deferring work, the battery — leave). At the boundary and
at each wake-up the layer compares the power the rest of the interval may average,
``(cap · 900 s − energy so far) / time left``, with the campus's power now (every
instance at its occupancy; the server's readers read each pool as it is then, also one
serving left where it was); where the campus is above it, in this order:

1. no new instance starts there beyond the cap (the starts' bound above; counted
   ``dr_starts_held`` where GPUs were free);
2. new requests of its pools move to pools of the same model with spare ready capacity
   at campuses below their own bound (any precision the levers and the quality budget
   allow, checked request by request as above), or at the same campus to a precision
   drawing less active power per request, as far as the excess asks (``dr_requests_moved``);
   a pool's active power per request/s is taken at its full batch,
   ``(P(B) − P0) / μ_p``;
3. last, a power cap: each of its pools admits at most ``b_p ≤ B`` requests per
   instance, the caps chosen so that the bound on what the pools may draw until the
   next wake-up, ``Σ n_p P0`` plus ``P(max(b_p, r_j)) − P0`` for each instance ``j``
   that may admit by then (ready, or loading and ready by then; ``r_j`` the requests it
   holds now, which a cap does not stop) and the draining instances at their
   occupancy, fits what is left (itself: no reserve below it, no credit for step 2's
   moves) at the least service lost: slots go first where they
   save the most power per request/s (:meth:`FastLayer._cap_batches`; ``b_p = 0``:
   nothing admitted until the next wake-up). Throughput
   falls and requests queue: their lateness is priced like any other. The cap bounds
   what the pools may draw until the next wake-up, not only what they draw now, so it
   is set whenever the bound at a full batch exceeds what is left, and every wake-up
   decides afresh; the pool-seconds under a cap are ``dr_capped_s``. The inference
   energy it withheld has no counterfactual inside one run: it is measured as the
   difference of a run with ``site.dr.enforce_cap`` on and off.

   *No reserve.* The bound is an upper bound on the pools' power at every moment until
   the next wake-up, so the caps keep nothing back below what is left (a 1 % reserve of
   everything left, kept for the requests in flight before the bound counted them, held
   pools at a batch the bound showed to fit; on the DR week's ZP26 it was 27 W of the
   307 W the caps control). Why it is one: between wake-ups an instance draws
   ``P(n)``, ``n`` the requests it runs (serving integrates exactly that); an instance
   that may admit holds at most ``max(b_p, r_j)``, as its running requests only end and
   it admits up to ``b_p``; ``P`` is taken as its running maximum over ``0..n`` (equal
   to ``P`` for the fitted curves, which rise with ``n``), so ``P(n)`` is within the
   bound whatever arrives. A loading instance draws ``P0`` (counted at its cap from now
   if it is ready by the next wake-up), a draining one admits nothing, so its occupancy
   only falls and it is counted at the running maximum up to what it holds (its power
   now would not bound a curve that falls with ``n``). Instances start only at wake-ups,
   before the caps are set there (and within the starts' bound), and a surge or ready
   wake-up sets the caps afresh. So a window's energy is at most its length times what
   is left, what the rest may average at the next wake-up is at least what it was, and
   the interval's energy ends within the cap's. Rounding: the bound and the energy are
   sums of a few hundred floats, relative errors near 1e-15 against the 1e-9 relative
   by which ``dr_compliance`` judges a row. Fluid fidelity sets no power cap (below).
   One limit: where the occupancy carried in already exceeds what is left (at an
   interval start), nothing fits, the caps are 0 and the later wake-ups make up what
   they can (on dr-event-day below, ZP26's first wake-up in 17 of its 20 event
   intervals).

   *No credit for the moves.* The caps fit what is left, not what is left plus the
   power step 2's moves were estimated to take off the campus (``relief``: the moved
   rate at ``(P(B) − P0) / μ_p``, an expectation of the arrivals they divert): the
   bound holds whatever arrives, so arrivals moved away lower it by nothing, and a pool
   whose queue keeps its instances full at their cap draws what it did. With the
   credit the target was the campus's power now wherever the moves covered the excess,
   and the caps held it there. Measured on the standard scorecard's ``dr-event-day``
   with ``example-bau`` (the suite's overrides; the command in
   docs/fleet_closed_loop.md, "The moves' credit"): at ZP26 one BF16 instance holding
   30 requests (its cap) with ~1,000 queued draws ``P(30)`` = 923.74 W of IT; the cap
   left 921.28 W at 23:30 UTC on 9 July, the moves were
   credited the 2.46 W between (36.9 W by the last wake-up), and the cap stayed at 30:
   12 of the 60 event rows 0.27–0.94 % over ``K`` (``dr_compliance`` 0.800), each
   by the credit at its first wake-up (2.46–8.44 W, equal to the mW; traced with
   ``benchmarks/trace_dr_cap.py``). Without the credit: 1.000, net cost
   340.78 $ (the 1 % reserve: 342.54 $). Test:
   ``tests/test_fast_layer.py::test_a_power_cap_takes_no_credit_for_the_requests_it_moves_away``.

**Fluid fidelity** has no arrival times inside an interval (its arrivals are the
interval's aggregate, which holds the interval's future), so the layer acts once per
interval, at its start, on the previous interval's arrival rate and the backlog:
keeping and starting instances and moving shares of the interval's arrivals; it does
not act inside the interval (``period_s`` is unused there). With no power cap inside the
interval to bound what moved requests draw, no share moves into a campus holding a DR
cap (``CampusLimits.inference_cap_w`` finite).

Switch it off (``controller.fast_layer.enabled = false``) and the engine runs exactly
the code it ran before the layer existed. Its actions are recorded per (interval, pool)
(:data:`FAST_POOL_COLUMNS`), per (interval, campus) in the ledger
(:data:`FAST_CAMPUS_COLUMNS`), as totals in the KPIs and action by action
(:attr:`FastLayer.actions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mpc_dc.sim.arrivals import STEP_S, RequestAggregates, RequestArrays
from mpc_dc.site.config import PoolKey, Site

if TYPE_CHECKING:
    import simpy

    from mpc_dc.sim.serving import IntervalStats, PoolSpec, RequestLevelServer

_EPS = 1e-9
"""Rates and powers below this are rounding [requests/s], [W]."""

FAST_POOL_COLUMNS: tuple[str, ...] = (
    "fast_started",
    "fast_kept",
    "fast_rerouted_out",
    "fast_precision_out",
    "fast_moved_in",
)
"""Per (interval, pool): instances the fast layer started and kept (that the plan would
have stopped) [-]; requests it moved from the pool to another campus (new ones, and
queued ones re-dispatched) and to another precision (one move may be both), and requests
moved into the pool [requests] (fractional at fluid fidelity)."""

FAST_CAMPUS_COLUMNS: tuple[str, ...] = (
    "fast_instances_started",
    "fast_instances_kept",
    "fast_requests_rerouted",
    "fast_precision_moves",
)
"""Per (interval, campus): the campus's pools' ``fast_started``, ``fast_kept``,
``fast_rerouted_out`` and ``fast_precision_out`` summed."""

DR_POOL_COLUMNS: tuple[str, ...] = ("dr_capped_s", "dr_requests_moved", "dr_starts_held")
"""Per (interval, pool), holding the committed DR cap (module docstring): seconds the pool
ran under a power cap [s], new requests moved away from it [requests], instances wanted
but not started for want of power under the cap while GPUs were free [-]."""

DR_CAMPUS_COLUMNS: tuple[str, ...] = DR_POOL_COLUMNS
"""Per (interval, campus): the campus's pools' :data:`DR_POOL_COLUMNS` summed."""

ACTION_COLUMNS: tuple[str, ...] = (
    "time_s", "step", "action", "campus", "model", "precision", "to_campus", "to_precision",
    "count",
)
"""Columns of :attr:`FastLayer.actions`: time [s from the run start], interval, ``start``
/ ``keep`` (instances of the pool), ``move`` (requests of the pool moved to
``to_campus``/``to_precision`` in the window that starts at ``time_s``), ``requeue``
(requests queued at the pool moved to ``to_campus`` at ``time_s``) or ``cap`` (the
pool's power cap for the DR cap until the next wake-up: ``count`` is the batch it may
admit per instance), ``count``."""


@dataclass(frozen=True)
class FastLayerConfig:
    """The fast layer's switches (scenario table ``[controller.fast_layer]``).

    Parameters
    ----------
    enabled : bool
        Run it (off: the engine runs the interval exactly as without it).
    period_s : float [s]
        Time between its wake-ups inside an interval (and one at the boundary); in
        (0, 900].
    lookback_s : float [s]
        Window of past arrivals its rate estimate counts; > 0. Default one period: the
        estimate sees an onset fully at the first wake-up after it (a window ``L``
        shows a step of the rate at ``period_s / L`` of its size then, and the layer
        sizes the pools on it), and the layer only keeps and starts instances (the
        planner stops them at the next boundary), so a short window's noise can cost
        an instance for the rest of an interval where a lagging one leaves every
        request behind a growing queue late (docs/scenario.md).
    drain_s : float [s]
        Time within which a pool should drain its observed queue (the queue term of
        the need); > 0.
    surge_window_s : float [s]
        Window of the surge wake-up (module docstring): between two wake-ups the layer
        also wakes when a model's arrivals over the last ``surge_window_s`` exceed what
        its committed instances serve beyond Poisson noise; ≥ 0 (0: off).
    soonest_precision : bool
        With the quantization lever, at a surge wake-up start what a pool lacks first
        at another precision of its model that is ready sooner (shorter
        ``load_time_s``), as far as the quality budget left lets that precision serve
        it (module docstring, (a)), and re-dispatch the interval's queued requests
        across precisions within that budget ((d)); off: every start is at the short
        pool's own precision and queued requests keep theirs.
    """

    enabled: bool = True
    period_s: float = 60.0
    lookback_s: float = 60.0
    drain_s: float = 300.0
    surge_window_s: float = 10.0
    soonest_precision: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.period_s <= STEP_S:
            raise ValueError(f"period_s: expected a value in (0, {STEP_S:g}] s, got "
                             f"{self.period_s!r}")
        for key in ("lookback_s", "drain_s"):
            if not getattr(self, key) > 0.0:
                raise ValueError(f"{key}: expected a value > 0 s, got {getattr(self, key)!r}")
        if not self.surge_window_s >= 0.0:
            raise ValueError(f"surge_window_s: expected a value >= 0 s, got "
                             f"{self.surge_window_s!r}")

    def ticks(self, step: int) -> list[float]:
        """Wake-up times strictly inside interval ``step`` [s from the run start]."""
        t0 = step * STEP_S
        count = math.ceil(STEP_S / self.period_s)
        return [t for k in range(1, count) if (t := t0 + k * self.period_s) < t0 + STEP_S]


@dataclass(frozen=True)
class CampusLimits:
    """What bounds the fast layer at each campus in one interval (arrays over campuses).

    Attributes
    ----------
    gpus : ndarray [GPUs]
        GPUs available for inference.
    inference_max_w : ndarray [W]
        Inference IT power the interval may average
        (:meth:`~mpc_dc.sim.plant.CampusPlant.inference_headroom_mw`).
    inference_cap_w : ndarray [W], optional
        Inference IT power the interval may average with the committed DR cap held
        (:meth:`~mpc_dc.sim.plant.CampusPlant.inference_cap_mw`); inf where nothing is
        enforced; None: nowhere.
    """

    gpus: np.ndarray
    inference_max_w: np.ndarray
    inference_cap_w: np.ndarray | None = None


@dataclass(frozen=True)
class FleetView:
    """What the fast layer observes at one instant (arrays over pools, site order).

    Attributes
    ----------
    ready, loading, draining : ndarray [-]
        Instances ready to serve, committed but loading, draining but on.
    queue : ndarray [requests]
        Requests waiting for admission.
    rate : ndarray [requests/s]
        Each model's observed arrival rate (over models, site order).
    """

    ready: np.ndarray
    loading: np.ndarray
    draining: np.ndarray
    queue: np.ndarray
    rate: np.ndarray


@dataclass
class FastPlan:
    """One decision of the fast layer.

    Attributes
    ----------
    add : ndarray of int [-], (P,)
        Instances to add per pool (kept first at a boundary, then started).
    moves : dict
        Source pool → ``[(destination pool, share of its new requests)]``.
    """

    add: np.ndarray
    moves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class BoundaryPlan:
    """The fast layer's decision at an interval start, as the engine applies it.

    Attributes
    ----------
    target : ndarray of int [-], (P,)
        Committed instances per pool (the plan's, plus kept and started).
    shares : Mapping[PoolKey, float] [-]
        Routing shares (fluid: with the moves folded in; request level: the plan's).
    """

    target: np.ndarray
    shares: Mapping[PoolKey, float]


class QualityLedger:
    """The quality budget of the open interval: one account per model that every action
    sending requests to a lossier precision draws from (module docstring: the planned
    moves (b, c), the sooner-precision starts (a), the re-dispatched queues (d), the DR
    cap's moves).

    The plan leaves each request of model ``m`` a slack ``σ_m = δ̄ − Σ_p δ_p s_p``
    [points] (:meth:`FastLayer.slack`). A wake-up plans per second: arrivals at ``λ_m``
    requests/s allow ``σ_m λ_m`` [points · requests/s] (:meth:`rate_budget`, spent in
    place by that wake-up's plan). What the layer actually moves is booked here: after
    ``N_m`` of the interval's requests the moves may have added at most ``σ_m N_m``
    [points · requests] (:meth:`room`, :meth:`admits`, :meth:`charge`), checked
    request by request, so the interval's request-weighted loss stays within ``δ̄``
    whenever the plan's is.

    Parameters
    ----------
    n_models : int
    """

    def __init__(self, n_models: int) -> None:
        self.slack = np.zeros(n_models)
        self.added = np.zeros(n_models)

    def open(self, slack: np.ndarray) -> None:
        """A new interval: the plan's slack [points] per model, nothing added yet."""
        self.slack = np.asarray(slack, dtype=float)
        self.added = np.zeros_like(self.slack)

    def rate_budget(self, rate: np.ndarray) -> np.ndarray:
        """What arrivals at ``rate`` [requests/s] per model allow a wake-up's plan to
        add [points · requests/s], a new array the plan spends in place."""
        return self.slack * rate

    def room(self, m: int, requests: float) -> float:
        """Loss model ``m``'s moves may still add once ``requests`` of its requests have
        arrived in the interval [points · requests]."""
        return float(self.slack[m] * requests - self.added[m])

    def admits(self, m: int, loss: float, requests: float) -> bool:
        """Whether one more move adding ``loss`` [points] fits after ``requests``."""
        return self.added[m] + loss <= self.slack[m] * requests + _EPS

    def charge(self, m: int, loss: float) -> None:
        """Book ``loss`` [points · requests] that moves of model ``m`` added."""
        self.added[m] += loss


class FastLayer:
    """The fast layer of one run (module docstring).

    Parameters
    ----------
    site : Site
        With a fleet.
    specs : sequence of PoolSpec
        The servers' pools, in ``site.pools`` order.
    config : FastLayerConfig
    requests : RequestArrays or RequestAggregates
        The run's requests (read only where they have arrived; aggregates: fluid only).
    n_steps : int
    prior_response_tokens : Mapping[str, float] [tokens]
        Mean response length per model before the first interval is published (the
        history's mix); a model without one is not sized until then.
    fidelity : {"request", "fluid"}
    """

    def __init__(self, site: Site, specs: Sequence[PoolSpec], config: FastLayerConfig,
                 requests: RequestArrays | RequestAggregates, n_steps: int,
                 prior_response_tokens: Mapping[str, float], fidelity: str) -> None:
        fleet = site.fleet
        assert fleet is not None
        self.config = config
        self.fidelity = fidelity
        self.keys: tuple[PoolKey, ...] = tuple(s.key for s in specs)
        self.models = site.models
        self.campuses = site.campus_names
        self.levers = fleet.levers
        self.model_of = np.array([self.models.index(k[1]) for k in self.keys])
        self.campus_of = np.array([self.campuses.index(k[0]) for k in self.keys])
        # The pools of each (model, precision) across campuses: what a queued request
        # may be re-dispatched among (:meth:`_rebalance_queues`).
        groups: dict[tuple[str, str], list[int]] = {}
        for p, k in enumerate(self.keys):
            groups.setdefault((k[1], k[2]), []).append(p)
        self._precision_groups = tuple(groups.values())
        self.gpus = np.array([site.row(k).gpus_per_instance for k in self.keys])
        self.loss = np.array([max(site.row(k).quality_loss_pct_points, 0.0) for k in self.keys])
        self.p0_w = np.array([float(s.batch_curve.power_idle_w) for s in specs])
        self.batch = np.array([s.slots_per_instance for s in specs], dtype=np.int64)
        self.load_s = np.array([s.load_time_s for s in specs])
        # Active power P(b) − P0 of one instance at each batch b = 0..B [W].
        self._active_w = [np.asarray(s.batch_curve.power_w(np.arange(s.slots_per_instance + 1)),
                                     dtype=float) - float(s.batch_curve.power_idle_w)
                          for s in specs]
        # Its running maximum over 0..b [W]: what an instance holding at most b requests
        # may draw (equal to the curve where it rises with b, module docstring, "The DR
        # cap", 3).
        self._active_max_w = [np.maximum.accumulate(a) for a in self._active_w]
        # The most one instance may draw [W]: P(B) where the curve rises with the batch,
        # its peak where it does not (the starts' and keeps' bounds hold either way).
        self.p_max_w = self.p0_w + np.array([float(a[-1]) for a in self._active_max_w])
        self.capacity = np.array([fleet.utilization_cap * fleet.capacity(k[1], k[2])
                                  for k in self.keys])
        self.budget = fleet.quality_budget_pct_points
        # Request level reads arrival times (the engine refuses aggregates there).
        self._arrays = requests if isinstance(requests, RequestArrays) else None
        self._by_model: tuple[np.ndarray, ...] | None = None
        agg = requests.per_interval(n_steps)
        self._agg_requests = agg["requests"]
        zero = np.zeros((1, len(self.models)))
        self._cum_requests = np.vstack([zero, np.cumsum(agg["requests"], axis=0)])
        self._cum_tokens = np.vstack([zero, np.cumsum(agg["response_tokens"], axis=0)])
        self._prior = np.array([float(prior_response_tokens.get(m, math.nan))
                                for m in self.models])
        P = len(self.keys)
        self._service_rate: tuple[int, np.ndarray, np.ndarray] = (
            -1, np.zeros(P, dtype=bool), np.zeros(P))
        self.cols = {c: np.zeros((n_steps, P)) for c in (*FAST_POOL_COLUMNS, *DR_POOL_COLUMNS)}
        self._dr_pairs: set[tuple[int, int]] = set()
        # Campuses with a pool under the DR cap's power cap since its last wake-up.
        self._power_capped = np.zeros(len(self.campuses), dtype=bool)
        self._actions: list[tuple[Any, ...]] = []
        # state of the open interval (request level)
        self._moves: dict[int, list[tuple[int, float]]] = {}
        self._seen = np.zeros(P, dtype=np.int64)
        self._credit: dict[int, np.ndarray] = {}
        self.ledger = QualityLedger(len(self.models))
        # The open interval's requests per model that arrived before request index
        # self._counted_to (request level), advanced over the new requests only.
        self._arrived = np.zeros(len(self.models), dtype=np.int64)
        self._counted_to = 0
        self._acted_rate = np.zeros(len(self.models))  # at the last wake-up [requests/s]
        # Per model, over the open interval's arrivals (request level, surge wake-ups):
        # the index of its first one [-], and each one's count over the surge window
        # before it, the window reaching back before the interval as far as it may
        # (:meth:`_open_surge_counts`).
        self._surge_counts: list[tuple[int, np.ndarray]] = []

    # -- observation ---------------------------------------------------------------------
    def mean_response_tokens(self, step: int) -> np.ndarray:
        """Each model's mean response length [tokens] over the run intervals before
        ``step`` (published by its start), else the prior; NaN when neither is known."""
        req = self._cum_requests[step]
        with np.errstate(invalid="ignore", divide="ignore"):
            seen = self._cum_tokens[step] / req
        return np.where(req > 0, seen, self._prior)

    def service_rate(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Per pool: whether its model's mean response length is known by ``step``, and
        the requests/s one ready instance serves at the utilisation cap [requests/s]
        (0 where unknown), each (P,); computed once per interval (the wake-ups of an
        interval share it)."""
        if self._service_rate[0] != step:
            R = self.mean_response_tokens(step)[self.model_of]
            known = np.isfinite(R) & (R > 0)
            mu = np.where(known, self.capacity / np.where(known, R, 1.0), 0.0)
            self._service_rate = (step, known, mu)
        return self._service_rate[1], self._service_rate[2]

    def arrival_rate(self, t: float, step: int, window_s: float | None = None) -> np.ndarray:
        """Each model's observed arrival rate at ``t`` [requests/s]: request level, the
        arrivals in ``[t − window_s, t)`` (default ``lookback_s``); fluid, the previous
        interval's aggregate."""
        M = len(self.models)
        if self.fidelity == "fluid":
            return (self._agg_requests[step - 1] / STEP_S if step > 0
                    else np.zeros(M))
        span = min(self.config.lookback_s if window_s is None else window_s, t)
        if span <= 0.0:
            return np.zeros(M)
        arrays = self._request_arrays()
        # two scalar searches: cheaper than one over a list (converted to an array)
        i0 = int(arrays.arrival_s.searchsorted(t - span, side="left"))
        i1 = int(arrays.arrival_s.searchsorted(t, side="left"))
        return np.bincount(arrays.model[i0:i1], minlength=M) / span

    def _arrivals_by_model(self) -> tuple[np.ndarray, ...]:
        """Arrival times of each model's requests, in order [s] (request level only),
        split once per run for the surge wake-ups."""
        if self._by_model is None:
            arrays = self._request_arrays()
            self._by_model = tuple(arrays.arrival_s[arrays.model == m]
                                   for m in range(len(self.models)))
        return self._by_model

    def _request_arrays(self) -> RequestArrays:
        """The run's requests themselves (request level only)."""
        if self._arrays is None:
            raise ValueError("the fast layer inside the interval needs the requests "
                             "themselves; this run has per-interval aggregates only")
        return self._arrays

    def _arrived_before(self, end: int) -> np.ndarray:
        """Each model's requests of the open interval with a request index below ``end``
        (request level; ``end`` never decreases within an interval) [requests], (M,).

        A running count: only the requests since the last call are counted, instead of
        the interval's every wake-up (read only; the next call may change it)."""
        if end > self._counted_to:
            self._arrived += np.bincount(self._request_arrays().model[self._counted_to:end],
                                         minlength=len(self.models))
            self._counted_to = end
        return self._arrived

    # -- the decision ----------------------------------------------------------------------
    def _allowed(self, src: int, dst: int) -> bool:
        """Whether the levers allow moving requests from pool ``src`` to ``dst``."""
        levers = self.levers
        if self.campus_of[src] != self.campus_of[dst] and not levers.spatial:
            return False
        return self.keys[src][2] == self.keys[dst][2] or levers.quantization

    def slack(self, shares: np.ndarray) -> np.ndarray:
        """Quality budget the plan leaves per model [points]: ``δ̄ − Σ_p δ_p s_p``, ≥ 0."""
        planned = np.bincount(self.model_of, weights=self.loss * shares,
                              minlength=len(self.models))
        return np.maximum(self.budget - planned, 0.0)

    def decide(self, step: int, view: FleetView, shares: np.ndarray, keepable: np.ndarray,
               limits: Callable[[], tuple[np.ndarray, np.ndarray]],
               capped: np.ndarray | None = None, surge: bool = False,
               closed: np.ndarray | None = None) -> FastPlan:
        """Moves and instances to add (module docstring).

        Parameters
        ----------
        step : int
        view : FleetView
            State after the plan's decision of the interval is applied.
        shares : ndarray [-], (P,)
            The plan's routing shares, normalised per model (their quality slack is
            the open interval's :attr:`ledger`'s).
        keepable : ndarray of int [-], (P,)
            Instances the plan stops that may be kept instead (boundary only).
        limits : callable
            Returns the free GPUs [GPUs] and the constant power [W] each campus may
            still add for the rest of the interval, each (C,) (called only when an
            instance is wanted; both are then updated as instances are added).
        capped : ndarray of bool, optional
            Campuses holding a committed DR cap: starts their power bound refuses
            while GPUs are free are counted (``dr_starts_held``).
        surge : bool
            A surge wake-up: only there are instances started at a sooner precision
            (``soonest_precision``; elsewhere its loading ones are only counted).
        closed : ndarray of bool, optional
            Campuses no move (b, c) goes into (C,): those whose DR cap may keep a pool
            below its full batch (module docstring, (b, c)).
        """
        P = len(self.keys)
        plan = FastPlan(add=np.zeros(P, dtype=np.int64))
        known, mu = self.service_rate(step)
        lam = view.rate[self.model_of] * shares
        need = lam + view.queue / self.config.drain_s
        ready_cap = view.ready * mu
        if not (known & (need > ready_cap + _EPS)).any():
            return plan  # every pool covers its need with ready instances
        out, into = np.zeros(P), np.zeros(P)
        budget = self.ledger.rate_budget(view.rate)  # [points · requests/s]
        if self.levers.spatial or self.levers.quantization:
            self._plan_moves(plan, known, need, ready_cap, lam, budget, out, into, closed)
        if not self.levers.switching:
            return plan
        short = need - out + into - (view.ready + view.loading) * mu
        wanted_pools = sorted(np.flatnonzero(known & (short > _EPS)).tolist(),
                              key=lambda p: -short[p])
        if not wanted_pools:
            return plan
        free_gpus, room_w = limits()
        soonest = self.config.soonest_precision and self.levers.quantization
        # What loading instances of a pool will serve beyond its own need [requests/s]:
        # those started at a sooner precision for another pool (below) count there.
        surplus = np.where(known, np.minimum(np.maximum(-short, 0.0), view.loading * mu), 0.0)
        for p in wanted_pools:
            wanted = math.ceil(short[p] / mu[p] - _EPS)
            # A kept instance was already counted at full power (as draining), so it
            # adds nothing to the bound, but only a bound within the limit allows it.
            kept = int(min(wanted, keepable[p])) if room_w[self.campus_of[p]] >= -_EPS else 0
            plan.add[p] += kept
            wanted -= kept
            if wanted > 0 and soonest:
                left = self._start_sooner(p, short[p] - kept * mu[p], plan, known, mu, budget,
                                          surplus, free_gpus, room_w, start=surge)
                wanted = max(math.ceil(left / mu[p] - _EPS), 0)
            if wanted <= 0:
                continue
            hosts = [p] + ([h for h in range(P) if h != p and self.keys[h][1:] == self.keys[p][1:]]
                           if self.levers.spatial else [])
            for h in hosts:
                c = self.campus_of[h]
                fit = int(min(wanted, free_gpus[c] // self.gpus[h],
                              math.floor(room_w[c] / self.p_max_w[h] + _EPS)))
                if fit <= 0:
                    continue
                plan.add[h] += fit
                free_gpus[c] -= fit * self.gpus[h]
                room_w[c] -= fit * self.p_max_w[h]
                wanted -= fit
                if wanted == 0:
                    break
            c = self.campus_of[p]
            if wanted > 0 and capped is not None and capped[c]:
                self.cols["dr_starts_held"][step, p] += max(
                    min(wanted, free_gpus[c] // self.gpus[p]), 0)
        return plan

    def _start_sooner(self, p: int, short: float, plan: FastPlan, known: np.ndarray,
                      mu: np.ndarray, budget: np.ndarray, surplus: np.ndarray,
                      free_gpus: np.ndarray, room_w: np.ndarray, start: bool = True) -> float:
        """Cover ``short`` [requests/s] of pool ``p`` at the other precisions of its model
        that are ready sooner (module docstring, (a)); returns what is left.

        Candidates: the pools ``h`` the levers let ``p``'s requests move to with a
        precision of shorter ``load_time_s``, soonest first, the same campus first. Each
        may serve at most ``budget[m] / (δ_h − δ_p)`` requests/s (all when it loses no
        quality): first what its loading instances serve beyond its own need
        (``surplus``, started at an earlier wake-up), then new instances on free GPUs
        within the power room, rounded up only where the budget does not bind (only
        with ``start``). Updates ``plan.add``, ``budget``, ``surplus``, ``free_gpus``
        and ``room_w``.
        """
        m = self.model_of[p]
        alts = [h for h in np.flatnonzero((self.model_of == m) & known
                                          & (self.load_s < self.load_s[p])).tolist()
                if self.keys[h][2] != self.keys[p][2] and self._allowed(p, h)]
        alts.sort(key=lambda h: (self.load_s[h], self.campus_of[h] != self.campus_of[p]))
        for h in alts:
            if short <= _EPS:
                break
            worse = float(self.loss[h] - self.loss[p])
            usable = short if worse <= 0 else min(short, max(budget[m], 0.0) / worse)
            loaded = min(usable, surplus[h])
            surplus[h] -= loaded
            served = loaded
            rest = usable - loaded
            if rest > _EPS and start:
                c = self.campus_of[h]
                whole = rest / mu[h] - _EPS
                count = math.ceil(whole) if usable >= short - _EPS else math.floor(whole + 2 * _EPS)
                fit = int(min(count, free_gpus[c] // self.gpus[h],
                              math.floor(room_w[c] / self.p_max_w[h] + _EPS)))
                if fit > 0:
                    plan.add[h] += fit
                    free_gpus[c] -= fit * self.gpus[h]
                    room_w[c] -= fit * self.p_max_w[h]
                    served += min(fit * mu[h], rest)
            short -= served
            if worse > 0:
                budget[m] -= served * worse
        return short

    def _plan_moves(self, plan: FastPlan, known: np.ndarray, need: np.ndarray,
                    ready_cap: np.ndarray, lam: np.ndarray, budget: np.ndarray,
                    out: np.ndarray, into: np.ndarray,
                    closed: np.ndarray | None = None) -> None:
        """Moves of new requests from short pools to pools with spare ready capacity,
        none into a campus ``closed`` flags (C,); ``budget`` (M,) [points · requests/s]
        is the quality budget left, spent in place."""
        excess = need - ready_cap
        spare = ready_cap - need
        if closed is not None:
            spare = np.where(closed[self.campus_of], 0.0, spare)
        for src in sorted(np.flatnonzero(known & (excess > _EPS) & (lam > _EPS)).tolist(),
                          key=lambda p: -excess[p]):
            m = self.model_of[src]
            movable = min(excess[src], lam[src])
            dsts = [d for d in np.flatnonzero((self.model_of == m) & (spare > _EPS)).tolist()
                    if d != src and self._allowed(src, d)]
            dsts.sort(key=lambda d: (self.loss[d] - self.loss[src] > 0,
                                     self.campus_of[d] != self.campus_of[src], -spare[d]))
            for d in dsts:
                if movable <= _EPS:
                    break
                x = min(movable, spare[d])
                worse = self.loss[d] - self.loss[src]
                if worse > 0:
                    x = min(x, budget[m] / worse)
                    budget[m] -= x * worse
                if x <= _EPS:
                    continue
                plan.moves.setdefault(src, []).append((d, x / lam[src]))
                spare[d] -= x
                movable -= x
                out[src] += x
                into[d] += x

    # -- at the boundary ---------------------------------------------------------------
    def at_boundary(self, step: int, server: Any, target: np.ndarray,
                    shares: Mapping[PoolKey, float], limits: CampusLimits) -> BoundaryPlan:
        """The decision at the start of ``step``, before the plan's ``target`` is applied.

        ``server`` is the run's server (request level or fluid): the state it shows
        now is the previous interval's end. The plan's scale-down cancels loading
        instances first, then drains ready ones; an instance the layer keeps is one of
        those. Request level: the moves apply to the first window (:meth:`serve`);
        fluid: they are folded into the returned shares.
        """
        t0 = step * STEP_S
        ready0, loading0, draining0 = server.instance_counts(t0)
        committed0 = ready0 + loading0
        target = np.asarray(target, dtype=np.int64)
        cut = np.maximum(committed0 - target, 0)
        cancelled = np.minimum(cut, loading0)
        drained = cut - cancelled
        ready = ready0 - drained
        loading = np.maximum(target - ready, 0)
        view = FleetView(ready, loading, draining0 + drained, server.queue_lengths(),
                         self.arrival_rate(t0, step))
        # Instances the plan stops still count (drawing P(B), holding GPUs) until kept.
        held = np.maximum(target, committed0) + draining0
        free = limits.gpus - np.bincount(self.campus_of, weights=held * self.gpus,
                                         minlength=len(self.campuses))
        room = limits.inference_max_w - np.bincount(
            self.campus_of, weights=held * self.p_max_w, minlength=len(self.campuses))
        s = self._share_array(shares)
        capped = (None if limits.inference_cap_w is None
                  else np.isfinite(limits.inference_cap_w))
        self.ledger.open(self.slack(s))
        # Fluid: nothing inside the interval caps what moved requests draw at a campus
        # holding a DR cap. Request level: the DR cap's first wake-up, at this boundary
        # (:meth:`serve`), takes back the moves into a campus it puts under a power cap.
        closed = capped if self.fidelity == "fluid" else None
        plan = self.decide(step, view, s, cut, lambda: (free, room), capped, closed=closed)
        kept = np.minimum(plan.add, cut)
        self.cols["fast_kept"][step] += kept
        self.cols["fast_started"][step] += plan.add - kept
        for p in np.flatnonzero(plan.add).tolist():
            if kept[p]:
                self._log(t0, step, "keep", p, p, int(kept[p]))
            if plan.add[p] > kept[p]:
                self._log(t0, step, "start", p, p, int(plan.add[p] - kept[p]))
        self._set_moves(plan.moves)
        out = dict(shares)
        if self.fidelity == "fluid" and plan.moves:
            out = self._fold_moves(step, s, plan.moves)
        return BoundaryPlan(target + plan.add, out)

    def _share_array(self, shares: Mapping[PoolKey, float]) -> np.ndarray:
        """Routing shares per pool, normalised per model [-], (P,)."""
        s = np.array([max(float(shares.get(k, 0.0)), 0.0) for k in self.keys])
        total = np.bincount(self.model_of, weights=s, minlength=len(self.models))
        return np.divide(s, total[self.model_of], out=np.zeros_like(s),
                         where=total[self.model_of] > 0)

    def _set_moves(self, moves: dict[int, list[tuple[int, float]]]) -> None:
        self._moves = moves
        self._seen[:] = 0
        self._credit = {src: np.zeros(len(rules)) for src, rules in moves.items()}

    def _fold_moves(self, step: int, shares: np.ndarray,
                    moves: dict[int, list[tuple[int, float]]]) -> dict[PoolKey, float]:
        """Fluid: the shares with the moves folded in, and the moves recorded."""
        s = shares.copy()
        arrivals = self._agg_requests[step][self.model_of] * shares
        for src, rules in moves.items():
            for dst, f in rules:
                s[dst] += shares[src] * f
                s[src] -= shares[src] * f
                self._record_move(step * STEP_S, step, src, dst, float(arrivals[src] * f))
        return {k: float(v) for k, v in zip(self.keys, s, strict=True) if v > 0}

    def _record_move(self, t: float, step: int, src: int, dst: int, count: float,
                     action: str = "move") -> None:
        cols = self.cols
        if (src, dst) in self._dr_pairs:
            cols["dr_requests_moved"][step, src] += count
        if self.campus_of[src] != self.campus_of[dst]:
            cols["fast_rerouted_out"][step, src] += count
        if self.keys[src][2] != self.keys[dst][2]:
            cols["fast_precision_out"][step, src] += count
        cols["fast_moved_in"][step, dst] += count
        self._log(t, step, action, src, dst, count)

    def _log(self, t: float, step: int, action: str, src: int, dst: int, count: float) -> None:
        s, d = self.keys[src], self.keys[dst]
        self._actions.append((t, step, action, s[0], s[1], s[2], d[0], d[2], count))

    @property
    def actions(self) -> pd.DataFrame:
        """Every action, in time order (:data:`ACTION_COLUMNS`)."""
        return pd.DataFrame(self._actions, columns=list(ACTION_COLUMNS))

    # -- inside the interval (request level) ----------------------------------------------
    def serve(self, env: simpy.Environment, server: RequestLevelServer, step: int,
              target: np.ndarray, shares: Mapping[PoolKey, float], limits: CampusLimits,
              on_start: Callable[[int, float], None]
              ) -> Generator[simpy.Event, Any, IntervalStats]:
        """Serve interval ``step`` at request level, waking every ``period_s`` (a simpy
        process; ``env.now`` is the interval start; returns the interval's stats).

        ``target``/``shares``: :meth:`at_boundary`'s. ``on_start(pool, ready_time)`` is
        called for every instance started inside the interval.
        """
        server.begin_interval(step, target, shares)
        t0 = step * STEP_S
        self._arrived[:] = 0
        self._counted_to = server.first_request_at(t0)
        s = self._share_array(shares)
        now = t0
        ticks = self.config.ticks(step)
        capped = (None if limits.inference_cap_w is None
                  else np.isfinite(limits.inference_cap_w))
        self._dr_pairs = set()
        self._power_capped = np.zeros(len(self.campuses), dtype=bool)
        self._open_surge_counts(step)
        keep_none = np.zeros(len(self.keys), dtype=np.int64)  # nothing to keep inside
        rebalance = self.levers.spatial or (self.levers.quantization
                                            and self.config.soonest_precision)
        if capped is not None and capped.any():
            moves = self._hold_cap(server, step, t0, (ticks or [t0 + STEP_S])[0], limits, s,
                                   dict(self._moves))
            self._set_moves(moves)
        k = 0
        warming: list[float] = []  # ready times of the instances it started [s]
        while k < len(ticks):
            # Wake at the next tick, or earlier when an instance it started gets ready
            # (to move load to it at once) or at a surge.
            horizon = min([ticks[k], *(r for r in warming if r > now)])
            surge = self._surge(server, step, now, horizon)
            tick = horizon if surge is None else surge
            self._apply_moves(server, now, tick, step)
            yield env.timeout(tick - env.now)
            server.serve_until(tick)
            now = tick
            ready, loading, draining = server.instance_counts(tick)
            rate = self.arrival_rate(tick, step)
            if tick == ticks[k]:
                k += 1
            if surge is not None:  # the surge is in the short window; the long one dilutes it
                rate = np.maximum(rate, self.arrival_rate(tick, step,
                                                          self.config.surge_window_s))
            self._acted_rate = rate
            queue = server.queue_lengths()
            held = ready + loading + draining

            def room(tick: float = tick, held: np.ndarray = held
                     ) -> tuple[np.ndarray, np.ndarray]:
                """Free GPUs, and the power the rest of the interval may add: the
                energy drawn so far and every instance at full power until the end
                must fit the interval's average (module docstring)."""
                C = len(self.campuses)
                free = limits.gpus - np.bincount(self.campus_of, weights=held * self.gpus,
                                                 minlength=C)
                left = t0 + STEP_S - tick
                energy = np.bincount(self.campus_of, weights=server.energy_so_far_j(),
                                     minlength=C)
                full = np.bincount(self.campus_of, weights=held * self.p_max_w, minlength=C)
                return free, (limits.inference_max_w * STEP_S - energy - left * full) / left

            if rebalance and self._redispatch_due(queue):
                self._rebalance_queues(server, step, tick,
                                       FleetView(ready, loading, draining, queue, rate),
                                       rate[self.model_of] * s, capped)
                queue = server.queue_lengths()
            view = FleetView(ready, loading, draining, queue, rate)
            # No move (b, c) into a campus the DR cap held under a power cap since the
            # last wake-up: the moved requests could wait there at batch 0.
            plan = self.decide(step, view, s, keep_none, room, capped,
                               surge=surge is not None, closed=self._power_capped)
            for p in np.flatnonzero(plan.add).tolist():
                for _ in range(int(plan.add[p])):
                    ready_at = server.start_instance(p, tick)
                    warming.append(ready_at)
                    on_start(p, ready_at)
                self.cols["fast_started"][step, p] += plan.add[p]
                self._log(tick, step, "start", p, p, int(plan.add[p]))
            moves = plan.moves
            if capped is not None and capped.any():
                until = ticks[k] if k < len(ticks) else t0 + STEP_S
                moves = self._hold_cap(server, step, tick, until, limits, s, moves)
            self._set_moves(moves)
        self._apply_moves(server, now, t0 + STEP_S, step)
        yield env.timeout(t0 + STEP_S - env.now)
        server.serve_until(t0 + STEP_S)
        if capped is not None and capped.any():
            for p in range(len(self.keys)):
                server.set_batch_cap(p, None)
        return server.end_interval()

    @staticmethod
    def _redispatch_due(queue: np.ndarray) -> bool:
        """Whether a wake-up runs the queue re-dispatch (d) on ``queue`` [requests], (P,):
        only with a request queued somewhere. With none every group holds less than one
        request and :meth:`_rebalance_queues` moves nothing, so the usual wake-up skips
        its set-up (tests compare the runs with and without this skip)."""
        return bool(queue.any())

    def _rebalance_queues(self, server: RequestLevelServer, step: int, t: float,
                          view: FleetView, inflow: np.ndarray, capped: np.ndarray | None) -> None:
        """Re-dispatch queued requests among the pools of one model and precision at
        ``t`` [s] so that each queue drains in the same time (module docstring, (d)).

        A pool's drain rate is ``r_p = ready_p · μ_p − λ_p`` (its ready capacity less
        ``inflow``, its share of the observed arrivals by the plan's shares)
        [requests/s]; of the group's
        ``Q`` queued requests a pool with ``r_p > 0`` should hold ``Q · r_p / Σ r⁺``,
        one without none. Whole requests go from the largest surplus to the largest
        deficit, newest first (:meth:`RequestLevelServer.requeue`); none into a
        campus holding a DR cap (``capped``).
        """
        known, mu = self.service_rate(step)
        drain = np.where(known, view.ready * mu - inflow, 0.0)
        open_ = np.ones(len(self.campuses), dtype=bool) if capped is None else ~capped
        queue = view.queue.copy()
        groups: list[list[int]] = list(self._precision_groups) if self.levers.spatial else []
        first, arrived = 0, np.zeros(len(self.models), dtype=np.int64)
        if self.levers.quantization and self.config.soonest_precision:
            # then among all of a model's pools the levers join, within the quality budget
            groups += [np.flatnonzero(self.model_of == m).tolist()
                       for m in range(len(self.models))]
            first = server.first_request_at(step * STEP_S)
            arrived = self._arrived_before(server.first_request_at(t))
        for pools in groups:
            group = [p for p in pools if known[p]]
            into = [p for p in group if drain[p] > _EPS and open_[self.campus_of[p]]]
            total = float(queue[group].sum())
            if not into or total < 1.0:
                continue
            hold = np.zeros(len(self.keys))
            hold[into] = total * drain[into] / drain[into].sum()
            surplus = {p: math.floor(queue[p] - hold[p] + _EPS) for p in group}
            deficit = {p: math.floor(hold[p] - queue[p] + _EPS) for p in into}
            for src in sorted((p for p in group if surplus[p] > 0), key=lambda p: -surplus[p]):
                for dst in sorted((p for p in into if deficit[p] > 0), key=lambda p: -deficit[p]):
                    if not self._allowed(src, dst):
                        continue
                    count = min(surplus[src], deficit[dst])
                    m = self.model_of[src]
                    worse = float(self.loss[dst] - self.loss[src])
                    if self.keys[src][2] != self.keys[dst][2]:
                        # Only this interval's requests (its books hold the loss), the
                        # newest first, and no more than the budget left allows.
                        count = min(count, server.queued_since(src, first))
                        if worse > 0:
                            room = self.ledger.room(m, arrived[m])
                            count = min(count, math.floor(room / worse + _EPS))
                    count = server.requeue(src, dst, count) if count > 0 else 0
                    if count == 0:
                        continue
                    if self.keys[src][2] != self.keys[dst][2]:
                        self.ledger.charge(m, count * worse)
                    surplus[src] -= count
                    deficit[dst] -= count
                    queue[src] -= count
                    queue[dst] += count
                    self._record_move(t, step, src, dst, float(count), "requeue")
                    if surplus[src] <= 0:
                        break

    def _open_surge_counts(self, step: int) -> None:
        """Per model, for each arrival ``g`` of interval ``step``: the index ``s_g`` of
        the first arrival at or after ``t_g − W`` (``W = surge_window_s``) in the
        model's arrivals of the run, and ``g − s_g``, its arrivals over ``[t_g − W,
        t_g)`` [requests]. Computed once per interval, so that a wake-up's
        :meth:`_surge` compares counts instead of searching every window afresh."""
        W = self.config.surge_window_s
        self._surge_counts = []
        if W <= 0.0:
            return
        t0 = step * STEP_S
        for times in self._arrivals_by_model():
            a = int(times.searchsorted(t0, side="left"))
            b = int(times.searchsorted(t0 + STEP_S, side="left"))
            first = times.searchsorted(times[a:b] - W, side="left")
            self._surge_counts.append((a, np.arange(a, b) - first))

    def _surge(self, server: RequestLevelServer, step: int, now: float,
               until: float) -> float | None:
        """The first arrival time ``t`` in ``[now + W, until)`` [s] at which a model's
        arrivals over ``[t − W, t)`` (``W = surge_window_s``) exceed what its
        committed instances serve (ready and loading, at ``μ_p``) and the rate the
        layer last acted on, ``r``, beyond Poisson noise: ``n > r W + 3 √(r W)``
        (module docstring, "Surge wake-up"); None: no such time, or ``W = 0``.

        Only arrivals at or after ``now`` count (the window of an arrival ``g`` starts
        at ``max(s_g, i0)``, ``i0`` the first arrival at or after ``now``); the counts
        ``g − s_g`` are :meth:`_open_surge_counts`'s, ``[now, until)`` within the open
        interval ``step``."""
        W = self.config.surge_window_s
        if W <= 0.0 or until <= now + W:
            return None
        known, mu = self.service_rate(step)
        # ready + loading: every committed instance (no need to count which are up)
        committed = server.committed_instances()
        M = len(self.models)
        cap = np.bincount(self.model_of, weights=np.where(known, committed * mu, 0.0),
                          minlength=M)
        bar = np.maximum(cap, self._acted_rate) * W
        bar = (bar + 3.0 * np.sqrt(bar)).tolist()
        first = math.inf
        for m, (times, (a, count)) in enumerate(zip(self._arrivals_by_model(),
                                                    self._surge_counts, strict=True)):
            # scalar searches: this runs at every wake-up of every interval
            i0 = int(times.searchsorted(now, side="left"))
            i1 = int(times.searchsorted(until, side="left"))
            # the count from i0 on, min(g − s_g, g − i0), exceeds the bar only where
            # both do; g − i0 > bar (an integer against a real) from g = i0 + ⌊bar⌋ + 1 on
            lo = max(int(times.searchsorted(now + W, side="left")),
                     i0 + math.floor(bar[m]) + 1)
            if lo >= i1:
                continue
            over = count[lo - a:i1 - a] > bar[m]
            if over.any():
                first = min(first, float(times[lo + int(over.argmax())]))
        return None if math.isinf(first) else first

    # -- holding the committed DR cap (request level) -------------------------------------
    def _hold_cap(self, server: RequestLevelServer, step: int, t: float, until: float,
                  limits: CampusLimits, shares: np.ndarray,
                  moves: dict[int, list[tuple[int, float]]]
                  ) -> dict[int, list[tuple[int, float]]]:
        """At ``t`` [s], served to ``t``: moves and power caps that keep each capped
        campus within ``limits.inference_cap_w`` until the interval end (module
        docstring, "The DR cap"); returns ``moves`` with the cap's moves added. The caps
        hold until ``until``, the next wake-up. The moves of ``moves`` (the moves (b, c)
        planned before) into a campus that gets a power cap here are taken back: the
        cap, sized on the plan's shares, could hold the pool they go to at batch 0."""
        assert limits.inference_cap_w is not None
        C = len(self.campuses)
        for p in range(len(self.keys)):
            server.set_batch_cap(p, None)
        self._power_capped[:] = False
        left = step * STEP_S + STEP_S - t
        energy = np.bincount(self.campus_of, weights=server.energy_so_far_j(), minlength=C)
        pool_w = server.power_now_w()
        power = np.bincount(self.campus_of, weights=pool_w, minlength=C)
        finite = np.isfinite(limits.inference_cap_w)
        allowed = np.where(finite, (np.where(finite, limits.inference_cap_w, 0.0) * STEP_S
                                    - energy) / left, np.inf)
        excess = np.where(finite, power - allowed, -np.inf)
        ready, loading, _ = server.instance_counts(t)
        _, mu = self.service_rate(step)
        # Active power per request/s of each pool at its full batch [W·s/request].
        w = np.where(mu > 0, (self.p_max_w - self.p0_w) / np.where(mu > 0, mu, 1.0), np.inf)
        rate = self.arrival_rate(t, step)
        lam = rate[self.model_of] * shares
        need = lam + server.queue_lengths() / self.config.drain_s
        spare = np.maximum(ready * mu - need, 0.0)
        margin = np.where(excess > _EPS, 0.0, np.where(finite, -excess, np.inf))
        # What the moves are expected to take off each campus [W]: it sizes the moves
        # (they stop at the excess), the caps below take no credit for it.
        relief = np.zeros(C)
        planned = {src: len(rules) for src, rules in moves.items()}
        moves = {src: list(rules) for src, rules in moves.items()}
        if (excess > _EPS).any() and (self.levers.spatial or self.levers.quantization):
            self._cap_moves(lam, rate=rate,
                            excess=excess, spare=spare, margin=margin, w=w, relief=relief,
                            moves=moves)
        window = until - t
        # The instances that may admit before ``until`` (ready, or loading and ready by
        # then) and what they hold now; the rest of each pool's power (every P0, the
        # draining instances' requests) no cap changes [W].
        occupancy = server.occupancy_by(until)
        # A draining instance's occupancy only falls, and on a curve that is not monotone
        # its power may rise as it does: it is counted at the curve's running maximum up
        # to what it holds, not at its power now.
        admitting_w = np.array([float(self._active_w[p][occ].sum())
                                for p, occ in enumerate(occupancy)])
        draining_rise_w = np.array([float((self._active_max_w[p] - self._active_w[p])[held].sum())
                                    for p, held in enumerate(server.draining_occupancy())])
        fixed_w = pool_w - admitting_w + draining_rise_w
        for c in np.flatnonzero(finite).tolist():
            # The cap bounds what the pools may draw, not only what they draw now: a cap
            # lifted because the occupancy is low lets it fill up again within the window.
            mine = np.flatnonzero(self.campus_of == c)
            # The bound fits what is left itself, no reserve below it and no credit for
            # step 2's moves (``relief``): the bound holds whatever arrives, so arrivals
            # moved away lower it by nothing, and a pool whose queue keeps its instances
            # full draws what it did (module docstring, "The DR cap", 3).
            batch = self._cap_batches(mine, ready, [occupancy[p] for p in mine.tolist()],
                                      float(fixed_w[mine].sum()), allowed[c], need, mu)
            for p, cap in zip(mine.tolist(), batch.tolist(), strict=True):
                if cap < self.batch[p] and ready[p] + loading[p] > 0:
                    server.set_batch_cap(p, cap)
                    self.cols["dr_capped_s"][step, p] += window
                    self._log(t, step, "cap", p, p, cap)
                    self._power_capped[c] = True
        # the planned moves come first in each list, the cap's own after them
        return {src: kept for src, rules in moves.items()
                if (kept := [(d, f) for i, (d, f) in enumerate(rules)
                             if i >= planned.get(src, 0)
                             or not self._power_capped[self.campus_of[d]]])}

    def _cap_batches(self, pools: np.ndarray, ready: np.ndarray,
                     occupancy: Sequence[np.ndarray], fixed_w: float, target_w: float,
                     need: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Batch caps [requests per instance] of ``pools`` whose bound fits ``target_w``
        [W] at the least service lost.

        The bound is what the pools may draw until the next wake-up: ``fixed_w`` (every
        instance's ``P0``, draining ones at the curve's running maximum up to their
        occupancy) plus, for each instance that may admit requests by then
        (``occupancy``, per pool in ``pools`` order: what each holds now),
        ``P(max(b, n_j)) − P0``: a cap stops admissions, not the ``n_j``
        requests already running, so an instance holding more than ``b`` draws at its
        ``n_j`` until they finish. A pool's slot serves ``μ_p / B_p`` requests/s (its
        capacity at the SLO over its batch). From a floor of what each pool's need asks
        (``⌈1.2 · need / (ready · μ / B)⌉``, at least 1, at most ``B``), slots are taken
        away, a step of ``⌈B / 64⌉`` at a time, from the pool whose step saves the most
        power per request/s it costs, while the bound exceeds the target (to 0 if it
        must: a step below what an instance holds saves nothing in the bound, so it is
        taken last, but it stops the admissions that would refill the instance as its
        requests end); or given back, cheapest power per request/s first, while they fit.
        """
        B = self.batch[pools]
        n = ready[pools].astype(float)
        per_slot = np.where(mu[pools] > 0, mu[pools] / B, 1e-9)
        with np.errstate(divide="ignore", invalid="ignore"):
            floor = np.ceil(1.2 * need[pools] / (n * per_slot))
        b = np.where(n > 0, np.clip(np.nan_to_num(floor, nan=1.0, posinf=1.0), 1, B), B)
        b = b.astype(np.int64)
        step = np.maximum(B // 64, 1)
        # cost[i][b]: active power of pool i's admitting instances under a cap b [W]; an
        # instance holding n ≤ max(b, n_j) draws at most the curve's largest value up to
        # there (the running maximum: the bound holds for a curve that is not monotone).
        cost = [self._active_max_w[p][
                    np.maximum(np.arange(self.batch[p] + 1)[:, None], occ[None, :])].sum(axis=1)
                for p, occ in zip(pools.tolist(), occupancy, strict=True)]
        admitting = np.array([occ.size for occ in occupancy], dtype=float)

        total = fixed_w + float(sum(cost[i][b[i]] for i in range(len(pools))))
        while total > target_w:
            best, ratio = -1, -1.0
            for i in range(len(pools)):
                if admitting[i] > 0 and b[i] > 0:
                    d = min(int(step[i]), int(b[i]))
                    r = (cost[i][b[i]] - cost[i][b[i] - d]) / (admitting[i] * d * per_slot[i])
                    if r > ratio:
                        best, ratio = i, r
            if best < 0:
                break
            d = min(int(step[best]), int(b[best]))
            total -= cost[best][b[best]] - cost[best][b[best] - d]
            b[best] -= d
        open_ = [i for i in range(len(pools)) if admitting[i] > 0 and b[i] < B[i]]
        while open_:
            i = min(open_, key=lambda i: (cost[i][min(b[i] + step[i], B[i])] - cost[i][b[i]])
                    / (admitting[i] * min(step[i], B[i] - b[i]) * per_slot[i]))
            up = min(int(step[i]), int(B[i] - b[i]))
            add = cost[i][b[i] + up] - cost[i][b[i]]
            if total + add > target_w:
                open_.remove(i)
                continue
            total += add
            b[i] += up
            if b[i] >= B[i]:
                open_.remove(i)
        return b

    def _cap_moves(self, lam: np.ndarray, *, rate: np.ndarray,
                   excess: np.ndarray, spare: np.ndarray, margin: np.ndarray, w: np.ndarray,
                   relief: np.ndarray, moves: dict[int, list[tuple[int, float]]]) -> None:
        """Moves of new requests off campuses above their cap (module docstring, "The
        DR cap", 2): to a campus below its bound (its margin [W] allowing the active
        power they add there) or to a pool of the same campus drawing less per
        request; within the quality budget (:attr:`ledger`). Updates ``spare``,
        ``margin``, ``relief`` [W] and ``moves`` in place."""
        budget = self.ledger.rate_budget(rate)
        over = excess > _EPS
        for src in np.flatnonzero(over[self.campus_of] & (lam > _EPS)).tolist():
            c = self.campus_of[src]
            movable = lam[src] - sum(f for _, f in moves.get(src, [])) * lam[src]
            m = self.model_of[src]
            dsts = [d for d in np.flatnonzero((self.model_of == m) & (spare > _EPS)).tolist()
                    if d != src and self._allowed(src, d)
                    and ((self.campus_of[d] != c and margin[self.campus_of[d]] > _EPS)
                         or (self.campus_of[d] == c and w[d] < w[src]))]
            dsts.sort(key=lambda d: (self.campus_of[d] == c, self.loss[d] - self.loss[src] > 0,
                                     -spare[d]))
            for d in dsts:
                cut = excess[c] - relief[c]
                if movable <= _EPS or cut <= _EPS:
                    break
                cd = self.campus_of[d]
                saved = w[src] - (w[d] if cd == c else 0.0)  # [W per request/s]
                x = min(movable, spare[d], cut / saved)
                if cd != c:
                    x = min(x, margin[cd] / w[d])
                worse = self.loss[d] - self.loss[src]
                if worse > 0:
                    x = min(x, budget[m] / worse)
                if x <= _EPS:
                    continue
                if worse > 0:
                    budget[m] -= x * worse
                moves.setdefault(src, []).append((d, x / lam[src]))
                self._dr_pairs.add((src, d))
                spare[d] -= x
                movable -= x
                relief[c] += x * saved
                if cd != c:
                    margin[cd] -= x * w[d]

    def _apply_moves(self, server: RequestLevelServer, t: float, t_end: float,
                     step: int) -> None:
        """Set the pools of the requests arriving in ``[t, t_end)`` by the current moves.

        Each source pool's new requests are taken in arrival order; request ``i`` since
        the moves were set moves when ``⌊(i + 1) F + ½⌋ > ⌊i F + ½⌋`` (``F`` the summed
        shares, so every prefix moves ``F`` of them within one request), to the
        destination with the largest credit (smooth weighted round robin over the
        destinations' shares); a move to a lower-quality precision is refused when the
        model's added loss would exceed its slack × its requests so far in the
        interval. Each choice depends on the requests before it only.
        """
        if not self._moves:
            return
        a, b = server.first_request_at(t), server.first_request_at(t_end)
        model = self._request_arrays().model
        models = model[a:b]
        M = len(self.models)
        # Requests of each model that arrived in the interval before this window.
        arrived = self._arrived_before(a).astype(float)
        if b > a:
            pools = server.pool[a:b]
            rank = np.zeros(b - a)
            for m in range(M):
                mine = models == m
                rank[mine] = np.arange(1, int(mine.sum()) + 1)
            moved: dict[tuple[int, int], int] = {}
            for src, rules in self._moves.items():
                sel = np.flatnonzero(pools == src)
                if sel.size == 0:
                    continue
                share = np.array([f for _, f in rules])
                F = min(float(share.sum()), 1.0)
                i = self._seen[src] + np.arange(sel.size)
                self._seen[src] += sel.size
                go = np.floor((i + 1) * F + 0.5) > np.floor(i * F + 0.5)
                credit = self._credit[src]
                for k in sel[go].tolist():
                    credit += share / F
                    pick = int(np.argmax(credit))
                    credit[pick] -= 1.0
                    dst = rules[pick][0]
                    m = int(models[k])
                    worse = float(self.loss[dst] - self.loss[src])
                    if worse > 0 and not self.ledger.admits(m, worse, arrived[m] + rank[k]):
                        continue
                    self.ledger.charge(m, worse)
                    server.pool[a + k] = dst
                    moved[src, dst] = moved.get((src, dst), 0) + 1
            for (src, dst), count in moved.items():
                self._record_move(t, step, src, dst, float(count))

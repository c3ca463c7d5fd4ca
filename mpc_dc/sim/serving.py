"""Request-level serving: instance pools with continuous-batching slots.

Batching model
--------------
A pool ``(campus, model, precision)`` has ``n`` instances of ``B`` slots each
(``B = max_batch`` of the quantization-to-power table unless overridden). A
request occupies one slot from its start for

    service = request_tokens / prefill_tokens_per_s + response_tokens · τ      [s]

with the per-slot decode time ``τ = max_batch / tokens_per_s_at_slo`` [s/token]:
the inter-token latency at full batch, so that a fully occupied instance decodes
exactly the table's ``tokens_per_s_at_slo``. τ is held at its full-batch value
whatever the occupancy (a conservative bound: measured ITL grows with batch
size), which keeps the slots independent servers. The pool is then a
``n · B``-server FCFS queue, simulated exactly by the Kiefer-Wolfowitz recursion
on a heap of slot-free times: ``start = max(arrival, min free)``; the slot becomes
free at ``start + service``. The first token is out at ``start + prefill``, the
last at ``finish = start + service``.

Intervals and state
-------------------
The loop runs interval by interval (15 min). A request whose start would fall
at or after the interval end stays in the pool's FIFO queue (with it, all later
ones: FCFS starts are non-decreasing) and is served after the next decision has
changed the pool, so capacity arriving later serves the queue. Scale-up pushes
``B`` slots per new instance free at ``now + load_time_s`` (capacity arrives
late; the instance draws idle power while it loads). Scale-down first cancels
instances still loading, then drains the instances whose slots free up first:
their slots take no new request and the instance draws idle power until its
last request ends.

Energy
------
Per pool and interval: ``idle_power_w × instance-seconds`` (loading, online and
draining instances) ``+ marginal_energy_per_token_j × tokens decoded`` in the
interval, a request's tokens being decoded at a constant rate over
``[first token, finish]`` and split between intervals by time overlap. A
request's own energy record is ``marginal × tokens it decoded``, so the ledger's
active energy equals the records summed (:meth:`ServingOutcome.check`).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mpc_dc.params.quant_table import QuantRow
from mpc_dc.sim.arrivals import STEP_S, RequestArrays
from mpc_dc.sim.fleet_decision import PoolKey
from mpc_dc.sim.router import NO_ROUTE, SmoothRouter

logger = logging.getLogger(__name__)

FINISHED = 0
IN_SERVICE = 1
QUEUED = 2
DROPPED_NO_ROUTE = 3
STATUS_NAMES: tuple[str, ...] = ("finished", "in_service", "queued", "dropped_no_route")


@dataclass(frozen=True)
class PoolSpec:
    """Serving figures of one pool's instances.

    Parameters
    ----------
    key : PoolKey
        ``(campus, model, precision)``.
    slots_per_instance : int [requests]
        Continuous-batching slots of one instance.
    prefill_tokens_per_s : float [tokens/s]
        Prompt processing rate of one slot.
    decode_s_per_token : float [s/token]
        Time between output tokens of one slot, τ.
    idle_power_w : float [W]
        Power of one instance at zero load.
    marginal_energy_per_token_j : float [J/token]
    load_time_s : float [s]
        Start-up delay of a new instance.
    tokens_per_s_at_slo : float [tokens/s]
        Output throughput of one fully occupied instance (for reporting).
    """

    key: PoolKey
    slots_per_instance: int
    prefill_tokens_per_s: float
    decode_s_per_token: float
    idle_power_w: float
    marginal_energy_per_token_j: float
    load_time_s: float
    tokens_per_s_at_slo: float

    @classmethod
    def from_row(
        cls, key: PoolKey, row: QuantRow, slots_per_instance: int | None = None
    ) -> PoolSpec:
        """Pool figures from a quantization-table row (see the module's batching model)."""
        return cls(
            key=key,
            slots_per_instance=slots_per_instance or row.max_batch,
            prefill_tokens_per_s=row.prefill_tokens_per_s,
            decode_s_per_token=row.max_batch / row.tokens_per_s_at_slo,
            idle_power_w=row.idle_power_w,
            marginal_energy_per_token_j=row.marginal_energy_per_token_j,
            load_time_s=row.load_time_s,
            tokens_per_s_at_slo=row.tokens_per_s_at_slo,
        )


@dataclass(frozen=True)
class IntervalStats:
    """What serving did in one interval; arrays over pools (shape ``(n_pools,)``).

    Attributes
    ----------
    step : int
    arrivals : ndarray [requests]
        Requests routed to the pool in the interval.
    arrived_tokens : ndarray [tokens]
        Their response tokens.
    started : ndarray [requests]
        Requests that started service in the interval.
    queue_end : ndarray [requests]
        Requests waiting for a slot at the interval end.
    tokens_decoded : ndarray [tokens]
        Output tokens decoded in the interval.
    busy_slot_s : ndarray [slot-s]
        Slot occupancy integrated over the interval.
    instance_s : ndarray [instance-s]
        Instance time drawing idle power (loading, online, draining).
    ready_instance_s : ndarray [instance-s]
        Instance time ready to serve.
    instances : ndarray [-]
        Committed instances (loading or online, not draining).
    idle_energy_j, active_energy_j : ndarray [J]
        IT energy of the interval.
    dropped_no_route : int [requests]
        Requests of the interval whose model had no pool.
    """

    step: int
    arrivals: np.ndarray
    arrived_tokens: np.ndarray
    started: np.ndarray
    queue_end: np.ndarray
    tokens_decoded: np.ndarray
    busy_slot_s: np.ndarray
    instance_s: np.ndarray
    ready_instance_s: np.ndarray
    instances: np.ndarray
    idle_energy_j: np.ndarray
    active_energy_j: np.ndarray
    dropped_no_route: int = 0


def spread(
    acc: np.ndarray, t0: np.ndarray, t1: np.ndarray, weight: np.ndarray, step_s: float
) -> None:
    """Add ``weight`` spread uniformly over ``[t0, t1)`` to per-interval bins of ``acc``.

    Parameters
    ----------
    acc : ndarray, length ``n + 1``
        Bins ``[k·step_s, (k+1)·step_s)``; the last bin takes everything at or after
        ``n · step_s`` (added in place).
    t0, t1 : ndarray [s]
        Windows (``t1 >= t0``); a zero-length window puts its weight in ``t0``'s bin.
    weight : ndarray
    step_s : float [s]
    """
    last = acc.size - 1
    k0 = np.minimum(np.floor(t0 / step_s).astype(np.int64), last)
    k1 = np.minimum(np.ceil(t1 / step_s).astype(np.int64) - 1, last)
    k1 = np.maximum(k1, k0)
    one = k1 == k0
    acc += np.bincount(k0[one], weights=weight[one], minlength=acc.size)
    if one.all():
        return
    idx = np.flatnonzero(~one)
    spans = k1[idx] - k0[idx] + 1
    rep = np.repeat(idx, spans)
    k = np.repeat(k0[idx], spans) + (
        np.arange(rep.size) - np.repeat(np.cumsum(spans) - spans, spans)
    )
    lo = np.maximum(t0[rep], k * step_s)
    hi = np.where(k == last, t1[rep], np.minimum(t1[rep], (k + 1) * step_s))
    frac = (hi - lo) / (t1[rep] - t0[rep])
    acc += np.bincount(k, weights=weight[rep] * frac, minlength=acc.size)


def serve_fcfs(
    heap: list[float], arrival: list[float], service: list[float], horizon: float
) -> list[float]:
    """Start times of FCFS requests on the servers of ``heap`` until ``horizon``.

    Parameters
    ----------
    heap : list of float [s]
        Min-heap of server-free times, updated in place.
    arrival, service : list of float [s]
        Requests in FCFS order.
    horizon : float [s]
        A request that would start at or after it is not started (nor any after it).

    Returns
    -------
    list of float [s]
        Start times of the first ``len(result)`` requests.
    """
    starts: list[float] = []
    if not heap:
        return starts
    append = starts.append
    replace = heapq.heapreplace
    for a, s in zip(arrival, service, strict=False):
        f = heap[0]
        st = a if a > f else f
        if st >= horizon:
            break
        replace(heap, st + s)
        append(st)
    return starts


@dataclass
class _Instances:
    """Instance bookkeeping shared by both fidelities (no slot detail)."""

    committed: int = 0
    ready_times: list[float] = field(default_factory=list)
    drain_off: list[float] = field(default_factory=list)

    def instance_s(self, t0: float, t1: float) -> float:
        drain = sum(max(0.0, min(off, t1) - t0) for off in self.drain_off)
        return self.committed * (t1 - t0) + drain

    def ready_s(self, t0: float, t1: float) -> float:
        return sum(max(0.0, t1 - max(t0, r)) for r in self.ready_times)

    def end_interval(self, t1: float) -> None:
        self.drain_off = [off for off in self.drain_off if off > t1]


class RequestLevelServer:
    """Request-level serving of one run (see module docstring).

    Parameters
    ----------
    pools : sequence of PoolSpec
    requests : RequestArrays
    n_steps : int
        Intervals of the run.
    step_s : float [s]
        Interval length.
    service_s : ndarray [s], optional
        Service time per request replacing the token-based one (queueing tests).
    """

    fidelity = "request"

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        requests: RequestArrays,
        n_steps: int,
        step_s: float = STEP_S,
        service_s: np.ndarray | None = None,
    ) -> None:
        self.pools = tuple(pools)
        self.requests = requests
        self.n_steps = n_steps
        self.step_s = step_s
        self.service_override = service_s
        self.router = SmoothRouter([p.key for p in self.pools], requests.models)
        n, P = len(requests), len(self.pools)
        self.bounds = requests.interval_bounds(n_steps, step_s)
        self.pool = np.full(n, NO_ROUTE, dtype=np.int32)
        self.start = np.full(n, np.nan)
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        # Prefill and service seconds of each request at its pool, set when it is
        # routed (or re-dispatched) [s].
        self._prefill_s = np.full(n, np.nan)
        self._service_s = np.full(n, np.nan)
        self._tokens = np.zeros((P, n_steps + 1))
        self._busy = np.zeros((P, n_steps + 1))
        self._heaps: list[list[float]] = [[] for _ in range(P)]
        self._inst = [_Instances() for _ in range(P)]
        self._queue = [np.zeros(0, dtype=np.int64) for _ in range(P)]
        self._prefill_rate = np.array([p.prefill_tokens_per_s for p in self.pools])
        self._tau = np.array([p.decode_s_per_token for p in self.pools])
        self._idle_w = np.array([p.idle_power_w for p in self.pools])
        self._marginal = np.array([p.marginal_energy_per_token_j for p in self.pools])
        self.queue_history = np.zeros((n_steps, P), dtype=np.int64)
        #: Queued requests re-dispatched from pools left without instances [requests].
        self.requeued_requests = 0

    # -- scaling ---------------------------------------------------------------------------
    def committed_instances(self) -> np.ndarray:
        """Instances committed per pool (running or loading) [-], (P,)."""
        return np.array([i.committed for i in self._inst], dtype=np.int64)

    def scale(self, pool: int, target: int, now: float) -> None:
        """Set the committed instances of ``pool`` to ``target`` at time ``now`` [s]."""
        spec, inst, heap = self.pools[pool], self._inst[pool], self._heaps[pool]
        d = target - inst.committed
        slots = spec.slots_per_instance
        if d > 0:
            ready = now + spec.load_time_s
            for _ in range(d * slots):
                heapq.heappush(heap, ready)
            inst.ready_times.extend([ready] * d)
            inst.committed = target
            return
        if d == 0:
            return
        k = -d
        remove: Counter[float] = Counter()
        loading = sorted((r for r in inst.ready_times if r > now), reverse=True)[:k]
        for r in loading:
            remove[r] += slots
            inst.ready_times.remove(r)
        entries = sorted(heap)
        if remove:
            kept: list[float] = []
            for e in entries:
                if remove.get(e, 0) > 0:
                    remove[e] -= 1
                else:
                    kept.append(e)
            entries = kept
        drain = k - len(loading)
        if drain > 0:
            gone = entries[: drain * slots]
            entries = entries[drain * slots :]
            for i in range(drain):
                inst.drain_off.append(max(now, *gone[i * slots : (i + 1) * slots]))
            inst.ready_times.sort()
            del inst.ready_times[:drain]
        self._heaps[pool] = entries  # a sorted list is a valid heap
        inst.committed = target

    def _set_service(self, idx: np.ndarray, pool: np.ndarray) -> None:
        """Prefill and service seconds of requests ``idx`` at pools ``pool`` (all >= 0)."""
        prefill = self.requests.request_tokens[idx] / self._prefill_rate[pool]
        if self.service_override is not None:
            service = self.service_override[idx]
            prefill = np.minimum(prefill, service)
        else:
            service = prefill + self.requests.response_tokens[idx] * self._tau[pool]
        self._prefill_s[idx] = prefill
        self._service_s[idx] = service

    def _redispatch_stranded(self, shares: Mapping[PoolKey, float]) -> None:
        """Requests queued at a pool left without instances go to the model's pools by
        the interval's routing shares (a load balancer re-dispatches the queue of a
        backend it removed); they reach their new pool at the interval start, behind
        its own queue and ahead of the interval's arrivals, in their arrival order.
        Without a route they stay."""
        req = self.requests
        for p, inst in enumerate(self._inst):
            queue = self._queue[p]
            if queue.size == 0 or inst.committed > 0:
                continue
            target = self.router.route(req.model[queue], shares)
            move = (target >= 0) & (target != p)
            if not move.any():
                continue
            self._queue[p] = queue[~move]
            for t in np.unique(target[move]):
                self._queue[t] = np.concatenate([self._queue[t], queue[move & (target == t)]])
            self.pool[queue[move]] = target[move]
            self._set_service(queue[move], target[move])
            self.requeued_requests += int(move.sum())

    # -- one interval -----------------------------------------------------------------------
    def run_interval(
        self, step: int, instances: Sequence[int] | np.ndarray, shares: Mapping[PoolKey, float]
    ) -> IntervalStats:
        """Apply the decision at the interval start and serve the interval.

        Parameters
        ----------
        step : int
        instances : sequence of int
            Committed instances per pool (in ``self.pools`` order).
        shares : Mapping[PoolKey, float] [-]
            Routing shares of the interval.
        """
        t0, t1 = step * self.step_s, (step + 1) * self.step_s
        P = len(self.pools)
        for p in range(P):
            self.scale(p, int(instances[p]), t0)
        self._redispatch_stranded(shares)
        lo, hi = int(self.bounds[step]), int(self.bounds[step + 1])
        req = self.requests
        assigned = self.router.route(req.model[lo:hi], shares)
        self.pool[lo:hi] = assigned
        routed = assigned[assigned >= 0]
        self._set_service(lo + np.flatnonzero(assigned >= 0), routed)
        arrivals = np.bincount(routed, minlength=P)
        arrived_tokens = np.bincount(
            routed,
            weights=req.response_tokens[lo:hi][assigned >= 0].astype(np.float64),
            minlength=P,
        )
        order = np.argsort(assigned, kind="stable")
        cuts = np.searchsorted(assigned[order], np.arange(P + 1))
        started = np.zeros(P, dtype=np.int64)
        queue_end = np.zeros(P, dtype=np.int64)
        for p in range(P):
            new = lo + order[cuts[p] : cuts[p + 1]]
            idx = np.concatenate([self._queue[p], new]) if self._queue[p].size else new
            if idx.size == 0:
                continue
            heap = self._heaps[p]
            if heap and heap[0] < t1:
                # Nothing starts before the interval (a re-dispatched request may have
                # arrived long before its new pool's free slots).
                ready_at = np.maximum(req.arrival_s[idx], t0)
                starts = serve_fcfs(heap, ready_at.tolist(), self._service_s[idx].tolist(), t1)
            else:
                starts = []  # no slot frees up within the interval: nothing starts
            m = len(starts)
            self._queue[p] = idx[m:]
            started[p] = m
            queue_end[p] = idx.size - m
            if m == 0:
                continue
            done = idx[:m]
            st = np.asarray(starts)
            ft = st + self._prefill_s[done]
            fin = st + self._service_s[done]
            self.start[done] = st
            self.first_token[done] = ft
            self.finish[done] = fin
            spread(
                self._tokens[p], ft, fin, req.response_tokens[done].astype(np.float64), self.step_s
            )
            spread(self._busy[p], st, fin, fin - st, self.step_s)
        self.queue_history[step] = queue_end
        return self._stats(
            step, arrivals, arrived_tokens, started, queue_end, hi - lo - int(arrivals.sum())
        )

    def _stats(
        self,
        step: int,
        arrivals: np.ndarray,
        arrived_tokens: np.ndarray,
        started: np.ndarray,
        queue_end: np.ndarray,
        no_route: int,
    ) -> IntervalStats:
        t0, t1 = step * self.step_s, (step + 1) * self.step_s
        inst_s = np.array([i.instance_s(t0, t1) for i in self._inst])
        ready_s = np.array([i.ready_s(t0, t1) for i in self._inst])
        committed = self.committed_instances()
        for i in self._inst:
            i.end_interval(t1)
        tokens = self._tokens[:, step].copy()
        return IntervalStats(
            step=step,
            arrivals=arrivals,
            arrived_tokens=arrived_tokens,
            started=started,
            queue_end=queue_end,
            tokens_decoded=tokens,
            busy_slot_s=self._busy[:, step].copy(),
            instance_s=inst_s,
            ready_instance_s=ready_s,
            instances=committed,
            idle_energy_j=self._idle_w * inst_s,
            active_energy_j=self._marginal * tokens,
            dropped_no_route=no_route,
        )

    # -- end of run -------------------------------------------------------------------------
    def outcome(self) -> ServingOutcome:
        """Per-request records and status at the end of the run."""
        end = self.n_steps * self.step_s
        req = self.requests
        n = len(req)
        status = np.full(n, DROPPED_NO_ROUTE, dtype=np.int8)
        routed = self.pool >= 0
        started = routed & ~np.isnan(self.start)
        status[routed] = QUEUED
        status[started & (self.finish <= end)] = FINISHED
        status[started & (self.finish > end)] = IN_SERVICE
        # Arrivals beyond the run (none from build_arrivals) were never offered.
        offered = req.arrival_s < end
        decoded = np.zeros(n)
        fin = status == FINISHED
        decoded[fin] = req.response_tokens[fin]
        ins = np.flatnonzero(status == IN_SERVICE)
        if ins.size:
            span = self.finish[ins] - self.first_token[ins]
            frac = np.where(
                span > 0, (end - self.first_token[ins]) / np.where(span > 0, span, 1.0), 1.0
            )
            decoded[ins] = req.response_tokens[ins] * np.clip(frac, 0.0, 1.0)
        marginal = np.append(self._marginal, 0.0)
        energy = marginal[np.where(routed, self.pool, len(self.pools))] * decoded
        return ServingOutcome(
            requests=req,
            pools=self.pools,
            pool=self.pool,
            start=self.start,
            first_token=self.first_token,
            finish=self.finish,
            status=np.where(offered, status, -1).astype(np.int8),
            tokens_decoded=decoded,
            energy_j=energy,
            ledger_tokens=self._tokens[:, : self.n_steps].sum(axis=1),
            ledger_tokens_after_end=self._tokens[:, self.n_steps].copy(),
            queue_history=self.queue_history,
            end_s=end,
        )


@dataclass(frozen=True)
class ServingOutcome:
    """Per-request records of a request-level run (arrays aligned with ``requests``).

    Attributes
    ----------
    requests : RequestArrays
    pools : tuple of PoolSpec
    pool : ndarray of int32
        Pool index, ``-1`` if never routed.
    start, first_token, finish : ndarray [s since run start]
        NaN where not reached.
    status : ndarray of int8
        Index into :data:`STATUS_NAMES` (``-1``: arrived after the run end).
    tokens_decoded : ndarray [tokens]
        Output tokens decoded by the run end.
    energy_j : ndarray [J]
        Active (marginal) energy of the request's decoded tokens.
    ledger_tokens : ndarray [tokens]
        Tokens the per-interval ledger decoded, per pool.
    ledger_tokens_after_end : ndarray [tokens]
        Tokens of in-service requests decoded after the run end, per pool.
    queue_history : ndarray [requests], shape ``(n_steps, n_pools)``
        Queue length at each interval end.
    end_s : float [s]
    """

    requests: RequestArrays
    pools: tuple[PoolSpec, ...]
    pool: np.ndarray
    start: np.ndarray
    first_token: np.ndarray
    finish: np.ndarray
    status: np.ndarray
    tokens_decoded: np.ndarray
    energy_j: np.ndarray
    ledger_tokens: np.ndarray
    ledger_tokens_after_end: np.ndarray
    queue_history: np.ndarray
    end_s: float

    def status_counts(self) -> dict[str, int]:
        """Requests per status name."""
        counts = np.bincount(self.status[self.status >= 0], minlength=len(STATUS_NAMES))
        return {name: int(c) for name, c in zip(STATUS_NAMES, counts, strict=True)}

    def check(self, ledger_active_energy_j: float | None = None, rel_tol: float = 1e-9) -> None:
        """Assert conservation: requests, tokens and energy add up.

        * every offered request is finished, in service, queued or dropped (named);
        * tokens decoded per pool, records vs ledger;
        * active energy, records vs the ledger's total (when given) [J].
        """
        offered = int((self.status >= 0).sum())
        if sum(self.status_counts().values()) != offered:
            raise AssertionError("request statuses do not add up to the requests offered")
        P = len(self.pools)
        routed = self.pool >= 0
        by_pool = np.bincount(self.pool[routed], weights=self.tokens_decoded[routed], minlength=P)
        scale = max(1.0, float(by_pool.sum()))
        if np.abs(by_pool - self.ledger_tokens).max(initial=0.0) > rel_tol * scale * 10:
            raise AssertionError(f"tokens: records {by_pool} != ledger {self.ledger_tokens}")
        if ledger_active_energy_j is not None:
            rec = float(self.energy_j.sum())
            if abs(rec - ledger_active_energy_j) > 1e-6 * max(1.0, rec):
                raise AssertionError(
                    f"active energy: records {rec} J != ledger {ledger_active_energy_j} J"
                )

    def ttft_s(self) -> np.ndarray:
        """Time to first token [s] (NaN where none)."""
        return self.first_token - self.requests.arrival_s

    def latency_s(self) -> np.ndarray:
        """End-to-end latency [s] (NaN where not finished)."""
        out = self.finish - self.requests.arrival_s
        out[self.status != FINISHED] = np.nan
        return out


def tpot_s(outcome: ServingOutcome) -> np.ndarray:
    """Time per output token after the first [s/token] (NaN for < 2 tokens)."""
    resp = outcome.requests.response_tokens.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            resp > 1, (outcome.finish - outcome.first_token) / np.maximum(resp, 1), np.nan
        )


def erlang_c_wait_s(c: int, arrival_rate: float, mean_service_s: float) -> float:
    """Mean waiting time of M/M/c (Erlang C) [s].

    ``W_q = C(c, a) / (c μ - λ)`` with offered load ``a = λ / μ`` and
    ``C(c, a) = (a^c / c!) (c / (c - a)) / (Σ_{k<c} a^k / k! + (a^c / c!) (c / (c - a)))``.
    """
    mu = 1.0 / mean_service_s
    a = arrival_rate / mu
    if a >= c:
        return math.inf
    term, total = 1.0, 1.0
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c * c / (c - a)
    prob_wait = last / (total + last)
    return prob_wait / (c * mu - arrival_rate)

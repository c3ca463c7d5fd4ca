"""Request-level serving: instance pools with continuous batching.

The instance model (:class:`BatchCurve`)
-----------------------------------------
One instance (one vLLM engine on ``gpus_per_instance`` GPUs) runs *iteration-level
scheduling*: every decode step produces one token for each request of its running
batch, and requests join or leave the batch between steps. The step time depends on
the batch size ``b`` and on the tokens held in the KV cache ``C`` (prompts plus
tokens generated so far, summed over the batch)::

    t_step(b, C) = a + c·b + d·C + w·(1 − (1 − k/E)^b)                    [s]

``a`` reads the weights, ``c`` is the per-sequence cost, ``d`` reads one token of
KV cache (KV bytes per token / HBM bandwidth per GPU) and, for a mixture of
experts, ``w·(1 − (1 − k/E)^b)`` reads the experts a batch of ``b`` tokens
touches (``k`` of ``E`` per token). The prefill of a prompt of ``p`` tokens takes
``p / R`` seconds. **Prefill policy: prefill first** (vLLM V1 chunked prefill with
prompts under the token budget): prompts admitted to the batch are prefilled in
the next step, which lasts ``p / R`` longer, so every running request waits that
long for its next token — the interference of prefill on decode. Consecutive
admissions stall decode back to back. The first output token comes out of the
prefill (time to first token = queueing + stall before it + own prefill).
**KV cache**: an instance holds ``kv_capacity_tokens`` tokens (GPU memory minus
weights, divided by the KV bytes per token of the model and precision); a request
reserves ``prompt + response`` tokens when admitted (so the cache never
overflows and no request is preempted) and frees them when it finishes. A
request is admitted when the batch has fewer than ``B`` (``max_num_seqs``)
requests and its reservation fits; else it waits (first come, first served).
**Power** depends on the occupancy ``n`` (requests admitted)::

    P(n) = P0 + p1·n + A·n / (n + K)                                       [W]

All coefficients are fitted on the ML.ENERGY measurements
(:mod:`mpc_dc.params.serving_fit`, fit and residuals in ``docs/serving.md``).

The event loop
--------------
Events are per request, never per decode step: arrival, admission (a request
joins an instance's batch; its prefill extends the instance's stall), and
completion. Between two events an instance's batch is constant, so every
running request advances by the same number of decode steps ``ΔV``: a virtual
clock ``V`` per instance (decode steps done) gives each request's completion as
``V_join + response − 1`` (a heap per instance), the processor-sharing trick of
egalitarian queues. Over ``T`` seconds of decode the clock moves by
``ΔV = 2T / (t0 + √(t0² + 2·d·b·T))`` (the step time grows by ``d·b`` per step as
the cache fills); the ``T`` of a given ``ΔV`` is ``t0·ΔV + d·b·ΔV²/2``. One event
heap per pool orders the instances' next completions (one valid entry per
instance; an admission can only delay completions, so the entry stays a lower
bound and is refreshed when it comes up).

Pools, queue and dispatch
-------------------------
A pool ``(campus, model, precision)`` has a FIFO queue and ``n`` instances. An
arriving request goes to the less occupied of the two next instances in
round-robin order (power of two choices); when neither can admit it, to the
first instance that can; when none can (or requests already wait), it joins the
queue, whose head is admitted as soon as an instance can take it. The loop runs
interval by interval (15 min); the state is carried across boundaries. A fast layer
(:mod:`mpc_dc.sim.fast_layer`) serves an interval in windows between its wake-ups
(:meth:`RequestLevelServer.begin_interval`, ``serve_until``, ``end_interval``): it
may start instances and set the pools of requests not yet served in between (new ones,
and queued ones: :meth:`RequestLevelServer.requeue`); served
in one window, the interval is :meth:`RequestLevelServer.run_interval`. Scale-up
adds instances ready at ``now + load_time_s`` (a loading instance draws idle
power). Scale-down cancels instances still loading first, then drains the least
occupied ones: they admit nothing, draw ``P(n)`` until their last request ends,
then go off. A pool left without instances has its queue re-dispatched by the
interval's routing shares. An instance that dies (a crash, or its GPUs lost:
:meth:`RequestLevelServer.kill`, driven by :mod:`mpc_dc.sim.faults`) stops at once:
its in-flight requests go back to the pool's queue in arrival order and start again
from their prompt (the tokens they had produced are lost, counted in
``tokens_lost``; the energy they had drawn stays on their record).

Energy
------
Per pool and interval: ``idle_energy_j = P0 × instance-seconds`` (loading, ready,
draining) and ``active_energy_j = ∫ (P(n) − P0) dt``. A request's record carries
its share ``∫ (P(n) − P0) / n dt`` over its time in the batch, so the ledger's
active energy equals the records summed (:meth:`ServingOutcome.check`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.params.quant_table import QuantRow
from mpc_dc.sim import serving_kernel as kern
from mpc_dc.sim.arrivals import STEP_S, RequestArrays
from mpc_dc.sim.router import NO_ROUTE, SmoothRouter
from mpc_dc.site.config import PoolKey, Site

FINISHED = 0
IN_SERVICE = 1
QUEUED = 2
DROPPED_NO_ROUTE = 3
STATUS_NAMES: tuple[str, ...] = ("finished", "in_service", "queued", "dropped_no_route")

PREFILL_POLICIES: tuple[str, ...] = ("prefill_first",)
"""Prefill policies the instance model implements (see module docstring)."""


@dataclass(frozen=True)
class BatchCurve:
    """Continuous-batching physics of one instance (module docstring).

    Parameters
    ----------
    step_base_s : float [s]
        ``a``: step time of an empty batch (weights read, launch overhead).
    step_per_seq_s : float [s/request]
        ``c``: step time added per running request.
    step_per_context_token_s : float [s/token]
        ``d``: step time added per token held in the KV cache.
    prefill_tokens_per_s : float [tokens/s]
        ``R``: prompt tokens prefilled per second (the whole instance).
    power_idle_w : float [W]
        ``P0``: power with no request admitted.
    power_per_seq_w : float [W/request]
        ``p1``: linear power term.
    power_sat_w : float [W]
        ``A``: amplitude of the saturating power term.
    power_half_batch : float [requests]
        ``K``: occupancy at which the saturating term reaches ``A / 2``.
    moe_step_s : float [s]
        ``w``: step time of reading every expert once (0 for a dense model).
    moe_expert_fraction : float [-]
        ``k / E``: experts touched per token over experts per layer.
    kv_capacity_tokens : float [tokens]
        KV-cache tokens the instance holds (``inf``: no limit).
    prefill_policy : str
        One of :data:`PREFILL_POLICIES`.
    """

    step_base_s: float
    step_per_seq_s: float
    step_per_context_token_s: float
    prefill_tokens_per_s: float
    power_idle_w: float
    power_per_seq_w: float = 0.0
    power_sat_w: float = 0.0
    power_half_batch: float = 1.0
    moe_step_s: float = 0.0
    moe_expert_fraction: float = 0.0
    kv_capacity_tokens: float = math.inf
    prefill_policy: str = "prefill_first"

    def __post_init__(self) -> None:
        if self.prefill_policy not in PREFILL_POLICIES:
            raise ValueError(
                f"BatchCurve.prefill_policy: expected one of {PREFILL_POLICIES}, "
                f"got {self.prefill_policy!r}"
            )
        if not (self.prefill_tokens_per_s > 0 and self.power_half_batch > 0):
            raise ValueError("BatchCurve: prefill_tokens_per_s and power_half_batch must be > 0")
        if self.step_base_s + self.step_per_seq_s <= 0:
            raise ValueError("BatchCurve: a step must take a positive time")

    @classmethod
    def flat(
        cls,
        decode_s_per_token: float,
        prefill_tokens_per_s: float,
        idle_power_w: float,
        marginal_energy_per_token_j: float,
    ) -> BatchCurve:
        """A step time ``τ`` whatever the batch, power ``P0 + marginal · n / τ``.

        Each running request then decodes at ``1/τ`` tokens/s on its own: with one
        slot per instance and no prefill, ``c`` instances are ``c`` independent
        servers (the M/M/c check). Also the curve of a pool with no fitted figures.
        """
        return cls(
            step_base_s=decode_s_per_token,
            step_per_seq_s=0.0,
            step_per_context_token_s=0.0,
            prefill_tokens_per_s=prefill_tokens_per_s,
            power_idle_w=idle_power_w,
            power_per_seq_w=marginal_energy_per_token_j / decode_s_per_token,
        )

    # -- the curves -------------------------------------------------------------------------
    def step_s(self, batch: Any, context_tokens: Any = 0.0) -> Any:
        """Decode step time [s] of ``batch`` requests holding ``context_tokens`` KV tokens."""
        b = np.asarray(batch, dtype=float)
        out = (
            self.step_base_s
            + self.step_per_seq_s * b
            + self.step_per_context_token_s * np.asarray(context_tokens, dtype=float)
        )
        if self.moe_step_s:
            out = out + self.moe_step_s * (1.0 - (1.0 - self.moe_expert_fraction) ** b)
        return out if out.ndim else float(out)

    def power_w(self, occupancy: Any) -> Any:
        """Instance power [W] with ``occupancy`` requests admitted."""
        n = np.asarray(occupancy, dtype=float)
        out = (
            self.power_idle_w
            + self.power_per_seq_w * n
            + self.power_sat_w * n / (n + self.power_half_batch)
        )
        return out if out.ndim else float(out)

    def saturated(
        self, batch: float, prompt_tokens: float, response_tokens: float,
        context_per_seq: float,
    ) -> dict[str, float]:
        """Steady state of an instance kept full at ``batch`` requests.

        Each completion admits one request, whose prefill stalls decode; the
        steady state of a long run of the event loop, in closed form.

        Parameters
        ----------
        batch : float or ndarray [requests]
        prompt_tokens, response_tokens : float [tokens]
            Means per request (``response_tokens > 1``).
        context_per_seq : float [tokens]
            Mean KV tokens of a running request (prompt + tokens generated so far:
            ``p̄ + E[n²] / (2 E[n])`` when requests are admitted as others leave).

        Returns
        -------
        dict with ``step_s`` (decode step, the median inter-token latency) [s],
        ``tpot_s`` (mean time per output token after the first) [s],
        ``tokens_per_s`` (output) [tokens/s], ``power_w`` [W].
        """
        step = self.step_s(batch, np.asarray(batch) * context_per_seq)
        stall_per_step = batch / (response_tokens - 1.0) * prompt_tokens / self.prefill_tokens_per_s
        tpot = step + stall_per_step
        tokens = batch / tpot * response_tokens / (response_tokens - 1.0)
        return {"step_s": step, "tpot_s": tpot, "tokens_per_s": tokens,
                "power_w": self.power_w(batch)}

    def capacity_at_slo(
        self, max_batch: int, prompt_tokens: float, response_tokens: float,
        context_per_seq: float, tpot_slo_s: float,
    ) -> dict[str, float]:
        """The busiest steady state an instance holds within a TPOT target.

        The largest batch ``b ≤ max_batch`` (and within the KV cache, at
        ``context_per_seq`` tokens per request plus one request's reservation) whose
        :meth:`saturated` TPOT is at most ``tpot_slo_s``, and that state's output
        throughput and power: the capacity at the SLO of a workload of these means
        (what the optimizer's ``tokens_per_s_at_slo`` stands for).

        Returns
        -------
        dict with ``batch`` [requests] (0 when even one request misses the target),
        ``tokens_per_s`` [tokens/s], ``power_w`` [W], ``tpot_s`` [s].
        """
        kv = (self.kv_capacity_tokens - prompt_tokens - response_tokens) / context_per_seq
        top = int(max(1, min(max_batch, math.floor(kv)))) if math.isfinite(kv) else max_batch
        b = np.arange(1, top + 1, dtype=float)
        state = self.saturated(b, prompt_tokens, response_tokens,  # type: ignore[arg-type]
                               context_per_seq)
        tpot = np.asarray(state["tpot_s"])
        ok = np.flatnonzero(tpot <= tpot_slo_s)
        if ok.size == 0:
            return {"batch": 0.0, "tokens_per_s": 0.0, "power_w": self.power_idle_w,
                    "tpot_s": math.inf}
        i = int(ok[-1])
        return {"batch": float(b[i]), "tokens_per_s": float(np.asarray(state["tokens_per_s"])[i]),
                "power_w": float(np.asarray(state["power_w"])[i]), "tpot_s": float(tpot[i])}

    def scaled(self, throughput: float, energy: float, prefill: float) -> BatchCurve:
        """The curve of another precision measured as ratios to this one.

        Parameters
        ----------
        throughput : float [-]
            Decode throughput ratio: every step time is divided by it.
        energy : float [-]
            Energy-per-token ratio: power is multiplied by ``energy × throughput``.
        prefill : float [-]
            Prefill-rate ratio.
        """
        p = energy * throughput
        return replace(
            self,
            step_base_s=self.step_base_s / throughput,
            step_per_seq_s=self.step_per_seq_s / throughput,
            step_per_context_token_s=self.step_per_context_token_s / throughput,
            moe_step_s=self.moe_step_s / throughput,
            prefill_tokens_per_s=self.prefill_tokens_per_s * prefill,
            power_idle_w=self.power_idle_w * p,
            power_per_seq_w=self.power_per_seq_w * p,
            power_sat_w=self.power_sat_w * p,
        )


@dataclass(frozen=True)
class PoolSpec:
    """Serving figures of one pool's instances.

    Parameters
    ----------
    key : PoolKey
        ``(campus, model, precision)``.
    slots_per_instance : int [requests]
        Largest batch of one instance (vLLM ``max_num_seqs``).
    prefill_tokens_per_s : float [tokens/s]
        Prompt processing rate of one instance.
    decode_s_per_token : float [s/token]
        Inter-token time at full batch (``max_batch / tokens_per_s_at_slo``); the
        step time of the flat curve when ``curve`` is None.
    idle_power_w : float [W]
        Power of one instance at zero load.
    marginal_energy_per_token_j : float [J/token]
    load_time_s : float [s]
        Start-up delay of a new instance.
    tokens_per_s_at_slo : float [tokens/s]
        Output throughput of one fully occupied instance (for reporting).
    curve : BatchCurve, optional
        The instance physics; ``None``: :meth:`BatchCurve.flat` of the figures above.
    itl_slo_s : float [s], optional
        Target on the time per output token after the first (TPOT) of a request;
        ``None``: no target.
    """

    key: PoolKey
    slots_per_instance: int
    prefill_tokens_per_s: float
    decode_s_per_token: float
    idle_power_w: float
    marginal_energy_per_token_j: float
    load_time_s: float
    tokens_per_s_at_slo: float
    curve: BatchCurve | None = None
    itl_slo_s: float | None = None

    @property
    def batch_curve(self) -> BatchCurve:
        """The instance physics (fitted, or the flat curve of the table figures)."""
        if self.curve is not None:
            return self.curve
        return BatchCurve.flat(self.decode_s_per_token, self.prefill_tokens_per_s,
                               self.idle_power_w, self.marginal_energy_per_token_j)

    @classmethod
    def from_row(
        cls,
        key: PoolKey,
        row: QuantRow,
        slots_per_instance: int | None = None,
        curve: BatchCurve | None = None,
        *,
        fitted: bool = True,
    ) -> PoolSpec:
        """Pool figures from a quantization-table row.

        ``curve`` defaults to the fitted curve of the row's (model, precision, GPU)
        (:func:`mpc_dc.params.serving_fit.fitted_curve`) when ``fitted``; a row
        without one gets the flat curve.
        """
        if curve is None and fitted:
            from mpc_dc.params.serving_fit import fitted_curve

            curve = fitted_curve(row.model, row.precision, row.gpu)
        return cls(
            key=key,
            slots_per_instance=slots_per_instance or row.max_batch,
            prefill_tokens_per_s=curve.prefill_tokens_per_s if curve else row.prefill_tokens_per_s,
            decode_s_per_token=row.max_batch / row.tokens_per_s_at_slo,
            idle_power_w=curve.power_idle_w if curve else row.idle_power_w,
            marginal_energy_per_token_j=row.marginal_energy_per_token_j,
            load_time_s=row.load_time_s,
            tokens_per_s_at_slo=row.tokens_per_s_at_slo,
            curve=curve,
            itl_slo_s=row.itl_slo_p90_ms / 1000.0,
        )


@dataclass(frozen=True)
class RequestMix:
    """Token lengths of a workload: per-request means of one model's requests.

    Parameters
    ----------
    prompt_tokens : float [tokens]
        Mean prompt length ``p̄``.
    response_tokens : float [tokens]
        Mean response length ``E[n]`` (> 1).
    response_tokens_sq : float [tokens²]
        Mean squared response length ``E[n²]``.
    """

    prompt_tokens: float
    response_tokens: float
    response_tokens_sq: float

    def __post_init__(self) -> None:
        if not (self.prompt_tokens >= 0 and self.response_tokens > 1
                and self.response_tokens_sq >= self.response_tokens ** 2 * (1 - 1e-9)):
            raise ValueError(f"RequestMix: expected prompt >= 0, response > 1 and E[n²] >= "
                             f"E[n]², got {self}")

    @classmethod
    def from_sums(cls, requests: float, prompt_tokens: float, response_tokens: float,
                  response_tokens_sq: float) -> RequestMix | None:
        """The mix of ``requests`` requests from their token sums (None for no request
        or a mean response of at most one token)."""
        if requests <= 0 or response_tokens <= requests:
            return None
        return cls(prompt_tokens / requests, response_tokens / requests,
                   response_tokens_sq / requests)

    @property
    def context_per_seq(self) -> float:
        """Mean KV tokens of a running request, ``p̄ + E[n²] / (2 E[n])`` [tokens]
        (requests admitted as others leave)."""
        return self.prompt_tokens + self.response_tokens_sq / (2.0 * self.response_tokens)


def workload_capacity(site: Site, mix: Mapping[str, RequestMix],
                      tpot_slo_s: Mapping[str, float] | None = None) -> dict[str, float]:
    """Output throughput of one instance at the TPOT target on each model's workload.

    :meth:`BatchCurve.capacity_at_slo` of every (model, precision) of ``site``'s
    fleet (the curve the simulator serves with, :meth:`PoolSpec.from_row`) on the
    model's ``mix``; the target is ``tpot_slo_s[model]`` when given, else the row's
    ITL SLO. Models without a mix keep the table's ``tokens_per_s_at_slo``. What the
    optimizer should plan with (the table figure holds on ML.ENERGY's chat task only).

    Returns
    -------
    dict
        ``"model/precision"`` → tokens/s [tokens/s] (``Fleet.capacity_tokens_per_s``).
    """
    fleet = site.fleet
    out: dict[str, float] = {}
    if fleet is None:
        return out
    targets = tpot_slo_s or {}
    for model in fleet.models:
        if model not in mix:
            continue
        m = mix[model]
        for precision in fleet.precisions(model):
            row = fleet.table.get(model, precision)
            spec = PoolSpec.from_row(("", model, precision), row)
            target = float(targets.get(model, row.itl_slo_p90_ms / 1000.0))
            cap = spec.batch_curve.capacity_at_slo(
                row.max_batch, m.prompt_tokens, m.response_tokens, m.context_per_seq, target)
            if cap["tokens_per_s"] > 0:
                out[f"{model}/{precision}"] = float(cap["tokens_per_s"])
    return out


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
        Requests admitted to a batch in the interval.
    queue_end : ndarray [requests]
        Requests waiting for admission at the interval end.
    tokens_decoded : ndarray [tokens]
        Output tokens produced in the interval (first tokens and decode steps).
    busy_slot_s : ndarray [request-s]
        Batch occupancy integrated over the interval.
    instance_s : ndarray [instance-s]
        Instance time drawing power (loading, online, draining).
    ready_instance_s : ndarray [instance-s]
        Instance time ready to serve.
    instances : ndarray [-]
        Committed instances (loading or online, not draining).
    idle_energy_j, active_energy_j : ndarray [J]
        IT energy of the interval: ``P0 × instance_s`` and ``∫ (P(n) − P0) dt``.
    dropped_no_route : int [requests]
        Requests of the interval whose model had no pool.
    prefill_tokens : ndarray [tokens]
        Prompt tokens of the requests admitted in the interval.
    decode_steps : ndarray [steps]
        Decode steps run in the interval, summed over the pool's instances.
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
    prefill_tokens: np.ndarray | None = None
    decode_steps: np.ndarray | None = None


def serve_fcfs(
    heap: list[float], arrival: list[float], service: list[float], horizon: float
) -> list[float]:
    """Start times of FCFS requests on the independent servers of ``heap`` until ``horizon``.

    The pre-continuous-batching kernel (each slot an independent server at a fixed
    speed), kept as the reference of the benchmark's side-by-side ratio.

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
    replace_top = heapq.heapreplace
    for a, s in zip(arrival, service, strict=False):
        f = heap[0]
        st = a if a > f else f
        if st >= horizon:
            break
        replace_top(heap, st + s)
        append(st)
    return starts


KILL_ORDER: tuple[str, ...] = ("draining", "loading", "ready")
"""Which instances of a pool :meth:`RequestLevelServer.kill` takes first by default."""


@dataclass(frozen=True)
class Killed:
    """What killing instances of one pool did.

    Attributes
    ----------
    instances : int
        Instances killed.
    loading : int
        Of them, instances still loading (no request lost).
    requests : int
        In-flight requests put back in the pool's queue.
    tokens_lost : float [tokens]
        Output tokens those requests had produced (already in the ledger), discarded.
    """

    instances: int = 0
    loading: int = 0
    requests: int = 0
    tokens_lost: float = 0.0


@dataclass
class _Instances:
    """Instance-count bookkeeping of the fluid fidelity (no batch detail).

    ``ready`` instances were ready by the last interval start seen; ``ready_times`` [s]
    holds the others' ready times (a pool of thousands of instances keeps a count, not
    a list). ``committed = ready + len(ready_times)``.
    """

    committed: int = 0
    ready: int = 0
    ready_times: list[float] = field(default_factory=list)

    def instance_s(self, t0: float, t1: float) -> float:
        return self.committed * (t1 - t0)

    def ready_s(self, t0: float, t1: float) -> float:
        """Ready instance-seconds in ``[t0, t1)`` (times from now on: ``t0`` settles)."""
        if self.ready_times and min(self.ready_times) <= t0:
            late = [r for r in self.ready_times if r > t0]
            self.ready += len(self.ready_times) - len(late)
            self.ready_times = late
        return self.ready * (t1 - t0) + sum(max(0.0, t1 - r) for r in self.ready_times)

    def ready_by(self, t: float) -> int:
        """Instances ready at ``t``."""
        return self.ready + sum(1 for r in self.ready_times if r <= t)

    def scale(self, target: int, ready_at: float) -> None:
        """Commit ``target`` instances: new ones ready at ``ready_at``; on scale-down the
        ones still loading are cancelled first, latest first."""
        d = target - self.committed
        if d > 0:
            self.ready_times.extend([ready_at] * d)
        elif d < 0:
            keep = target - self.ready
            if keep <= 0:
                self.ready, self.ready_times = target, []
            else:
                self.ready_times.sort()
                del self.ready_times[keep:]
        self.committed = target


@dataclass
class _OpenInterval:
    """The interval a request-level server is serving (between ``begin_interval`` and
    ``end_interval``): its span [s], its requests ``[lo, hi)``, how far it is served."""

    step: int
    t0: float
    t1: float
    lo: int
    hi: int
    n_pools: int
    t: float = field(init=False)
    next: int = field(init=False)
    started: np.ndarray = field(init=False)
    prefill: np.ndarray = field(init=False)
    served: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.t, self.next = self.t0, self.lo
        self.started = np.zeros(self.n_pools)
        self.prefill = np.zeros(self.n_pools)
        self.served = np.zeros(self.n_pools, dtype=bool)


class _Pool:
    """A request-level pool: instance state arrays, queue and bookkeeping."""

    def __init__(self, spec: PoolSpec, n_steps: int, step_s: float,
                 service_scale: float | None, hist_bins: int, hist_dt: float) -> None:
        c = spec.batch_curve
        self.spec = spec
        self.curve = c
        b = np.arange(spec.slots_per_instance + 2, dtype=float)
        self.base = np.asarray(c.step_s(b, 0.0), dtype=float)
        self.pw = np.asarray(c.power_w(b), dtype=float) - c.power_idle_w
        self.pwa = np.concatenate([[0.0], self.pw[1:] / b[1:]])
        self.pp = np.zeros(kern.N_PARAMS)
        self.pp[kern.P_D] = c.step_per_context_token_s
        self.pp[kern.P_INV_R] = 1.0 / c.prefill_tokens_per_s
        self.pp[kern.P_KV_CAP] = c.kv_capacity_tokens
        self.pp[kern.P_MAX_BATCH] = spec.slots_per_instance
        self.pp[kern.P_STEP_S] = step_s
        self.pp[kern.P_HIST_DT] = hist_dt
        self.p0 = c.power_idle_w
        self.service_scale = service_scale
        self.state = kern.new_state(4, spec.slots_per_instance)
        self.tnext = np.full(4, math.inf)
        self.rr = np.zeros(1, dtype=np.int64)
        self.free = [3, 2, 1, 0]
        self.committed: list[int] = []  # slots of committed instances (loading or up)
        self.draining: list[int] = []
        self.queue = np.zeros(0, dtype=np.int64)
        self.first_bins = np.zeros(n_steps + 1)
        self.hist = np.zeros(hist_bins)
        #: Time up to which the pool reads as it is [s]: every instance holding requests
        #: was advanced to it (the kernel advances each instance on to a window's end; an
        #: instance committed later starts there or after). An idle instance reads the
        #: same at any later time (``P0``, occupancy 0) until a window admits to it.
        self.reads_exact_to = 0.0

    @property
    def fs(self) -> np.ndarray:
        return self.state[0]

    def new_slot(self, now: float) -> int:
        """A fresh instance committed at ``now``, ready after the load time."""
        if not self.free:
            old = self.state
            m = old[0].shape[0]
            grown = kern.new_state(2 * m, self.spec.slots_per_instance)
            for a, g in zip(old, grown, strict=True):
                g[:m] = a
            self.state = grown
            self.tnext = np.full(2 * m, math.inf)
            self.free = list(range(2 * m - 1, m - 1, -1))
        j = self.free.pop()
        fs = self.fs
        fs[j] = 0.0
        self.state[6][j] = 0
        ready = now + self.spec.load_time_s
        fs[j, kern.F_READY] = ready
        fs[j, kern.F_CREATED] = fs[j, kern.F_TL] = fs[j, kern.F_STALL] = now
        fs[j, kern.F_OFF] = math.inf
        fs[j, kern.F_ALIVE] = 1.0
        fs[j, kern.F_UP] = 1.0 if ready <= now else 0.0
        self.committed.append(j)
        return j

    def instance_s(self, t0: float, t: float) -> float:
        """Instance-seconds drawing power in ``[t0, t)`` [s]: committed and draining
        instances from their creation (or ``t0``), less what drained ones spent off."""
        fs = self.fs
        alive = np.array(self.committed + self.draining, dtype=np.int64)
        inst_s = float((t - np.maximum(t0, fs[alive, kern.F_CREATED])).sum()) if alive.size else 0.0
        for j in self.draining:
            if fs[j, kern.F_ALIVE] == 0.0:
                inst_s -= t - fs[j, kern.F_OFF]
        return inst_s

    def release(self, j: int, now: float) -> None:
        """Instance ``j`` stops drawing power at ``now``; its slot is free for reuse."""
        fs = self.fs
        fs[j, kern.F_ALIVE] = fs[j, kern.F_UP] = 0.0
        fs[j, kern.F_OFF] = now
        self.free.append(j)


def merge_by_arrival(queue: np.ndarray, moved: np.ndarray, arrival_s: np.ndarray) -> np.ndarray:
    """``queue`` and ``moved`` (request indices) as one queue in arrival order
    (``arrival_s`` [s] per request), ties ``queue`` first: the stable sort of their
    concatenation, merged in linear time when both are in arrival order already (as
    a queue only of arrivals and requeues is)."""
    at_q, at_m = arrival_s[queue], arrival_s[moved]
    if (at_q[1:] >= at_q[:-1]).all() and (at_m[1:] >= at_m[:-1]).all():
        return np.insert(queue, np.searchsorted(at_q, at_m, side="right"), moved)
    # a re-dispatched stranded queue joins behind its new pool's queue, out of order
    both = np.concatenate([queue, moved])
    return both[np.argsort(arrival_s[both], kind="stable")]


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
        Decode time per request replacing the token-based one (queueing tests): a
        request then needs ``service_s / t_step(1)`` decode steps and produces its
        response tokens evenly over them.
    itl_histogram : tuple (bins, width [s]), optional
        Record a token-weighted histogram of inter-token gaps per pool (calibration;
        :meth:`itl_quantile`).
    """

    fidelity = "request"

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        requests: RequestArrays,
        n_steps: int,
        step_s: float = STEP_S,
        service_s: np.ndarray | None = None,
        *,
        itl_histogram: tuple[int, float] | None = None,
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
        self._energy = np.zeros(n)
        self._req_p = np.ascontiguousarray(requests.request_tokens, dtype=np.int64)
        self._req_n = np.ascontiguousarray(requests.response_tokens, dtype=np.int64)
        bins, width = itl_histogram or (0, 1.0)
        self._pools = [
            _Pool(p, n_steps, step_s,
                  None if service_s is None else float(p.batch_curve.step_s(1.0, 0.0)),
                  bins, width)
            for p in self.pools
        ]
        self._ledger_tokens = np.zeros(P)
        self.queue_history = np.zeros((n_steps, P), dtype=np.int64)
        self._open: _OpenInterval  # set by begin_interval
        #: Queued requests re-dispatched from pools left without instances [requests].
        self.requeued_requests = 0
        #: Energy of the stints of requests whose instance died, per request [J].
        self._energy_carry = np.zeros(n)
        #: Tokens produced by requests whose instance died, discarded, per pool [tokens].
        self.tokens_lost = np.zeros(P)

    # -- scaling ---------------------------------------------------------------------------
    def committed_instances(self) -> np.ndarray:
        """Instances committed per pool (running or loading) [-], (P,)."""
        return np.array([len(p.committed) for p in self._pools], dtype=np.int64)

    def scale(self, pool: int, target: int, now: float) -> None:
        """Set the committed instances of ``pool`` to ``target`` at time ``now`` [s].

        Up: new instances ready after the load time. Down: instances still loading
        are cancelled first (latest ready first), then the least occupied ready
        ones drain (fewest requests, then least decode work left).
        """
        ps = self._pools[pool]
        d = target - len(ps.committed)
        if d > 0:
            for _ in range(d):
                ps.new_slot(now)
            return
        if d == 0:
            return
        fs = ps.fs
        k = -d
        loading = sorted((j for j in ps.committed if fs[j, kern.F_READY] > now),
                         key=lambda j: -fs[j, kern.F_READY])[:k]
        for j in loading:
            ps.committed.remove(j)
            ps.release(j, now)
        k -= len(loading)
        if k <= 0:
            return
        hk, hsize = ps.state[1], ps.state[6]
        for j in ps.committed:
            kern._advance(fs, j, now, ps.base, ps.pw, ps.pwa, ps.pp, ps.hist)
        order = sorted(
            ps.committed,
            key=lambda j: (fs[j, kern.F_NB],
                           float(hk[j, : hsize[j]].max(initial=fs[j, kern.F_V])) - fs[j, kern.F_V]),
        )
        for j in order[:k]:
            ps.committed.remove(j)
            fs[j, kern.F_DRAIN] = 1.0
            fs[j, kern.F_UP] = 0.0
            if hsize[j] == 0:
                ps.release(j, now)
            else:
                ps.draining.append(j)

    def ready_instances(self, now: float) -> np.ndarray:
        """Committed instances ready at ``now`` per pool [-], (P,)."""
        return np.array([sum(1 for j in p.committed if p.fs[j, kern.F_READY] <= now)
                         for p in self._pools], dtype=np.int64)

    def alive_instances(self) -> np.ndarray:
        """Instances on GPUs per pool: committed (loading or up) plus draining [-], (P,)."""
        return np.array([len(p.committed) + len(p.draining) for p in self._pools],
                        dtype=np.int64)

    def kill(self, pool: int, now: float, count: int = 1, *,
             kinds: Sequence[str] = KILL_ORDER, pick: float | None = None) -> Killed:
        """Up to ``count`` instances of ``pool`` die at ``now`` [s] (no drain).

        Instances are taken by kind in the order ``kinds``: ``draining`` ones,
        ``loading`` ones (latest ready first, as :meth:`scale` cancels them), then
        ``ready`` ones: the one at position ``pick`` (in [0, 1)) of the ready
        instances in slot order, or the least occupied when ``pick`` is None. The
        in-flight requests of a killed instance go back to the pool's queue in
        arrival order and start again from their prompt (module docstring); its
        slot is freed. Called at an interval boundary, before :meth:`run_interval`.
        """
        ps = self._pools[pool]
        fs = ps.fs
        step = round(now / self.step_s)
        killed = loading = 0
        requeued: list[int] = []
        lost = 0.0
        for kind in kinds:
            while killed < count:
                if kind == "draining":
                    found = list(ps.draining)
                elif kind == "loading":
                    found = sorted((j for j in ps.committed if fs[j, kern.F_READY] > now),
                                   key=lambda j: -fs[j, kern.F_READY])
                elif kind == "ready":
                    found = sorted(j for j in ps.committed if fs[j, kern.F_READY] <= now)
                    if found:
                        found = [min(found, key=lambda j: (fs[j, kern.F_NB], j)) if pick is None
                                 else found[min(int(pick * len(found)), len(found) - 1)]]
                else:
                    raise ValueError(f"kill: unknown kind {kind!r}; expected one of "
                                     f"{KILL_ORDER}")
                if not found:
                    break
                lost += self._abort(ps, found[0], now, step, requeued)
                killed += 1
                loading += kind == "loading"
        if requeued:
            ps.queue = merge_by_arrival(ps.queue, np.array(requeued, dtype=np.int64),
                                        self.requests.arrival_s)
        self.tokens_lost[pool] += lost
        return Killed(killed, loading, len(requeued), lost)

    def _abort(self, ps: _Pool, j: int, now: float, step: int, requeued: list[int]) -> float:
        """Instance ``j`` dies at ``now``: its requests are reset and listed in
        ``requeued``; returns the tokens they had produced that the ledger holds."""
        fs, hk, hr, hw, hc, hq, hsize = ps.state
        kern._advance(fs, j, now, ps.base, ps.pw, ps.pwa, ps.pp, ps.hist)
        lost = 0.0
        nbins = ps.first_bins.size - 1
        for e in range(int(hsize[j])):
            rid = int(hr[j, e])
            n = int(self._req_n[rid])
            steps = hc[j, e] - self._req_p[rid] - (n > 0)
            lost += hq[j, e] * float(np.clip(fs[j, kern.F_V] - (hk[j, e] - steps), 0.0, steps))
            if n > 0:
                # The first token is counted in the bin of its time at admission: a
                # bin the ledger has closed holds a token now lost; a later one one
                # that never comes.
                k = min(int(self.first_token[rid] / self.step_s), nbins)
                if k < step:
                    lost += 1.0
                else:
                    ps.first_bins[k] -= 1.0
            self._energy_carry[rid] += fs[j, kern.F_W] - hw[j, e]
            self.start[rid] = self.first_token[rid] = np.nan
            requeued.append(rid)
        hsize[j] = 0
        if j in ps.committed:
            ps.committed.remove(j)
        else:
            ps.draining.remove(j)
        ps.release(j, now)
        return lost

    def _redispatch_stranded(self, shares: Mapping[PoolKey, float]) -> None:
        """Requests queued at a pool left without instances go to the model's pools by
        the interval's routing shares (a load balancer re-dispatches the queue of a
        backend it removed); they reach their new pool at the interval start, behind
        its own queue and ahead of the interval's arrivals, in their arrival order.
        Without a route they stay."""
        req = self.requests
        for p, ps in enumerate(self._pools):
            if ps.queue.size == 0 or ps.committed:
                continue
            queue = ps.queue
            target = self.router.route(req.model[queue], shares)
            move = (target >= 0) & (target != p)
            if not move.any():
                continue
            ps.queue = queue[~move]
            for t in np.unique(target[move]):
                dest = self._pools[int(t)]
                dest.queue = np.concatenate([dest.queue, queue[move & (target == t)]])
            self.pool[queue[move]] = target[move]
            self.requeued_requests += int(move.sum())

    # -- one interval -----------------------------------------------------------------------
    def run_interval(
        self, step: int, instances: Sequence[int] | np.ndarray, shares: Mapping[PoolKey, float]
    ) -> IntervalStats:
        """Apply the decision at the interval start and serve the interval.

        :meth:`begin_interval`, :meth:`serve_until` the interval end, :meth:`end_interval`.

        Parameters
        ----------
        step : int
        instances : sequence of int
            Committed instances per pool (in ``self.pools`` order).
        shares : Mapping[PoolKey, float] [-]
            Routing shares of the interval.
        """
        self.begin_interval(step, instances, shares)
        self.serve_until((step + 1) * self.step_s)
        return self.end_interval()

    def begin_interval(
        self, step: int, instances: Sequence[int] | np.ndarray, shares: Mapping[PoolKey, float]
    ) -> None:
        """Apply the decision at the interval start: scale the pools, re-dispatch stranded
        queues, route the interval's requests by ``shares`` (their pools in :attr:`pool`,
        which a fast layer may change for requests not yet served)."""
        t0 = step * self.step_s
        P = len(self.pools)
        for p in range(P):
            self.scale(p, int(instances[p]), t0)
        self._redispatch_stranded(shares)
        lo, hi = int(self.bounds[step]), int(self.bounds[step + 1])
        self.pool[lo:hi] = self.router.route(self.requests.model[lo:hi], shares)
        self._open = _OpenInterval(step, t0, t0 + self.step_s, lo, hi, P)

    def first_request_at(self, t: float) -> int:
        """Index of the first request of the open interval arriving at or after ``t``
        [s] (its end index for ``t`` at or after the interval end)."""
        w = self._open
        if t >= w.t1:
            return w.hi
        return w.lo + int(np.searchsorted(self.requests.arrival_s[w.lo:w.hi], t, side="left"))

    def serve_until(self, t: float) -> None:
        """Serve the open interval from where it was left up to ``t`` [s]: the queues,
        then the requests arriving before ``t`` at the pools :attr:`pool` names.

        Before the interval end, a pool with neither a queue nor new requests is left
        where it is (nothing can be admitted there; its completions are taken in time
        order by its next window, and the interval's last window brings every pool to
        the end)."""
        w = self._open
        a, b = w.next, self.first_request_at(t)
        assigned = self.pool[a:b]
        order = np.argsort(assigned, kind="stable")
        # as a list: the pools without new requests are skipped before any array op
        cuts = np.searchsorted(assigned[order], np.arange(len(self.pools) + 1)).tolist()
        inner = t < w.t1
        for p, ps in enumerate(self._pools):
            c0, c1 = cuts[p], cuts[p + 1]
            if c0 == c1 and ps.queue.size == 0 and (
                    inner or (not ps.committed and not ps.draining)):
                continue
            new = a + order[c0:c1]
            w.served[p] = True
            admitted, prefill = self._serve_window(ps, w.t, t, new)
            w.started[p] += admitted
            w.prefill[p] += prefill
        w.t, w.next = t, b

    def end_interval(self) -> IntervalStats:
        """Close the open interval (served to its end): its totals per pool."""
        w = self._open
        t0, t1, step, P = w.t0, w.t1, w.step, len(self.pools)
        names = ("tokens", "busy", "inst_s", "ready_s", "act", "steps")
        cols = {k: np.zeros(P) for k in names}
        for p, ps in enumerate(self._pools):
            if w.served[p]:
                for k, v in self._close_pool(ps, t0, t1, step).items():
                    cols[k][p] = v
        queue_end = np.array([ps.queue.size for ps in self._pools], dtype=np.int64)
        self.queue_history[step] = queue_end
        self._ledger_tokens += cols["tokens"]
        req = self.requests
        assigned = self.pool[w.lo : w.hi]
        ok = assigned >= 0
        routed = assigned[ok]
        arrivals = np.bincount(routed, minlength=P)
        arrived_tokens = np.bincount(
            routed, weights=req.response_tokens[w.lo : w.hi][ok].astype(np.float64), minlength=P
        )
        p0 = np.array([ps.p0 for ps in self._pools])
        return IntervalStats(
            step=step,
            arrivals=arrivals,
            arrived_tokens=arrived_tokens,
            started=w.started.astype(np.int64),
            queue_end=queue_end,
            tokens_decoded=cols["tokens"],
            busy_slot_s=cols["busy"],
            instance_s=cols["inst_s"],
            ready_instance_s=cols["ready_s"],
            instances=self.committed_instances(),
            idle_energy_j=p0 * cols["inst_s"],
            active_energy_j=cols["act"],
            dropped_no_route=w.hi - w.lo - int(arrivals.sum()),
            prefill_tokens=w.prefill,
            decode_steps=cols["steps"],
        )

    def _serve_window(self, ps: _Pool, t0: float, t1: float,
                      new: np.ndarray) -> tuple[float, float]:
        """Run one pool's kernel over ``[t0, t1)``: requests admitted and their prompt
        tokens [tokens]."""
        cand = np.concatenate([ps.queue, new]) if ps.queue.size else new
        cand_t = self.requests.arrival_s[cand]
        n = self._req_n[cand]
        if ps.service_scale is None:
            steps = np.maximum(n - 1, 0).astype(np.float64)
            rate = (n > 1).astype(np.float64)
        else:
            steps = self.service_override[cand] / ps.service_scale  # type: ignore[index]
            rate = np.where((n > 1) & (steps > 0), (n - 1) / np.where(steps > 0, steps, 1), 0.0)
        fs, hk, hr, hw, hc, hq, hsize = ps.state
        if ps.tnext.size != fs.shape[0]:
            ps.tnext = np.full(fs.shape[0], math.inf)
        qh, admitted = kern.serve_interval(
            t0, t1, fs, hk, hr, hw, hc, hq, hsize, ps.tnext, ps.rr,
            cand, cand_t, steps, rate, int(ps.queue.size),
            self._req_p, self._req_n, ps.base, ps.pw, ps.pwa, ps.pp,
            self.start, self.first_token, self.finish, self._energy, ps.first_bins, ps.hist,
        )
        started = cand[qh - admitted : qh] if admitted else cand[:0]
        ps.queue = cand[qh:]
        ps.reads_exact_to = t1
        return float(admitted), float(self._req_p[started].sum()) if admitted else 0.0

    def _close_pool(self, ps: _Pool, t0: float, t1: float, step: int) -> dict[str, float]:
        """One pool's totals of the interval ``[t0, t1)`` (served to ``t1``); drained
        instances that went off free their slots."""
        fs = ps.fs
        out = {"inst_s": ps.instance_s(t0, t1)}
        for j in [j for j in ps.draining if fs[j, kern.F_ALIVE] == 0.0]:
            ps.draining.remove(j)
            ps.free.append(j)
        up = np.array(ps.committed, dtype=np.int64)
        ready_s = (np.maximum(0.0, t1 - np.maximum(t0, fs[up, kern.F_READY])).sum()
                   if up.size else 0.0)
        out["ready_s"] = float(ready_s)
        acc = fs[:, kern.F_DEC : kern.F_STEPS + 1]
        dec, act, busy, steps_done = acc.sum(axis=0).tolist()
        acc[:] = 0.0
        out["tokens"] = dec + float(ps.first_bins[step])
        out["act"] = act
        out["busy"] = busy
        out["steps"] = steps_done
        return out

    # -- what a fast layer observes and does inside an interval -----------------------------
    def instance_counts(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Instances per pool at ``t`` [s]: ready, committed but still loading, and
        draining but still on (they hold their GPUs) [-], each (P,)."""
        # A draining instance is on until its last request ends: a pool left behind
        # would count one that went off since.
        self._bring_up(draining_only=True)
        # Called at every wake-up of the fast layer: the few instances of each pool are
        # counted in Python (a NumPy gather per pool costs more than the count).
        ready, loading, draining = [], [], []
        for ps in self._pools:
            fs = ps.state[0]
            up = 0
            if ps.committed:
                when = fs[:, kern.F_READY]
                up = sum(1 for j in ps.committed if when[j] <= t)
            ready.append(up)
            loading.append(len(ps.committed) - up)
            on = 0
            if ps.draining:
                alive = fs[:, kern.F_ALIVE]
                on = sum(1 for j in ps.draining if alive[j] != 0.0)
            draining.append(on)
        return (np.array(ready, dtype=np.int64), np.array(loading, dtype=np.int64),
                np.array(draining, dtype=np.int64))

    def queue_lengths(self) -> np.ndarray:
        """Requests waiting for admission per pool now [requests], (P,)."""
        return np.array([ps.queue.size for ps in self._pools], dtype=float)

    def queued_since(self, pool: int, first: int) -> int:
        """Requests waiting in ``pool``'s queue whose index is at least ``first`` (those
        that arrived at or after request ``first``'s arrival) [requests]."""
        return int((self._pools[pool].queue >= first).sum())

    def requeue(self, src: int, dst: int, count: int) -> int:
        """Move the ``count`` requests that joined pool ``src``'s queue last to pool
        ``dst``'s queue, among its own in arrival order (a load balancer re-dispatching
        requests no instance has admitted yet); returns how many moved [requests]."""
        ps, dest = self._pools[src], self._pools[dst]
        k = min(int(count), int(ps.queue.size))
        if k <= 0:
            return 0
        # A pool :meth:`serve_until` left where it was has its instances behind the
        # window's time, and a queue is admitted at the start of the next window: bring
        # them to it first (a window of no length, as that next window would).
        w = self._open
        w.served[dst] = True
        self._serve_window(dest, w.t, w.t, np.zeros(0, dtype=np.int64))
        moved = ps.queue[ps.queue.size - k :]
        ps.queue = ps.queue[: ps.queue.size - k]
        dest.queue = merge_by_arrival(dest.queue, moved, self.requests.arrival_s)
        self.pool[moved] = dst
        return k

    def energy_so_far_j(self) -> np.ndarray:
        """Inference IT energy of each pool from the open interval's start to where it
        is served [J], (P,): ``P0 ×`` instance-seconds plus the active energy, each pool
        read as it is there, also one :meth:`serve_until` left where it was
        (:meth:`_bring_up`)."""
        self._bring_up()
        w = self._open
        out = np.zeros(len(self._pools))
        for p, ps in enumerate(self._pools):
            if not (w.served[p] or ps.committed or ps.draining):
                continue
            out[p] = ps.p0 * ps.instance_s(w.t0, w.t) + float(ps.fs[:, kern.F_ACT].sum())
        return out

    def power_now_w(self) -> np.ndarray:
        """Inference IT power of each pool where the open interval is served to [W],
        (P,): every instance drawing power (committed, loading or draining) at ``P0``
        plus the active power of its occupancy there (:meth:`_bring_up`)."""
        self._bring_up()
        out = np.zeros(len(self._pools))
        for p, ps in enumerate(self._pools):
            alive = np.array(ps.committed + ps.draining, dtype=np.int64)
            if alive.size:
                fs = ps.fs
                on = fs[alive, kern.F_ALIVE]
                out[p] = float(((ps.p0 + ps.pw[fs[alive, kern.F_NB].astype(np.int64)])
                                * on).sum())
        return out

    def _bring_up(self, *, draining_only: bool = False) -> None:
        """Bring every pool whose readings are behind the open interval's time to it,
        as its next window would (a window of no length: its completions up to then,
        its drained instances seen off; serving in windows is serving in one: request
        times are the same, energies to rounding), so that every reader returns the
        state there. :meth:`serve_until` leaves a pool with neither a queue nor new
        requests where it was; read there, its instances would hold the occupancy of
        its last window (the energy so far and the power over-counted, a drained
        instance counted on).

        A pool is behind only if an instance holding requests is behind
        (:attr:`_Pool.reads_exact_to` skips the others at a float comparison): idle or
        loading instances read the same at any time until a window admits to them.
        ``draining_only``: only draining instances matter to the reader (whether they
        are still on).
        """
        w = getattr(self, "_open", None)
        if w is None:  # no interval opened yet: every instance is where it was created
            return
        empty = np.zeros(0, dtype=np.int64)
        for p, ps in enumerate(self._pools):
            if ps.reads_exact_to >= w.t:
                continue
            slots = ps.draining if draining_only else ps.committed + ps.draining
            fs = ps.fs
            if any(fs[j, kern.F_NB] > 0.0 and fs[j, kern.F_TL] < w.t for j in slots):
                w.served[p] = True
                self._serve_window(ps, w.t, w.t, empty)
            elif not draining_only:
                ps.reads_exact_to = w.t

    def occupancy_by(self, until: float) -> list[np.ndarray]:
        """Per pool, the requests each committed instance ready by ``until`` [s] holds
        where the open interval is served to (0 for one still loading; a pool left
        behind read there, :meth:`_bring_up`) [requests]: the instances that may admit
        requests before ``until``, and what they run on meanwhile."""
        return self._held(lambda ps: [j for j in ps.committed
                                      if ps.fs[j, kern.F_READY] <= until])

    def draining_occupancy(self) -> list[np.ndarray]:
        """Per pool, the requests each draining instance still on holds where the open
        interval is served to (a pool left behind read there, :meth:`_bring_up`)
        [requests]: they admit nothing more, so each only ends its own."""
        return self._held(lambda ps: [j for j in ps.draining
                                      if ps.fs[j, kern.F_ALIVE] != 0.0])

    def _held(self, instances: Callable[[_Pool], list[int]]) -> list[np.ndarray]:
        """Per pool, the requests each of ``instances(pool)`` holds where the open
        interval is served to (:meth:`_bring_up`) [requests]."""
        self._bring_up()
        return [ps.fs[np.array(instances(ps), dtype=np.int64), kern.F_NB].astype(np.int64)
                for ps in self._pools]

    def set_batch_cap(self, pool: int, batch: int | None) -> None:
        """Admit at most ``batch`` requests per instance of ``pool`` from now on (a power
        cap: an instance's power is ``P(B)`` at occupancy ``B``); None: its
        ``max_batch`` again. Requests already admitted run on."""
        ps = self._pools[pool]
        ps.pp[kern.P_MAX_BATCH] = ps.spec.slots_per_instance if batch is None else batch

    def start_instance(self, pool: int, now: float) -> float:
        """Commit one more instance of ``pool`` at ``now`` [s] inside the open interval;
        returns the time it is ready [s] (after its load time)."""
        j = self._pools[pool].new_slot(now)
        self._open.served[pool] = True
        return float(self._pools[pool].fs[j, kern.F_READY])

    def itl_quantile(self, pool: int, q: float) -> float:
        """Quantile ``q`` of the token-weighted inter-token gaps recorded in ``pool`` [s]."""
        ps = self._pools[pool]
        cum = np.cumsum(ps.hist)
        if cum.size == 0 or cum[-1] <= 0:
            return math.nan
        k = int(np.searchsorted(cum, q * cum[-1]))
        return (k + 0.5) * ps.pp[kern.P_HIST_DT]

    def reset_itl_histogram(self) -> None:
        """Clear the inter-token gap histograms (e.g. after a warm-up)."""
        for ps in self._pools:
            ps.hist[:] = 0.0

    # -- end of run -------------------------------------------------------------------------
    def outcome(self) -> ServingOutcome:
        """Per-request records and status at the end of the run."""
        end = self.n_steps * self.step_s
        req = self.requests
        n = len(req)
        status = np.full(n, DROPPED_NO_ROUTE, dtype=np.int8)
        routed = self.pool >= 0
        started = routed & ~np.isnan(self.start)
        finished = started & ~np.isnan(self.finish)
        status[routed] = QUEUED
        status[started] = IN_SERVICE
        status[finished] = FINISHED
        offered = req.arrival_s < end
        resp = req.response_tokens.astype(np.float64)
        decoded = np.where(finished, resp, 0.0)
        energy = np.where(finished, self._energy, 0.0)
        for ps in self._pools:
            fs, hk, hr, hw, hc, hq, hsize = ps.state
            for j in ps.committed + ps.draining:
                size = int(hsize[j])
                if size == 0:
                    continue
                rid = hr[j, :size]
                first = (self.first_token[rid] < end).astype(float)
                steps = hc[j, :size] - self._req_p[rid] - (resp[rid] > 0)
                done = np.clip(fs[j, kern.F_V] - (hk[j, :size] - steps), 0.0, steps)
                decoded[rid] = first + hq[j, :size] * done
                energy[rid] = fs[j, kern.F_W] - hw[j, :size]
        energy += self._energy_carry
        return ServingOutcome(
            requests=req,
            pools=self.pools,
            pool=self.pool,
            start=self.start,
            first_token=self.first_token,
            finish=np.where(finished, self.finish, np.nan),
            status=np.where(offered, status, -1).astype(np.int8),
            tokens_decoded=decoded,
            energy_j=energy,
            ledger_tokens=self._ledger_tokens.copy(),
            ledger_tokens_after_end=np.array([ps.first_bins[self.n_steps] for ps in self._pools]),
            queue_history=self.queue_history,
            end_s=end,
            tokens_lost=self.tokens_lost.copy(),
        )


    def judged_at(self, idx: np.ndarray, t: float) -> ServingOutcome:
        """The requests ``idx`` (ascending) as they stood at ``t`` [s], for judging their
        SLO and lateness only: :meth:`outcome` restricted to them and taken
        :meth:`~ServingOutcome.at` ``t``, without what judging does not read (their
        tokens decoded and energy are zeros, the per-pool ledger figures empty). Costs
        ``O(len(idx))``, not ``O(requests of the run)`` as :meth:`outcome` does."""
        pool, start, finish = self.pool[idx], self.start[idx], self.finish[idx]
        finished = (pool >= 0) & ~np.isnan(start) & ~np.isnan(finish)
        zeros = np.zeros(idx.size)
        return ServingOutcome(
            requests=self.requests.take(idx),
            pools=self.pools,
            pool=pool,
            start=start,
            first_token=self.first_token[idx],
            finish=np.where(finished, finish, np.nan),
            status=np.zeros(idx.size, dtype=np.int8),
            tokens_decoded=zeros,
            energy_j=zeros,
            ledger_tokens=np.zeros(0),
            ledger_tokens_after_end=np.zeros(0),
            queue_history=np.zeros((0, len(self.pools))),
            end_s=t,
        ).at(t)


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
    tokens_lost : ndarray [tokens] or None
        Tokens the ledger decoded for requests whose instance died, discarded (they
        started again), per pool; None: none.
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
    tokens_lost: np.ndarray | None = None

    def status_counts(self) -> dict[str, int]:
        """Requests per status name."""
        counts = np.bincount(self.status[self.status >= 0], minlength=len(STATUS_NAMES))
        return {name: int(c) for name, c in zip(STATUS_NAMES, counts, strict=True)}

    def check(self, ledger_active_energy_j: float | None = None, rel_tol: float = 1e-9, *,
              ledger_tokens: np.ndarray | None = None) -> None:
        """Assert conservation: requests, tokens and energy add up.

        * every offered request is finished, in service, queued or dropped (named);
        * tokens decoded per pool, records (plus the tokens lost to killed instances)
          vs ledger (``ledger_tokens`` [tokens] per pool when given, e.g. the engine's
          pool table summed over the run; else the server's own);
        * active energy, records vs the ledger's total (when given) [J].
        """
        offered = int((self.status >= 0).sum())
        if sum(self.status_counts().values()) != offered:
            raise AssertionError("request statuses do not add up to the requests offered")
        P = len(self.pools)
        routed = self.pool >= 0
        by_pool = np.bincount(self.pool[routed], weights=self.tokens_decoded[routed], minlength=P)
        if self.tokens_lost is not None:
            by_pool = by_pool + self.tokens_lost
        scale = max(1.0, float(by_pool.sum()))
        ledger = self.ledger_tokens if ledger_tokens is None else np.asarray(ledger_tokens)
        off = np.flatnonzero(np.abs(by_pool - ledger) > rel_tol * scale * 10)
        if off.size:
            k = int(off[0])
            campus, model, precision = self.pools[k].key
            raise AssertionError(f"campus {campus}: tokens of pool {model}/{precision}: "
                                 f"records {by_pool[k]:.9g} != ledger {ledger[k]:.9g}")
        if ledger_active_energy_j is not None:
            rec = float(self.energy_j.sum())
            if abs(rec - ledger_active_energy_j) > 1e-6 * max(1.0, rec):
                raise AssertionError(
                    f"active energy: records {rec} J != ledger {ledger_active_energy_j} J"
                )

    def at(self, t: float) -> ServingOutcome:
        """The outcome as it stood at ``t`` [s] (served that far): requests arriving
        from ``t`` on not offered yet, a first token due after ``t`` not given yet (the
        request still waits for it), a finish after ``t`` not reached; judged as if the
        run ended at ``t`` (a request waiting beyond its TTFT target is late by its wait
        so far), so the lateness it holds only grows with ``t``."""
        first = np.where(self.first_token < t, self.first_token, np.nan)
        finish = np.where(self.finish <= t, self.finish, np.nan)
        status = np.where(self.pool >= 0, QUEUED, DROPPED_NO_ROUTE)
        status = np.where(np.isnan(first), status, IN_SERVICE)
        status = np.where(np.isnan(finish), status, FINISHED)
        status = np.where(self.requests.arrival_s < t, status, -1).astype(np.int8)
        return replace(self, first_token=first, finish=finish, status=status, end_s=t)

    def ttft_s(self) -> np.ndarray:
        """Time to first token [s] (NaN where none)."""
        return self.first_token - self.requests.arrival_s

    def latency_s(self) -> np.ndarray:
        """End-to-end latency [s] (NaN where not finished)."""
        out = self.finish - self.requests.arrival_s
        out[self.status != FINISHED] = np.nan
        return out


def tpot_s(outcome: ServingOutcome) -> np.ndarray:
    """Time per output token after the first [s/token] (NaN for < 2 tokens).

    ``(latency − TTFT) / (output tokens − 1)`` = ``(finish − first token) / (n − 1)``:
    the mean inter-token latency a client measures (as vLLM's benchmark does).
    """
    resp = outcome.requests.response_tokens.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            resp > 1, (outcome.finish - outcome.first_token) / np.maximum(resp - 1, 1), np.nan
        )


# ----------------------------------------------------------------------------- judging


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
    late_usd_per_request : float [$/request]
        Price of each request that misses its SLO (:mod:`mpc_dc.sim.lateness`); 0
        here (the simulator's own default), the scenario's ``[serving]`` default
        otherwise.
    late_usd_per_s : float [$/s]
        Price of each second a request is late beyond its SLO.
    """

    fidelity: str = "request"
    ttft_slo_s: Mapping[str, float] = field(default_factory=dict)
    default_ttft_slo_s: float = 2.0
    tpot_slo_s: Mapping[str, float] = field(default_factory=dict)
    slots_per_instance: int | None = None
    request_samples: int | None = 200_000
    sample_seed: int = 0
    late_usd_per_request: float = 0.0
    late_usd_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.fidelity not in ("request", "fluid"):
            raise ValueError(
                f"ServingConfig.fidelity: expected 'request' or 'fluid', got {self.fidelity!r}"
            )
        for name in ("late_usd_per_request", "late_usd_per_s"):
            value = getattr(self, name)
            if not 0.0 <= value < math.inf:
                raise ValueError(f"ServingConfig.{name}: expected a finite value >= 0, got "
                                 f"{value!r}")

    def lateness_usd(self, late_requests: Any, late_s: Any) -> Any:
        """``c_req · late requests + c_s · late seconds`` [$] (arrays or floats)."""
        return self.late_usd_per_request * late_requests + self.late_usd_per_s * late_s

    def ttft_slo(self, model: str) -> float:
        """TTFT target of ``model`` [s]."""
        return float(self.ttft_slo_s.get(model, self.default_ttft_slo_s))

    def tpot_slo(self, pool: PoolSpec) -> float:
        """TPOT target of a pool [s/token]: the model's, else the pool's ITL SLO
        (``inf`` when it has none)."""
        if pool.key[1] in self.tpot_slo_s:
            return float(self.tpot_slo_s[pool.key[1]])
        return math.inf if pool.itl_slo_s is None else float(pool.itl_slo_s)


def slo_met(
    outcome: ServingOutcome, site: Site, serving: ServingConfig,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per request: whether it met its SLO, and whether that is decided by the run end.

    A request meets the SLO when its TTFT is within the model's target and its
    time per output token (:func:`~mpc_dc.sim.serving.tpot_s`) within the TPOT target
    (:meth:`ServingConfig.tpot_slo`). A request still queued is undecided while its
    age at the run end is within the TTFT target (then it is left out), a miss after;
    one still decoding is judged on its TTFT alone. ``parts``: :func:`slo_parts` of
    ``outcome`` where the caller has them.

    Returns
    -------
    met, decided : ndarray of bool
    """
    ttft_ok, tpot_ok, decided = parts or slo_parts(outcome, site, serving)
    return ttft_ok & tpot_ok & decided, decided


def slo_parts(
    outcome: ServingOutcome, site: Site, serving: ServingConfig
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


def request_frame(
    outcome: ServingOutcome,
    site: Site,
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
    met, decided = slo if slo is not None else slo_met(outcome, site, serving)
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

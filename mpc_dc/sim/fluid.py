"""Fluid serving fidelity: per-interval aggregates on the request level's instance curves.

Per pool and interval, the requests routed to it are the interval's per-model
aggregates times the committed share (fractional: the fluid plan). Both
fidelities use the same :class:`~mpc_dc.sim.serving.BatchCurve` per instance:

* **capacity**: at its batch limit ``b_max = min(B, KV-limited batch)`` an instance
  spends ``p / R`` seconds prefilling a request of ``p`` prompt tokens and
  ``t_step(b_max, b_max·L̄) / b_max`` seconds per further output token, with
  ``L̄ = p̄ + E[n²] / (2 E[n])`` the mean KV tokens of a running request of the
  interval's mix. A request's *work* is the sum, in instance-seconds; a pool's
  capacity in the interval is its ready instance-seconds. Work is served FIFO, the
  backlog first; what capacity cannot serve is carried to the next interval.
* **occupancy and power**: the served decode tokens per ready instance-second
  ``x`` and prefill share ``f`` give the mean batch ``b`` that decodes them,
  ``b / t_step(b, b·L̄) · (1 − f) = x``, and the power ``P(b)`` of the curve.
  Energy: ``P0 × instance-seconds + (P(b) − P0) × ready instance-seconds``.
* **latency estimate**: a request arriving in the interval waits the backlog at the
  interval end over the pool's capacity, then its prefill; its time per output
  token is ``t_step(b, b·L̄) / (1 − f)`` (``est_wait_s``, ``est_tpot_s``). These are
  means; the share of the interval's requests late against the SLO (the tail inside
  the interval: carried-in backlog, wait for a batch slot, prefills stalling a short
  decode) is estimated from the interval's queue quantities kept in the ``tail_*``
  arrays (:func:`mpc_dc.sim.lateness.fluid_late_share`); the request level measures it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mpc_dc.sim.arrivals import STEP_S
from mpc_dc.sim.serving import (
    KILL_ORDER,
    IntervalStats,
    Killed,
    PoolSpec,
    RequestLevelServer,
    _Instances,
)
from mpc_dc.site.config import PoolKey


class FluidServer:
    """Fluid serving of one run.

    Parameters
    ----------
    pools : sequence of PoolSpec
    models : tuple of str
        Model families (columns of the aggregates).
    aggregates : dict of ndarray, shape ``(n_steps, n_models)``
        ``requests`` [-], ``request_tokens`` and ``response_tokens`` [tokens] arriving
        per interval, optionally ``response_tokens_sq`` [tokens²] (e.g.
        :meth:`~mpc_dc.sim.arrivals.RequestArrays.per_interval`); without it the
        response lengths are taken as exponential (``E[n²] = 2 E[n]²``).
    n_steps : int
    step_s : float [s]
    """

    fidelity = "fluid"

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        models: tuple[str, ...],
        aggregates: Mapping[str, np.ndarray],
        n_steps: int,
        step_s: float = STEP_S,
    ) -> None:
        self.pools = tuple(pools)
        self.models = models
        self.agg = aggregates
        self.n_steps = n_steps
        self.step_s = step_s
        P = len(self.pools)
        self._inst = [_Instances() for _ in range(P)]
        self._model_of = np.array([models.index(p.key[1]) for p in self.pools])
        self._index = {p.key: i for i, p in enumerate(self.pools)}
        self._curves = [p.batch_curve for p in self.pools]
        coef = np.array([[c.step_base_s, c.step_per_seq_s, c.step_per_context_token_s,
                          c.moe_step_s, c.moe_expert_fraction, c.power_idle_w,
                          c.power_per_seq_w, c.power_sat_w, c.power_half_batch]
                         for c in self._curves]).reshape(-1, 9)
        (self._a, self._c, self._d, self._w, self._frac, _, self._p1, self._ps,
         self._pk) = coef.T
        self._max_batch = np.array([p.slots_per_instance for p in self.pools], dtype=float)
        self._inv_r = np.array([1.0 / c.prefill_tokens_per_s for c in self._curves])
        self._kv = np.array([c.kv_capacity_tokens for c in self._curves])
        self._p0 = np.array([c.power_idle_w for c in self._curves])
        self.backlog_requests = np.zeros(P)
        self.backlog_prompt = np.zeros(P)
        self.backlog_tokens = np.zeros(P)
        self.backlog_tokens_sq = np.zeros(P)
        self.est_wait_s = np.zeros((n_steps, P))
        self.est_tpot_s = np.zeros((n_steps, P))
        #: What each interval's queue looked like to its arrivals, (n_steps, P) each, for
        #: the late share (:func:`mpc_dc.sim.lateness.fluid_late_share`): arrivals per
        #: second [1/s], mean ready
        #: instances [-], work per arriving request [instance-s], batch limit
        #: ``b_max`` [requests], decode step at the mean batch [s], mean prefill of an
        #: arriving request [s], admissions per ready instance-second [1/s], backlog
        #: work carried in [instance-s], mean and mean square response tokens of the
        #: arrivals [tokens], [tokens²].
        self.tail_arrival_rate = np.zeros((n_steps, P))
        self.tail_ready = np.zeros((n_steps, P))
        self.tail_work_s = np.zeros((n_steps, P))
        self.tail_batch_limit = np.zeros((n_steps, P))
        self.tail_decode_step_s = np.zeros((n_steps, P))
        self.tail_prefill_s = np.zeros((n_steps, P))
        self.tail_admission_rate = np.zeros((n_steps, P))
        self.tail_backlog_work_s = np.zeros((n_steps, P))
        self.tail_response_mean = np.zeros((n_steps, P))
        self.tail_response_sq_mean = np.zeros((n_steps, P))
        self.queue_history = np.zeros((n_steps, P))
        #: Response tokens waiting at each interval's end, and moved in by re-dispatch at
        #: its start (minus moved out) [tokens], (n_steps, P): the token book's entries.
        self.queued_tokens = np.zeros((n_steps, P))
        self.moved_tokens = np.zeros((n_steps, P))
        #: Backlog re-dispatched from pools left without instances [requests].
        self.requeued_requests = 0.0

    def _redispatch_stranded(self, share: np.ndarray) -> np.ndarray:
        """The backlog of a pool left without instances goes to the model's pools by
        ``share`` (normalised per model); its work is then counted at their speeds
        (as :meth:`RequestLevelServer._redispatch_stranded`); without a route it stays.
        Returns the response tokens moved into each pool (minus those moved out)."""
        before = self.backlog_tokens.copy()
        waiting = self.backlog_requests > 0
        if not waiting.any():
            return np.zeros_like(before)
        committed = self.committed_instances()
        parts = (self.backlog_requests, self.backlog_prompt, self.backlog_tokens,
                 self.backlog_tokens_sq)
        for p in np.flatnonzero((committed == 0) & waiting):
            to = np.flatnonzero((self._model_of == self._model_of[p]) & (share > 0)
                                & (np.arange(share.size) != p))
            if to.size == 0:
                continue
            w = share[to] / share[to].sum()
            self.requeued_requests += float(self.backlog_requests[p])
            for arr in parts:
                arr[to] += w * arr[p]
                arr[p] = 0.0
        return self.backlog_tokens - before

    def committed_instances(self) -> np.ndarray:
        """Instances committed per pool (running or loading) [-], (P,)."""
        return np.array([i.committed for i in self._inst], dtype=np.int64)

    def instance_counts(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Instances per pool at ``t`` [s]: ready, still loading, draining (none: the
        fluid fidelity has no drain tail) [-], each (P,)."""
        ready = self.ready_instances(t)
        return ready, self.committed_instances() - ready, np.zeros_like(ready)

    def queue_lengths(self) -> np.ndarray:
        """Requests waiting per pool now (the backlog) [requests], (P,)."""
        return self.backlog_requests.copy()

    def ready_instances(self, now: float) -> np.ndarray:
        """Committed instances ready at ``now`` per pool [-], (P,)."""
        return np.array([sum(1 for r in i.ready_times if r <= now) for i in self._inst],
                        dtype=np.int64)

    def alive_instances(self) -> np.ndarray:
        """Instances on GPUs per pool (no drain tail: the committed ones) [-], (P,)."""
        return self.committed_instances()

    def kill(self, pool: int, now: float, count: int = 1, *,
             kinds: Sequence[str] = KILL_ORDER, pick: float | None = None) -> Killed:
        """Up to ``count`` instances of ``pool`` die at ``now`` [s]
        (:meth:`RequestLevelServer.kill`'s order; no drain tail here, so no
        ``draining`` ones). The fluid view has no request in flight between intervals:
        the pool loses capacity, no request is requeued."""
        inst = self._inst[pool]
        killed = loading = 0
        for kind in kinds:
            while killed < count:
                if kind == "loading":
                    found = sorted((r for r in inst.ready_times if r > now), reverse=True)
                elif kind == "ready":
                    found = sorted(r for r in inst.ready_times if r <= now)
                    if found:
                        at = 0 if pick is None else min(int(pick * len(found)), len(found) - 1)
                        found = [found[at]]
                elif kind == "draining":
                    found = []
                else:
                    raise ValueError(f"kill: unknown kind {kind!r}; expected one of "
                                     f"{KILL_ORDER}")
                if not found:
                    break
                inst.ready_times.remove(found[0])
                inst.committed -= 1
                killed += 1
                loading += kind == "loading"
        return Killed(killed, loading)

    def scale(self, pool: int, target: int, now: float) -> None:
        """Set the committed instances of ``pool`` (loading cancelled first, no drain tail)."""
        self._inst[pool].scale(target, now + self.pools[pool].load_time_s)

    def _step(self, b: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """Decode step time of every pool's curve at batch ``b``, ``ctx`` KV tokens per
        request [s] (:meth:`BatchCurve.step_s`, vectorised over pools)."""
        return (self._a + self._c * b + self._d * b * ctx
                + self._w * (1.0 - (1.0 - self._frac) ** b))

    def _power(self, b: np.ndarray) -> np.ndarray:
        """Instance power of every pool's curve at occupancy ``b`` [W]."""
        return self._p0 + self._p1 * b + self._ps * b / (b + self._pk)

    def _work(
        self, requests: np.ndarray, prompt: np.ndarray, tokens: np.ndarray, tokens_sq: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Work of a request mix in instance-seconds at the batch limit, its mean KV
        tokens per running request ``L̄`` and the batch limit (module docstring)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            p_mean = np.where(requests > 0, prompt / requests, 0.0)
            n_mean = np.where(requests > 0, tokens / requests, 0.0)
            ctx = p_mean + np.where(tokens > 0, tokens_sq / (2 * tokens), 0.0)
        b_max = np.minimum(self._max_batch,
                           np.maximum(1.0, (self._kv - p_mean - n_mean) / np.maximum(ctx, 1.0)))
        step = self._step(b_max, ctx)
        decode = np.maximum(tokens - np.minimum(requests, tokens), 0.0)
        work = prompt * self._inv_r + decode * step / b_max
        return work, ctx, b_max

    def _mean_batch(self, x: np.ndarray, f: np.ndarray, ctx: np.ndarray,
                    b_max: np.ndarray) -> np.ndarray:
        """Batch ``b`` with ``b / t_step(b, b·ctx) · (1 − f) = x`` (bisection, per pool)."""
        lo = np.zeros_like(x)
        hi = b_max.copy()
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            rate = mid / self._step(mid, ctx)
            below = rate * (1.0 - f) < x
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def run_interval(
        self, step: int, instances: Sequence[int] | np.ndarray, shares: Mapping[PoolKey, float]
    ) -> IntervalStats:
        """Apply the decision and serve the interval's aggregates (see module docstring)."""
        t0, t1 = step * self.step_s, (step + 1) * self.step_s
        P = len(self.pools)
        for p in range(P):
            self.scale(p, int(instances[p]), t0)
        share = np.zeros(P)
        totals: dict[str, float] = {}
        for key, s in shares.items():
            if s > 0:
                totals[key[1]] = totals.get(key[1], 0.0) + s
        for key, s in shares.items():
            if s > 0:
                share[self._index[key]] = s / totals[key[1]]
        self.moved_tokens[step] = self._redispatch_stranded(share)
        m = self._model_of
        req = self.agg["requests"][step][m] * share
        prompt = self.agg["request_tokens"][step][m] * share
        resp = self.agg["response_tokens"][step][m] * share
        if "response_tokens_sq" in self.agg:
            resp_sq = self.agg["response_tokens_sq"][step][m] * share
        else:
            resp_sq = 2.0 * np.divide(resp * resp, req, out=np.zeros(P), where=req > 0)
        all_req = self.backlog_requests + req
        all_prompt = self.backlog_prompt + prompt
        all_tok = self.backlog_tokens + resp
        all_sq = self.backlog_tokens_sq + resp_sq
        work_all, ctx, b_max = self._work(all_req, all_prompt, all_tok, all_sq)
        work_b, _, _ = self._work(self.backlog_requests, self.backlog_prompt,
                                  self.backlog_tokens, self.backlog_tokens_sq)
        work_b = np.minimum(work_b, work_all)
        work_n = work_all - work_b
        ready_s = np.array([i.ready_s(t0, t1) for i in self._inst])
        # FIFO: the backlog is served before the new arrivals.
        from_backlog = np.minimum(work_b, ready_s)
        from_new = np.minimum(work_n, ready_s - from_backlog)
        rb = np.divide(from_backlog, work_b, out=np.zeros(P), where=work_b > 0)
        rn = np.divide(from_new, work_n, out=np.zeros(P), where=work_n > 0)
        served = {}
        for name, old, new in (("req", self.backlog_requests, req),
                               ("prompt", self.backlog_prompt, prompt),
                               ("tok", self.backlog_tokens, resp),
                               ("sq", self.backlog_tokens_sq, resp_sq)):
            served[name] = rb * old + rn * new
        self.backlog_requests = all_req - served["req"]
        self.backlog_prompt = all_prompt - served["prompt"]
        self.backlog_tokens = all_tok - served["tok"]
        self.backlog_tokens_sq = all_sq - served["sq"]
        tiny = self.backlog_requests <= 1e-9 * np.maximum(all_req, 1.0)
        for arr in (self.backlog_requests, self.backlog_prompt, self.backlog_tokens,
                    self.backlog_tokens_sq):
            arr[tiny] = 0.0
        tokens = served["tok"]
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(ready_s > 0, served["prompt"] * self._inv_r / ready_s, 0.0)
            x = np.where(ready_s > 0, (tokens - np.minimum(served["req"], tokens)) / ready_s, 0.0)
        f = np.clip(f, 0.0, 0.999)
        b = self._mean_batch(x, f, ctx, b_max)
        power = self._power(b)
        tpot = self._step(b, ctx) / (1 - f)
        committed = self.committed_instances()
        ready_end = np.array([i.ready_by(t1) for i in self._inst])
        backlog_work, _, _ = self._work(self.backlog_requests, self.backlog_prompt,
                                        self.backlog_tokens, self.backlog_tokens_sq)
        with np.errstate(divide="ignore", invalid="ignore"):
            wait = np.where(backlog_work > 0, backlog_work / ready_end, 0.0)
            p_mean = np.where(all_req > 0, all_prompt / all_req, 0.0)
        self.est_wait_s[step] = wait + p_mean * self._inv_r
        self.est_tpot_s[step] = tpot
        with np.errstate(divide="ignore", invalid="ignore"):
            self.tail_arrival_rate[step] = req / self.step_s
            self.tail_ready[step] = ready_s / self.step_s
            self.tail_work_s[step] = np.where(req > 0, work_n / req, 0.0)
            self.tail_batch_limit[step] = b_max
            self.tail_decode_step_s[step] = self._step(b, ctx)
            self.tail_prefill_s[step] = np.where(req > 0, prompt / req, 0.0) * self._inv_r
            self.tail_admission_rate[step] = np.where(ready_s > 0, served["req"] / ready_s, 0.0)
            self.tail_backlog_work_s[step] = work_b
            self.tail_response_mean[step] = np.where(req > 0, resp / req, 0.0)
            self.tail_response_sq_mean[step] = np.where(req > 0, resp_sq / req, 0.0)
        self.queue_history[step] = self.backlog_requests
        self.queued_tokens[step] = self.backlog_tokens
        inst_s = np.array([i.instance_s(t0, t1) for i in self._inst])
        no_route = float(self.agg["requests"][step].sum() - req.sum())
        return IntervalStats(
            step=step,
            arrivals=req,
            arrived_tokens=resp,
            started=served["req"],
            queue_end=self.backlog_requests.copy(),
            tokens_decoded=tokens,
            busy_slot_s=b * ready_s,
            instance_s=inst_s,
            ready_instance_s=ready_s,
            instances=committed,
            idle_energy_j=self._p0 * inst_s,
            active_energy_j=(power - self._p0) * ready_s,
            dropped_no_route=round(no_route),
            prefill_tokens=served["prompt"],
        )


Server = RequestLevelServer | FluidServer
"""Either fidelity: both have ``pools``, ``fidelity``, ``queue_history`` and ``run_interval``."""

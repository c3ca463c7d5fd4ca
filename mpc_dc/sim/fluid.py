"""Fluid serving fidelity: per-interval aggregates with the request-level interface.

Per pool and interval, the requests routed to it are the interval's per-model
aggregates times the committed share (fractional: the fluid plan). Work is
measured in slot-seconds with the same batching model as the request level
(:mod:`mpc_dc.sim.serving`): a request needs ``request_tokens / prefill + τ ·
response_tokens`` slot-seconds. The pool's capacity in the interval is
``slots × ready instance-seconds`` (an instance loading for part of the
interval contributes the part after its load time). Work is served FIFO, the
backlog first; what capacity cannot serve is carried to the next interval.
Energy is computed exactly as at request level: idle power × instance-seconds
+ marginal energy × tokens decoded.

Latency is estimated, not simulated: the wait of a request arriving in the
interval is taken as the backlog at the interval end over the service rate
(``slots × ready instances``), plus its prefill; the fluid view says the SLO
holds while that estimate is below the TTFT target. The request level checks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mpc_dc.sim.arrivals import STEP_S
from mpc_dc.sim.fleet_decision import PoolKey
from mpc_dc.sim.serving import IntervalStats, PoolSpec, RequestLevelServer, _Instances


class FluidServer:
    """Fluid serving of one run.

    Parameters
    ----------
    pools : sequence of PoolSpec
    models : tuple of str
        Model families (columns of the aggregates).
    aggregates : dict of ndarray, shape ``(n_steps, n_models)``
        ``requests`` [-], ``request_tokens`` and ``response_tokens`` [tokens] arriving
        per interval (e.g. :meth:`~mpc_dc.sim.arrivals.RequestArrays.per_interval`).
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
        self._prefill_rate = np.array([p.prefill_tokens_per_s for p in self.pools])
        self._tau = np.array([p.decode_s_per_token for p in self.pools])
        self._slots = np.array([p.slots_per_instance for p in self.pools], dtype=float)
        self._idle_w = np.array([p.idle_power_w for p in self.pools])
        self._marginal = np.array([p.marginal_energy_per_token_j for p in self.pools])
        self.backlog_work = np.zeros(P)
        self.backlog_tokens = np.zeros(P)
        self.backlog_requests = np.zeros(P)
        self.est_wait_s = np.zeros((n_steps, P))
        self.queue_history = np.zeros((n_steps, P))
        self.tokens_served = np.zeros(P)
        #: Backlog re-dispatched from pools left without instances [requests].
        self.requeued_requests = 0.0

    def _redispatch_stranded(self, share: np.ndarray) -> None:
        """The backlog of a pool left without instances goes to the model's pools by
        ``share`` (normalised per model), its work re-expressed at their speeds
        (prefill of the request tokens, decode of the response tokens); without a
        route it stays (as :meth:`RequestLevelServer._redispatch_stranded`)."""
        waiting = self.backlog_requests > 0
        if not waiting.any():
            return
        committed = self.committed_instances()
        for p in np.flatnonzero((committed == 0) & waiting):
            to = np.flatnonzero((self._model_of == self._model_of[p]) & (share > 0)
                                & (np.arange(share.size) != p))
            if to.size == 0:
                continue
            w = share[to] / share[to].sum()
            prompt_tokens = max(self.backlog_work[p] - self.backlog_tokens[p] * self._tau[p],
                                0.0) * self._prefill_rate[p]
            self.backlog_work[to] += w * (prompt_tokens / self._prefill_rate[to]
                                          + self.backlog_tokens[p] * self._tau[to])
            self.backlog_tokens[to] += w * self.backlog_tokens[p]
            self.backlog_requests[to] += w * self.backlog_requests[p]
            self.requeued_requests += float(self.backlog_requests[p])
            self.backlog_work[p] = self.backlog_tokens[p] = self.backlog_requests[p] = 0.0

    def committed_instances(self) -> np.ndarray:
        """Instances committed per pool (running or loading) [-], (P,)."""
        return np.array([i.committed for i in self._inst], dtype=np.int64)

    def scale(self, pool: int, target: int, now: float) -> None:
        """Set the committed instances of ``pool`` (loading cancelled first, no drain tail)."""
        inst, spec = self._inst[pool], self.pools[pool]
        d = target - inst.committed
        if d > 0:
            inst.ready_times.extend([now + spec.load_time_s] * d)
        elif d < 0:
            inst.ready_times.sort()
            del inst.ready_times[target:]
        inst.committed = target

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
        self._redispatch_stranded(share)
        m = self._model_of
        req = self.agg["requests"][step][m] * share
        req_tok = self.agg["request_tokens"][step][m] * share
        resp_tok = self.agg["response_tokens"][step][m] * share
        slots = self._slots
        work = req_tok / self._prefill_rate + resp_tok * self._tau
        ready_s = np.array([i.ready_s(t0, t1) for i in self._inst])
        cap = slots * ready_s
        # FIFO: the backlog is served before the new arrivals.
        from_backlog = np.minimum(self.backlog_work, cap)
        from_new = np.minimum(work, cap - from_backlog)
        ratio_b = np.divide(
            from_backlog, self.backlog_work, out=np.zeros(P), where=self.backlog_work > 0
        )
        ratio_n = np.divide(from_new, work, out=np.zeros(P), where=work > 0)
        tokens = ratio_b * self.backlog_tokens + ratio_n * resp_tok
        started = ratio_b * self.backlog_requests + ratio_n * req
        self.backlog_tokens += resp_tok - tokens
        self.backlog_requests += req - started
        self.backlog_work += work - from_backlog - from_new
        tiny = self.backlog_work <= 1e-9 * np.maximum(work, 1.0)
        self.backlog_work[tiny] = 0.0
        self.backlog_tokens[tiny] = 0.0
        self.backlog_requests[tiny] = 0.0
        committed = self.committed_instances()
        rate = slots * np.array([sum(1 for r in i.ready_times if r <= t1) for i in self._inst])
        with np.errstate(divide="ignore", invalid="ignore"):
            wait = np.where(self.backlog_work > 0, self.backlog_work / rate, 0.0)
        self.est_wait_s[step] = wait
        self.queue_history[step] = self.backlog_requests
        self.tokens_served += tokens
        inst_s = np.array([i.instance_s(t0, t1) for i in self._inst])
        no_route = float(self.agg["requests"][step].sum() - req.sum())
        return IntervalStats(
            step=step,
            arrivals=req,
            arrived_tokens=resp_tok,
            started=started,
            queue_end=self.backlog_requests.copy(),
            tokens_decoded=tokens,
            busy_slot_s=from_backlog + from_new,
            instance_s=inst_s,
            ready_instance_s=ready_s,
            instances=committed,
            idle_energy_j=self._idle_w * inst_s,
            active_energy_j=self._marginal * tokens,
            dropped_no_route=round(no_route),
        )


Server = RequestLevelServer | FluidServer
"""Either fidelity: both have ``pools``, ``fidelity``, ``queue_history`` and ``run_interval``."""

"""Priced lateness: what the requests that miss their SLO cost (issue 16).

A request is *late* when it misses its SLO (:func:`~mpc_dc.sim.serving.slo_met`:
decided by the run end, and its time to first token or its time per output token
beyond target). How late it is [s]::

    late_s = max(0, TTFT − T_ttft) + max(0, (finish − first token) − τ (n − 1))

the seconds beyond the TTFT target ``T_ttft`` of its model plus the decode time
beyond what the TPOT target ``τ`` of its pool allows for its ``n`` output tokens
(:meth:`~mpc_dc.sim.serving.ServingConfig.tpot_slo`). A request still decoding at
the run end is judged on its TTFT alone (as the SLO is); one that never got a first
token (queued at the run end, or dropped for want of a route) is late by its wait
to the run end beyond ``T_ttft`` (censored there). Its price::

    lateness_usd = c_req · [late] + c_s · late_s                               [$]

with ``c_req`` = ``serving.late_usd_per_request`` [$/request] and ``c_s`` =
``serving.late_usd_per_s`` [$/s] (:class:`~mpc_dc.sim.serving.ServingConfig`).

Attribution: a request is booked in the interval it *arrived* in, on the pool that
served it (a request never routed on its model's first pool, in site order), so the
(interval, pool) table and the (interval, campus) ledger carry ``late_requests``,
``late_s`` and ``lateness_usd``, and the campus rows sum to the KPIs.

Fluid fidelity (no requests): estimated per (interval, pool) as the *share* of the
interval's arrivals that are late (:func:`fluid_late_share`), from what the fluid
queue knows of that interval (:mod:`mpc_dc.sim.fluid`): arrival rate, ready
instances, work per request, batch limit, backlog carried in, mean batch and
prefill. Three causes, taken as independent: the deterministic wait of a carried-in
backlog or an overload (the fluid queue itself), the Erlang C wait tail of the
instances' batch slots, and the time per output token stretched by other requests'
prefills (compound Poisson). The late seconds are the matching expected excesses.
Requests the fluid server could not route are late by the rest of the run from the
middle of their interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaincc, gammaincinv, gammaln

from mpc_dc.sim.arrivals import STEP_S
from mpc_dc.sim.fluid import FluidServer
from mpc_dc.sim.serving import (
    PoolSpec,
    RequestLevelServer,
    ServingConfig,
    ServingOutcome,
    slo_parts,
    tpot_s,
)
from mpc_dc.site.config import Site

LATENESS_COLUMNS: tuple[str, ...] = ("late_requests", "late_s", "lateness_usd")
"""Columns of the (interval, pool) table and the (interval, campus) ledger: requests
that missed their SLO [requests], seconds late beyond it [s] and their price [$],
booked in the interval of arrival."""


@dataclass(frozen=True)
class LatenessBook:
    """Lateness per (interval, pool), shape ``(n_steps, P)``.

    Attributes
    ----------
    late_requests : ndarray [requests]
    late_s : ndarray [s]
    lateness_usd : ndarray [$]
    """

    late_requests: np.ndarray
    late_s: np.ndarray
    lateness_usd: np.ndarray

    def columns(self) -> dict[str, np.ndarray]:
        """The three arrays by :data:`LATENESS_COLUMNS` name."""
        return dict(zip(LATENESS_COLUMNS, (self.late_requests, self.late_s,
                                           self.lateness_usd), strict=True))


def request_lateness(outcome: ServingOutcome, site: Site, serving: ServingConfig,
                     parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per request: whether it is late, and by how many seconds (module docstring).
    ``parts``: :func:`~mpc_dc.sim.serving.slo_parts` of ``outcome`` where the caller
    has them.

    Returns
    -------
    late : ndarray of bool
        Decided and not meeting the SLO (the complement of :func:`slo_met` among the
        decided requests).
    late_s : ndarray [s]
        0 for requests that are not late.
    """
    req = outcome.requests
    ttft_ok, tpot_ok, decided = parts or slo_parts(outcome, site, serving)
    late = decided & ~(ttft_ok & tpot_ok)
    ttft_target = np.array([serving.ttft_slo(m) for m in req.models])[req.model]
    tpot_target = np.array([serving.tpot_slo(p) for p in outcome.pools] + [np.inf])
    pool = np.where(outcome.pool >= 0, outcome.pool, len(outcome.pools))
    # A request without a first token has waited until the run end (censored there).
    first = np.where(np.isnan(outcome.first_token), outcome.end_s, outcome.first_token)
    ttft_excess = np.where(ttft_ok, 0.0, np.maximum(first - req.arrival_s - ttft_target, 0.0))
    # ~tpot_ok only where TPOT is judged (finished, two tokens or more): (n − 1)(tpot − τ)
    # is the decode time beyond what the target allows.
    with np.errstate(invalid="ignore"):
        extra = (req.response_tokens - 1.0) * (tpot_s(outcome) - tpot_target[pool])
    tpot_excess = np.where(tpot_ok, 0.0, extra)
    late_s = np.where(late, ttft_excess + tpot_excess, 0.0)
    return late, late_s


class RequestLatenessToDate:
    """The price of the lateness of a request-level run certain by a time, booked as
    the run goes (the Gymnasium environment's per-step lateness).

    Each call judges only the requests still open: those arrived since the last call
    and those not finished then. A request finished by ``t`` is settled for good (no
    later event changes its first token, finish or pool) and booked once; the others
    (queued, decoding, never routed) are judged afresh as they stand at ``t``
    (:meth:`~mpc_dc.sim.serving.ServingOutcome.at`). So a run of ``n`` steps costs
    ``O(requests)`` overall plus the open requests per step, where judging the whole
    outcome each step cost ``O(n × requests)``.
    """

    def __init__(self, server: RequestLevelServer, site: Site, serving: ServingConfig) -> None:
        self.server, self.site, self.serving = server, site, serving
        self._open = np.zeros(0, dtype=np.int64)
        self._next = 0            # first request not yet arrived at the last call
        self._t = -np.inf         # [s] time of the last call
        self._late = 0            # settled late requests [requests]
        self._late_s = 0.0        # their seconds late [s]

    def usd(self, t: float) -> float:
        """``c_req · late requests + c_s · late seconds`` [$] of the requests arrived
        before ``t`` [s], as they stood at ``t``; ``t`` never earlier than the last
        call's."""
        if t < self._t:
            raise ValueError(f"lateness to date asked at {t} s, before the last call's "
                             f"{self._t} s; expected times in order")
        self._t = t
        arrived = int(np.searchsorted(self.server.requests.arrival_s, t, side="left"))
        idx = np.concatenate([self._open, np.arange(self._next, arrived, dtype=np.int64)])
        self._next = arrived
        judged = self.server.judged_at(idx, t)
        late, late_s = request_lateness(judged, self.site, self.serving)
        settled = ~np.isnan(judged.finish)
        self._late += int(np.count_nonzero(late & settled))
        self._late_s += float(late_s[settled].sum())
        self._open = idx[~settled]
        return float(self.serving.lateness_usd(
            float(self._late + np.count_nonzero(late & ~settled)),
            self._late_s + float(late_s[~settled].sum())))


def _model_first_pool(pools: Sequence[PoolSpec], models: tuple[str, ...]) -> np.ndarray:
    """Index of each model's first pool (its unrouted requests' pool)."""
    keys = [p.key for p in pools]
    return np.array([next(i for i, k in enumerate(keys) if k[1] == m) for m in models],
                    dtype=np.int64)


def request_book(outcome: ServingOutcome, site: Site, serving: ServingConfig,
                 n_steps: int, step_s: float = STEP_S,
                 parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                 ) -> LatenessBook:
    """Lateness of a request-level run per (interval of arrival, pool) (module
    docstring); ``parts`` as in :func:`request_lateness`."""
    req = outcome.requests
    late, late_s = request_lateness(outcome, site, serving, parts)
    P = len(outcome.pools)
    pool = np.where(outcome.pool >= 0, outcome.pool,
                    _model_first_pool(outcome.pools, req.models)[req.model])
    step = np.minimum((req.arrival_s // step_s).astype(np.int64), n_steps - 1)
    mine = late & (req.arrival_s < n_steps * step_s)
    cell = step[mine] * P + pool[mine]
    count = np.bincount(cell, minlength=n_steps * P).reshape(n_steps, P).astype(float)
    seconds = np.bincount(cell, weights=late_s[mine],
                          minlength=n_steps * P).reshape(n_steps, P)
    return LatenessBook(count, seconds, serving.lateness_usd(count, seconds))


def fluid_targets(fluid: FluidServer, serving: ServingConfig) -> tuple[np.ndarray, np.ndarray]:
    """TTFT [s] and TPOT [s/token] targets of the fluid server's pools, (P,) each."""
    return (np.array([serving.ttft_slo(p.key[1]) for p in fluid.pools]),
            np.array([serving.tpot_slo(p) for p in fluid.pools]))


TAIL_RESPONSE_NODES = 24
"""Quantile nodes of the response-length distribution over which the TPOT tail is
averaged (:func:`fluid_late_share`) [-]."""

TAIL_MAX_STALLS = 60
"""Prefill stalls summed exactly in the TPOT tail; the Poisson mass beyond counts
with the tail of ``TAIL_MAX_STALLS + 1`` stalls, a lower bound (:func:`fluid_late_share`)
[-]."""


TAIL_BLOCK_CELLS = 2048
"""Pool-intervals whose TPOT tail is evaluated at once (memory: cells × nodes × stall
counts floats, 2048 × 24 × 63 × 8 bytes ≈ 25 MB per array) [-]."""


def erlang_c(servers: np.ndarray | float, offered: np.ndarray | float) -> np.ndarray:
    """Probability that an arrival waits in an M/M/c queue (Erlang C).

    ``C(c, a) = B / (1 − ρ (1 − B))`` with ``ρ = a / c`` and the Erlang B blocking
    ``B = π(c; a) / F(c; a)``, the Poisson(``a``) probability of ``c`` over that of
    at most ``c``: ``π = exp(c ln a − a − ln Γ(c + 1))``, ``F = Q(c + 1, a)`` (the
    regularised upper incomplete gamma, :func:`scipy.special.gammaincc`), which
    extends it to fractional ``c`` (a pool's mean ready instances times its slots).

    Parameters
    ----------
    servers : float or ndarray
        ``c`` [-], the concurrent servers.
    offered : float or ndarray
        ``a = λ / μ`` [-], the offered load in servers.

    Returns
    -------
    ndarray [-]
        ``C(c, a)``; 1 where ``a ≥ c`` (no steady state: every arrival waits), 0 where
        ``a = 0``.
    """
    c = np.asarray(servers, dtype=float)
    a = np.asarray(offered, dtype=float)
    stable = (a < c) & (a > 0)
    cs, as_ = np.where(stable, c, 1.0), np.where(stable, a, 0.5)
    blocking = np.exp(cs * np.log(as_) - as_ - gammaln(cs + 1.0)) / gammaincc(cs + 1.0, as_)
    rho = as_ / cs
    wait = blocking / (1.0 - rho * (1.0 - blocking))
    return np.where(stable, wait, np.where(a >= c, 1.0, 0.0))


def _linear_excess(g0: np.ndarray, g1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``g`` linear over the unit interval from ``g0`` to ``g1``: the share of it
    where ``g > 0`` and the mean of ``max(g, 0)`` over it (units of ``g``)."""
    hi, lo = np.maximum(g0, g1), np.minimum(g0, g1)
    with np.errstate(divide="ignore", invalid="ignore"):
        part = np.where(lo > 0, 1.0, np.where(hi > 0, hi / (hi - lo), 0.0))
    mean = np.where(lo > 0, 0.5 * (g0 + g1), 0.5 * part * np.maximum(hi, 0.0))
    return part, mean


def _poisson_pmf(k: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson probabilities ``π(k; mean)`` [-], ``k`` integers on the last axis of the
    broadcast; ``π(0; 0) = 1``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = k * np.log(np.where(mean > 0, mean, 1.0)) - mean - gammaln(k + 1.0)
    return np.where(mean > 0, np.exp(log_pmf), (k == 0).astype(float))


def _stall_tail(steps: np.ndarray, allowance: np.ndarray, stalls: np.ndarray,
                stall_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P(S > x)`` and ``E[max(S − x, 0)]`` for ``S`` the sum of a Poisson(``m``)
    number of exponential stalls of mean ``s̄``: ``Σ_k π(k; m) Q(k, y)`` and
    ``Σ_k π(k; m) (k s̄ Q(k + 1, y) − x Q(k, y))``, ``y = x / s̄``, with ``Q(k, y)``
    the tail of a sum of ``k`` exponentials (the regularised upper incomplete gamma,
    for integer ``k`` the Poisson(``y``) probability of fewer than ``k``, summed here
    as such), ``k = 1 …`` :data:`TAIL_MAX_STALLS` and the Poisson mass beyond counted
    at ``TAIL_MAX_STALLS + 1``. ``x < 0`` (the decode alone misses): late for sure by
    ``m s̄ − x``. Arrays broadcast together; ``steps`` [tokens] only marks where a
    TPOT exists (> 0). Returns arrays of the broadcast shape [-], [s]."""
    k = np.arange(TAIL_MAX_STALLS + 3, dtype=float)
    m, x, sbar = (np.asarray(v, dtype=float)[..., None] for v in (stalls, allowance, stall_s))
    x_pos = np.maximum(x, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(sbar > 0, x_pos / np.where(sbar > 0, sbar, 1.0), np.inf)
    finite = np.isfinite(y)
    # Q(k, y) = P(Poisson(y) ≤ k − 1): Q[..., k] for k = 0 … TAIL_MAX_STALLS + 2
    below = np.cumsum(_poisson_pmf(k, np.where(finite, y, 0.0)), axis=-1)
    q = np.where(finite, np.concatenate([np.zeros_like(below[..., :1]), below[..., :-1]],
                                        axis=-1), 0.0)
    count = k[1:-1]
    pmf = _poisson_pmf(count, m)
    # the last stall count carries the Poisson mass beyond TAIL_MAX_STALLS
    pmf[..., -1] = np.maximum(1.0 - np.exp(-m[..., 0]) - pmf[..., :-1].sum(axis=-1), 0.0)
    tail_k, tail_k1 = q[..., 1:-1], q[..., 2:]
    p_late = (pmf * tail_k).sum(axis=-1)
    excess = (pmf * (count * sbar * tail_k1 - x_pos * tail_k)).sum(axis=-1)
    certain = (np.asarray(allowance) < 0) & (np.asarray(steps) > 0)
    mean_stall = np.asarray(stalls) * np.asarray(stall_s)
    return (np.where(certain, 1.0, p_late),
            np.where(certain, mean_stall - np.asarray(allowance), np.maximum(excess, 0.0)))


def fluid_late_share(fluid: FluidServer, serving: ServingConfig, upto: int | None = None,
                     start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Share of each (interval, pool)'s arrivals that are late, and their expected
    seconds late per arrival, from the fluid queue of that interval alone (causal).

    Per interval of length ``S`` [s] and pool, with ``λ`` the arrival rate [1/s],
    ``N`` the mean ready instances [-], ``w`` the work of an arriving request
    [instance-s] (so the pool serves ``N / w`` requests/s, load ``ρ = λ w / N``),
    ``b_max`` the batch limit, ``B₀`` the backlog work carried in [instance-s], ``p``
    the mean prefill [s], ``T`` the TTFT target and ``T' = max(T − p, 0)`` [s]:

    * **backlog and overload** (deterministic, the fluid queue's own FIFO): an arrival
      at ``s`` waits ``B₀/N + (ρ − 1) s`` [s] while that is positive; it is late
      where that exceeds ``T'``. The late share ``d`` is the part of ``[0, S]``
      where it does, its mean excess per arrival the integral over ``S``
      (:func:`_linear_excess`). A prefill beyond ``T`` makes every arrival late by
      ``p − T`` more.
    * **wait tail** (stochastic, ``ρ < 1``): M/M/c with ``c = N b_max`` slots each
      holding a request ``b_max w`` seconds (so ``a = λ b_max w = ρ c``):
      ``P(W > T') = C(c, a) e^{−θ T'}``, ``θ = N / w − λ`` [1/s], mean excess
      ``P(W > T') / θ`` [s] (:func:`erlang_c`).
    * **TPOT tail**: a request of ``n`` output tokens decodes ``n − 1`` steps of
      ``t`` [s] (the step at the interval's mean batch) over about ``(n − 1) t̂``
      seconds (``t̂`` the fluid TPOT estimate), while the instance admits other
      requests at ``r`` per second [1/s], each stalling its decode by a prefill,
      taken as exponential of mean ``p`` (prefill first, :mod:`mpc_dc.sim.serving`:
      those arriving during its own prefill are prefilled in its decode too, so it
      is exposed for ``p + (n − 1) t̂`` seconds). Late when the stalls exceed the
      allowance ``x = (n − 1)(τ − t)`` [s]: ``P(S > x)`` of a compound Poisson sum
      with ``m = r (p + (n − 1) t̂)`` stalls (:func:`_stall_tail`), the excess its
      TPOT seconds. Arrivals are taken as Poisson within the interval (bursts inside
      it are not known to the fluid queue).
      ``n`` runs over :data:`TAIL_RESPONSE_NODES` quantiles of a gamma law with the
      arrivals' mean and mean square response tokens (short responses are the ones
      a single long prefill makes late).

    An arrival is on time when none of the three makes it late (taken as
    independent): share ``1 − (1 − d)(1 − P_wait)(1 − P_tpot)``; seconds late per
    arrival ``d̄ + (1 − d) E_wait + E_tpot``. A pool-interval with arrivals and no
    ready instance has all of them late, each by ``max(0, S/2 − T)`` (the rest of
    their interval, at least). ``start``, ``upto``: only the intervals from
    ``start`` to before ``upto`` (the rest are 0).

    Returns
    -------
    share : ndarray (n_steps, P) [-]
        In ``[0, 1]``; 0 without arrivals.
    late_s : ndarray (n_steps, P) [s]
        Expected seconds late per arrival.
    """
    ttft, tpot = fluid_targets(fluid, serving)
    rows = fluid.n_steps if upto is None else min(upto, fluid.n_steps)
    share = np.zeros((fluid.n_steps, len(fluid.pools)))
    late_s = np.zeros_like(share)
    lam_all = fluid.tail_arrival_rate[:rows]
    idx = np.nonzero((lam_all > 0) & (np.arange(rows) >= start)[:, None])
    if idx[0].size == 0:
        return share, late_s
    pool = idx[1]

    def at(a: np.ndarray) -> np.ndarray:
        return a[:rows][idx]

    lam, ready, work = at(fluid.tail_arrival_rate), at(fluid.tail_ready), at(fluid.tail_work_s)
    prefill, target = at(fluid.tail_prefill_s), ttft[pool]
    S = fluid.step_s
    up = ready > 0
    ready_ = np.where(up, ready, 1.0)
    rho = lam * work / ready_
    wait_target = np.maximum(target - prefill, 0.0)
    excess_at_start = at(fluid.tail_backlog_work_s) / ready_ - wait_target
    det, det_mean = _linear_excess(excess_at_start, excess_at_start + (rho - 1.0) * S)
    det_mean = det_mean + np.maximum(prefill - target, 0.0)
    det = np.where(prefill > target, 1.0, det)
    slots = ready * at(fluid.tail_batch_limit)
    theta = np.where(up & (work > 0), ready_ / np.where(work > 0, work, 1.0) - lam, 0.0)
    stable = theta > 0
    p_wait = np.where(stable, erlang_c(slots, rho * slots) * np.exp(-np.where(stable, theta, 0.0)
                                                                   * wait_target), 0.0)
    e_wait = np.where(stable, p_wait / np.where(stable, theta, 1.0), 0.0)
    # TPOT tail over response-length quantile nodes (gamma law with the arrivals' moments)
    n_mean = at(fluid.tail_response_mean)
    var = np.maximum(at(fluid.tail_response_sq_mean) - n_mean**2, 1e-9 * n_mean**2 + 1e-12)
    shape = np.clip(n_mean**2 / var, 1e-3, 1e6)
    q = (np.arange(TAIL_RESPONSE_NODES) + 0.5) / TAIL_RESPONSE_NODES
    n_nodes = gammaincinv(shape[:, None], q[None, :]) * (n_mean / shape)[:, None]
    steps = np.maximum(n_nodes - 1.0, 0.0)
    tau = tpot[pool]
    judged = np.isfinite(tau)
    step_t = at(fluid.tail_decode_step_s)
    allowance = steps * (np.where(judged, tau, 0.0) - step_t)[:, None]
    # exposed from its own prefill on: those admitted meanwhile are prefilled in its decode
    stalls = at(fluid.tail_admission_rate)[:, None] * (prefill[:, None] + steps
                                                      * at(fluid.est_tpot_s)[:, None])
    # in blocks of cells: each holds (cells, nodes, stall counts) floats
    p_node, e_node = np.zeros_like(steps), np.zeros_like(steps)
    for lo in range(0, steps.shape[0], TAIL_BLOCK_CELLS):
        b = slice(lo, lo + TAIL_BLOCK_CELLS)
        p_node[b], e_node[b] = _stall_tail(steps[b], allowance[b], stalls[b],
                                           prefill[b, None])
    p_tpot = np.where(judged, p_node.mean(axis=1), 0.0)
    e_tpot = np.where(judged, e_node.mean(axis=1), 0.0)
    cell_share = 1.0 - (1.0 - det) * (1.0 - p_wait) * (1.0 - p_tpot)
    cell_late = det_mean + (1.0 - det) * e_wait + e_tpot
    # no ready instance: every arrival waits at least the rest of its interval
    share[idx] = np.where(up, np.clip(cell_share, 0.0, 1.0), 1.0)
    late_s[idx] = np.where(up, cell_late, np.maximum(0.5 * S - target, 0.0))
    return share, late_s


def fluid_book(fluid: FluidServer, serving: ServingConfig, arrivals: np.ndarray,
               upto: int | None = None, start: int = 0,
               estimate: tuple[np.ndarray, np.ndarray] | None = None) -> LatenessBook:
    """Lateness of a fluid run per (interval, pool), estimated from the fluid queue
    (module docstring).

    Parameters
    ----------
    fluid : FluidServer
        After the run (or the intervals served so far): its per-interval queue
        quantities (``tail_*``, ``est_tpot_s``) and the per-model requests offered
        (its aggregates).
    arrivals : ndarray (n_steps, P) [requests]
        Requests routed to each pool.
    upto : int, optional
    start : int
        Estimate only the intervals from ``start`` to before ``upto``
        (:func:`fluid_late_share`); the requests no pool could take are booked in
        every interval.
    estimate : (ndarray, ndarray), optional
        :func:`fluid_late_share` of ``fluid`` with these ``upto`` and ``start``, when the
        caller has it already (it is the costly part).
    """
    n, _ = arrivals.shape
    share, per_request = (fluid_late_share(fluid, serving, upto, start) if estimate is None
                          else estimate)
    count = arrivals * share[:n]
    seconds = arrivals * per_request[:n]
    models = fluid.models
    model_of = np.array([models.index(p.key[1]) for p in fluid.pools], dtype=np.int64)
    routed = np.zeros((len(models), n))
    np.add.at(routed, model_of, arrivals.T)
    dropped = np.maximum(np.asarray(fluid.agg["requests"][:n], dtype=float) - routed.T, 0.0)
    if dropped.any():
        ttft_m = np.array([serving.ttft_slo(m) for m in models])
        left = np.maximum((n - np.arange(n) - 0.5)[:, None] * fluid.step_s - ttft_m, 0.0)
        for m, p in enumerate(_model_first_pool(fluid.pools, models)):
            count[:, p] += dropped[:, m]
            seconds[:, p] += dropped[:, m] * left[:, m]
    return LatenessBook(count, seconds, serving.lateness_usd(count, seconds))

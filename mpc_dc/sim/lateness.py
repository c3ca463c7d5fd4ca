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

Fluid fidelity (no requests): estimated per (interval, pool) from the fluid queue,
with the estimate the fluid SLO attainment uses (:mod:`mpc_dc.sim.fluid`): every
request arriving in interval ``k`` at pool ``p`` waits the backlog left at the
interval's end over the pool's ready instances, plus its prefill
(``est_wait_s[k, p]``), and decodes at ``est_tpot_s[k, p]`` per token. The
interval's arrivals are all late when either exceeds its target, and each is late
by ``max(0, est_wait − T_ttft) + max(0, est_tpot − τ) (n̄ − 1)`` with ``n̄`` the
interval's mean response tokens at the pool. Requests the fluid server could not
route are late by the rest of the run from the middle of their interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


def fluid_slo_ok(fluid: FluidServer, serving: ServingConfig) -> np.ndarray:
    """Per (interval, pool): whether the fluid estimates meet both targets (module
    docstring), ``(n_steps, P)`` of bool."""
    ttft, tpot = fluid_targets(fluid, serving)
    return (fluid.est_wait_s <= ttft) & (fluid.est_tpot_s <= tpot * (1 + 1e-9))


def fluid_book(fluid: FluidServer, serving: ServingConfig, arrivals: np.ndarray,
               arrived_tokens: np.ndarray) -> LatenessBook:
    """Lateness of a fluid run per (interval, pool), estimated from the fluid queue
    (module docstring).

    Parameters
    ----------
    fluid : FluidServer
        After the run: its estimates ``est_wait_s`` [s] and ``est_tpot_s`` [s/token] and
        the per-model requests offered (its aggregates).
    arrivals : ndarray (n_steps, P) [requests]
        Requests routed to each pool.
    arrived_tokens : ndarray (n_steps, P) [tokens]
        Their response tokens.
    """
    n, _ = arrivals.shape
    ttft, tpot = fluid_targets(fluid, serving)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_mean = np.where(arrivals > 0, arrived_tokens / arrivals, 0.0)
    tpot_excess = np.where(np.isfinite(tpot), np.maximum(fluid.est_tpot_s - tpot, 0.0), 0.0)
    per_request = (np.maximum(fluid.est_wait_s - ttft, 0.0)
                   + tpot_excess * np.maximum(n_mean - 1.0, 0.0))
    ok = fluid_slo_ok(fluid, serving)
    count = np.where(ok, 0.0, arrivals)
    seconds = np.where(ok, 0.0, arrivals * per_request)
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

"""Lateness block: the queue a plan leaves behind, carried and priced (issue 16).

Without it, demand a column cannot serve at the SLO is the unserved slack ``s`` and
is forgotten: the plan neither serves it later nor pays for the wait, so a plan that
under-provisions looks cheap. With it, what a column does not serve joins a backlog
``b`` that later columns serve on top of their own demand, and the plan pays for
every token that waits (the price of late requests, :mod:`mpc_dc.sim.lateness`,
turned into prices per token with the mean response length of each model):

* a token that enters the backlog belongs to a late request:
  ``c_req[m] = late_usd_per_request / n̄[m]`` [$/token];
* a token that waits costs ``c_s[m] = late_usd_per_s / n̄[m]`` [$/(token · s)] for every
  second it waits;
* backlog still queued at the horizon end is priced as unserved (``c_u``).

Rows r of the backlog are the rows of the demand balance: one per model with spatial
flexibility (where the backlog is served does not matter), one per (campus with GPUs,
model) without it (rows ``g M + m``, as the unserved slack). Units: ``b`` is carried as
the rate that would serve it in one 15-min interval [ktokens/s] (backlog [ktokens] =
``b Δ`` with Δ = 900 s), so its coefficients in the balance are ``1/L[t]``, near 1.
Equations: :func:`define_backlog`, :func:`define_lateness_cost`; the balance rows take
``ctx.expressions["backlog_change_kps"]`` (:mod:`mpc_dc.blocks.inference_fleet`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from mpc_dc.blocks import STEP_S, ModelContext


@dataclass(frozen=True)
class LatenessPrices:
    """Prices of lateness per output token, one per model (``site.models`` order).

    Parameters
    ----------
    usd_per_token : tuple of float [$/token]
        ``c_req[m]``: a late request's price over its model's mean response tokens.
    usd_per_token_s : tuple of float [$/(token · s)]
        ``c_s[m]``: a second late's price over the same.
    """

    usd_per_token: tuple[float, ...]
    usd_per_token_s: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("usd_per_token", "usd_per_token_s"):
            values = np.asarray(getattr(self, name), dtype=float)
            if not np.all((values >= 0) & np.isfinite(values)):
                raise ValueError(f"LatenessPrices.{name}: expected finite values >= 0, got "
                                 f"{getattr(self, name)!r}")
        if len(self.usd_per_token) != len(self.usd_per_token_s):
            raise ValueError("LatenessPrices: one price of each kind per model")

    @classmethod
    def per_request(cls, late_usd_per_request: float, late_usd_per_s: float,
                    tokens_per_request: np.ndarray) -> LatenessPrices | None:
        """Prices per token from prices per request [$/request], [$/s] and each model's
        mean response tokens ``n̄`` [tokens]; None when both prices are 0 (no block)."""
        if late_usd_per_request <= 0 and late_usd_per_s <= 0:
            return None
        n = np.maximum(np.asarray(tokens_per_request, dtype=float), 1.0)
        return cls(tuple(late_usd_per_request / n), tuple(late_usd_per_s / n))


def backlog_rows(ctx: ModelContext) -> int:
    """Rows of the backlog: M with spatial flexibility, ``C_g · M`` without."""
    assert ctx.site.fleet is not None
    M = ctx.n_models
    return M if ctx.site.fleet.levers.spatial else M * ctx.gpu_campuses.size


def _row_model(ctx: ModelContext) -> np.ndarray:
    """Model index of each backlog row."""
    return np.arange(backlog_rows(ctx)) % ctx.n_models


def define_backlog(ctx: ModelContext) -> None:
    """Backlog ``b[r,t] >= 0`` [ktokens/s per interval] at the end of column t, its
    entries ``e[r,t] >= 0`` and the change the demand balance takes.

    ``backlog_change_kps[r,t] = (b[r,t] − b[r,t−1]) / L[t]`` [ktokens/s] with
    ``b[r,−1] = 0`` (a queue observed at the start is demand of the first columns,
    :mod:`mpc_dc.control.mpc`), so that each balance row reads
    ``served + unserved + backlog change = demand``. Entries:
    ``e[r,t] >= b[r,t] − b[r,t−1]`` (tokens that join the backlog in column t, net).
    """
    if not ctx.n_pools:
        return
    R, H = backlog_rows(ctx), ctx.horizon_steps
    b = cp.Variable((R, H), name="backlog_kps", bounds=[0.0, None])
    e = cp.Variable((R, H), name="backlog_entry_kps", bounds=[0.0, None])
    ctx.variables["backlog_kps"] = b
    ctx.variables["backlog_entry_kps"] = e
    inv = 1.0 / ctx.weights
    change: cp.Expression = b
    if H > 1:
        change = cp.hstack([b[:, :1], b[:, 1:] - b[:, :-1]])
        ctx.add_constraints("backlog entries", e[:, 1:] - b[:, 1:] + b[:, :-1] >= 0)
    ctx.add_constraints("backlog entries", e[:, 0] - b[:, 0] >= 0)
    ctx.expressions["backlog_change_kps"] = cp.multiply(inv[None, :], change)


def _coefficients(ctx: ModelContext, prices: LatenessPrices
                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """Cost of one unit of ``e`` and of ``b`` per interval, per row, and of ``b`` left at
    the horizon end [$ per ktokens/s held one interval]."""
    fleet = ctx.site.fleet
    assert fleet is not None
    m = _row_model(ctx)
    tokens = 1e3 * STEP_S  # tokens in 1 ktoken/s held for one interval
    return (tokens * np.asarray(prices.usd_per_token)[m],
            tokens * STEP_S * np.asarray(prices.usd_per_token_s)[m],
            tokens * fleet.unserved_penalty_usd_per_mtok / 1e6)


def define_lateness_cost(ctx: ModelContext, prices: LatenessPrices) -> None:
    """The plan's price of lateness ``lateness_usd`` [$]::

        Σ_{r,t} 10³ Δ (c_req[m(r)] e[r,t] + c_s[m(r)] Δ L[t] b[r,t]) + 10³ Δ c_u Σ_r b[r,H−1]

    with Δ = 900 s, b and e [ktokens/s per interval] (10³ Δ b tokens), c_req
    [$/token], c_s [$/(token · s)] (:class:`LatenessPrices`) and c_u the unserved
    penalty [$/token]: each token entering the backlog, each second it waits (the
    backlog at a column's end held over the column) and what is still queued at the
    horizon end.
    """
    if not ctx.n_pools:
        return
    c_req, c_s, c_end = _coefficients(ctx, prices)
    b, e = ctx.variables["backlog_kps"], ctx.variables["backlog_entry_kps"]
    ctx.costs["lateness_usd"] = (cp.sum(c_req @ e) + (c_s @ b) @ ctx.weights
                                 + c_end * cp.sum(b[:, -1]))


def lateness_cost_usd(ctx: ModelContext, prices: LatenessPrices, backlog_kps: np.ndarray
                      ) -> float:
    """:func:`define_lateness_cost` of a backlog ``b`` (R, H) [ktokens/s per interval],
    its entries taken as the net increases (post-processing) [$]."""
    c_req, c_s, c_end = _coefficients(ctx, prices)
    b = np.maximum(np.asarray(backlog_kps, dtype=float), 0.0)
    entry = np.maximum(np.diff(b, axis=1, prepend=0.0), 0.0)
    return float(c_req @ entry.sum(axis=1) + (c_s @ b) @ ctx.weights + c_end * b[:, -1].sum())

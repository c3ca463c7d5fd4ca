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

**Congestion** (:func:`define_congestion`, with ``LatenessPrices.congestion_share`` > 0
or per-model knee weights ``LatenessPrices.congestion_weights``,
:func:`calibrated_knee_weights`):
the backlog prices only what exceeds a pool's capacity at the SLO under the
utilisation cap (``x <= ρ̄ μ n``), so below the cap every split of a model's tokens
across its pools is equally good to the plan, and the plan fills the pool whose
tokens are cheapest (FP8, a cheaper campus) to the cap and leaves the rest lightly
loaded. The router splits the real load by the plan's shares, so load above the
forecast lands on the hot pool: its requests miss their TPOT target while the other
pool idles. The block prices the tokens a pool serves beyond the knees ``κ_j``
(:data:`CONGESTION_KNEES`) of its planned capacity, each knee at the share ``σ`` of
the model's late price per token: a convex, piecewise-linear cost of the utilisation
``x / (ρ̄ μ n)`` times the pool's capacity (the perspective, linear in ``x`` and
``n``), least for a given model total when every pool runs at the same utilisation.

**Warm-up overload** (:func:`define_warmup_overload`, with ``LatenessPrices.warmup``):
the tokens a pool is offered beyond what its ready instances serve while the ones it
starts load, priced late; added to the same cost term, ``congestion_usd``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

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
    congestion_share : float [-]
        ``σ``: the share of ``c_req[m]`` each congestion knee adds to the price of a
        pool's tokens beyond it (:func:`define_congestion`); 0: no congestion cost.
    congestion_weights : tuple of tuple of float [-]
        ``w[m, j]``: per model, the share of ``c_req[m]`` knee ``κ_j``
        (:data:`CONGESTION_KNEES`) adds, in place of ``σ`` at every knee
        (:func:`calibrated_knee_weights`); empty: ``σ``.
    warmup : bool
        Price the overload of a pool while the instances it starts load
        (:func:`define_warmup_overload`).
    """

    usd_per_token: tuple[float, ...]
    usd_per_token_s: tuple[float, ...]
    congestion_share: float = 0.0
    congestion_weights: tuple[tuple[float, ...], ...] = ()
    warmup: bool = False

    def __post_init__(self) -> None:
        for name in ("usd_per_token", "usd_per_token_s"):
            values = np.asarray(getattr(self, name), dtype=float)
            if not np.all((values >= 0) & np.isfinite(values)):
                raise ValueError(f"LatenessPrices.{name}: expected finite values >= 0, got "
                                 f"{getattr(self, name)!r}")
        if len(self.usd_per_token) != len(self.usd_per_token_s):
            raise ValueError("LatenessPrices: one price of each kind per model")
        if not (np.isfinite(self.congestion_share) and self.congestion_share >= 0):
            raise ValueError(f"LatenessPrices.congestion_share: expected a finite value "
                             f">= 0, got {self.congestion_share!r}")
        if self.congestion_weights:
            weights = np.asarray(self.congestion_weights, dtype=float)
            if weights.shape != (len(self.usd_per_token), len(CONGESTION_KNEES)):
                raise ValueError(f"LatenessPrices.congestion_weights: expected one weight per "
                                 f"model and knee, shape ({len(self.usd_per_token)}, "
                                 f"{len(CONGESTION_KNEES)}), got {weights.shape}")
            if not np.all((weights >= 0) & np.isfinite(weights)):
                raise ValueError(f"LatenessPrices.congestion_weights: expected finite values "
                                 f">= 0, got {self.congestion_weights!r}")

    def knee_weights(self) -> np.ndarray:
        """``w[m, j]`` [-], (models, knees): :attr:`congestion_weights`, else ``σ``."""
        if self.congestion_weights:
            return np.asarray(self.congestion_weights, dtype=float)
        return np.full((len(self.usd_per_token), len(CONGESTION_KNEES)),
                       self.congestion_share)

    @property
    def congested(self) -> bool:
        """Whether the plan prices congestion (some knee weight > 0)."""
        return bool(np.any(self.knee_weights() > 0))

    @classmethod
    def per_request(cls, late_usd_per_request: float, late_usd_per_s: float,
                    tokens_per_request: np.ndarray, congestion_share: float = 0.0,
                    congestion_weights: tuple[tuple[float, ...], ...] = (),
                    warmup: bool = False) -> LatenessPrices | None:
        """Prices per token from prices per request [$/request], [$/s] and each model's
        mean response tokens ``n̄`` [tokens], with the congestion share ``σ`` [-] or the
        knee weights ``w[m, j]`` [-], and whether the warm-up overload is priced; None
        when both prices are 0 (no block)."""
        if late_usd_per_request <= 0 and late_usd_per_s <= 0:
            return None
        n = np.maximum(np.asarray(tokens_per_request, dtype=float), 1.0)
        return cls(tuple(late_usd_per_request / n), tuple(late_usd_per_s / n),
                   congestion_share, congestion_weights, warmup)


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


CONGESTION_KNEES: tuple[float, ...] = (0.7, 0.8, 0.9)
"""Utilisations of a pool's planned capacity ``ρ̄ μ n`` [-] beyond which each of its
tokens pays one more share ``σ`` of its model's late price (:func:`define_congestion`):
spaced 0.1 apart, so the plan's pools of one model end within 0.1 of each other's
utilisation where any of them is above 0.7 (within one segment the cost is linear and
the energy price decides)."""


def _planned_capacity_kps(ctx: ModelContext, instances: cp.Expression | np.ndarray,
                          starts: cp.Expression | np.ndarray
                          ) -> cp.Expression | np.ndarray:
    """``ρ̄ μ[k] (n[k,t] − w[k,t] u[k,t]) / 10³`` [ktokens/s]: the right-hand side of the
    capacity rows (:func:`mpc_dc.blocks.inference_fleet.define_capacity`)."""
    assert ctx.site.fleet is not None
    cap = ctx.site.fleet.utilization_cap * ctx.mu_tokens_per_s / 1e3
    if isinstance(instances, np.ndarray):
        return cap[:, None] * (instances - ctx.warmup_matrix * np.asarray(starts))
    return (sp.diags_array(cap) @ instances
            - cp.multiply(cap[:, None] * ctx.warmup_matrix, starts))


def _congestion_price(ctx: ModelContext, prices: LatenessPrices) -> np.ndarray:
    """``c_req[m(k)] 10³ Δ`` per pool [$ per ktokens/s late, one interval]."""
    return np.asarray(prices.usd_per_token)[ctx.model_of] * 1e3 * STEP_S


def calibrated_knee_weights(utilisations: tuple[float, ...] | np.ndarray,
                            late_share: np.ndarray) -> tuple[float, ...]:
    """Knee weights ``w_j`` [-] of one model from its late share ``p(u)`` [-] at the
    planned utilisations ``u`` [-] (:func:`mpc_dc.sim.bursts.window_late_share`).

    The late tokens of a pool of capacity ``C`` run at ``r = x / C`` are
    ``C g(r)`` with ``g(r) = r p(r)``; ``g`` is taken piecewise linear through its
    values at the knees κ_j and at 1 (``p`` interpolated linearly in ``u``). Its
    linear part ``(g(κ_1) / κ_1) r`` is left out: it prices every token of the model
    alike, and a model's tokens are its demand whatever the plan. What remains is
    ``f(r) = Σ_j w_j max(0, r − κ_j)`` with ``w_1`` the slope of ``g`` beyond κ_1
    less ``g(κ_1) / κ_1`` and ``w_j`` the increase of the slope at κ_j; a slope below
    the one before is raised to it (``w_j >= 0``, ``f`` convex, so the plan's cost
    stays linear-programme representable), which prices more, never less, than ``g``.

    Returns
    -------
    tuple of float [-]
        One per knee of :data:`CONGESTION_KNEES`.
    """
    points = np.array((*CONGESTION_KNEES, 1.0))
    share = np.interp(points, np.asarray(utilisations, dtype=float),
                      np.asarray(late_share, dtype=float))
    g = points * share
    slopes = np.diff(g) / np.diff(points) - g[0] / points[0]
    slopes = np.maximum.accumulate(np.maximum(slopes, 0.0))
    return tuple(float(w) for w in np.diff(slopes, prepend=0.0))


def define_congestion(ctx: ModelContext, prices: LatenessPrices) -> None:
    """The price of running a pool hot, ``congestion_usd`` [$]::

        Σ_{k,t} c_req[m(k)] 10³ Δ L[t] Σ_j w[m(k),j] max(0, x[k,t] − κ_j C[k,t])

    with ``C = ρ̄ μ (n − w u) / 10³`` the pool's planned capacity [ktokens/s] (the
    capacity rows' right-hand side), κ_j the knees (:data:`CONGESTION_KNEES`), the
    knee weights ``w[m, j]`` (:meth:`LatenessPrices.knee_weights`: σ =
    ``prices.congestion_share`` at every knee, or per model from the bursts of the
    history, :func:`calibrated_knee_weights`) and c_req [$/token]: each token a pool
    serves beyond κ_j of its capacity is priced as late with probability ``w[m, j]``
    per knee passed. The cost is ``C f(x / C)`` with
    ``f(r) = Σ_j w_j max(0, r − κ_j)`` convex (the perspective of f): for a model's
    total a split at equal utilisation costs least. Nothing when every weight is 0.

    Vertex form, two rows per pool and column in place of the capacity row and one row
    per knee (the wind fleet's step LP: 2,832 rows instead of 3,984; the same optimum,
    ``tests/test_lateness.py``; HiGHS's dual simplex is faster on fewer rows):
    the capacity is split into a part run at utilisation κ_1 and parts
    ``λ_i >= 0`` [ktokens/s of capacity] run at the utilisations ``r_i`` = κ_2, …, κ_J,
    1, at the price ``f(r_i)`` per unit; with the κ_1 part eliminated::

        x − Σ_i (r_i − κ_1) λ_i <= κ_1 C     (the capacity row, "capacity at SLO")
        Σ_i r_i λ_i <= x                       (the κ_1 part is not negative)

    which imply ``x <= C`` (``Σ_i λ_i <= C``). For given x and C the cheapest λ
    costs ``C f(x / C)``: f is convex and piecewise linear with its kinks at the
    ``r_i``, so it is the least combination of its values there.
    """
    if not ctx.n_pools or not prices.congested:
        return
    v = ctx.variables
    P, H = ctx.n_pools, ctx.horizon_steps
    capacity = _planned_capacity_kps(ctx, v["instances"], v["starts"])
    base = CONGESTION_KNEES[0]
    utilisations = (*CONGESTION_KNEES[1:], 1.0)
    parts = []
    for i in range(len(utilisations)):
        part = cp.Variable((P, H), name=f"congestion_part{i}_kps", bounds=[0.0, None])
        v[f"congestion_part{i}_kps"] = part
        parts.append(part)
    x = v["tokens_kps"]
    # replaces define_capacity's x <= C, which these two rows imply
    ctx.constraints["capacity at SLO"] = [
        x - sum((r - base) * part for r, part in zip(utilisations, parts, strict=True))
        - base * capacity <= 0]
    ctx.add_constraints("congestion",
                        sum(r * part for r, part in zip(utilisations, parts, strict=True))
                        - x <= 0)
    price = _congestion_price(ctx, prices)
    weights = prices.knee_weights()[ctx.model_of]
    ctx.costs["congestion_usd"] = ctx.costs.get("congestion_usd", 0.0) + sum(
        ((_hinges(weights, r) * price) @ part) @ ctx.weights
        for r, part in zip(utilisations, parts, strict=True))


def _load_time_s(ctx: ModelContext) -> np.ndarray:
    """Load time of each pool's instances [s] (the table's ``load_time_s``)."""
    return np.array([ctx.site.row(k).load_time_s for k in ctx.pools], dtype=float)


def _warmup_price(ctx: ModelContext, prices: LatenessPrices) -> np.ndarray:
    """``10³ T (c_req[m(k)] + c_s[m(k)] T / 2)`` per pool [$ per ktokens/s of
    overload]: the tokens offered over the load time ``T`` [s] beyond what the ready
    instances serve, each late and waiting ``T / 2`` on average."""
    load = _load_time_s(ctx)
    c_req = np.asarray(prices.usd_per_token)[ctx.model_of]
    c_s = np.asarray(prices.usd_per_token_s)[ctx.model_of]
    return 1e3 * load * (c_req + c_s * load / 2.0)


def _ready_capacity_kps(ctx: ModelContext, instances: cp.Expression | np.ndarray,
                        starts: cp.Expression | np.ndarray) -> cp.Expression | np.ndarray:
    """``μ[k] (n[k,t] − u[k,t]) / 10³`` [ktokens/s]: what a pool's instances ready at
    the column's start serve at the SLO (no utilisation cap: the overload is what
    exceeds the SLO's throughput)."""
    mu = ctx.mu_tokens_per_s / 1e3
    if isinstance(instances, np.ndarray):
        return mu[:, None] * (instances - np.asarray(starts))
    return sp.diags_array(mu) @ (instances - starts)


def define_warmup_overload(ctx: ModelContext, prices: LatenessPrices) -> None:
    """The price of a pool's overload while its new instances load,
    ``congestion_usd`` [$] (with ``prices.warmup``)::

        Σ_{k,t} 10³ T[k] (c_req[m(k)] + c_s[m(k)] T[k] / 2) o[k,t],
        o[k,t] >= x[k,t] − μ[k] (n[k,t] − u[k,t]) / 10³,  o >= 0

    with T the load time [s] of the pool's instances, x [ktokens/s], n instances, u
    starts and μ the capacity at the SLO [tokens/s]. The router sends a pool its
    share of the interval's requests from the interval's start, while an instance
    started then serves only after T: for T the pool's ready instances serve at most
    ``μ (n − u)`` within the SLO and the rest queues until the load ends, late (the
    interval's mean, which the capacity row takes with ``w u``, hides it). A start
    an interval earlier, ready when its load arrives, costs its idle power instead.
    Priced once per column whatever its length (a start loads once).
    """
    if not ctx.n_pools or not prices.warmup:
        return
    v = ctx.variables
    overload = cp.Variable((ctx.n_pools, ctx.horizon_steps), name="warmup_overload_kps",
                           bounds=[0.0, None])
    v["warmup_overload_kps"] = overload
    ctx.add_constraints("warm-up overload", v["tokens_kps"] - overload
                        - _ready_capacity_kps(ctx, v["instances"], v["starts"]) <= 0)
    ctx.costs["congestion_usd"] = ctx.costs.get("congestion_usd", 0.0) + cp.sum(
        _warmup_price(ctx, prices) @ overload)


def warmup_overload_cost_usd(ctx: ModelContext, prices: LatenessPrices,
                             instances: np.ndarray, starts: np.ndarray,
                             tokens_per_s: np.ndarray) -> float:
    """:func:`define_warmup_overload` of a plan's instances [-], starts [-] and tokens
    [tokens/s], each (P, H) [$]; 0 without ``prices.warmup``."""
    if not ctx.n_pools or not prices.warmup:
        return 0.0
    ready = np.asarray(_ready_capacity_kps(ctx, np.asarray(instances, dtype=float), starts))
    overload = np.maximum(1e-3 * np.asarray(tokens_per_s, dtype=float) - ready, 0.0)
    return float(np.sum(_warmup_price(ctx, prices) @ overload))


def _hinges(weights: np.ndarray, utilisation: float) -> np.ndarray:
    """``f(r) = Σ_j w_j max(0, r − κ_j)`` [-] at the utilisation ``r``, per row of the
    knee weights ``weights`` (rows, knees)."""
    return np.asarray(weights) @ np.maximum(utilisation - np.asarray(CONGESTION_KNEES), 0.0)


def congestion_cost_usd(ctx: ModelContext, prices: LatenessPrices, instances: np.ndarray,
                        starts: np.ndarray, tokens_per_s: np.ndarray) -> float:
    """:func:`define_congestion` of a plan's instances [-], starts [-] and tokens
    [tokens/s], each (P, H) [$], with the warm-up overload
    (:func:`warmup_overload_cost_usd`); 0 when every knee weight is 0 and the warm-up
    is not priced."""
    if not ctx.n_pools:
        return 0.0
    warm = warmup_overload_cost_usd(ctx, prices, instances, starts, tokens_per_s)
    if not prices.congested:
        return warm
    capacity = np.asarray(_planned_capacity_kps(ctx, np.asarray(instances, dtype=float),
                                                starts))
    x = 1e-3 * np.asarray(tokens_per_s, dtype=float)
    weights = prices.knee_weights()[ctx.model_of]
    hinges = sum(weights[:, j, None] * np.maximum(x - k * capacity, 0.0)
                 for j, k in enumerate(CONGESTION_KNEES))
    return warm + float((_congestion_price(ctx, prices) @ hinges) @ ctx.weights)

"""InferenceFleet block: instances, routing, capacity, GPUs, switching, quality, IT power.

Indices: pool k = (campus c, model m, precision q) in :attr:`FleetConfig.pools`
order, model column t = 0..H-1, Δ = 0.25 h. A column spans ``L[t]`` intervals
(:attr:`FleetContext.interval_lengths`, all 1 unless the horizon has a coarse
tail): rates (tokens/s, kW) are per column, and every cost term is weighted by
``L[t]``, so a column of L intervals costs what L equal intervals would.
Variables are (P, H) matrices, so the column of ``n[k, t]`` is ``start + k + P t``
(cvxpy's Fortran order), which is what lets :mod:`mpc_dc.fleet_problem` make only
the committed interval integer.
Everything that changes between solves is a Parameter in a cost or a right-hand
side (constraint matrix parameter-free, as :mod:`mpc_dc.fastpath` needs).
Equations and units: docs/fleet.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from mpc_dc.params.fleet import FleetConfig, PoolKey
from traces.grid import STEP_H

#: Seconds per interval [s].
STEP_S = STEP_H * 3600.0


@dataclass
class FleetContext:
    """The fleet problem under construction (the fleet's :class:`ModelContext`).

    Parameters
    ----------
    config : FleetConfig
    horizon_steps : int
        H.
    step_h : float [h]
        Δ.
    interval_lengths : ndarray (H,) of int, optional
        ``L[t]``: intervals of Δ spanned by column t (default all 1).

    Attributes
    ----------
    pools : tuple of PoolKey
    mu_tokens_per_s, gpus, idle_w, energy_j_per_token, quality_loss, pue : ndarray
        Per-pool figures from the table: μ [tokens/s at the SLO], g [GPUs],
        p_idle [W], e [J/token], quality loss [points, >= 0]; the PUE of the
        pool's campus [-].
    warmup_matrix : ndarray (P, H)
        ``min(1, load_time / (L[t] Δ))`` [-]: the share of column t a start loses.
    column_starts : ndarray (H,) of int
        First interval of each column.
    gpu_matrix : sparse (C × P)
        GPUs of each pool summed per campus (:meth:`campus_matrix` of ``gpus``).
    model_of, campus_of : ndarray of int
        Index of each pool's model and campus.
    """

    config: FleetConfig
    horizon_steps: int
    step_h: float = STEP_H
    interval_lengths: np.ndarray | None = None
    variables: dict[str, cp.Variable] = field(default_factory=dict)
    parameters: dict[str, cp.Parameter] = field(default_factory=dict)
    constraints: dict[str, list[cp.Constraint]] = field(default_factory=dict)
    costs: dict[str, cp.Expression] = field(default_factory=dict)
    expressions: dict[str, cp.Expression] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.config
        self.pools: tuple[PoolKey, ...] = cfg.pools
        rows = [cfg.row(k) for k in self.pools]
        self.mu_tokens_per_s = np.array([r.tokens_per_s_at_slo for r in rows])
        self.gpus = np.array([float(r.gpus_per_instance) for r in rows])
        self.idle_w = np.array([r.idle_power_w for r in rows])
        self.energy_j_per_token = np.array([r.marginal_energy_per_token_j for r in rows])
        self.quality_loss = np.array([max(r.quality_loss_pct_points, 0.0) for r in rows])
        lengths = (np.ones(self.horizon_steps, dtype=np.int64) if self.interval_lengths is None
                   else np.asarray(self.interval_lengths, dtype=np.int64))
        if lengths.shape != (self.horizon_steps,) or np.any(lengths < 1):
            raise ValueError(f"FleetContext.interval_lengths: expected {self.horizon_steps} "
                             f"integers >= 1, got {self.interval_lengths!r}")
        self.interval_lengths = lengths
        self.column_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        load_s = np.array([r.load_time_s for r in rows])
        self.warmup_matrix = np.minimum(
            1.0, load_s[:, None] / (self.step_h * 3600.0 * lengths[None, :]))
        self.model_of = np.array([cfg.models.index(k[1]) for k in self.pools])
        #: DR baseline in event intervals [kW] (C, H), set with the Parameters.
        self.dr_baseline_kw = np.zeros((len(cfg.campuses), self.horizon_steps))
        self.campus_of = np.array([cfg.campus_names.index(k[0]) for k in self.pools])
        self.pue = np.array([c.pue for c in cfg.campuses])[self.campus_of]
        self.gpu_matrix = self.campus_matrix(self.gpus)

    @property
    def n_pools(self) -> int:
        """P."""
        return len(self.pools)

    def add_constraints(self, name: str, *constraints: cp.Constraint) -> None:
        """Register constraints under a group name (used in infeasibility reports)."""
        self.constraints.setdefault(name, []).extend(constraints)

    def all_constraints(self) -> list[cp.Constraint]:
        """Every constraint in registration order."""
        return [c for group in self.constraints.values() for c in group]

    def model_matrix(self, weights: np.ndarray | None = None) -> sp.csr_array:
        """(M × P) sum over each model's pools, optionally weighted per pool."""
        w = np.ones(self.n_pools) if weights is None else weights
        M = len(self.config.models)
        return sp.csr_array((w, (self.model_of, np.arange(self.n_pools))),
                            shape=(M, self.n_pools))

    def campus_matrix(self, weights: np.ndarray | None = None) -> sp.csr_array:
        """(C × P) sum over each campus's pools, optionally weighted per pool."""
        w = np.ones(self.n_pools) if weights is None else weights
        C = len(self.config.campuses)
        return sp.csr_array((w, (self.campus_of, np.arange(self.n_pools))),
                            shape=(C, self.n_pools))


def define_fleet_variables(ctx: FleetContext) -> None:
    """Instances, starts, served tokens and unserved tokens.

    ``n[k,t] >= 0`` instances running [-] (integer where committed, set at solve
    time), ``u[k,t] >= 0`` instance starts [-], ``x[k,t] >= 0`` output tokens
    served [ktokens/s], ``s[c·M+m, t] >= 0`` unserved tokens of model m assigned to
    campus c [ktokens/s] (the feasibility slack; always reported). Tokens are in
    thousands and power in kW inside the model so that coefficients stay near 1
    (HiGHS is several times faster than with tokens/s and MW).
    """
    P, H = ctx.n_pools, ctx.horizon_steps
    CM = len(ctx.config.campuses) * len(ctx.config.models)
    ctx.variables["instances"] = cp.Variable((P, H), name="instances", bounds=[0.0, None])
    ctx.variables["starts"] = cp.Variable((P, H), name="starts", bounds=[0.0, None])
    ctx.variables["tokens_kps"] = cp.Variable((P, H), name="tokens_kps", bounds=[0.0, None])
    ctx.variables["unserved_kps"] = cp.Variable((CM, H), name="unserved_kps",
                                                bounds=[0.0, None])


def define_demand(ctx: FleetContext) -> None:
    """Every demanded token is served or counted unserved (no curtailment).

    ``Σ_{c,q} x[c,m,q,t] + Σ_c s[c,m,t] = D[m,t]`` [ktokens/s]; ``D`` is the
    Parameter ``demand_tokens_per_s`` (M × H). With spatial flexibility off the
    per-campus rows of :func:`define_spatial_shares` imply this one, so it is
    added only with spatial flexibility on.
    """
    M, H = len(ctx.config.models), ctx.horizon_steps
    D = cp.Parameter((M, H), name="demand_kps", nonneg=True)
    ctx.parameters["demand_kps"] = D
    if not ctx.config.flexibility.spatial:
        return
    C = len(ctx.config.campuses)
    S = sp.csr_array((np.ones(C * M), (np.tile(np.arange(M), C), np.arange(C * M))),
                     shape=(M, C * M))
    v = ctx.variables
    ctx.add_constraints("demand",
                        ctx.model_matrix() @ v["tokens_kps"]
                        + S @ v["unserved_kps"] == D)


def define_spatial_shares(ctx: FleetContext) -> None:
    """Fixed campus shares when spatial flexibility is off (Sp off).

    ``Σ_q x[c,m,q,t] + s[c,m,t] = φ[c] · D[m,t]`` with ``φ[c] = G[c] / Σ G`` [-].
    With Sp on the unserved slack of campus c is only a label and no row is added.
    """
    if ctx.config.flexibility.spatial:
        return
    cfg = ctx.config
    M, C = len(cfg.models), len(cfg.campuses)
    shares = cfg.fixed_shares()
    D = ctx.parameters["demand_kps"]
    x, s = ctx.variables["tokens_kps"], ctx.variables["unserved_kps"]
    rows = []
    for ci, campus in enumerate(cfg.campus_names):
        mask = (ctx.campus_of == ci).astype(float)
        A = ctx.model_matrix(mask)
        rows.append(A @ x + s[ci * M:(ci + 1) * M, :] == shares[campus] * D)
    del C
    ctx.add_constraints("fixed campus shares", *rows)


def define_capacity(ctx: FleetContext) -> None:
    """Throughput at the latency SLO with a utilisation cap and warm-up.

    ``x[k,t] <= ρ̄ μ[k] (n[k,t] − w[k,t] u[k,t]) / 10³`` [ktokens/s], μ [tokens/s]: an
    instance started in column t serves only after its load time (fraction
    ``w[k,t]`` of the column, :attr:`FleetContext.warmup_matrix`).
    """
    rho = ctx.config.utilization_cap
    v = ctx.variables
    cap = sp.diags_array(rho * ctx.mu_tokens_per_s / 1e3)
    capw = rho * ctx.mu_tokens_per_s[:, None] / 1e3 * ctx.warmup_matrix
    ctx.add_constraints("capacity at SLO",
                        v["tokens_kps"] - cap @ v["instances"]
                        + cp.multiply(capw, v["starts"]) <= 0)


def define_gpu_limit(ctx: FleetContext) -> None:
    """GPUs per campus: ``Σ_{m,q} g[m,q] n[c,m,q,t] <= G[c,t]`` [GPUs].

    ``G`` is the Parameter ``gpus_available`` (C × H) so outages can be modelled.
    """
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    G = cp.Parameter((C, H), name="gpus_available", nonneg=True)
    ctx.parameters["gpus_available"] = G
    ctx.add_constraints("GPU limit", ctx.gpu_matrix @ ctx.variables["instances"] <= G)


def define_switching(ctx: FleetContext) -> None:
    """Starts and (without Sw) a constant fleet.

    ``u[k,0] >= n[k,0] − n0[k]``, ``u[k,t] >= n[k,t] − n[k,t−1]`` [-], with ``n0`` the
    Parameter ``instances_running`` (state). Sw off adds ``n[k,t] = n[k,t−1]`` for
    t >= 1 and ``|n[k,0] − n0[k]| <= a[k]`` with ``a`` the Parameter
    ``reprovision_allowance`` (0 locks the fleet, large lets it be re-provisioned).
    """
    P, H = ctx.n_pools, ctx.horizon_steps
    n, u = ctx.variables["instances"], ctx.variables["starts"]
    n0 = cp.Parameter(P, name="instances_running", nonneg=True)
    ctx.parameters["instances_running"] = n0
    ctx.add_constraints("starts", u[:, 0] - n[:, 0] >= -n0)
    if H > 1:
        ctx.add_constraints("starts", u[:, 1:] - n[:, 1:] + n[:, :-1] >= 0)
    if ctx.config.flexibility.switching:
        return
    allow = cp.Parameter(P, name="reprovision_allowance", nonneg=True)
    ctx.parameters["reprovision_allowance"] = allow
    if H > 1:
        ctx.add_constraints("constant fleet (Sw off)", n[:, 1:] - n[:, :-1] == 0)
    ctx.add_constraints("constant fleet (Sw off)", n[:, 0] <= n0 + allow, n[:, 0] >= n0 - allow)


def define_quality(ctx: FleetContext) -> None:
    """Quality budget per model: ``Σ_{c,q} δ[m,q] x[c,m,q,t] <= δ̄ D[m,t]`` [points·ktokens/s].

    δ is the loss vs BF16 [points, >= 0]; added only when some pool has a loss.
    """
    if not np.any(ctx.quality_loss > 0):
        return
    D = ctx.parameters["demand_kps"]
    A = ctx.model_matrix(ctx.quality_loss)
    ctx.add_constraints("quality budget", A @ ctx.variables["tokens_kps"]
                        <= ctx.config.quality_budget_pct_points * D)


def define_campus_power(ctx: FleetContext) -> None:
    """Facility power per campus [kW].

    ``p[c,t] = PUE[c] · Σ_{k∈c} (p_idle[k] n[k,t] / 10³ + e[k] x[k,t])`` with
    p_idle [W], e [J/token = kW per ktoken/s], x [ktokens/s]; starting instances
    draw idle power while loading.
    """
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    v = ctx.variables
    A_idle = ctx.campus_matrix(1e-3 * ctx.pue * ctx.idle_w)
    A_e = ctx.campus_matrix(ctx.pue * ctx.energy_j_per_token)
    p = cp.Variable((C, H), name="campus_power_kw", bounds=[0.0, None])
    v["campus_power_kw"] = p
    ctx.add_constraints("campus power", p - A_idle @ v["instances"]
                        - A_e @ v["tokens_kps"] == 0)


def define_energy_cost(ctx: FleetContext) -> None:
    """Energy cost ``Σ_{c,t} L[t] Δ π[c,t] p[c,t] / 10³`` [$] with π the Parameter
    ``price_usd_per_mwh`` (C × H) [$/MWh] at each campus's node and p [kW]."""
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    pi = cp.Parameter((C, H), name="price_usd_per_mwh")
    ctx.parameters["price_usd_per_mwh"] = pi
    ctx.costs["energy_usd"] = (ctx.step_h / 1e3) * cp.sum(
        cp.multiply(pi, ctx.variables["campus_power_kw"]) @ column_weights(ctx))


def define_switching_cost(ctx: FleetContext) -> None:
    """Start cost ``Σ_{k,t} c_start g[k] u[k,t]`` [$] with c_start [$/GPU start]."""
    c = ctx.config.start_cost_usd_per_gpu * ctx.gpus
    ctx.costs["switching_usd"] = cp.sum(c @ ctx.variables["starts"])


def define_quality_cost(ctx: FleetContext) -> None:
    """Quality penalty ``Σ_{k,t} c_q δ[k] x[k,t] L[t] Δ·3600 / 10³`` [$], c_q
    [$/(point·Mtoken)], x [ktokens/s]."""
    c = ctx.config.quality_cost_usd_per_point_mtok * ctx.quality_loss * STEP_S / 1e3
    ctx.costs["quality_usd"] = (c @ ctx.variables["tokens_kps"]) @ column_weights(ctx)


def define_unserved_cost(ctx: FleetContext) -> None:
    """Unserved-token penalty ``Σ c_u s[c,m,t] L[t] Δ·3600 / 10³`` [$], c_u [$/Mtoken],
    s [ktokens/s]."""
    c = ctx.config.unserved_penalty_usd_per_mtok * STEP_S / 1e3
    ctx.costs["unserved_usd"] = c * cp.sum(ctx.variables["unserved_kps"] @ column_weights(ctx))


def column_weights(ctx: FleetContext) -> np.ndarray:
    """``L[t]`` as floats (H,) [intervals]: the weight of column t in every cost term."""
    assert ctx.interval_lengths is not None  # set in __post_init__
    return ctx.interval_lengths.astype(float)

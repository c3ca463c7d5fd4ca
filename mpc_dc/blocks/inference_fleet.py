"""InferenceFleet block: instances, routing, capacity, GPUs, switching, quality, IT power.

Pools k = (campus, model, precision) of the campuses with GPUs; instances ``n``,
starts ``u`` and tokens ``x`` are (P, H) matrices [instances, instances, ktokens/s];
tokens are in thousands inside the model so that coefficients stay near 1. Equations
and units: docs/fleet.md; docs/formulation.md, "One problem".
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from mpc_dc.blocks import STEP_S, ModelContext


def define_fleet_variables(ctx: ModelContext) -> None:
    """Instances, starts, served tokens and unserved tokens.

    ``n[k,t] >= 0`` instances running [-] (integer where committed, set at solve
    time), ``u[k,t] >= 0`` starts [-], ``x[k,t] >= 0`` tokens served [ktokens/s];
    unserved tokens ``s >= 0`` [ktokens/s] (the feasibility slack, always reported):
    one row per (campus with GPUs, model), rows ``g M + m``, whatever the levers
    (without spatial flexibility each campus has its own demand share; with it only
    each model's sum is constrained). Round-and-fix rounds a degenerate LP optimum
    from the vertex HiGHS reaches, which depends on the columns: with this layout, the
    one of the fleet problem before the merge, the DR study's plans are unchanged.
    """
    if not ctx.n_pools:
        return
    P, H = ctx.n_pools, ctx.horizon_steps
    assert ctx.site.fleet is not None
    rows = ctx.n_models * ctx.gpu_campuses.size
    ctx.variables["instances"] = cp.Variable((P, H), name="instances", bounds=[0.0, None])
    ctx.variables["starts"] = cp.Variable((P, H), name="starts", bounds=[0.0, None])
    ctx.variables["tokens_kps"] = cp.Variable((P, H), name="tokens_kps", bounds=[0.0, None])
    ctx.variables["unserved_kps"] = cp.Variable((rows, H), name="unserved_kps",
                                                bounds=[0.0, None])


def define_demand(ctx: ModelContext) -> None:
    """Every demanded token is served or counted unserved (no curtailment).

    ``Σ_{c,q} x[c,m,q,t] + Σ_c s[c,m,t] = D[m,t]`` [ktokens/s]; ``D`` is the Parameter
    ``demand_kps`` (M × H). Without spatial flexibility the per-campus rows of
    :func:`define_spatial_shares` imply this one, so it is added only with Sp on.
    """
    if not ctx.n_pools:
        return
    D = cp.Parameter((ctx.n_models, ctx.horizon_steps), name="demand_kps", nonneg=True)
    ctx.parameters["demand_kps"] = D
    assert ctx.site.fleet is not None
    if not ctx.site.fleet.levers.spatial:
        return
    v = ctx.variables
    M, G = ctx.n_models, ctx.gpu_campuses.size
    per_model = sp.csr_array((np.ones(G * M), (np.tile(np.arange(M), G), np.arange(G * M))),
                             shape=(M, G * M))  # Σ_c s[c, m]
    ctx.add_constraints("demand", ctx.model_matrix() @ v["tokens_kps"]
                        + per_model @ v["unserved_kps"] == D)


def define_spatial_shares(ctx: ModelContext) -> None:
    """Fixed campus shares without spatial flexibility (Sp off).

    ``Σ_q x[c,m,q,t] + s[c,m,t] = φ[c] · D[m,t]`` with ``φ[c] = G[c] / Σ G`` [-]
    (:meth:`Site.fixed_shares`), one row per campus with GPUs and model.
    """
    fleet = ctx.site.fleet
    if not ctx.n_pools or fleet is None or fleet.levers.spatial:
        return
    M = ctx.n_models
    shares = ctx.site.fixed_shares()
    D = ctx.parameters["demand_kps"]
    x, s = ctx.variables["tokens_kps"], ctx.variables["unserved_kps"]
    rows = []
    for g, c in enumerate(ctx.gpu_campuses):
        mask = (ctx.gcampus_of == g).astype(float)
        name = ctx.site.campuses[int(c)].name
        rows.append(ctx.model_matrix(mask) @ x + s[g * M:(g + 1) * M, :] == shares[name] * D)
    ctx.add_constraints("fixed campus shares", *rows)


def define_capacity(ctx: ModelContext) -> None:
    """Throughput at the latency SLO with a utilisation cap and warm-up.

    ``x[k,t] <= ρ̄ μ[k] (n[k,t] − w[k,t] u[k,t]) / 10³`` [ktokens/s], μ [tokens/s]: an
    instance started in column t serves only after its load time (the share
    ``w[k,t]`` of the column, :attr:`ModelContext.warmup_matrix`).
    """
    if not ctx.n_pools:
        return
    assert ctx.site.fleet is not None
    rho = ctx.site.fleet.utilization_cap
    v = ctx.variables
    cap = sp.diags_array(rho * ctx.mu_tokens_per_s / 1e3)
    capw = rho * ctx.mu_tokens_per_s[:, None] / 1e3 * ctx.warmup_matrix
    ctx.add_constraints("capacity at SLO",
                        v["tokens_kps"] - cap @ v["instances"]
                        + cp.multiply(capw, v["starts"]) <= 0)


def define_gpu_limit(ctx: ModelContext) -> None:
    """GPUs per campus: ``Σ_{m,q} g[m,q] n[c,m,q,t] <= G[c,t]`` [GPUs].

    ``G`` is the Parameter ``gpus_available`` (C_g × H, campuses with GPUs) so
    outages can be modelled.
    """
    if not ctx.n_pools:
        return
    G = cp.Parameter((ctx.gpu_campuses.size, ctx.horizon_steps), name="gpus_available",
                     nonneg=True)
    ctx.parameters["gpus_available"] = G
    ctx.add_constraints("GPU limit", ctx.gpu_matrix @ ctx.variables["instances"] <= G)


def define_switching(ctx: ModelContext) -> None:
    """Starts and (without Sw) a constant fleet.

    ``u[k,0] >= n[k,0] − n0[k]``, ``u[k,t] >= n[k,t] − n[k,t−1]`` [-], with ``n0`` the
    Parameter ``instances_running`` (state). Sw off adds ``n[k,t] = n[k,t−1]`` for
    t >= 1 and ``|n[k,0] − n0[k]| <= a[k]`` with ``a`` the Parameter
    ``reprovision_allowance`` (0 locks the fleet, large lets it be re-provisioned).
    """
    if not ctx.n_pools:
        return
    P, H = ctx.n_pools, ctx.horizon_steps
    n, u = ctx.variables["instances"], ctx.variables["starts"]
    n0 = cp.Parameter(P, name="instances_running", nonneg=True)
    ctx.parameters["instances_running"] = n0
    ctx.add_constraints("starts", u[:, 0] - n[:, 0] >= -n0)
    if H > 1:
        ctx.add_constraints("starts", u[:, 1:] - n[:, 1:] + n[:, :-1] >= 0)
    assert ctx.site.fleet is not None
    if ctx.site.fleet.levers.switching:
        return
    allow = cp.Parameter(P, name="reprovision_allowance", nonneg=True)
    ctx.parameters["reprovision_allowance"] = allow
    if H > 1:
        ctx.add_constraints("constant fleet (Sw off)", n[:, 1:] - n[:, :-1] == 0)
    ctx.add_constraints("constant fleet (Sw off)", n[:, 0] <= n0 + allow, n[:, 0] >= n0 - allow)


def define_quality(ctx: ModelContext) -> None:
    """Quality budget per model: ``Σ_{c,q} δ[m,q] x[c,m,q,t] <= δ̄ D[m,t]`` [points·ktokens/s].

    δ is the loss vs BF16 [points, >= 0]; added only when some pool has a loss.
    """
    if not ctx.n_pools or not np.any(ctx.quality_loss > 0):
        return
    assert ctx.site.fleet is not None
    D = ctx.parameters["demand_kps"]
    A = ctx.model_matrix(ctx.quality_loss)
    ctx.add_constraints("quality budget", A @ ctx.variables["tokens_kps"]
                        <= ctx.site.fleet.quality_budget_pct_points * D)


def define_inference_power(ctx: ModelContext) -> None:
    """Facility power of the inference pools per campus, the expression
    ``inference_facility`` (C × H) [u] the power balance uses.

    ``PUE[c] · Σ_{k∈c} (p_idle[k] n[k,t] / 10³ + e[k] x[k,t])`` [kW] with p_idle [W],
    e [J/token = kW per ktoken/s], x [ktokens/s]; starting instances draw idle power
    while they load. On a kW site this is the expression itself; on a MW site the
    variable ``inference_facility_kw`` (C_g × H) [kW] carries it, defined by
    ``q[c,t] − PUE[c] Σ_{k∈c} (p_idle n / 10³ + e x) = 0``, and the expression is
    ``q / 10³`` on the campuses with GPUs.
    """
    if not ctx.n_pools:
        return
    v = ctx.variables
    if ctx.unit_mw == 1e-3:
        A_idle = ctx.campus_matrix(1e-3 * ctx.pool_pue * ctx.idle_w)
        A_e = ctx.campus_matrix(ctx.pool_pue * ctx.energy_j_per_token)
        ctx.expressions["inference_facility"] = A_idle @ v["instances"] + A_e @ v["tokens_kps"]
        return
    G, H = ctx.gpu_campuses.size, ctx.horizon_steps
    q = cp.Variable((G, H), name="inference_facility_kw", bounds=[0.0, None])
    v["inference_facility_kw"] = q
    A_idle = ctx._pool_matrix(ctx.gcampus_of, G, 1e-3 * ctx.pool_pue * ctx.idle_w)
    A_e = ctx._pool_matrix(ctx.gcampus_of, G, ctx.pool_pue * ctx.energy_j_per_token)
    ctx.add_constraints("inference power", q - A_idle @ v["instances"]
                        - A_e @ v["tokens_kps"] == 0)
    ctx.expressions["inference_facility"] = ctx.select(ctx.gpu_campuses) @ (
        (1.0 / ctx.kw_per_unit) * q)


def define_switching_cost(ctx: ModelContext) -> None:
    """Start cost ``Σ_{k,t} c_start g[k] u[k,t]`` [$] with c_start [$/GPU start]."""
    if not ctx.n_pools:
        return
    assert ctx.site.fleet is not None
    c = ctx.site.fleet.start_cost_usd_per_gpu * ctx.gpus
    ctx.costs["switching_usd"] = cp.sum(c @ ctx.variables["starts"])


def define_quality_cost(ctx: ModelContext) -> None:
    """Quality penalty ``Σ_{k,t} c_q δ[k] x[k,t] L[t] Δ·3600 / 10³`` [$], c_q
    [$/(point·Mtoken)], x [ktokens/s]."""
    if not ctx.n_pools:
        return
    assert ctx.site.fleet is not None
    c = ctx.site.fleet.quality_cost_usd_per_point_mtok * ctx.quality_loss * STEP_S / 1e3
    ctx.costs["quality_usd"] = (c @ ctx.variables["tokens_kps"]) @ ctx.weights


def define_unserved_cost(ctx: ModelContext) -> None:
    """Unserved-token penalty ``Σ c_u s[·,t] L[t] Δ·3600 / 10³`` [$], c_u [$/Mtoken],
    s [ktokens/s]."""
    if not ctx.n_pools:
        return
    assert ctx.site.fleet is not None
    c = ctx.site.fleet.unserved_penalty_usd_per_mtok * STEP_S / 1e3
    ctx.costs["unserved_usd"] = c * cp.sum(ctx.variables["unserved_kps"] @ ctx.weights)

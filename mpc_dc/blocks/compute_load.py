"""ComputeLoad block: processing function, non-deferrable and deferrable work.

Work is measured in work units [WU] (1 WU = work of 1 MWh of IT energy at full
IT load, see :mod:`mpc_dc.params.site`). Work amounts are per interval [WU].
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from mpc_dc.blocks import ModelContext


def define_compute_variables(ctx: ModelContext) -> None:
    """IT power and the work done per interval.

    ``0 <= P_it[t] <= P_max`` [MW]; ``w_df[t] >= 0`` [WU] deferrable work done in
    interval t. The non-deferrable work ``W_ND[t]`` [WU] is the Parameter
    ``work_nd_wu`` and runs on arrival: total work ``W[t] = W_ND[t] + w_df[t]``.
    """
    H = ctx.horizon_steps
    dc = ctx.config.datacenter
    ctx.variables["it_power_mw"] = cp.Variable(H, name="it_power_mw",
                                               bounds=[0.0, dc.it_capacity_mw])
    ctx.variables["work_df_wu"] = cp.Variable(H, name="work_df_wu", bounds=[0.0, None])
    ctx.parameters["work_nd_wu"] = cp.Parameter(H, name="work_nd_wu", nonneg=True)


def define_processing_relaxed(ctx: ModelContext) -> None:
    """Hypograph relaxation of W = F(P) (eq. 1 relaxed to W <= F(P)).

    ``W_ND[t] + w_df[t] <= Δ (a_k P_it[t] + b_k)`` for every affine piece k of the
    concave F [WU]; exact at the optimum under the conditions of
    :func:`mpc_dc.problem.choose_formulation` (docs/formulation.md, section 3).
    """
    dc = ctx.config.datacenter
    width, slope = dc.processing.segments(dc.it_capacity_mw)
    starts = np.concatenate([[0.0], np.cumsum(width)[:-1]])
    work_at_start = np.concatenate([[0.0], np.cumsum(width * slope)[:-1]])
    p = ctx.variables["it_power_mw"]
    w_df = ctx.variables["work_df_wu"]
    w_nd = ctx.parameters["work_nd_wu"]
    dt = ctx.step_h
    for a, p0, w0 in zip(slope, starts, work_at_start, strict=True):
        intercept = w0 - a * p0
        ctx.add_constraints("processing function", w_df - dt * a * p <= dt * intercept - w_nd)


def define_processing_exact(ctx: ModelContext) -> None:
    """W = F(P) exactly, incremental (delta) MILP form.

    ``P_it[t] = Σ_k x_k[t]``, ``W_ND[t] + w_df[t] = Δ Σ_k s_k x_k[t]`` with
    ``0 <= x_k <= L_k`` [MW] on segment k of slope s_k [WU/MWh], and ordering
    binaries ``z_k[t]``: ``x_k >= L_k z_k``, ``x_{k+1} <= L_{k+1} z_k`` — segment
    k+1 may be used only once segment k is full, so P = F⁻¹(W).
    """
    H = ctx.horizon_steps
    dc = ctx.config.datacenter
    width, slope = dc.processing.segments(dc.it_capacity_mw)
    K = width.size
    x = cp.Variable((H, K), name="it_power_segment_mw", bounds=[0.0, np.tile(width, (H, 1))])
    ctx.variables["it_power_segment_mw"] = x
    p = ctx.variables["it_power_mw"]
    w_df = ctx.variables["work_df_wu"]
    w_nd = ctx.parameters["work_nd_wu"]
    ctx.add_constraints("processing function", p == cp.sum(x, axis=1),
                        w_df - ctx.step_h * (x @ slope) == -w_nd)
    if K > 1:
        z = cp.Variable((H, K - 1), name="segment_full", boolean=True)
        ctx.variables["segment_full"] = z
        for k in range(K - 1):
            ctx.add_constraints("processing function order",
                                x[:, k] >= width[k] * z[:, k],
                                x[:, k + 1] <= width[k + 1] * z[:, k])


def define_deferrable_work(ctx: ModelContext) -> None:
    """Deferrable work between release and deadline (cumulative, EDF-exact).

    ``c[t] = c[t-1] + w_df[t]``, ``c[-1] = 0`` [WU];
    ``D[t] <= c[t] <= A[t]`` with ``D`` the cumulative work due by the end of t
    (Parameter ``df_due_cum_wu``) and ``A`` the cumulative work released by t
    (Parameter ``df_available_cum_wu``). For one processing resource these
    prefix constraints are exactly the feasibility conditions of earliest-
    deadline-first, so no per-job variables are needed.
    """
    H = ctx.horizon_steps
    w_df = ctx.variables["work_df_wu"]
    c = cp.Variable(H, name="work_df_cum_wu", bounds=[0.0, None])
    due = cp.Parameter(H, name="df_due_cum_wu", nonneg=True)
    avail = cp.Parameter(H, name="df_available_cum_wu", nonneg=True)
    ctx.variables["work_df_cum_wu"] = c
    ctx.parameters.update(df_due_cum_wu=due, df_available_cum_wu=avail)
    ctx.add_constraints("deferrable cumulative work", c[0] == w_df[0])
    if H > 1:
        ctx.add_constraints("deferrable cumulative work", c[1:] - c[:-1] == w_df[1:])
    ctx.add_constraints("deferrable deadline", c >= due)
    ctx.add_constraints("deferrable release", c <= avail)

"""ComputeLoad block (other IT): processing function, non-deferrable and deferrable work.

Campuses o with an ``other_it`` block (C_o of them, site order). Work is measured in
work units [WU] (1 WU = the work of 1 MWh of the campus's other-IT energy at full
load, :mod:`mpc_dc.site.config`); work amounts are per interval [WU], held over a
model column like every rate. Equations, units and the exactness proof:
docs/formulation.md.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from mpc_dc.blocks import ModelContext


def _segments(ctx: ModelContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment row r = (campus o, piece k) stacked campus by campus: the campus's
    position among the C_o, the width [MW] and the slope [WU/MWh] of F."""
    owner, width, slope = [], [], []
    for i, c in enumerate(ctx.other_it):
        other = ctx.site.campuses[int(c)].other_it
        assert other is not None
        w, s = other.processing.segments(other.it_capacity_mw)
        owner += [i] * w.size
        width.append(w)
        slope.append(s)
    return (np.array(owner, dtype=np.int64), np.concatenate(width), np.concatenate(slope))


def define_compute_variables(ctx: ModelContext) -> None:
    """Other-IT power and the work done per interval.

    ``0 <= P[o,t] <= P̄[o]`` [u]; ``w_df[o,t] >= 0`` [WU] deferrable work done per
    interval of column t. The non-deferrable work ``W_ND[o,t]`` [WU per interval] is
    the Parameter ``work_nd_wu`` and runs on arrival: work ``W = W_ND + w_df``.
    """
    n, H = ctx.other_it.size, ctx.horizon_steps
    if not n:
        return
    cap = np.array([ctx.site.campuses[int(c)].other_it.it_capacity_mw  # type: ignore[union-attr]
                    for c in ctx.other_it]) / ctx.unit_mw
    ctx.variables["other_it_power"] = cp.Variable(
        (n, H), name="other_it_power", bounds=[0.0, np.repeat(cap[:, None], H, axis=1)])
    ctx.variables["work_df_wu"] = cp.Variable((n, H), name="work_df_wu", bounds=[0.0, None])
    ctx.parameters["work_nd_wu"] = cp.Parameter((n, H), name="work_nd_wu", nonneg=True)


def define_processing_relaxed(ctx: ModelContext) -> None:
    """Hypograph relaxation of W = F(P) (eq. 1 relaxed to W <= F(P)).

    ``W_ND[o,t] + w_df[o,t] <= Δ (a_k P[o,t] + b_k)`` for every affine piece k of the
    concave F of campus o [WU]; exact at the optimum under the conditions of
    :func:`mpc_dc.problem.choose_formulation` (docs/formulation.md, section 3). Rows
    piece by piece (all intervals of a piece, then the next), the order of the RCDC
    model before the merge: the simplex path, and so which of several equal-cost
    optima a warm-started window lands on, depends on the row order.
    """
    if not ctx.other_it.size:
        return
    owner, width, slope = _segments(ctx)
    R = owner.size
    starts = np.zeros(R)
    work0 = np.zeros(R)
    for i in range(ctx.other_it.size):
        rows = np.flatnonzero(owner == i)
        starts[rows] = np.concatenate([[0.0], np.cumsum(width[rows])[:-1]])
        work0[rows] = np.concatenate([[0.0], np.cumsum(width[rows] * slope[rows])[:-1]])
    intercept = work0 - slope * starts  # [WU/h]
    S = sp.csr_array((np.ones(R), (np.arange(R), owner)), shape=(R, ctx.other_it.size))
    A_p = sp.csr_array((ctx.step_h * slope * ctx.unit_mw, (np.arange(R), owner)),
                       shape=(R, ctx.other_it.size))
    v = ctx.variables
    b = np.repeat((ctx.step_h * intercept)[:, None], ctx.horizon_steps, axis=1)
    ctx.add_constraints("processing function",
                        (S @ v["work_df_wu"] - A_p @ v["other_it_power"]).T
                        <= (b - S @ ctx.parameters["work_nd_wu"]).T)


def define_processing_exact(ctx: ModelContext) -> None:
    """W = F(P) exactly, incremental (delta) MILP form.

    ``P[o,t] = Σ_k x_k[o,t]``, ``W_ND[o,t] + w_df[o,t] = Δ Σ_k s_k x_k[o,t]`` with
    ``0 <= x_k <= L_k`` [u] on segment k of slope s_k [WU/MWh], and ordering binaries
    ``z_k[o,t]``: ``x_k >= L_k z_k``, ``x_{k+1} <= L_{k+1} z_k`` — segment k+1 may be
    used only once segment k is full, so P = F⁻¹(W).
    """
    n, H = ctx.other_it.size, ctx.horizon_steps
    if not n:
        return
    owner, width, slope = _segments(ctx)
    R = owner.size
    w_u = width / ctx.unit_mw
    x = cp.Variable((R, H), name="other_it_segment", bounds=[0.0, np.repeat(w_u[:, None], H,
                                                                             axis=1)])
    ctx.variables["other_it_segment"] = x
    v = ctx.variables
    Sum = sp.csr_array((np.ones(R), (owner, np.arange(R))), shape=(n, R))
    Work = sp.csr_array((ctx.step_h * slope * ctx.unit_mw, (owner, np.arange(R))), shape=(n, R))
    ctx.add_constraints("processing function", v["other_it_power"] - Sum @ x == 0,
                        v["work_df_wu"] - Work @ x == -ctx.parameters["work_nd_wu"])
    # consecutive segments of the same campus: row r and r + 1 with owner[r] == owner[r+1]
    pairs = np.flatnonzero(owner[:-1] == owner[1:])
    if not pairs.size:
        return
    z = cp.Variable((pairs.size, H), name="segment_full", boolean=True)
    v["segment_full"] = z
    ctx.binary_campuses["segment_full"] = ctx.other_it[owner[pairs]]
    Cur = sp.csr_array((np.ones(pairs.size), (np.arange(pairs.size), pairs)),
                       shape=(pairs.size, R))
    Nxt = sp.csr_array((np.ones(pairs.size), (np.arange(pairs.size), pairs + 1)),
                       shape=(pairs.size, R))
    ctx.add_constraints("processing function order",
                        Cur @ x - sp.diags_array(w_u[pairs]) @ z >= 0,
                        Nxt @ x - sp.diags_array(w_u[pairs + 1]) @ z <= 0)


def define_deferrable_work(ctx: ModelContext) -> None:
    """Deferrable work between release and deadline (cumulative, EDF-exact).

    ``c[o,t] = c[o,t−1] + L[t] w_df[o,t]``, ``c[o,−1] = 0`` [WU];
    ``D[o,t] <= c[o,t] <= A[o,t]`` with ``D`` the cumulative work due by the end of
    column t (Parameter ``df_due_cum_wu``) and ``A`` the cumulative work released by
    then (Parameter ``df_available_cum_wu``). For one processing resource per campus
    these prefix constraints are exactly the feasibility conditions of earliest-
    deadline-first, so no per-job variables are needed.
    """
    n, H = ctx.other_it.size, ctx.horizon_steps
    if not n:
        return
    w_df = ctx.variables["work_df_wu"]
    L = ctx.weights
    c = cp.Variable((n, H), name="work_df_cum_wu", bounds=[0.0, None])
    due = cp.Parameter((n, H), name="df_due_cum_wu", nonneg=True)
    avail = cp.Parameter((n, H), name="df_available_cum_wu", nonneg=True)
    ctx.variables["work_df_cum_wu"] = c
    ctx.parameters.update(df_due_cum_wu=due, df_available_cum_wu=avail)
    ctx.add_constraints("deferrable cumulative work", c[:, 0] - L[0] * w_df[:, 0] == 0)
    if H > 1:
        ctx.add_constraints("deferrable cumulative work",
                            c[:, 1:] - c[:, :-1]
                            - cp.multiply(np.tile(L[1:], (n, 1)), w_df[:, 1:]) == 0)
    ctx.add_constraints("deferrable deadline", c >= due)
    ctx.add_constraints("deferrable release", c <= avail)

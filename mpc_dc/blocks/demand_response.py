"""DemandResponse block: event windows, baseline, reward for reduction, penalty above a cap.

All quantities are campus facility power [kW]. Outside events the reduction limit
is 0 and the baseline and cap right-hand sides are a large number, so the rows
are inactive without changing the constraint matrix.
"""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks.inference_fleet import FleetContext

#: Right-hand side that makes a DR row inactive outside event windows [kW].
INACTIVE_KW = 1e7


def define_demand_response(ctx: FleetContext) -> None:
    """Reduction below the baseline and excess above the cap during events.

    ``0 <= r[c,t] <= R[c,t]`` (R = baseline in events, 0 outside),
    ``r[c,t] + p[c,t] <= B[c,t]`` (B = baseline in events, inactive outside),
    ``e[c,t] >= p[c,t] − K[c,t]``, ``e >= 0`` (K = cap in events, inactive outside),
    all [kW]. Parameters ``dr_reduction_limit_kw``, ``dr_baseline_rhs_kw``,
    ``dr_cap_rhs_kw`` (C × H).
    """
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    p = ctx.variables["campus_power_kw"]
    r = cp.Variable((C, H), name="dr_reduction_kw", bounds=[0.0, None])
    e = cp.Variable((C, H), name="dr_excess_kw", bounds=[0.0, None])
    ctx.variables.update(dr_reduction_kw=r, dr_excess_kw=e)
    names = ("dr_reduction_limit_kw", "dr_baseline_rhs_kw", "dr_cap_rhs_kw")
    R, B, K = (cp.Parameter((C, H), name=n, nonneg=True) for n in names)
    ctx.parameters.update(dict(zip(names, (R, B, K), strict=True)))
    ctx.add_constraints("DR reduction", r <= R, r + p <= B)
    ctx.add_constraints("DR cap", e - p >= -K)


def define_demand_response_cost(ctx: FleetContext) -> None:
    """DR reward ``−Σ Δ ρ_r[c,t] r[c,t]`` and penalty ``Σ Δ ρ_p[c,t] e[c,t]`` [$].

    ρ_r, ρ_p [$/kWh] are the Parameters ``dr_reward_usd_per_kwh`` and
    ``dr_penalty_usd_per_kwh`` (C × H), 0 outside events; r and e [kW].
    """
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    rr = cp.Parameter((C, H), name="dr_reward_usd_per_kwh", nonneg=True)
    rp = cp.Parameter((C, H), name="dr_penalty_usd_per_kwh", nonneg=True)
    ctx.parameters.update(dr_reward_usd_per_kwh=rr, dr_penalty_usd_per_kwh=rp)
    v = ctx.variables
    ctx.costs["dr_reward_usd"] = -ctx.step_h * cp.sum(cp.multiply(rr, v["dr_reduction_kw"]))
    ctx.costs["dr_penalty_usd"] = ctx.step_h * cp.sum(cp.multiply(rp, v["dr_excess_kw"]))

"""DemandResponse block: event windows, baseline settlement, penalty above a cap.

All quantities are campus facility power [kW]. Settlement is linear and symmetric
over the event intervals (reward ``ρ_r (B − p)``, negative when the campus draws
more than its baseline), as programmes that settle net event performance do; a
"reward only for reductions" ``ρ_r max(B − p, 0)`` would be non-convex. Outside
events the prices are 0 and the cap row is inactive, so the constraint matrix
does not change with the event schedule.
"""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks.inference_fleet import FleetContext, column_weights

#: Right-hand side that makes the cap row inactive outside event windows [kW].
INACTIVE_KW = 1e7


def define_demand_response(ctx: FleetContext) -> None:
    """Excess above the cap during events.

    ``e[c,t] >= p[c,t] − K[c,t]``, ``e >= 0`` [kW], K = cap in events (the
    Parameter ``dr_cap_rhs_kw``, C × H), inactive outside.
    """
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    p = ctx.variables["campus_power_kw"]
    e = cp.Variable((C, H), name="dr_excess_kw", bounds=[0.0, None])
    ctx.variables["dr_excess_kw"] = e
    K = cp.Parameter((C, H), name="dr_cap_rhs_kw", nonneg=True)
    ctx.parameters["dr_cap_rhs_kw"] = K
    ctx.add_constraints("DR cap", e - p >= -K)


def define_demand_response_cost(ctx: FleetContext) -> None:
    """DR settlement ``−Σ L Δ ρ_r[c,t] (B[c,t] − p[c,t])``, penalty ``Σ L Δ ρ_p[c,t] e[c,t]`` [$].

    ρ_r, ρ_p [$/kWh] are the Parameters ``dr_reward_usd_per_kwh`` and
    ``dr_penalty_usd_per_kwh`` (C × H), 0 outside events; B, p, e [kW]. The
    constant ``−Σ Δ ρ_r B`` does not change the argmin and is left out of the
    objective; :func:`mpc_dc.fleet_problem.fleet_plan_cost` reports the full
    settlement.
    """
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    rr = cp.Parameter((C, H), name="dr_reward_usd_per_kwh", nonneg=True)
    rp = cp.Parameter((C, H), name="dr_penalty_usd_per_kwh", nonneg=True)
    ctx.parameters.update(dr_reward_usd_per_kwh=rr, dr_penalty_usd_per_kwh=rp)
    v = ctx.variables
    L = column_weights(ctx)
    ctx.costs["dr_reward_usd"] = ctx.step_h * cp.sum(cp.multiply(rr, v["campus_power_kw"]) @ L)
    ctx.costs["dr_penalty_usd"] = ctx.step_h * cp.sum(cp.multiply(rp, v["dr_excess_kw"]) @ L)

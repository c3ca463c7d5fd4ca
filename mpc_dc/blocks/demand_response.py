"""DemandResponse block: event windows, baseline settlement, penalty above a cap.

Everything is per campus on its grid import (for a campus without renewable,
battery or export this is its facility power, as the DR programme of the fleet
study measures it). Settlement is linear and symmetric over the event intervals
(reward ``ρ_r (B − p_im)``, negative when the campus imports more than its baseline),
as programmes that settle net event performance do; a "reward only for reductions"
``ρ_r max(B − p_im, 0)`` would be non-convex. Outside events the prices are 0 and the
cap row is inactive, so the constraint matrix does not change with the schedule.
"""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks import ModelContext

#: Right-hand side that makes the cap row inactive outside event windows [MW].
INACTIVE_MW = 1e4


def define_demand_response(ctx: ModelContext) -> None:
    """Import above the cap during events.

    ``e[c,t] >= p_im[c,t] − K[c,t]``, ``e >= 0`` [u], K the cap in events (the
    Parameter ``dr_cap_rhs``, C × H [u]; :data:`INACTIVE_MW` outside).
    """
    if not ctx.demand_response:
        return
    C, H = ctx.n_campuses, ctx.horizon_steps
    e = cp.Variable((C, H), name="dr_excess", bounds=[0.0, None])
    ctx.variables["dr_excess"] = e
    K = cp.Parameter((C, H), name="dr_cap_rhs", nonneg=True)
    ctx.parameters["dr_cap_rhs"] = K
    ctx.add_constraints("DR cap", e - ctx.variables["import"] >= -K)


def define_demand_response_cost(ctx: ModelContext) -> None:
    """DR settlement ``−Σ L Δ ρ_r[c,t] (B[c,t] − p_im[c,t])`` and penalty
    ``Σ L Δ ρ_p[c,t] e[c,t]`` [$].

    ρ_r, ρ_p [$/kWh] are the Parameters ``dr_reward_usd_per_kwh`` and
    ``dr_penalty_usd_per_kwh`` (C × H), 0 outside events; B, p_im, e in [u] (×
    :attr:`ModelContext.kw_per_unit` to kW). The constant ``−Σ L Δ ρ_r B`` does not
    change the argmin and is left out of the objective; the cost breakdown, the LP
    bound and the MIP bound add it back.
    """
    if not ctx.demand_response:
        return
    C, H = ctx.n_campuses, ctx.horizon_steps
    rr = cp.Parameter((C, H), name="dr_reward_usd_per_kwh", nonneg=True)
    rp = cp.Parameter((C, H), name="dr_penalty_usd_per_kwh", nonneg=True)
    ctx.parameters.update(dr_reward_usd_per_kwh=rr, dr_penalty_usd_per_kwh=rp)
    v, L = ctx.variables, ctx.weights
    scale = ctx.step_h * ctx.kw_per_unit
    ctx.costs["dr_reward_usd"] = scale * cp.sum(cp.multiply(rr, v["import"]) @ L)
    ctx.costs["dr_penalty_usd"] = scale * cp.sum(cp.multiply(rp, v["dr_excess"]) @ L)

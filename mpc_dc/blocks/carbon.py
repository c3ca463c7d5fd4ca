"""Carbon block: a carbon price on the grid energy each campus draws."""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks.inference_fleet import FleetContext, column_weights


def carbon_cost_usd_per_mwh(carbon_price_usd_per_t: float, intensity_g_per_kwh: object) -> object:
    """Carbon cost of 1 MWh [$/MWh]: ``price [$/t] × κ [g/kWh = kg/MWh] / 1000``."""
    return carbon_price_usd_per_t * intensity_g_per_kwh / 1000.0  # type: ignore[operator]


def define_carbon_cost(ctx: FleetContext) -> None:
    """Carbon cost ``Σ_{c,t} L[t] Δ λ_CO2 κ[c,t] / 1000 · p[c,t] / 1000`` [$], p [kW].

    λ_CO2 [$/tCO2] is ``FleetConfig.carbon_price_usd_per_t``, κ [gCO2/kWh] the
    grid's intensity at the campus; their product enters as the Parameter
    ``carbon_cost_usd_per_mwh`` (C × H) [$/MWh] set by
    :func:`carbon_cost_usd_per_mwh`. All of a campus's power is drawn from the grid.
    """
    C, H = len(ctx.config.campuses), ctx.horizon_steps
    k = cp.Parameter((C, H), name="carbon_cost_usd_per_mwh", nonneg=True)
    ctx.parameters["carbon_cost_usd_per_mwh"] = k
    ctx.costs["carbon_usd"] = (ctx.step_h / 1e3) * cp.sum(
        cp.multiply(k, ctx.variables["campus_power_kw"]) @ column_weights(ctx))

"""GridConnection block: import/export, power balance, energy cost, demand charge."""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks import ModelContext


def define_grid_variables(ctx: ModelContext) -> None:
    """Import and export power with their limits.

    ``0 <= p_im[t] <= P_im_max``, ``0 <= p_ex[t] <= P_ex_max`` [MW].
    """
    H = ctx.horizon_steps
    grid = ctx.config.grid
    ctx.variables["import_mw"] = cp.Variable(H, name="import_mw",
                                             bounds=[0.0, grid.import_limit_mw])
    ctx.variables["export_mw"] = cp.Variable(H, name="export_mw",
                                             bounds=[0.0, grid.export_limit_mw])


def define_power_balance(ctx: ModelContext) -> None:
    """Site power balance [MW].

    ``p_im − p_ex + r + dis − ch = PUE · P_it`` for every interval.
    """
    v = ctx.variables
    supply = v["import_mw"] - v["export_mw"] + v["renewable_used_mw"]
    if "battery_charge_mw" in v:
        supply = supply + v["battery_discharge_mw"] - v["battery_charge_mw"]
    ctx.add_constraints("power balance",
                        supply - ctx.config.datacenter.pue * v["it_power_mw"] == 0)


def define_import_export_exclusivity(ctx: ModelContext) -> None:
    """No simultaneous import and export (eq. 3i), exact form only.

    ``p_im <= P_im_max · u``, ``p_ex <= P_ex_max · (1 − u)``, ``u[t] ∈ {0, 1}``.
    The LP omits it: simultaneous flows are never strictly better when π⁺ >= π⁻.
    """
    if not ctx.exact:
        return
    grid = ctx.config.grid
    u = cp.Variable(ctx.horizon_steps, name="importing", boolean=True)
    ctx.variables["importing"] = u
    ctx.add_constraints("import/export exclusivity",
                        ctx.variables["import_mw"] <= grid.import_limit_mw * u,
                        ctx.variables["export_mw"] <= grid.export_limit_mw * (1 - u))


def define_energy_cost(ctx: ModelContext) -> None:
    """Energy cost and export revenue [$].

    ``Σ_t Δ π⁺[t] p_im[t]`` and ``Σ_t Δ π⁻[t] p_ex[t]``; wholesale sets
    π⁺ = π⁻ = LMP. Prices are the Parameters ``import_price_usd_per_mwh`` and
    ``export_price_usd_per_mwh`` [$/MWh].
    """
    H = ctx.horizon_steps
    pi_im = cp.Parameter(H, name="import_price_usd_per_mwh")
    pi_ex = cp.Parameter(H, name="export_price_usd_per_mwh")
    ctx.parameters.update(import_price_usd_per_mwh=pi_im, export_price_usd_per_mwh=pi_ex)
    ctx.costs["energy_import_usd"] = ctx.step_h * (pi_im @ ctx.variables["import_mw"])
    ctx.costs["export_revenue_usd"] = -ctx.step_h * (pi_ex @ ctx.variables["export_mw"])


def define_demand_charge(ctx: ModelContext) -> None:
    """Demand charge on the billing-period 15-min peak import [$].

    ``pk >= p_im[t]`` for all t, ``pk >= pk0`` (Parameter
    ``peak_import_to_date_mw``, the peak so far in the billing period) and cost
    ``λ · pk`` with λ [$/MW]. The bill increment of the horizon is
    ``λ (pk − pk0)``; the constant ``λ pk0`` does not change the argmin.
    """
    tariff = ctx.config.grid.tariff
    if tariff.kind != "retail" or tariff.demand_charge_usd_per_kw <= 0:
        return
    pk = cp.Variable(name="peak_import_mw", bounds=[0.0, None])
    pk0 = cp.Parameter(name="peak_import_to_date_mw", nonneg=True)
    ctx.variables["peak_import_mw"] = pk
    ctx.parameters["peak_import_to_date_mw"] = pk0
    ctx.add_constraints("demand charge peak", pk >= ctx.variables["import_mw"], pk >= pk0)
    ctx.costs["demand_charge_usd"] = tariff.demand_charge_usd_per_mw * pk

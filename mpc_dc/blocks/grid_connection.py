"""GridConnection block: import/export, per-campus power balance, exclusivity, energy
cost, demand charge."""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from mpc_dc.blocks import ModelContext


def define_grid_variables(ctx: ModelContext) -> None:
    """Import (every campus) and export (campuses with an export limit) with limits.

    ``0 <= p_im[c,t] <= P_im_max[c]``, ``0 <= p_ex[c,t] <= P_ex_max[c]`` [u].
    """
    C, H = ctx.n_campuses, ctx.horizon_steps
    camps = ctx.site.campuses
    lim = np.array([c.grid.import_limit_mw for c in camps]) / ctx.unit_mw  # inf: no limit
    ctx.variables["import"] = cp.Variable((C, H), name="import",
                                          bounds=[0.0, np.repeat(lim[:, None], H, axis=1)])
    if ctx.export.size:
        ex = np.array([camps[int(c)].grid.export_limit_mw for c in ctx.export]) / ctx.unit_mw
        ctx.variables["export"] = cp.Variable(
            (ctx.export.size, H), name="export", bounds=[0.0, np.repeat(ex[:, None], H, axis=1)])


def define_power_balance(ctx: ModelContext) -> None:
    """Power balance of every campus and column [u].

    ``p_im − p_ex + r + dis − ch = PUE · P_other + PUE · P_inference``: import minus
    export plus renewable used plus battery discharge minus charge equals the
    facility power of other IT and of the inference pools (terms of absent blocks are
    0).
    """
    v, e = ctx.variables, ctx.expressions
    supply = v["import"]
    if "export" in v:
        supply = supply - ctx.select(ctx.export) @ v["export"]
    if "renewable_used" in v:
        supply = supply + ctx.select(ctx.renewable) @ v["renewable_used"]
    if "battery_charge" in v:
        supply = supply + ctx.select(ctx.battery) @ (v["battery_discharge"] - v["battery_charge"])
    if "other_it_power" in v:
        pue = ctx.pue[ctx.other_it]
        supply = supply - ctx.select(ctx.other_it) @ (
            cp.multiply(np.repeat(pue[:, None], ctx.horizon_steps, axis=1),
                        v["other_it_power"]))
    if "inference_facility" in e:
        supply = supply - e["inference_facility"]
    ctx.add_constraints("power balance", supply == 0)


def define_import_export_exclusivity(ctx: ModelContext) -> None:
    """No simultaneous import and export (eq. 3i), exact form only, exporting campuses.

    ``p_im <= M · b``, ``p_ex <= P_ex_max · (1 − b)``, ``b[c,t] ∈ {0, 1}``, with M the
    import limit (or, where it is unlimited, the campus's largest possible import:
    its facility power at full load plus battery charging, :func:`import_bound_mw`).
    The LP omits it: simultaneous flows are never strictly better when π⁺ >= π⁻.
    """
    if not ctx.exact or not ctx.export.size:
        return
    n, H = ctx.export.size, ctx.horizon_steps
    camps = ctx.site.campuses
    big = np.array([import_bound_mw(ctx, int(c)) for c in ctx.export]) / ctx.unit_mw
    ex = np.array([camps[int(c)].grid.export_limit_mw for c in ctx.export]) / ctx.unit_mw
    b = cp.Variable((n, H), name="importing", boolean=True)
    ctx.variables["importing"] = b
    ctx.binary_campuses["importing"] = ctx.export
    M = np.repeat(big[:, None], H, axis=1)
    X = np.repeat(ex[:, None], H, axis=1)
    ctx.add_constraints("import/export exclusivity",
                        ctx.select(ctx.export).T @ ctx.variables["import"]
                        - cp.multiply(M, b) <= 0,
                        ctx.variables["export"] + cp.multiply(X, b) <= X)


def import_bound_mw(ctx: ModelContext, campus: int) -> float:
    """Largest import campus ``campus`` can need [MW]: its import limit if finite,
    else PUE × (other-IT capacity + its pools' power with every GPU busy at the
    SLO) + battery charge power."""
    c = ctx.site.campuses[campus]
    if np.isfinite(c.grid.import_limit_mw):
        return float(c.grid.import_limit_mw)
    it = 0.0 if c.other_it is None else c.other_it.it_capacity_mw
    pools = np.flatnonzero(ctx.campus_of == campus)
    if pools.size:
        cap = ctx.site.fleet.utilization_cap if ctx.site.fleet is not None else 1.0
        per_gpu_w = (ctx.idle_w[pools] + ctx.energy_j_per_token[pools] * cap
                     * ctx.mu_tokens_per_s[pools]) / ctx.gpus[pools]
        it += c.gpus * float(per_gpu_w.max()) / 1e6
    bat = 0.0 if c.battery is None else c.battery.power_mw
    return c.pue * it + bat + 1.0


def define_energy_cost(ctx: ModelContext) -> None:
    """Energy cost and export revenue [$].

    ``Σ_{c,t} L[t] Δ π⁺[c,t] p_im[c,t]`` and ``Σ_{c,t} L[t] Δ π⁻[c,t] p_ex[c,t]`` (× u
    in MW); wholesale sets π⁺ = π⁻ = the node's price. Prices are the Parameters
    ``import_price_usd_per_mwh`` (C × H) and ``export_price_usd_per_mwh`` (C_x × H,
    exporting campuses) [$/MWh].
    """
    C, H = ctx.n_campuses, ctx.horizon_steps
    scale = ctx.step_h * ctx.unit_mw
    pi_im = cp.Parameter((C, H), name="import_price_usd_per_mwh")
    ctx.parameters["import_price_usd_per_mwh"] = pi_im
    ctx.costs["energy_import_usd"] = scale * cp.sum(
        cp.multiply(pi_im, ctx.variables["import"]) @ ctx.weights)
    if not ctx.export.size:
        return
    pi_ex = cp.Parameter((ctx.export.size, H), name="export_price_usd_per_mwh")
    ctx.parameters["export_price_usd_per_mwh"] = pi_ex
    ctx.costs["export_revenue_usd"] = -scale * cp.sum(
        cp.multiply(pi_ex, ctx.variables["export"]) @ ctx.weights)


def define_demand_charge(ctx: ModelContext) -> None:
    """Demand charge on each retail campus's billing-period 15-min peak import [$].

    ``pk[c] >= p_im[c,t]`` for all t, ``pk[c] >= pk0[c]`` (Parameter
    ``peak_import_to_date``, the peak so far in the billing period [u]) and cost
    ``λ[c] · pk[c]`` with λ [$/MW]. The bill increment of the horizon is
    ``λ (pk − pk0)``; the constant ``λ pk0`` does not change the argmin (the cost
    breakdown and the bounds take it off).
    """
    idx = ctx.demand_charge
    n = idx.size
    if not n:
        return
    pk = cp.Variable(n, name="peak_import", bounds=[0.0, None])
    pk0 = cp.Parameter(n, name="peak_import_to_date", nonneg=True)
    ctx.variables["peak_import"] = pk
    ctx.parameters["peak_import_to_date"] = pk0
    imp = ctx.variables["import"]
    lam = ctx.demand_charge_usd_per_mw
    rows = [pk[j] >= imp[int(c), :] for j, c in enumerate(idx)]
    ctx.add_constraints("demand charge peak", *rows, pk >= pk0)
    ctx.costs["demand_charge_usd"] = ctx.unit_mw * (lam @ pk)

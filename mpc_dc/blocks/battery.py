"""Optional battery block."""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks import ModelContext


def define_battery(ctx: ModelContext) -> None:
    """Battery charge, discharge and energy.

    ``e[t] = e[t-1] + Δ (η_c · ch[t] − dis[t] / η_d)``, ``e[-1] = e0`` [MWh],
    ``0 <= e <= E``, ``0 <= ch, dis <= P_B`` [MW], terminal ``e[H-1] >= e0`` so a
    finite horizon cannot sell the stored energy for free. In the exact form a
    binary ``v[t]`` forbids charging and discharging in the same interval:
    ``ch <= P_B v``, ``dis <= P_B (1 − v)``.
    """
    bat = ctx.config.battery
    if bat is None:
        return
    H, dt = ctx.horizon_steps, ctx.step_h
    ch = cp.Variable(H, name="battery_charge_mw", bounds=[0.0, bat.power_mw])
    dis = cp.Variable(H, name="battery_discharge_mw", bounds=[0.0, bat.power_mw])
    e = cp.Variable(H, name="battery_energy_mwh", bounds=[0.0, bat.energy_mwh])
    e0 = cp.Parameter(name="battery_initial_energy_mwh", nonneg=True)
    ctx.variables.update(battery_charge_mw=ch, battery_discharge_mw=dis, battery_energy_mwh=e)
    ctx.parameters["battery_initial_energy_mwh"] = e0
    flow = dt * (bat.charge_efficiency * ch - dis / bat.discharge_efficiency)
    ctx.add_constraints("battery energy balance", e[0] - flow[0] == e0)
    if H > 1:
        ctx.add_constraints("battery energy balance", e[1:] - e[:-1] - flow[1:] == 0)
    ctx.add_constraints("battery terminal energy", e[H - 1] >= e0)
    if ctx.exact:
        v = cp.Variable(H, name="battery_charging", boolean=True)
        ctx.variables["battery_charging"] = v
        ctx.add_constraints("battery charge/discharge exclusivity",
                            ch <= bat.power_mw * v, dis <= bat.power_mw * (1 - v))

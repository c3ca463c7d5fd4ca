"""Optional battery block, per campus with a battery."""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from mpc_dc.blocks import ModelContext


def define_battery(ctx: ModelContext) -> None:
    """Battery charge, discharge and energy.

    ``e[c,t] = e[c,t−1] + L[t] Δ (η_c · ch[c,t] − dis[c,t] / η_d)``, ``e[c,−1] = e0[c]``
    [u·h], ``0 <= e <= E``, ``0 <= ch, dis <= P_B`` [u], terminal ``e[c,H−1] >= e0[c]``
    so a finite horizon cannot sell the stored energy for free. In the exact form a
    binary ``v[c,t]`` forbids charging and discharging in the same interval:
    ``ch <= P_B v``, ``dis <= P_B (1 − v)``.
    """
    idx = ctx.battery
    n, H = idx.size, ctx.horizon_steps
    if not n:
        return
    bats = [ctx.site.campuses[int(c)].battery for c in idx]
    power = np.array([b.power_mw for b in bats]) / ctx.unit_mw  # type: ignore[union-attr]
    energy = np.array([b.energy_mwh for b in bats]) / ctx.unit_mw  # type: ignore[union-attr]
    eta_c = np.array([b.charge_efficiency for b in bats])  # type: ignore[union-attr]
    eta_d = np.array([b.discharge_efficiency for b in bats])  # type: ignore[union-attr]
    P = np.repeat(power[:, None], H, axis=1)
    ch = cp.Variable((n, H), name="battery_charge", bounds=[0.0, P])
    dis = cp.Variable((n, H), name="battery_discharge", bounds=[0.0, P])
    e = cp.Variable((n, H), name="battery_energy", bounds=[0.0, np.repeat(energy[:, None], H,
                                                                          axis=1)])
    e0 = cp.Parameter(n, name="battery_initial_energy", nonneg=True)
    ctx.variables.update(battery_charge=ch, battery_discharge=dis, battery_energy=e)
    ctx.parameters["battery_initial_energy"] = e0
    dt = ctx.step_h * ctx.weights[None, :]
    flow = (cp.multiply(dt * eta_c[:, None], ch)
            - cp.multiply(np.repeat(dt, n, axis=0) / eta_d[:, None], dis))
    ctx.add_constraints("battery energy balance", e[:, 0] - flow[:, 0] == e0)
    if H > 1:
        ctx.add_constraints("battery energy balance", e[:, 1:] - e[:, :-1] - flow[:, 1:] == 0)
    ctx.add_constraints("battery terminal energy", e[:, H - 1] >= e0)
    if ctx.exact:
        v = cp.Variable((n, H), name="battery_charging", boolean=True)
        ctx.variables["battery_charging"] = v
        ctx.binary_campuses["battery_charging"] = ctx.battery
        ctx.add_constraints("battery charge/discharge exclusivity",
                            ch - cp.multiply(P, v) <= 0, dis + cp.multiply(P, v) <= P)

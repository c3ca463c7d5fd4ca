"""Renewable block: available power = capacity factor × nameplate, curtailment free."""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks import ModelContext


def define_renewable(ctx: ModelContext) -> None:
    """Renewable power used on site, per campus with a renewable plant.

    ``0 <= r[c,t] <= η[c,t] · Q_R[c]`` [u]

    The Parameter ``renewable_available`` (C_r × H) holds ``η Q_R`` [u] (the mean
    over a coarse column's intervals); the difference ``η Q_R − r`` is curtailed at
    no cost.
    """
    n = ctx.renewable.size
    if not n:
        return
    H = ctx.horizon_steps
    r = cp.Variable((n, H), name="renewable_used", bounds=[0.0, None])
    avail = cp.Parameter((n, H), name="renewable_available", nonneg=True)
    ctx.variables["renewable_used"] = r
    ctx.parameters["renewable_available"] = avail
    ctx.add_constraints("renewable availability", r <= avail)

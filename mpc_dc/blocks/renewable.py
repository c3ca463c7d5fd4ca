"""Renewable block: available power = capacity factor × nameplate, curtailment free."""

from __future__ import annotations

import cvxpy as cp

from mpc_dc.blocks import ModelContext


def define_renewable(ctx: ModelContext) -> None:
    """Renewable power used on site.

    ``0 <= r[t] <= η[t] · Q_R``  [MW]

    The Parameter ``renewable_available_mw`` holds ``η[t] · Q_R`` [MW]; the
    difference ``η[t] · Q_R − r[t]`` is curtailed (at no cost).
    """
    H = ctx.horizon_steps
    r = cp.Variable(H, name="renewable_used_mw", bounds=[0.0, None])
    avail = cp.Parameter(H, name="renewable_available_mw", nonneg=True)
    ctx.variables["renewable_used_mw"] = r
    ctx.parameters["renewable_available_mw"] = avail
    ctx.add_constraints("renewable availability", r <= avail)

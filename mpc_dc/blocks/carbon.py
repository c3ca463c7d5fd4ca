"""Carbon block: a carbon price on the grid energy each campus imports."""

from __future__ import annotations

from typing import overload

import cvxpy as cp
import numpy as np
from numpy.typing import NDArray

from mpc_dc.blocks import ModelContext


@overload
def carbon_cost_usd_per_mwh(carbon_price_usd_per_t: float,
                            intensity_g_per_kwh: float) -> float: ...


@overload
def carbon_cost_usd_per_mwh(carbon_price_usd_per_t: float,
                            intensity_g_per_kwh: NDArray[np.floating]
                            ) -> NDArray[np.floating]: ...


def carbon_cost_usd_per_mwh(carbon_price_usd_per_t: float,
                            intensity_g_per_kwh: float | NDArray[np.floating]
                            ) -> float | NDArray[np.floating]:
    """Carbon cost of 1 MWh [$/MWh]: ``price [$/t] × κ [g/kWh = kg/MWh] / 1000``.

    Parameters
    ----------
    carbon_price_usd_per_t : float [$/tCO2]
    intensity_g_per_kwh : float or ndarray [gCO2/kWh]
        One intensity (the plant's realized interval) or an array (a horizon).

    Returns
    -------
    float or ndarray [$/MWh]
        Of the intensity's shape.
    """
    return carbon_price_usd_per_t * intensity_g_per_kwh / 1000.0


def define_carbon_cost(ctx: ModelContext) -> None:
    """Carbon cost ``Σ_{c,t} L[t] Δ · λ_CO2 κ[c,t] / 1000 · p_im[c,t]`` [$], p_im [u].

    λ_CO2 [$/tCO2] is :attr:`Site.carbon_price_usd_per_t`, κ [gCO2/kWh = kg/MWh] the
    grid's intensity at the campus; their product ``λ_CO2 κ / 1000`` enters as the
    Parameter ``carbon_cost_usd_per_mwh`` (C × H) [$/MWh]. Only grid import carries
    carbon: renewable energy used on site and exports carry none.
    """
    C, H = ctx.n_campuses, ctx.horizon_steps
    k = cp.Parameter((C, H), name="carbon_cost_usd_per_mwh", nonneg=True)
    ctx.parameters["carbon_cost_usd_per_mwh"] = k
    ctx.costs["carbon_usd"] = (ctx.step_h * ctx.unit_mw) * cp.sum(
        cp.multiply(k, ctx.variables["import"]) @ ctx.weights)

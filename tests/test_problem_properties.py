"""Property tests on random 2-4-interval instances.

1. When the exactness conditions hold (π⁺ >= π⁻ >= 0), the LP relaxation and the
   exact MILP reach the same optimal cost, and the repaired LP plan is exact.
2. The exact MILP is never worse than any feasible schedule found by brute force
   on a coarse grid (deferrable work in quarters of the backlog; in each interval
   the grid exchange is one of: import with renewable used first, import with all
   renewable curtailed, export all surplus, curtail all surplus).
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_dc.params.site import (
    DataCenterParams,
    GridParams,
    ProcessingFunction,
    RenewableParams,
    SiteConfig,
    TariffParams,
)
from mpc_dc.problem import (
    Formulation,
    HorizonInputs,
    PlantState,
    RcdcProblem,
    SolveStatus,
)

F3 = ProcessingFunction(power_frac=(0.0, 0.4, 0.8, 1.0), work_frac=(0.0, 0.5, 0.85, 1.0))
LAMBDA_USD_PER_KW = 0.5
CAP_MW = 10.0


def _site(retail: bool) -> SiteConfig:
    tariff = (TariffParams(kind="retail", demand_charge_usd_per_kw=LAMBDA_USD_PER_KW)
              if retail else TariffParams())
    return SiteConfig(
        datacenter=DataCenterParams(it_capacity_mw=CAP_MW, processing=F3),
        renewable=RenewableParams(nameplate_mw=8.0),
        grid=GridParams(import_limit_mw=30.0, export_limit_mw=30.0, tariff=tariff),
    )


@cache
def _problem(H: int, retail: bool, formulation: Formulation) -> RcdcProblem:
    return RcdcProblem(_site(retail), H, formulation=formulation)


@st.composite
def instances(draw: st.DrawFn, *, exact_conditions: bool
              ) -> tuple[bool, HorizonInputs, PlantState]:
    H = draw(st.integers(2, 4))
    retail = draw(st.booleans())
    price = st.floats(0.0 if exact_conditions else -40.0, 100.0, allow_nan=False)
    pi_im = np.array([draw(price) for _ in range(H)])
    if retail and exact_conditions:
        pi_ex = np.array([draw(st.floats(0.0, 1.0)) for _ in range(H)]) * pi_im
    elif retail:
        pi_ex = np.array([draw(price) for _ in range(H)])
    else:
        pi_ex = pi_im
    cf = np.array([draw(st.floats(0.0, 1.0)) for _ in range(H)])
    nd = np.array([draw(st.floats(0.0, 1.2)) for _ in range(H)])
    backlog = draw(st.floats(0.0, 1.0)) * (2.5 * H - nd.sum()) * 0.8
    avail = np.full(H, backlog)
    due = np.zeros(H)
    due[-1] = backlog
    inputs = HorizonInputs(pi_im, pi_ex, cf, nd)
    return retail, inputs, PlantState(due, avail)


SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(instances(exact_conditions=True))
def test_relaxed_equals_exact_under_conditions(case: tuple[bool, HorizonInputs, PlantState]
                                               ) -> None:
    retail, inputs, state = case
    H = inputs.horizon_steps
    relaxed = _problem(H, retail, Formulation.RELAXED).solve(inputs, state)
    exact = _problem(H, retail, Formulation.EXACT).solve(inputs, state)
    assert relaxed.status is exact.status is SolveStatus.OPTIMAL
    assert relaxed.message == ""
    assert np.isclose(relaxed.objective_usd, exact.objective_usd, rtol=1e-6, atol=1e-5)
    plan = relaxed.plan
    assert plan is not None
    dc = _site(retail).datacenter
    work = plan.work_nd_wu + plan.work_df_wu
    np.testing.assert_allclose(plan.it_power_mw,
                               dc.processing.inverse_mw(work / 0.25, CAP_MW), atol=1e-6)
    assert np.all(np.minimum(plan.import_mw, plan.export_mw) <= 1e-7)


def _brute_force(retail: bool, inputs: HorizonInputs, state: PlantState) -> float:
    H = inputs.horizon_steps
    site = _site(retail)
    dc = site.datacenter
    backlog = float(state.df_due_cum_wu[-1])
    nd = inputs.work_nd_wu
    avail_mw = inputs.renewable_cf * site.renewable.nameplate_mw
    best = np.inf
    quarters = [q for q in itertools.product(range(5), repeat=H) if sum(q) == 4]
    for q in quarters:
        work = nd + backlog * np.array(q) / 4.0
        if np.any(work > 0.25 * CAP_MW + 1e-9):
            continue
        p = dc.processing.inverse_mw(work / 0.25, CAP_MW)
        options = []
        for t in range(H):
            used = min(p[t], avail_mw[t])
            surplus = avail_mw[t] - p[t]
            opts = [(p[t] - used, 0.0), (p[t], 0.0)]
            if surplus >= 0:
                opts += [(0.0, surplus), (0.0, 0.0)]
            options.append(opts)
        for choice in itertools.product(*options):
            imp = np.array([c[0] for c in choice])
            exp = np.array([c[1] for c in choice])
            cost = 0.25 * (inputs.import_price_usd_per_mwh @ imp
                           - inputs.export_price_usd_per_mwh @ exp)
            if retail:
                cost += 1000 * LAMBDA_USD_PER_KW * imp.max()
            best = min(best, cost)
    return float(best)


@SETTINGS
@given(instances(exact_conditions=False))
def test_exact_never_worse_than_brute_force(case: tuple[bool, HorizonInputs, PlantState]
                                            ) -> None:
    retail, inputs, state = case
    H = inputs.horizon_steps
    exact = _problem(H, retail, Formulation.EXACT).solve(inputs, state)
    assert exact.status is SolveStatus.OPTIMAL
    brute = _brute_force(retail, inputs, state)
    # HiGHS treats flows below its feasibility tolerance (~1e-6 MW here) as zero; a
    # schedule can differ by that much in every interval, priced at the largest price.
    prices = np.abs(np.concatenate([inputs.import_price_usd_per_mwh,
                                    inputs.export_price_usd_per_mwh]))
    solver_tol_usd = 1e-6 * float(prices.max()) * 0.25 * H
    assert exact.objective_usd <= brute + solver_tol_usd + 1e-5 * (1.0 + abs(brute))

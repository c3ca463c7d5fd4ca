"""The exact formulation's binaries where the relaxation can be inexact only, solved by
enumeration of warm LPs when they are few (docs/formulation.md, "Exactness and
instance round-and-fix together"; issue 14's wind-fleet speed).

Site of tests/test_problem_rcdc.py (one campus, other IT 10 MW with a two-segment F,
import and export 20 MW) with 10 MW of renewable. Each solve of the ``auto``
formulation is checked against the same instance with every binary integer (the
``exact`` formulation, a HiGHS MIP): same optimum, and a plan on F's graph without
simultaneous import and export.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpc_dc.problem import Formulation, HorizonInputs, PlantState, SolveResult, inexact_columns
from mpc_dc.site.config import Tariff
from tests.test_problem_properties import inputs_of, state_of, wholesale
from tests.test_problem_rcdc import F2, plan_of, problem, site

RETAIL = Tariff(kind="retail")


def assert_mip_feasible(result: SolveResult) -> None:
    """W = F(P) and exclusive import/export in every interval of the plan."""
    plan = plan_of(result)
    work = plan.work_df_wu[0] + plan.work_nd_wu[0]
    np.testing.assert_allclose(plan.other_it_mw[0], F2.inverse_mw(work / 0.25, 10.0),
                               atol=1e-6)
    np.testing.assert_allclose(np.minimum(plan.import_mw[0], plan.export_mw[0]), 0.0,
                               atol=1e-6)


def test_inexact_columns_marks_entries_not_campuses() -> None:
    """Only the interval with a negative price (1) or an export price above the import
    price (2) needs binaries."""
    inputs = inputs_of(np.array([30.0, -20.0, 40.0]), np.array([30.0, -20.0, 50.0]),
                       np.zeros(3), np.zeros(3))
    marks = inexact_columns(site(), inputs.import_price_usd_per_mwh,
                            inputs.export_price_usd_per_mwh)
    np.testing.assert_array_equal(marks, [[False, True, True]])


def test_binaries_only_where_the_relaxation_can_be_inexact() -> None:
    """LMP [30, −20, 40] $/MWh, wind cf [0.2, 0, 0.6], 1.5 WU non-deferrable and 2 WU
    deferrable due by the end. Only interval 1 needs its two binaries (segment order,
    import/export), so the run is an LP with them enumerated, not a HiGHS MIP, and its
    optimum is the MIP's with a plan on F's graph."""
    inputs = wholesale(np.array([30.0, -20.0, 40.0]), np.array([0.2, 0.0, 0.6]),
                       np.full(3, 1.5))
    state = state_of(np.array([0.0, 0.0, 2.0]), np.full(3, 2.0))
    prob = problem(site(nameplate_mw=10.0), 3)
    result = prob.solve(inputs, state)
    assert result.formulation is Formulation.EXACT
    assert not prob.model(True).fast.is_mip  # HiGHS solved LPs only
    exact = problem(site(nameplate_mw=10.0), 3, Formulation.EXACT).solve(inputs, state)
    assert result.objective_usd == pytest.approx(exact.objective_usd, abs=1e-6)
    assert result.mip_gap == pytest.approx(0.0, abs=1e-9)
    assert_mip_feasible(result)


def test_exact_formulation_warm_starts_across_steps() -> None:
    """A receding step of the exact formulation (a negative price in the tail, none in
    the committed interval) starts from the last step's basis, shifted."""
    prices = np.array([30.0, 40.0, -20.0, 35.0, 50.0])
    prob = problem(site(nameplate_mw=10.0), 4)
    prob.options = type(prob.options)(binary_intervals=1)
    state = state_of(np.zeros(4), np.zeros(4))
    for step in range(2):
        inputs = wholesale(prices[step: step + 4], np.full(4, 0.3), np.full(4, 1.5))
        result = prob.solve(inputs, state)
        assert result.formulation is Formulation.EXACT
    assert prob.last_warm_start == "shift"


@pytest.mark.parametrize("seed", range(12))
def test_auto_matches_every_binary_integer(seed: int) -> None:
    """Random retail instances (prices in [−30, 60] $/MWh, export price sometimes above
    import, wind, deferrable work), binaries integer everywhere: the ``auto`` solve
    (binaries where needed, enumerated) reaches the MIP's optimum with a feasible plan."""
    rng = np.random.default_rng(seed)
    H = 4
    pi_im = rng.uniform(-30.0, 60.0, H)
    pi_ex = pi_im + rng.choice([-10.0, 0.0, 15.0], H)
    inputs: HorizonInputs = inputs_of(pi_im, pi_ex, rng.uniform(0.0, 1.0, H),
                                      rng.uniform(0.0, 2.0, H))
    state: PlantState = state_of(np.array([0.0, 0.0, 0.0, 1.0]), np.full(H, 1.0))
    the_site = site(RETAIL, nameplate_mw=10.0)
    result = problem(the_site, H).solve(inputs, state)
    exact = problem(the_site, H, Formulation.EXACT).solve(inputs, state)
    assert result.objective_usd == pytest.approx(exact.objective_usd, rel=1e-7, abs=1e-6)
    assert_mip_feasible(result)

"""Hand-solvable RCDC instances of the one problem (2-3 intervals) with derived optima,
and the resident HiGHS model == cvxpy's own solve of the same problem.

Common site for the hand instances (unless a test says otherwise): one campus "dc"
without GPUs, other IT of capacity
10 MW, PUE 1, processing function with two segments, F(P) = 1.2 P for
P <= 5 MW and F(P) = 6 + 0.8 (P − 5) above [WU/h], so one interval (Δ = 0.25 h)
at P = 5 MW does 0.25 · 6 = 1.5 WU and at 10 MW 2.5 WU. Import and export limits
20 MW. No renewable unless stated.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpc_dc.benchmarking import rcdc_site
from mpc_dc.problem import (
    CostBreakdown,
    Formulation,
    HorizonInputs,
    InfeasibleInputError,
    Plan,
    PlantState,
    Problem,
    SolveResult,
    SolveStatus,
    choose_formulation,
    objective_offset_usd,
    set_parameters,
)
from mpc_dc.site.config import Campus, Grid, OtherIT, ProcessingFunction, Renewable, Site, Tariff
from tests.test_problem_properties import inputs_of, no_deferrable, state_of, wholesale


def plan_of(result: SolveResult) -> Plan:
    assert result.plan is not None, result.message
    return result.plan


def cost_of(result: SolveResult) -> CostBreakdown:
    assert result.cost is not None, result.message
    return result.cost


F2 = ProcessingFunction(power_frac=(0.0, 0.5, 1.0), work_frac=(0.0, 0.6, 1.0))


def site(tariff: Tariff | None = None, nameplate_mw: float = 0.0) -> Site:
    return Site((Campus("dc", "F", pue=1.0,
                        other_it=OtherIT(it_capacity_mw=10.0, processing=F2),
                        renewable=Renewable(nameplate_mw) if nameplate_mw else None,
                        grid=Grid(import_limit_mw=20.0, export_limit_mw=20.0,
                                  tariff=tariff or Tariff())),))


def problem(site_: Site, H: int, formulation: Formulation | str = "auto") -> Problem:
    """The one problem of a site without a DR programme."""
    return Problem(site_, H, formulation=formulation,  # type: ignore[arg-type]
                   demand_response=False)


def cvxpy_objective_usd(prob: Problem, exact: bool, inputs: HorizonInputs,
                        state: PlantState) -> float:
    """cvxpy's own HiGHS solve of a compiled model (not the resident model) [$]."""
    model = prob.model(exact)
    set_parameters(model.ctx, inputs, state)
    model.problem.solve(solver="HIGHS")
    return float(model.problem.value) - objective_offset_usd(model.ctx)


def test_wholesale_two_intervals() -> None:
    """LMP = [10, 50] $/MWh; 1.5 WU deferrable released at 0, due by the end of 1.

    Doing all 1.5 WU in one interval
    needs rate 6 WU/h, P = 5 MW (still on the 1.2 WU/MWh segment), so splitting
    saves nothing on efficiency and every WU is cheaper in interval 0.
    Optimum: import = [5, 0] MW, cost = 0.25 h · 5 MW · 10 $/MWh = 12.5 $.
    """
    inputs = wholesale(np.array([10.0, 50.0]), np.zeros(2), np.zeros(2))
    state = state_of(np.array([0.0, 1.5]), np.array([1.5, 1.5]))
    result = problem(site(), 2).solve(inputs, state)
    assert result.status is SolveStatus.OPTIMAL
    assert result.formulation is Formulation.RELAXED
    assert result.objective_usd == pytest.approx(12.5, abs=1e-6)
    np.testing.assert_allclose(plan_of(result).import_mw[0], [5.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(plan_of(result).work_df_wu[0], [1.5, 0.0], atol=1e-6)


def test_retail_demand_charge_equalises_peak() -> None:
    """π⁺ = π⁻ = [10, 20] $/MWh, λ = 1 $/kW = 1000 $/MW, 1.5 WU due by the end of 1.

    Energy alone favours interval 0 (P = [5, 0], 12.5 $ + 5000 $ demand charge).
    Any w0 + w1 = 1.5 with w0 != w1 raises the peak max(P0, P1) >= 2.5 MW, and
    each MW of peak costs 1000 $ against at most 2.5 $ of energy, so the optimum
    equalises: w = [0.75, 0.75] WU, rate 3 WU/h, P = [2.5, 2.5] MW.
    Cost = 0.25 · (10 + 20) · 2.5 + 1000 · 2.5 = 18.75 + 2500 = 2518.75 $.
    """
    tariff = Tariff(kind="retail", demand_charge_usd_per_kw=1.0)
    prices = np.array([10.0, 20.0])
    inputs = inputs_of(prices, prices, np.zeros(2), np.zeros(2))
    state = state_of(np.array([0.0, 1.5]), np.array([1.5, 1.5]))
    result = problem(site(tariff), 2).solve(inputs, state)
    assert result.objective_usd == pytest.approx(2518.75, abs=1e-5)
    np.testing.assert_allclose(plan_of(result).import_mw[0], [2.5, 2.5], atol=1e-6)
    assert cost_of(result).demand_charge_usd == pytest.approx(2500.0, abs=1e-5)


def test_retail_peak_to_date_is_state() -> None:
    """Same as above but the billing period already peaked at 4 MW.

    Imports up to 4 MW add no demand charge, so fill the cheap interval up to
    P0 = 4 MW (work 0.25 · 4.8 = 1.2 WU) and do the remaining 0.3 WU at
    P1 = 0.3 / 0.25 / 1.2 = 1 MW. Going above 4 MW would cost 1000 $/MW against a
    saving of 2.5 $/MW. Cost = 0.25 · (10 · 4 + 20 · 1) = 15 $, demand charge 0.
    """
    tariff = Tariff(kind="retail", demand_charge_usd_per_kw=1.0)
    prices = np.array([10.0, 20.0])
    inputs = inputs_of(prices, prices, np.zeros(2), np.zeros(2))
    state = state_of(np.array([0.0, 1.5]), np.array([1.5, 1.5]), peak_mw=4.0)
    result = problem(site(tariff), 2).solve(inputs, state)
    assert result.objective_usd == pytest.approx(15.0, abs=1e-6)
    np.testing.assert_allclose(plan_of(result).import_mw[0], [4.0, 1.0], atol=1e-6)
    assert cost_of(result).demand_charge_usd == pytest.approx(0.0, abs=1e-6)


def test_negative_price_needs_exact_form() -> None:
    """LMP = [−20, 30] $/MWh, non-deferrable 1.5 WU in each interval.

    Exact: W = F(P) pins P = [5, 5] MW; cost = 0.25 · (−20 · 5 + 30 · 5) = 12.5 $.
    The LP (W <= F(P)) burns the full 10 MW in interval 0 to collect the negative
    price: 0.25 · (−20 · 10 + 30 · 5) = −12.5 $ < 12.5 $, so it is not exact and
    ``choose_formulation`` must pick the MILP.
    """
    inputs = wholesale(np.array([-20.0, 30.0]), np.zeros(2), np.array([1.5, 1.5]))
    state = no_deferrable(2)
    assert choose_formulation(site(), inputs) is Formulation.EXACT
    prob = problem(site(), 2)
    result = prob.solve(inputs, state)
    assert result.formulation is Formulation.EXACT
    assert result.objective_usd == pytest.approx(12.5, abs=1e-6)
    np.testing.assert_allclose(plan_of(result).other_it_mw[0], [5.0, 5.0], atol=1e-6)
    assert cvxpy_objective_usd(prob, False, inputs, state) == pytest.approx(-12.5, abs=1e-6)


def test_export_price_above_import_price_needs_binary() -> None:
    """π⁺ = 40, π⁻ = 50 $/MWh; 10 MW renewable with cf = [1, 0]; 1.5 WU ND per interval.

    P = [5, 5] MW. Exact (no simultaneous flows): interval 0 exports the 5 MW
    surplus (revenue 0.25 · 50 · 5 = 62.5 $), interval 1 imports 5 MW (cost
    0.25 · 40 · 5 = 50 $): total −12.5 $. Without the binary the LP imports and
    exports at once to pocket 10 $/MWh: interval 0 import 15, export 20 MW
    (0.25 · (600 − 1000) = −100 $), interval 1 import 20, export 15 MW
    (0.25 · (800 − 750) = 12.5 $): −87.5 $.
    """
    the_site = site(Tariff(kind="retail"), nameplate_mw=10.0)
    inputs = inputs_of(np.array([40.0, 40.0]), np.array([50.0, 50.0]), np.array([1.0, 0.0]),
                       np.array([1.5, 1.5]))
    state = no_deferrable(2)
    assert choose_formulation(the_site, inputs) is Formulation.EXACT
    prob = problem(the_site, 2)
    result = prob.solve(inputs, state)
    assert result.formulation is Formulation.EXACT
    assert result.objective_usd == pytest.approx(-12.5, abs=1e-6)
    np.testing.assert_allclose(plan_of(result).import_mw[0], [0.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(plan_of(result).export_mw[0], [5.0, 0.0], atol=1e-6)
    assert cvxpy_objective_usd(prob, False, inputs, state) == pytest.approx(-87.5, abs=1e-6)


def test_deadline_forces_expensive_interval() -> None:
    """LMP = [50, 10, 10] $/MWh. Job A: 1.5 WU due by the end of interval 0; job B:
    1.5 WU released at 0, due by the end of interval 2 (cumulative: released
    [3, 3, 3], due [1.5, 1.5, 3]).

    A must run in the expensive interval 0 at P = 5 MW (62.5 $); B goes to a
    10 $/MWh interval at 5 MW (12.5 $); putting B in interval 0 too would need
    rate 12 WU/h > F(10) = 10. Cost 75 $, import[0] = 5, import[1] + import[2] = 5.
    """
    inputs = wholesale(np.array([50.0, 10.0, 10.0]), np.zeros(3), np.zeros(3))
    state = state_of(np.array([1.5, 1.5, 3.0]), np.array([3.0, 3.0, 3.0]))
    result = problem(site(), 3).solve(inputs, state)
    assert result.objective_usd == pytest.approx(75.0, abs=1e-6)
    assert plan_of(result).import_mw[0, 0] == pytest.approx(5.0, abs=1e-6)
    assert plan_of(result).import_mw[0, 1:].sum() == pytest.approx(5.0, abs=1e-6)


def test_impossible_deadline_names_the_constraint() -> None:
    """6 WU due by the end of interval 1, but at most 0.25 · F(10) = 2.5 WU fit in
    each interval: 5 WU by then. Error names the deadline and both amounts."""
    inputs = wholesale(np.array([10.0, 10.0]), np.zeros(2), np.zeros(2))
    state = state_of(np.array([0.0, 6.0]), np.array([6.0, 6.0]))
    with pytest.raises(InfeasibleInputError) as info:
        problem(site(), 2).solve(inputs, state)
    assert info.value.constraint == "deferrable deadline"
    assert info.value.interval == 1
    assert str(info.value) == ("campus dc: deferrable deadline at interval 1 needs 6 WU done but "
                               "at most 5 WU can be processed by then")


def test_non_deferrable_above_capacity_names_the_constraint() -> None:
    """ND work 3 WU in one interval > 2.5 WU possible."""
    inputs = wholesale(np.array([10.0, 10.0]), np.zeros(2), np.array([1.0, 3.0]))
    with pytest.raises(InfeasibleInputError, match="non-deferrable work at interval 1"):
        problem(site(), 2).solve(inputs, no_deferrable(2))


def _random_day(rng: np.random.Generator, H: int) -> tuple[HorizonInputs, PlantState]:
    lmp = rng.uniform(5.0, 90.0, H)
    cf = rng.uniform(0.0, 1.0, H)
    work = 0.25 * rng.uniform(55.0, 75.0, H)
    df = 0.4 * work
    avail = np.cumsum(df)
    due = np.zeros(H)
    due[-1] = avail[-1]
    return wholesale(lmp, cf, work - df), state_of(due, avail)


@pytest.mark.parametrize("market", ["wholesale", "retail"])
def test_fast_path_matches_cvxpy(market: str) -> None:
    """96-step random day on the 100 MW site (retail: a 12.39 $/kW demand charge): the
    resident HiGHS model and cvxpy's own solve of the same
    compiled problem agree on the optimum, over several re-solves with new parameter
    values."""
    prob = problem(rcdc_site(market), 96)
    rng = np.random.default_rng(7)
    for _ in range(3):
        inputs, state = _random_day(rng, 96)
        fast = prob.solve(inputs, state)
        assert fast.status is SolveStatus.OPTIMAL
        assert fast.formulation is Formulation.RELAXED
        ref = cvxpy_objective_usd(prob, False, inputs, state)
        assert fast.objective_usd == pytest.approx(ref, rel=1e-7, abs=1e-4)
        assert fast.highs_time_s > 0


def test_fast_path_matches_cvxpy_exact() -> None:
    """The exact MILP through both paths (24 steps, one negative price)."""
    prob = problem(rcdc_site(), 24, Formulation.EXACT)
    rng = np.random.default_rng(3)
    inputs, state = _random_day(rng, 24)
    lmp = inputs.import_price_usd_per_mwh[0].copy()
    lmp[5] = -15.0
    inputs = wholesale(lmp, inputs.renewable_cf[0], inputs.work_nd_wu[0])
    fast = prob.solve(inputs, state)
    assert fast.formulation is Formulation.EXACT
    ref = cvxpy_objective_usd(prob, True, inputs, state)
    assert fast.objective_usd == pytest.approx(ref, rel=1e-6, abs=1e-3)

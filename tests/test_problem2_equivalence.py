"""The one problem (:mod:`mpc_dc.problem2`) against the two it replaces, side by side.

For each instance the old builder solves its own configuration and the new builder
solves the same site written in the one site model (:mod:`tests.problem2_equiv`,
field by field). Both must reach the same optimum (objective to 10⁻⁶ relative) and,
where the optimum is unique (continuous random prices), the same committed decisions.

RCDC side (:class:`mpc_dc.problem.RcdcProblem`): random 2-4-interval instances of
tests/test_problem_properties.py (wholesale and retail, negative prices, export above
import price, staggered release, a billed peak) in the relaxed, exact and automatic
forms, the hand-solved witnesses, a battery, the closed loop's setting (binaries
integer on the committed interval only) and 96-interval receding windows.

Fleet side (:class:`mpc_dc.fleet_problem.FleetProblem`): S1-S6 in the LP,
committed-integer and full-MILP forms, a multi-resolution horizon, DR days with a
baseline, warm re-solves over a receding window (the fleet state carried from the
committed instances), the whole-day plan with candidates, and the DR study's week
on the real data.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from mpc_dc import fleet_problem as old_fleet
from mpc_dc import problem as old_rcdc
from mpc_dc import problem2 as new
from mpc_dc.benchmarking import rcdc_receding_cases, rcdc_site
from mpc_dc.fleet_controller import solve_day as old_solve_day
from mpc_dc.params.fleet import SCENARIOS, CampusParams, FleetConfig
from mpc_dc.params.site import BatteryParams
from tests.problem2_equiv import (
    inputs_of_fleet,
    inputs_of_rcdc,
    options_of_fleet,
    options_of_rcdc,
    site_of_fleet,
    site_of_rcdc,
    state_of_fleet,
    state_of_rcdc,
)
from tests.test_problem_properties import SETTINGS, Case, _site, _with_witnesses, instances

RTOL = 1e-6


def same_optimum(old: float, new_: float, scale: float = 1.0) -> None:
    """Objectives equal to 10⁻⁶ relative (plus 10⁻⁶ of ``scale`` [$] near zero)."""
    assert new_ == pytest.approx(old, rel=RTOL, abs=1e-6 * scale), (old, new_)


# ----------------------------------------------------------------------------- RCDC


@cache
def _pair(H: int, retail: bool, formulation: str, battery: bool = False,
          binary_intervals: int | None = None) -> tuple[old_rcdc.RcdcProblem, new.Problem]:
    cfg = _site(retail)
    if battery:
        cfg = dataclasses.replace(cfg, battery=BatteryParams(energy_mwh=4.0, power_mw=3.0,
                                                             charge_efficiency=0.9,
                                                             discharge_efficiency=0.95))
    options = old_rcdc.SolverOptions(integer_intervals=binary_intervals)
    form: str = formulation
    old = old_rcdc.RcdcProblem(cfg, H, formulation=form,  # type: ignore[arg-type]
                               options=options)
    formulation2 = "auto" if formulation == "auto" else new.Formulation(formulation)
    return old, new.Problem(site_of_rcdc(cfg), H, options_of_rcdc(options),
                            formulation=formulation2, demand_response=False)


def _compare_rcdc(case: Case, formulation: str, *, battery: bool = False,
                  binary_intervals: int | None = None) -> tuple[object, object]:
    retail, inputs, state = case
    old, prob = _pair(inputs.horizon_steps, retail, formulation, battery, binary_intervals)
    a = old.solve(inputs, state)
    b = prob.solve(inputs_of_rcdc(inputs), state_of_rcdc(state))
    assert a.status is b.status
    assert a.formulation is b.formulation
    assert a.plan is not None and b.plan is not None
    assert a.cost is not None and b.cost is not None
    scale = float(np.abs(inputs.import_price_usd_per_mwh).max(initial=1.0))
    same_optimum(a.objective_usd, b.objective_usd, scale)
    assert b.cost.carbon_usd == b.cost.switching_usd == b.cost.unserved_usd == 0.0
    return a, b


@SETTINGS
@given(instances(exact_conditions=True))
def test_rcdc_relaxed_and_auto_equal_old(case: Case) -> None:
    """Prices meeting the exactness conditions: the relaxed form (repaired) and the
    automatic choice give the old optima."""
    _compare_rcdc(case, "relaxed")
    _compare_rcdc(case, "auto")


@SETTINGS
@given(instances(exact_conditions=False))
@_with_witnesses
def test_rcdc_exact_equals_old(case: Case) -> None:
    """Negative prices, export above import price, staggered release, a billed peak:
    the exact MILP and the automatic choice (which picks it) give the old optima."""
    _compare_rcdc(case, "exact")
    _compare_rcdc(case, "auto")


@SETTINGS
@given(instances(exact_conditions=False))
def test_rcdc_binaries_on_the_committed_interval_only(case: Case) -> None:
    """The closed loop's setting: binaries integer on interval 0, relaxed on the tail
    (old ``integer_intervals=1``, new ``binary_intervals=1``)."""
    _compare_rcdc(case, "exact", binary_intervals=1)


@SETTINGS
@given(instances(exact_conditions=False))
def test_rcdc_battery_equals_old(case: Case) -> None:
    """A 4 MWh / 3 MW battery (efficiencies 0.9 / 0.95, exclusivity binary in the
    exact form)."""
    _compare_rcdc(case, "exact", battery=True)
    if old_rcdc.choose_formulation(case[1]) is old_rcdc.Formulation.RELAXED:
        _compare_rcdc(case, "relaxed", battery=True)


def test_rcdc_feasibility_checks_equal_old() -> None:
    """The most work per interval and the earliest cumulative completion (the
    closed-form scan of problem2 against the old interval-by-interval loop) on 500
    random horizons with staggered release."""
    rng = np.random.default_rng(0)
    cfg = _site(False)
    site = site_of_rcdc(cfg)
    for _ in range(500):
        H = int(rng.integers(1, 30))
        released = rng.uniform(0, 2, H) * (rng.uniform(size=H) < 0.5)
        inputs = old_rcdc.HorizonInputs.wholesale(rng.uniform(0, 50, H), rng.uniform(0, 1, H),
                                                  rng.uniform(0, 3, H))
        state = old_rcdc.PlantState(np.zeros(H), np.cumsum(released))
        args = (inputs_of_rcdc(inputs), state_of_rcdc(state))
        np.testing.assert_allclose(new.max_work_per_interval_wu(site, args[0])[0],
                                   old_rcdc.max_work_per_interval_wu(cfg, inputs), rtol=1e-12)
        np.testing.assert_allclose(new.earliest_completion_wu(site, *args)[0],
                                   old_rcdc.earliest_completion_wu(cfg, inputs, state),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("market", ["wholesale", "retail"])
def test_rcdc_receding_window_commits_the_same(market: str) -> None:
    """96-interval windows of the default 100 MW site, each one interval after the
    last (warm re-solves, as in the closed loop): same optimum and the same committed
    interval (import, export, deferrable work, curtailment, battery)."""
    H = 96
    cfg = rcdc_site(market)
    old = old_rcdc.RcdcProblem(cfg, H)
    prob = new.Problem(site_of_rcdc(cfg), H, demand_response=False)
    for inputs, state in rcdc_receding_cases(H, n=12, seed=4):
        a = old.solve(inputs, state)
        b = prob.solve(inputs_of_rcdc(inputs), state_of_rcdc(state))
        assert a.plan is not None and b.plan is not None
        same_optimum(a.objective_usd, b.objective_usd)
        new_d = b.plan.decision(0).campus("dc")
        for name, old_name in (("work_df_wu", "work_df_wu"), ("curtailed_mw", "curtailed_mw"),
                               ("planned_import_mw", "import_mw"),
                               ("planned_export_mw", "export_mw"),
                               ("battery_charge_mw", "battery_charge_mw"),
                               ("battery_discharge_mw", "battery_discharge_mw")):
            want = float(getattr(a.plan, old_name)[0])
            assert getattr(new_d, name) == pytest.approx(want, abs=1e-6), name


# ----------------------------------------------------------------------------- fleet


def _fleet_config(scenario: str) -> FleetConfig:
    return FleetConfig(campuses=(CampusParams("A", "NP15", 64), CampusParams("B", "SP15", 48)),
                       models=("qwen3-8b", "qwen3-32b"), flexibility=SCENARIOS[scenario])


def _fleet_inputs(H: int, seed: int, *, dr: bool = False) -> old_fleet.FleetInputs:
    rng = np.random.default_rng(seed)
    event = baseline = None
    if dr:
        event = np.zeros((2, H))
        event[:, H // 3: 2 * H // 3] = 1.0
        baseline = rng.uniform(0.02, 0.06, (2, H))
    return old_fleet.FleetInputs(rng.uniform(1e4, 9e4, (2, H)), rng.uniform(-10, 90, (2, H)),
                                 rng.uniform(100, 300, (2, H)), event, baseline)


def _fleet_pair(cfg: FleetConfig, H: int, options: old_fleet.FleetSolverOptions | None = None
                ) -> tuple[old_fleet.FleetProblem, new.Problem]:
    options = options or old_fleet.FleetSolverOptions()
    return (old_fleet.FleetProblem(cfg, H, options),
            new.Problem(site_of_fleet(cfg), H, options_of_fleet(options)))


def _compare_fleet(a: old_fleet.FleetSolveResult, b: new.SolveResult, *,
                   committed: bool = True, bound: bool = True) -> None:
    assert a.plan is not None and b.plan is not None and a.cost is not None
    assert b.cost is not None
    same_optimum(a.objective_usd, b.objective_usd)
    assert b.plan.pools == a.plan.pools
    # facility power is the grid import of a campus without renewable, battery, export
    np.testing.assert_allclose(b.plan.import_mw, a.plan.campus_power_mw, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b.plan.facility_power_mw, a.plan.campus_power_mw, rtol=1e-6,
                               atol=1e-7)
    old_cost, new_cost = a.cost, b.cost
    assert new_cost.energy_import_usd + new_cost.carbon_usd == pytest.approx(
        old_cost.energy_usd + old_cost.carbon_usd, rel=1e-5, abs=1e-6)
    assert new_cost.dr_reward_usd == pytest.approx(old_cost.dr_reward_usd, rel=1e-5, abs=1e-6)
    if committed:
        np.testing.assert_allclose(b.plan.instances[:, 0], a.plan.instances[:, 0], atol=1e-6)
        old_d, new_d = a.plan.decision(0), b.plan.decision(0).fleet
        assert dict(new_d.instances) == dict(old_d.instances)
        assert dict(new_d.routing_share) == pytest.approx(dict(old_d.routing_share), abs=1e-6)
    if bound and np.isfinite(a.lp_bound_usd):
        same_optimum(a.lp_bound_usd, b.lp_bound_usd)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("form", ["lp", "committed_integer"])
def test_fleet_scenarios_equal_old(scenario: str, form: str) -> None:
    """S1-S6, two campuses, two models, 8 intervals with prices from −10 to 90 $/MWh
    and a fleet already running: same optimum, instances and routing committed."""
    cfg = _fleet_config(scenario)
    old, prob = _fleet_pair(cfg, 8)
    state = old_fleet.FleetState({p: 2 for p in old.ctx.pools if p[2] == "BF16"},
                                 may_reprovision=scenario in ("S1", "S3"))
    inputs = _fleet_inputs(8, seed=11)
    a = old.solve(inputs, state, form)
    b = prob.solve(inputs_of_fleet(inputs), state_of_fleet(state), form)
    _compare_fleet(a, b, committed=form == "committed_integer")


@pytest.mark.parametrize("scenario", ["S1", "S4", "S6"])
def test_fleet_full_milp_equals_old(scenario: str) -> None:
    """Every instance count integer, solved to a 10⁻⁷ gap: the same MILP optimum, and
    its dual bound (net of the DR constant) is the same lower bound."""
    options = old_fleet.FleetSolverOptions(full_mip_rel_gap=1e-7, full_time_limit_s=60.0)
    old, prob = _fleet_pair(_fleet_config(scenario), 3, options)
    inputs = _fleet_inputs(3, seed=1, dr=True)  # (a seed HiGHS proves in < 1 s)
    a = old.solve(inputs, None, "full_milp")
    b = prob.solve(inputs_of_fleet(inputs), None, "full_milp")
    _compare_fleet(a, b, committed=False)
    assert b.mip_gap <= 1e-7
    assert b.mip_bound_usd <= b.objective_usd + 1e-6
    # a MIP start (the whole-horizon round-and-fix plan) does not change the optimum
    dive = prob.solve(inputs_of_fleet(inputs), None, integer_intervals=3)
    started = prob.solve(inputs_of_fleet(inputs), None, "full_milp", start=dive.plan)
    same_optimum(b.objective_usd, started.objective_usd)
    assert b.objective_usd <= dive.objective_usd + 1e-6
    # the committed-MIP reference: interval 0 integer by branch-and-bound
    a = old.solve(inputs, None, "committed_mip")
    b = prob.solve(inputs_of_fleet(inputs), None, "committed_mip")
    assert a.plan is not None and b.plan is not None
    np.testing.assert_allclose(b.plan.instances[:, 0], np.round(b.plan.instances[:, 0]))
    assert b.objective_usd == pytest.approx(a.objective_usd, rel=1e-4)


@pytest.mark.parametrize("form", ["lp", "committed_integer"])
def test_fleet_dr_day_equals_old(form: str) -> None:
    """A DR event over the middle third with a baseline per campus: reward on the
    baseline minus facility power (grid import here), penalty above the cap; the LP
    bound net of the DR constant."""
    old, prob = _fleet_pair(_fleet_config("S6"), 12)
    inputs = _fleet_inputs(12, seed=7, dr=True)
    a = old.solve(inputs, None, form)
    b = prob.solve(inputs_of_fleet(inputs), None, form)
    _compare_fleet(a, b, committed=form == "committed_integer")
    assert b.cost is not None and b.cost.dr_reward_usd != 0.0
    np.testing.assert_allclose(b.plan.dr_reduction_mw,  # type: ignore[union-attr]
                               a.plan.dr_reduction_mw, atol=1e-7)  # type: ignore[union-attr]


@pytest.mark.parametrize(("fine", "far"), [(3, None), (2, 6)])
def test_fleet_multi_resolution_receding_equals_old(fine: int, far: int | None) -> None:
    """A coarse tail (columns of 2, then 4 intervals): same optimum and committed
    instances over a receding window of warm re-solves (the fleet state carried from
    the committed instances, as in the closed loop)."""
    options = old_fleet.FleetSolverOptions(fine_steps=fine, coarse_block_steps=2,
                                           far_start_steps=far, far_block_steps=4)
    cfg = _fleet_config("S6")
    H, N = 12, 18
    old, prob = _fleet_pair(cfg, H, options)
    assert prob.blocked and prob.n_columns == old.n_columns
    series = _fleet_inputs(N, seed=3, dr=True)
    state = old_fleet.FleetState()
    for k in range(N - H + 1):
        sl = slice(k, k + H)
        inputs = old_fleet.FleetInputs(series.demand_tokens_per_s[:, sl],
                                       series.price_usd_per_mwh[:, sl],
                                       series.carbon_gco2_per_kwh[:, sl],
                                       series.dr_event[:, sl],  # type: ignore[index]
                                       series.dr_baseline_mw[:, sl])  # type: ignore[index]
        a = old.solve(inputs, state)
        b = prob.solve(inputs_of_fleet(inputs), state_of_fleet(state))
        _compare_fleet(a, b)
        assert prob.last_warm_start == old.last_warm_start
        assert a.plan is not None
        state = old_fleet.FleetState({p: round(a.plan.instances[i, 0])
                                      for i, p in enumerate(a.plan.pools)})


def test_fleet_day_plan_with_candidates_equals_old() -> None:
    """The whole-horizon integer plan of the DR study (round-and-fix over every
    interval), re-costing the plans of the scenarios with fewer levers: same plan.
    Where a candidate wins, the bound and gap stay those of the problem's own
    relaxation (the behaviour of branch i13-drstudy; main's ``solve_day`` reports the
    candidate's fixed LP run, which bounds nothing)."""
    H = 8
    inputs = _fleet_inputs(H, seed=13, dr=True)
    old_plans: list[old_fleet.FleetPlan] = []
    new_plans: list[new.Plan] = []
    for scenario in SCENARIOS:
        old, prob = _fleet_pair(_fleet_config(scenario), H)
        a = old_solve_day(old, inputs, None, old_plans)
        b = new.solve_day(prob, inputs_of_fleet(inputs), None, new_plans)
        _compare_fleet(a, b, bound=False)
        assert a.plan is not None and b.plan is not None
        np.testing.assert_allclose(b.plan.instances, a.plan.instances, atol=1e-6)
        own = old.solve(inputs, None, "committed_integer", integer_intervals=H)
        same_optimum(own.lp_bound_usd, b.lp_bound_usd)
        gap = (b.objective_usd - own.lp_bound_usd) / abs(b.objective_usd)
        assert b.mip_gap == pytest.approx(max(gap, 0.0), rel=1e-5, abs=1e-9)
        old_plans.append(a.plan)
        new_plans.append(b.plan)
        # the LP + repair fallback of the closed loop rounds the first interval alike
        old.solve(inputs, None, "lp")
        lp = prob.solve(inputs_of_fleet(inputs), None, "lp")
        assert lp.plan is not None
        np.testing.assert_array_equal(prob.round_first_interval(lp.plan),
                                      old.round_first_interval(old.solve(inputs, None,
                                                                         "lp").plan))  # type: ignore[arg-type]


def test_dr_study_week_equals_old(shared_data: Path) -> None:
    """The DR study's fleet (3 campuses × 3 models × 3-4 precisions, CAISO 2021, S6) on
    six consecutive 96-interval steps of the real week, warm as in the closed loop:
    same optimum and committed instances at every step."""
    from mpc_dc.studies.dr import DrStudyConfig, load_dr_data

    study = DrStudyConfig()
    data = load_dr_data(shared_data, study)
    cfg = dataclasses.replace(FleetConfig(), flexibility=SCENARIOS["S6"])  # the study's fleet
    H = 96
    old, prob = _fleet_pair(cfg, H)
    state = old_fleet.FleetState()
    for k in range(100, 106):
        sl = slice(k, k + H)
        inputs = old_fleet.FleetInputs(data.demand_tokens_per_s[:, sl],
                                       data.price_usd_per_mwh[:, sl],
                                       data.carbon_gco2_per_kwh[:, sl])
        a = old.solve(inputs, state)
        b = prob.solve(inputs_of_fleet(inputs), state_of_fleet(state))
        _compare_fleet(a, b)
        assert a.plan is not None
        state = old_fleet.FleetState({p: round(a.plan.instances[i, 0])
                                      for i, p in enumerate(a.plan.pools)})

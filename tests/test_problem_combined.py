"""Hand-solved instances of the one problem where the two seeds' blocks meet.

Common figures (unless a test says otherwise): Δ = 0.25 h, PUE 1, one model "m" in
BF16 only: μ = 1000 tokens/s per instance, 1 GPU, 1 MW idle (1e6 W) and 1 kJ/token
(1 MW per 1000 tokens/s), no load time, ρ̄ = 1, no start, quality or carbon cost, an
unserved penalty of 1000 $/Mtoken (900 $ for 1000 tokens/s over an interval). An
instance serving 1000 tokens/s thus draws 2 MW. Other IT has a linear processing
function F(P) = P (1 WU per MWh, so W WU in an interval need 4 W MW).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mpc_dc.params.quant_table import QuantTable
from mpc_dc.problem import (
    Form,
    Formulation,
    HorizonInputs,
    InfeasibleInputError,
    PlantState,
    Problem,
    SolverOptions,
)
from mpc_dc.site.config import (
    Battery,
    Campus,
    DemandResponse,
    Fleet,
    Grid,
    OtherIT,
    ProcessingFunction,
    Renewable,
    Site,
    Tariff,
)
from tests.test_problem_fleet import _row

LINEAR = ProcessingFunction(power_frac=(0.0, 1.0), work_frac=(0.0, 1.0))
POOL = ("A", "m", "BF16")


def _fleet() -> Fleet:
    row = _row("BF16", mu=1000, gpus=1, idle_w=1e6, e_j=1000.0, loss=0)
    return Fleet(models=("m",), utilization_cap=1.0, start_cost_usd_per_gpu=0.0,
                 quality_cost_usd_per_point_mtok=0.0,
                 table=QuantTable((row,), "hand"))


def _campus(name: str = "A", *, gpus: int = 8, it_mw: float | None = 10.0,
            nameplate_mw: float | None = 12.0, export_mw: float = 20.0,
            tariff: Tariff | None = None) -> Campus:
    return Campus(name, "F", gpus=gpus, pue=1.0,
                  other_it=None if it_mw is None else OtherIT(it_capacity_mw=it_mw,
                                                                processing=LINEAR),
                  renewable=None if nameplate_mw is None else Renewable(nameplate_mw),
                  grid=Grid(import_limit_mw=50.0, export_limit_mw=export_mw,
                            tariff=tariff or Tariff()))


def test_pools_other_it_renewable_and_export() -> None:
    """Campus A: 2 instances serving 2000 tokens/s (4 MW), other IT with 1.25 WU of
    non-deferrable work per interval (5 MW), 12 MW of wind in intervals 0 and 1 and
    none in 2, export up to 20 MW, prices 40, 100, 60 $/MWh, carbon 100 g/kWh at
    50 $/t (5 $/MWh on import). 0.5 WU of deferrable work (2 MW for an interval) is
    due by the end of interval 1.

    Its cost is the export revenue it displaces: 40 $/WU in interval 0, 100 $/WU in
    interval 1, so it runs in 0: load 11 MW, export 1 MW (10 $); interval 1: load
    9 MW, export 3 MW (75 $); interval 2: 9 MW imported, 0.25 · 60 · 9 = 135 $ and
    0.25 · 5 · 9 = 11.25 $ of carbon. Total 135 + 11.25 − 10 − 75 = 61.25 $. One more
    instance would cost its idle power; one fewer 900 $ of unserved tokens."""
    site = Site((_campus(),), _fleet(), carbon_price_usd_per_t=50.0)
    inputs = HorizonInputs.build(site, 3, price_usd_per_mwh=[[40.0, 100.0, 60.0]],
                                 demand_tokens_per_s=[[2000.0] * 3],
                                 carbon_gco2_per_kwh=100.0, renewable_cf=[[1.0, 1.0, 0.0]],
                                 work_nd_wu=1.25)
    state = PlantState({POOL: 2}, df_due_cum_wu=np.array([[0.0, 0.5, 0.5]]),
                       df_available_cum_wu=np.array([[0.5, 0.5, 0.5]]))
    for formulation in (Formulation.RELAXED, Formulation.EXACT):
        res = Problem(site, 3, formulation=formulation).solve(inputs, state)
        assert res.plan is not None and res.cost is not None, res.message
        plan, cost = res.plan, res.cost
        assert res.formulation is formulation
        assert res.objective_usd == pytest.approx(61.25, abs=1e-6)
        np.testing.assert_allclose(plan.export_mw, [[1.0, 3.0, 0.0]], atol=1e-6)
        np.testing.assert_allclose(plan.import_mw, [[0.0, 0.0, 9.0]], atol=1e-6)
        np.testing.assert_allclose(plan.work_df_wu, [[0.5, 0.0, 0.0]], atol=1e-6)
        np.testing.assert_allclose(plan.instances, [[2.0, 2.0, 2.0]], atol=1e-6)
        np.testing.assert_allclose(plan.inference_it_mw, [[4.0, 4.0, 4.0]], atol=1e-6)
        np.testing.assert_allclose(plan.facility_power_mw, [[11.0, 9.0, 9.0]], atol=1e-6)
        np.testing.assert_allclose(plan.curtailed_mw, 0.0, atol=1e-6)
        assert cost.export_revenue_usd == pytest.approx(85.0, abs=1e-6)
        assert cost.energy_import_usd == pytest.approx(135.0, abs=1e-6)
        assert cost.carbon_usd == pytest.approx(11.25, abs=1e-6)
        d = plan.decision(0)
        assert d.campus("A").work_df_wu == pytest.approx(0.5)
        assert d.campus("A").planned_export_mw == pytest.approx(1.0)
        assert dict(d.fleet.instances) == {POOL: 2}
        assert dict(d.fleet.routing_share) == {POOL: 1.0}


def test_negative_price_curtails_wind_and_imports() -> None:
    """Other IT only (IT capacity 20 MW), 12 MW of wind in both intervals, prices −20
    and 30 $/MWh, 1.25 WU of non-deferrable work per interval (5 MW) and 1.25 WU of
    deferrable work due by the end.

    At −20 $/MWh importing earns, so interval 0 runs the deferrable work (10 MW),
    imports all of it (0.25 · 20 · 10 = 50 $ earned) and curtails all 12 MW of wind;
    interval 1 exports its 7 MW surplus (0.25 · 30 · 7 = 52.5 $): −102.5 $ (the work
    in interval 1 instead: −25 − 15 = −40 $). W = F(P) binds: the LP relaxation burns
    20 MW in interval 0 (−152.5 $, its bound); its repair lands on the same −102.5 $
    plan. The automatic choice solves the exact form (a negative price)."""
    site = Site((_campus(gpus=0, it_mw=20.0),))
    inputs = HorizonInputs.build(site, 2, price_usd_per_mwh=[[-20.0, 30.0]],
                                 renewable_cf=1.0, work_nd_wu=1.25)
    state = PlantState(df_due_cum_wu=np.array([[0.0, 1.25]]),
                       df_available_cum_wu=np.array([[1.25, 1.25]]))
    res = Problem(site, 2).solve(inputs, state)
    assert res.formulation is Formulation.EXACT
    assert res.plan is not None
    assert res.objective_usd == pytest.approx(-102.5, abs=1e-6)
    np.testing.assert_allclose(res.plan.curtailed_mw, [[12.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(res.plan.import_mw, [[10.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(res.plan.export_mw, [[0.0, 7.0]], atol=1e-6)
    np.testing.assert_allclose(res.plan.work_df_wu, [[1.25, 0.0]], atol=1e-6)
    assert res.plan.decision(0).campus("A").curtailed_mw == pytest.approx(12.0)
    relaxed = Problem(site, 2, formulation=Formulation.RELAXED).solve(inputs, state)
    assert relaxed.lp_bound_usd == pytest.approx(-152.5, abs=1e-6)
    assert relaxed.relaxation_repaired
    assert relaxed.objective_usd == pytest.approx(-102.5, abs=1e-6)


def test_exact_binaries_ride_along_round_and_fix() -> None:
    """The previous campus with 4 GPUs of pools serving 1500 tokens/s (1.5 instances
    in the relaxation). Interval 0 (−20 $/MWh): every idle instance earns 5 $, so 4
    run (GPU limit): 4 + 1.5 = 5.5 MW, plus 10 MW of other IT, 15.5 MW imported
    (−77.5 $), wind curtailed. Interval 1 (30 $/MWh, wind surplus exported): whole
    instances: 2, i.e. 3.5 + 5 = 8.5 MW of load and 3.5 MW exported (−26.25 $), total
    −103.75 $; with 1.5 instances (the relaxation) 4 MW exported: −107.5 $, the bound.

    committed_integer over both intervals (round-and-fix whose runs carry the
    exclusivity binaries as a small MIP) and the full MILP both find −103.75 $; over
    the first interval only, the tail keeps 1.5 instances (−107.5 $)."""
    site = Site((_campus(gpus=4, it_mw=20.0),), _fleet())
    inputs = HorizonInputs.build(site, 2, price_usd_per_mwh=[[-20.0, 30.0]],
                                 demand_tokens_per_s=[[1500.0, 1500.0]], renewable_cf=1.0,
                                 work_nd_wu=1.25)
    state = PlantState({POOL: 4}, df_due_cum_wu=np.array([[0.0, 1.25]]),
                       df_available_cum_wu=np.array([[1.25, 1.25]]))
    prob = Problem(site, 2)
    whole = prob.solve(inputs, state, integer_intervals=2)
    assert whole.formulation is Formulation.EXACT and whole.repaired
    assert whole.plan is not None
    assert whole.objective_usd == pytest.approx(-103.75, abs=1e-6)
    assert whole.lp_bound_usd == pytest.approx(-107.5, abs=1e-6)
    np.testing.assert_allclose(whole.plan.instances, [[4.0, 2.0]], atol=1e-6)
    np.testing.assert_allclose(whole.plan.export_mw, [[0.0, 3.5]], atol=1e-6)
    assert whole.mip_gap == pytest.approx(3.75 / 103.75, rel=1e-6)
    full = prob.solve(inputs, state, Form.FULL_MILP)
    assert full.objective_usd == pytest.approx(-103.75, abs=1e-6)
    first = prob.solve(inputs, state)
    assert first.plan is not None
    assert first.objective_usd == pytest.approx(-107.5, abs=1e-6)
    np.testing.assert_allclose(first.plan.instances, [[4.0, 1.5]], atol=1e-6)


def test_demand_response_on_grid_import_with_wind() -> None:
    """Campus A: 2 instances serving 2000 tokens/s (4 MW), 3 MW of wind, no export,
    50 $/MWh, so 1 MW is imported in every interval (12.5 $ each). DR events in
    intervals 1 and 2 with baselines 4 and 0.5 MW, reward 1 $/kWh, penalty 2 $/kWh,
    cap = baseline. Settlement is on grid import: interval 1 earns 0.25 · 1 ·
    (4000 − 1000) = 750 $ (on facility power, 4 MW, it would earn nothing); interval 2
    imports 0.5 MW above the cap: penalty 0.25 · 2 · 500 = 250 $ and settlement
    0.25 · 1 · (500 − 1000) = −125 $. With whole instances (all three intervals
    integer) a token/s not served there saves 1 kW, 0.7625 $ (penalty 0.5, settlement
    0.25, energy 0.0125) but costs 0.9 $ of unserved tokens, so all are served. Total
    37.5 − 750 + 250 + 125 = −337.5 $. (A relaxed tail would also shed 0.5 kW of idle
    power per token/s: 1.525 $ > 0.9 $, so it serves 250 tokens/s less in interval 2,
    156.25 $ cheaper: −493.75 $.)"""
    site = Site((_campus(it_mw=None, nameplate_mw=3.0, export_mw=0.0),), _fleet(),
                dr=DemandResponse(1.0, 2.0, 1.0))
    inputs = HorizonInputs.build(site, 3, price_usd_per_mwh=50.0,
                                 demand_tokens_per_s=[[2000.0] * 3], renewable_cf=1.0,
                                 dr_event=[[0.0, 1.0, 1.0]], dr_baseline_mw=[[0.0, 4.0, 0.5]])
    prob = Problem(site, 3)
    assert prob.solve(inputs, PlantState({POOL: 2})).objective_usd == pytest.approx(
        -493.75, abs=1e-6)
    res = prob.solve(inputs, PlantState({POOL: 2}), integer_intervals=3)
    assert res.plan is not None and res.cost is not None
    assert res.formulation is Formulation.RELAXED
    assert res.objective_usd == pytest.approx(-337.5, abs=1e-6)
    np.testing.assert_allclose(res.plan.import_mw, [[1.0, 1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(res.plan.dr_reduction_mw, [[0.0, 3.0, -0.5]], atol=1e-6)
    np.testing.assert_allclose(res.plan.dr_excess_mw, [[0.0, 0.0, 0.5]], atol=1e-6)
    assert res.cost.dr_reward_usd == pytest.approx(625.0, abs=1e-6)
    assert res.cost.dr_penalty_usd == pytest.approx(250.0, abs=1e-6)
    assert res.cost.energy_import_usd == pytest.approx(37.5, abs=1e-6)


def test_demand_charge_is_per_campus_and_moves_tokens() -> None:
    """Campus A (retail, 10 $/kW demand charge, 4 MW already billed, 10 $/MWh) and B
    (wholesale, 40 $/MWh), 4 GPUs each, no other IT or wind; 4000 tokens/s, Sp on.
    All at A (8 MW) would cost 20 $ of energy but raise A's peak by 4 MW (40,000 $);
    so A keeps its billed 4 MW (2 instances, 10 $) and B takes the rest (2
    instances, 0.25 · 40 · 4 = 40 $): 50 $, no demand charge."""
    retail = Tariff(kind="retail", demand_charge_usd_per_kw=10.0)
    site = Site((_campus("A", gpus=4, it_mw=None, nameplate_mw=None, export_mw=0.0,
                         tariff=retail),
                 _campus("B", gpus=4, it_mw=None, nameplate_mw=None, export_mw=0.0)),
                _fleet())
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=[[10.0], [40.0]],
                                 demand_tokens_per_s=[[4000.0]])
    res = Problem(site, 1).solve(inputs, PlantState(peak_import_to_date_mw=np.array([4.0, 0.0])))
    assert res.plan is not None and res.cost is not None
    assert res.objective_usd == pytest.approx(50.0, abs=1e-6)
    assert res.cost.demand_charge_usd == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(res.plan.instances[:, 0], [2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(res.plan.import_mw[:, 0], [4.0, 4.0], atol=1e-6)
    assert res.plan.decision(0).fleet.routing_share == pytest.approx(
        {("A", "m", "BF16"): 0.5, ("B", "m", "BF16"): 0.5})


def test_coarse_column_holds_deferrable_work_and_averages_prices() -> None:
    """Other IT only, no wind, 1.5 WU of deferrable work due by the end of 4
    intervals; prices 100 | 5, 10, 15 $/MWh with the last three in one column
    (``fine_steps=1``, ``coarse_block_steps=3``). The column runs 0.5 WU per interval
    (2 MW held) at its mean price 10 $/MWh: 3 · 0.25 · 10 · 2 = 15 $, which is also
    what its three intervals cost at the held power (0.25 · 2 · (5 + 10 + 15))."""
    site = Site((_campus(gpus=0, nameplate_mw=None, export_mw=0.0),))
    inputs = HorizonInputs.build(site, 4, price_usd_per_mwh=[[100.0, 5.0, 10.0, 15.0]])
    state = PlantState(df_due_cum_wu=np.array([[0.0, 0.0, 0.0, 1.5]]), df_available_cum_wu=1.5
                       * np.ones((1, 4)))
    prob = Problem(site, 4, SolverOptions(fine_steps=1, coarse_block_steps=3))
    assert prob.n_columns == 2
    res = prob.solve(inputs, state)
    assert res.plan is not None
    assert res.objective_usd == pytest.approx(15.0, abs=1e-6)
    np.testing.assert_allclose(res.plan.work_df_wu, [[0.0, 0.5, 0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(res.plan.import_mw, [[0.0, 2.0, 2.0, 2.0]], atol=1e-6)


def test_infeasible_deadline_names_the_campus() -> None:
    """2 WU due in one interval when at most 0.25 · 10 = 2.5 WU fit, but 1 WU of it is
    non-deferrable: at most 1.5 WU of deferrable work can be done."""
    site = Site((_campus("dc", gpus=0, nameplate_mw=None),))
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=10.0, work_nd_wu=1.0)
    with pytest.raises(InfeasibleInputError, match="campus dc: deferrable deadline"):
        Problem(site, 1).solve(inputs, PlantState(df_due_cum_wu=np.array([[2.0]]),
                                                  df_available_cum_wu=np.array([[2.0]])))


def test_power_units_follow_the_site() -> None:
    """kW for a site of pools only (the fleet's coefficients near 1), MW once a campus
    has a plant block; the same pools cost the same either way."""
    pools_only = Site((_campus(it_mw=None, nameplate_mw=None, export_mw=0.0),), _fleet())
    with_wind = dataclasses.replace(pools_only, campuses=(
        _campus(it_mw=None, nameplate_mw=5.0, export_mw=0.0),))
    inputs = HorizonInputs.build(pools_only, 2, price_usd_per_mwh=30.0,
                                 demand_tokens_per_s=[[2500.0, 1000.0]])
    a, b = Problem(pools_only, 2), Problem(with_wind, 2)
    assert a.ctx.unit_mw == 1e-3 and b.ctx.unit_mw == 1.0
    assert "inference_facility_kw" in b.ctx.variables
    ra, rb = a.solve(inputs), b.solve(inputs)
    assert ra.objective_usd == pytest.approx(rb.objective_usd, rel=1e-9)
    # 3 and 1 instances: (3 + 2.5) + (1 + 1) MW at 30 $/MWh over 0.25 h
    assert ra.objective_usd == pytest.approx(0.25 * 30 * 7.5, rel=1e-9)


def _battery_site(power_mw: float, efficiency: float) -> Site:
    """Other IT only (5 MW, so W = F(P) leaves no room to burn power), no wind or
    export, a 2 MWh battery."""
    return Site((Campus("A", "F", pue=1.0, other_it=OtherIT(it_capacity_mw=5.0,
                                                            processing=LINEAR),
                        grid=Grid(import_limit_mw=50.0),
                        battery=Battery(energy_mwh=2.0, power_mw=power_mw,
                                        charge_efficiency=efficiency,
                                        discharge_efficiency=efficiency,
                                        initial_energy_mwh=1.0)),))


def test_battery_shifts_energy_and_ends_where_it_started() -> None:
    """5 MW of non-deferrable load, prices 10 and 90 $/MWh, a lossless 2 MWh / 8 MW
    battery holding 1 MWh. It charges its free 1 MWh in interval 0 (4 MW: 9 MW
    imported, 22.5 $) and gives it back in interval 1 (4 MW: 1 MW imported, 22.5 $):
    45 $; the terminal row keeps the initial 1 MWh (without it interval 1 would take
    all 1.25 MWh it needs from the battery: 15 $)."""
    site = _battery_site(8.0, 1.0)
    inputs = HorizonInputs.build(site, 2, price_usd_per_mwh=[[10.0, 90.0]], work_nd_wu=1.25)
    res = Problem(site, 2).solve(inputs)
    assert res.plan is not None
    assert res.objective_usd == pytest.approx(45.0, abs=1e-6)
    np.testing.assert_allclose(res.plan.battery_charge_mw, [[4.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(res.plan.battery_discharge_mw, [[0.0, 4.0]], atol=1e-6)
    np.testing.assert_allclose(res.plan.battery_energy_mwh, [[2.0, 1.0]], atol=1e-6)


def test_battery_cannot_burn_energy_at_a_negative_price() -> None:
    """One interval at −20 $/MWh, 5 MW of load, the battery of the previous test with
    efficiencies 0.8. Charging alone stores at most 1 MWh: 1 / (0.25 · 0.8) = 5 MW, so
    10 MW are imported (−50 $, the exact form: a negative price). Charging at 8 MW
    while discharging 1.92 MW (a loss loop) would import 11.08 MW (−55.4 $): the
    charge/discharge binary forbids it."""
    site = _battery_site(8.0, 0.8)
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=-20.0, work_nd_wu=1.25)
    res = Problem(site, 1).solve(inputs)
    assert res.plan is not None and res.formulation is Formulation.EXACT
    assert res.objective_usd == pytest.approx(-50.0, abs=1e-6)
    np.testing.assert_allclose(res.plan.battery_charge_mw, [[5.0]], atol=1e-6)
    np.testing.assert_allclose(res.plan.battery_discharge_mw, [[0.0]], atol=1e-6)


def _two_pool_campuses() -> tuple[Campus, Campus]:
    return (_campus("A", gpus=4, it_mw=None, nameplate_mw=None, export_mw=0.0),
            _campus("B", gpus=4, it_mw=None, nameplate_mw=None, export_mw=0.0))


def test_carbon_price_moves_tokens_to_the_cleaner_campus() -> None:
    """A at 30 $/MWh and 500 g/kWh, B at 31 $/MWh and 100 g/kWh, 50 $/t: import costs
    30 + 25 = 55 $/MWh at A and 31 + 5 = 36 $/MWh at B. 2000 tokens/s (4 MW) go to B:
    0.25 · 36 · 4 = 36 $ (at A 55 $)."""
    site = Site(_two_pool_campuses(), _fleet(), carbon_price_usd_per_t=50.0)
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=[[30.0], [31.0]],
                                 demand_tokens_per_s=[[2000.0]],
                                 carbon_gco2_per_kwh=[[500.0], [100.0]])
    res = Problem(site, 1).solve(inputs)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances[:, 0], [0.0, 2.0], atol=1e-6)
    assert res.objective_usd == pytest.approx(36.0, abs=1e-6)
    assert res.cost.carbon_usd == pytest.approx(5.0, abs=1e-6)


def test_dr_event_moves_tokens_to_another_campus() -> None:
    """A (30 $/MWh) is in a DR event with a 4 MW baseline and 1 $/kWh reward, B
    (40 $/MWh) is not. Serving 2000 tokens/s at B (4 MW, 40 $) and importing nothing at
    A earns 0.25 · 1 · 4000 = 1000 $: −960 $ (at A: 30 $ and no reward)."""
    site = Site(_two_pool_campuses(), _fleet(), dr=DemandResponse(1.0, 2.0, 1.0))
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=[[30.0], [40.0]],
                                 demand_tokens_per_s=[[2000.0]], dr_event=[[1.0], [0.0]],
                                 dr_baseline_mw=[[4.0], [0.0]])
    res = Problem(site, 1).solve(inputs)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances[:, 0], [0.0, 2.0], atol=1e-6)
    assert res.objective_usd == pytest.approx(-960.0, abs=1e-6)
    assert res.cost.dr_reward_usd == pytest.approx(1000.0, abs=1e-6)


def test_bounds_are_net_of_what_the_objective_leaves_out() -> None:
    """The DR instance above on a retail tariff with 6 MW already billed at 10 $/kW.
    HiGHS minimises an objective without the settlement of the baseline
    (−Σ Δ ρ_r B = −0.25 · (4000 + 500) = −1125 $) and with the demand charge already
    billed (λ pk0 = 60,000 $). The full MILP, solved to optimality, costs −337.5 $
    (import stays below 6 MW: no new charge); its dual bound net of both constants
    equals that cost, so its gap is 0, and the whole-horizon LP bound (−493.75 $,
    fractional instances) lies below it."""
    retail = Tariff(kind="retail", demand_charge_usd_per_kw=10.0)
    site = Site((_campus(it_mw=None, nameplate_mw=3.0, export_mw=0.0, tariff=retail),),
                _fleet(), dr=DemandResponse(1.0, 2.0, 1.0))
    inputs = HorizonInputs.build(site, 3, price_usd_per_mwh=50.0,
                                 demand_tokens_per_s=[[2000.0] * 3], renewable_cf=1.0,
                                 dr_event=[[0.0, 1.0, 1.0]], dr_baseline_mw=[[0.0, 4.0, 0.5]])
    state = PlantState({POOL: 2}, peak_import_to_date_mw=6.0)
    prob = Problem(site, 3, SolverOptions(full_mip_rel_gap=1e-9))
    full = prob.solve(inputs, state, Form.FULL_MILP)
    assert full.objective_usd == pytest.approx(-337.5, abs=1e-6)
    assert full.mip_bound_usd == pytest.approx(-337.5, abs=1e-5)
    assert full.mip_gap <= 1e-6
    lp = prob.solve(inputs, state, Form.LP)
    assert lp.lp_bound_usd == pytest.approx(-493.75, abs=1e-6)
    assert lp.objective_usd == pytest.approx(lp.lp_bound_usd, abs=1e-6)

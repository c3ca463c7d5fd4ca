"""Multi-resolution horizon of the one problem on fleet sites: 15-min columns first,
coarse columns beyond (``SolverOptions.fine_steps`` / ``coarse_block_steps``,
docs/fleet.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mpc_dc.config import ConfigError
from mpc_dc.problem import Form, HorizonInputs, PlantState, Problem, SolverOptions, horizon_columns
from mpc_dc.site.config import Flexibility, Site
from tests.test_problem_fleet import (
    _config,
    _inputs,
    _row,
    random_inputs,
    receding_windows,
    two_campus_site,
)


def _two_campus_case(H: int, seed: int = 5) -> tuple[Site, HorizonInputs]:
    return two_campus_site(), random_inputs(np.random.default_rng(seed), H)


def test_horizon_columns() -> None:
    assert horizon_columns(10, 4, 4).tolist() == [1, 1, 1, 1, 4, 2]
    assert horizon_columns(20, 2, 4, 8, 8).tolist() == [1, 1, 4, 2, 8, 4]
    assert horizon_columns(20, 2, 4, 30, 8).tolist() == [1, 1, 4, 4, 4, 4, 2]  # no far tier
    assert horizon_columns(6, None, 4, 2, 8).tolist() == [1] * 6  # no tiers at all
    with pytest.raises(ValueError, match="far_start_steps"):
        horizon_columns(20, 4, 4, 2, 8)
    with pytest.raises(ValueError, match="far_start_steps"):
        SolverOptions(fine_steps=8, far_start_steps=4)
    assert horizon_columns(8, 4, 4).tolist() == [1, 1, 1, 1, 4]
    assert horizon_columns(5).tolist() == [1] * 5
    assert horizon_columns(5, 9, 4).tolist() == [1] * 5  # fine region beyond the horizon
    with pytest.raises(ValueError, match="fine_steps"):
        horizon_columns(5, 0)
    with pytest.raises(ValueError, match="coarse_block_steps"):
        horizon_columns(5, 2, 0)
    with pytest.raises(ValueError, match="fine_steps"):
        SolverOptions(fine_steps=1, committed_intervals=2)


@pytest.mark.parametrize("form", [Form.LP, Form.COMMITTED_INTEGER])
def test_one_interval_columns_equal_the_plain_model(form: Form) -> None:
    """A "coarse" tail of 1-interval columns is the plain model: same optimum."""
    cfg, inputs = _two_campus_case(12)
    plain = Problem(cfg, 12).solve(inputs, PlantState(), form)
    ones = Problem(cfg, 12, SolverOptions(fine_steps=3, coarse_block_steps=1))
    assert not ones.blocked
    res = ones.solve(inputs, PlantState(), form)
    assert res.objective_usd == pytest.approx(plain.objective_usd, rel=1e-9)


def test_constant_data_without_starts_costs_the_same() -> None:
    """Hand check: one pool (μ 1000 tok/s, 100 W idle, 0.1 J/token), D = 1500 tok/s and
    100 $/MWh in all 10 intervals, 2 instances already running (no start needed).
    Every interval: n = 1.5, P = 150 + 150 = 300 W, 0.25 h · 100 $/MWh · 300e-6 MW =
    0.0075 $; 10 intervals 0.075 $, whether as 10 columns or as 2 + 4 + 4."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)])
    inputs = _inputs([1500.0] * 10, [[100.0] * 10])
    state = PlantState({("A", "m", "BF16"): 2})
    plain = Problem(cfg, 10).solve(inputs, state, Form.LP)
    blocked = Problem(cfg, 10, SolverOptions(fine_steps=2, coarse_block_steps=4))
    res = blocked.solve(inputs, state, Form.LP)
    assert blocked.n_columns == 4
    assert plain.objective_usd == pytest.approx(0.075, rel=1e-6)
    assert res.objective_usd == pytest.approx(0.075, rel=1e-6)
    assert res.cost is not None and res.cost.total_usd == pytest.approx(0.075, rel=1e-6)
    assert res.plan is not None and res.plan.instances.shape == (1, 10)
    np.testing.assert_allclose(res.plan.instances, 1.5, atol=1e-6)


def test_block_takes_mean_demand_and_price_and_weights_its_cost() -> None:
    """Two intervals in one column (fine_steps 1, blocks of 2; the first interval is
    its own column). Demand 1000 | 1000, 3000 tok/s, prices 100 | 50, 150 $/MWh → the
    column serves the mean 2000 tok/s at the mean 100 $/MWh over 2 intervals:
    P = 2 · 100 + 2000 · 0.1 = 400 W, 2 · 0.25 · 100 · 400e-6 = 0.02 $; the first
    interval 1 instance, 200 W, 0.25 · 100 · 200e-6 = 0.005 $."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)])
    inputs = _inputs([1000.0, 1000.0, 3000.0], [[100.0, 50.0, 150.0]])
    prob = Problem(cfg, 3, SolverOptions(fine_steps=1, coarse_block_steps=2))
    res = prob.solve(inputs, PlantState({("A", "m", "BF16"): 2}), Form.LP)
    assert res.plan is not None
    np.testing.assert_allclose(res.plan.tokens_per_s, [[1000, 2000, 2000]], atol=1e-3)
    np.testing.assert_allclose(res.plan.instances, [[1, 2, 2]], atol=1e-6)
    assert res.objective_usd == pytest.approx(0.025, rel=1e-6)


def test_starts_land_on_the_first_interval_of_their_column() -> None:
    """Nothing running, constant demand: every instance starts in interval 0; a later
    rise starts instances at the start of the column that needs them."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)],
                  start_cost_usd_per_gpu=0.01)
    inputs = _inputs([1000.0, 1000.0, 1000.0, 1000.0, 3000.0, 3000.0], [[100.0] * 6])
    prob = Problem(cfg, 6, SolverOptions(fine_steps=2, coarse_block_steps=2))
    res = prob.solve(inputs, PlantState(), Form.LP)
    assert res.plan is not None
    np.testing.assert_allclose(res.plan.starts, [[1, 0, 0, 0, 2, 0]], atol=1e-6)
    assert res.plan.decision(0).fleet.instances[("A", "m", "BF16")] == 1


def test_dr_event_in_part_of_a_column() -> None:
    """An event in the 2nd interval of a 2-interval column: the column's reward rate is
    half the programme's, its baseline the event interval's, its cap the least of its
    intervals'. The LP runs 2/3 instance (μ 3000 tok/s for 2000 tok/s): p = 66.7 + 200
    W → settlement 2 · 0.25 h · 0.5 $/kWh · (1 − 0.26667) kW = 0.18333 $, as for the
    event interval alone (0.25 h · 1 $/kWh) at the column's power."""
    cfg = _config([_row("BF16", mu=3000, gpus=1, idle_w=100, e_j=0.1, loss=0)])
    base = dataclasses.replace(
        _inputs([2000.0] * 3, [[0.0] * 3]),
        dr_event=np.array([[0.0, 0.0, 1.0]]), dr_baseline_mw=np.array([[0.0, 0.0, 1e-3]]))
    prob = Problem(cfg, 3, SolverOptions(fine_steps=1, coarse_block_steps=2))
    res = prob.solve(base, PlantState({("A", "m", "BF16"): 1}), Form.LP)
    assert res.cost is not None
    assert res.cost.dr_reward_usd == pytest.approx(0.25 * (1 - 0.8 / 3), rel=1e-6)
    assert res.cost.dr_penalty_usd == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("far_start", [None, 8])
def test_receding_blocked_solves_warm_equal_cold(far_start: int | None) -> None:
    """The starting basis (fine columns shifted, coarse columns kept) never changes
    the optimum of the blocked model (two or three tiers); committed intervals are
    integral."""
    cfg = two_campus_site()
    H = 16
    opts = dict(fine_steps=4, coarse_block_steps=2, far_start_steps=far_start,
                far_block_steps=4)
    warm = Problem(cfg, H, SolverOptions(**opts))  # type: ignore[arg-type]
    cold = Problem(cfg, H, SolverOptions(warm_start="cold", **opts))  # type: ignore[arg-type]
    state = PlantState()
    for inputs in receding_windows(random_inputs(np.random.default_rng(9), 22), H):
        a = warm.solve(inputs, state, Form.COMMITTED_INTEGER)
        b = cold.solve(inputs, state, Form.COMMITTED_INTEGER)
        assert a.plan is not None and a.objective_usd == pytest.approx(b.objective_usd,
                                                                       rel=1e-6)
        assert np.allclose(a.plan.instances[:, 0], np.round(a.plan.instances[:, 0]))
        state = PlantState(dict(a.plan.decision(0).fleet.instances))
    assert warm.last_warm_start == "shift"


def test_shift_maps_with_a_coarse_tail() -> None:
    """Fine columns come from the next column; coarse columns (and the last fine one)
    keep their own."""
    prob = Problem(two_campus_site(), 12, SolverOptions(fine_steps=4, coarse_block_steps=4))
    assert prob.n_columns == 6
    fast = prob.model(False).fast
    col_src, _, _ = fast.shift_maps(prob.n_columns, time_src=prob._time_source)
    n = fast.columns("instances")
    P = prob.ctx.n_pools
    np.testing.assert_array_equal(col_src[n[: 3 * P]], n[P : 4 * P])
    np.testing.assert_array_equal(col_src[n[3 * P :]], n[3 * P :])


def test_full_plan_and_fixed_instances_on_a_blocked_model() -> None:
    """A fully integral plan (integer_intervals = H) of a blocked model is integral in
    every interval, and re-costing it with its instances fixed gives its cost."""
    cfg, inputs = _two_campus_case(12)
    prob = Problem(cfg, 12, SolverOptions(fine_steps=4, coarse_block_steps=4))
    day = prob.solve(inputs, PlantState(), Form.COMMITTED_INTEGER, integer_intervals=12)
    assert day.plan is not None
    assert np.allclose(day.plan.instances, np.round(day.plan.instances))
    assert day.mip_gap == day.mip_gap  # certified: not NaN
    again = prob.solve(inputs, PlantState(), Form.LP, fix_instances=day.plan.instances)
    assert again.objective_usd == pytest.approx(day.objective_usd, rel=1e-6)


def test_scenario_keys() -> None:
    """The controller keys give the one problem's multi-resolution horizon."""
    from mpc_dc.runner import solver_options
    from mpc_dc.site.config import Campus, Fleet, Site
    from mpc_dc.site.scenario import ControllerSpec

    site = Site(campuses=(Campus("A", "NP15", gpus=64),), fleet=Fleet(models=("qwen3-8b",)))
    opts = solver_options(ControllerSpec(horizon_h=24.0, fine_horizon_h=6.0,
                                         coarse_step_h=1.0))
    assert (opts.fine_steps, opts.coarse_block_steps) == (24, 4)
    assert solver_options(ControllerSpec()).fine_steps == 32  # 8 h by default
    far = solver_options(ControllerSpec(horizon_h=48.0))
    assert (far.far_start_steps, far.far_block_steps) == (96, 16)
    assert Problem(site, 192, far).columns.tolist() == [1] * 32 + [4] * 16 + [16] * 6
    # full resolution needs only fine_horizon_h: the far tier starts at least there
    full48 = solver_options(ControllerSpec(horizon_h=48.0, fine_horizon_h=48.0))
    assert not Problem(site, 192, full48).blocked
    full = solver_options(ControllerSpec(horizon_h=8.0, fine_horizon_h=8.0))
    assert not Problem(site, 32, full).blocked
    # A horizon to the run end is solved at full resolution.
    to_end = solver_options(ControllerSpec(horizon_h=8.0, horizon_to_end=True))
    assert to_end.fine_steps is None
    with pytest.raises(ConfigError, match="coarse_step_h"):
        ControllerSpec(coarse_step_h=0.3)
    with pytest.raises(ConfigError, match="fine_horizon_h"):
        ControllerSpec(fine_horizon_h=0.1)
    with pytest.raises(ConfigError, match="fine_horizon_h"):
        ControllerSpec(fine_horizon_h=6.1)


@pytest.mark.parametrize("form", [Form.COMMITTED_INTEGER, Form.FULL_MILP])
def test_switching_off_with_a_coarse_tail(form: Form) -> None:
    """Without Sw the fleet is one size for the horizon. D = 1000 | 1000, 3000 | 3000,
    3000 tok/s (1 fine interval, then columns of 2): the constant fleet covers the
    column means, 3 instances everywhere (the 2nd column's mean is 2000, the 3rd's 3000)."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)],
                  flexibility=Flexibility(switching=False))
    inputs = _inputs([1000.0, 1000.0, 3000.0, 3000.0, 3000.0], [[50.0] * 5])
    prob = Problem(cfg, 5, SolverOptions(fine_steps=1, coarse_block_steps=2))
    res = prob.solve(inputs, PlantState({("A", "m", "BF16"): 1}), form)
    assert res.plan is not None
    np.testing.assert_allclose(res.plan.instances[0], [3, 3, 3, 3, 3], atol=1e-6)
    np.testing.assert_allclose(res.plan.tokens_per_s[0], [1000, 2000, 2000, 3000, 3000],
                               atol=1e-3)

"""Deterministic solver limits (issue 19: a benchmark suite bit-identical on any executor).

HiGHS's wall-clock limit makes a solve that reaches it depend on the machine's load;
its branch-and-bound node limit does not. These tests check that the node limit of the
scenario keys (``controller.mip_max_nodes``, ``controller.offline_mip_max_nodes``)
reaches HiGHS, that a MILP it stops ends at the same plan and gap every time, and that
a solve stopped on the wall clock is counted, up to the scorecard.
"""

from __future__ import annotations

import tomllib

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest

from mpc_dc.control.mpc import ControllerStats
from mpc_dc.fastpath import NO_NODE_LIMIT, HighsFastPath
from mpc_dc.problem import Formulation, Problem, SolverOptions, SolveStatus
from mpc_dc.runner import offline_options, solver_options
from mpc_dc.site.scenario import (
    DEFAULT_MIP_MAX_NODES,
    DEFAULT_TIME_LIMIT_S,
    ControllerSpec,
    example_path,
    load_scenario,
)
from mpc_dc.suite import scorecard, summary, time_limit_notes
from tests.test_problem_regression import fleet_inputs, fleet_site


def market_split(seed: int = 0, rows: int = 3, cols: int = 24) -> cp.Problem:
    """A market-split MILP (Cornuéjols and Dawande): ``min Σ|s|`` s.t. ``A x + s = d``,
    x binary, d half the row sums. Its LP bound is 0 and branch-and-bound needs about
    60,000 nodes (≈ 10 s) to prove the optimum of this instance (1), so a small node
    limit stops it with a plan and a gap."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, size=(rows, cols))
    x = cp.Variable(cols, boolean=True)
    s = cp.Variable(rows)
    u = cp.Variable(rows, nonneg=True)
    weight = cp.Parameter(rows, value=np.ones(rows))
    return cp.Problem(cp.Minimize(weight @ u),
                      [a @ x + s == a.sum(axis=1) // 2, u >= s, u >= -s])


def test_a_node_limit_stops_a_milp_at_the_same_plan_and_gap_every_time() -> None:
    runs = []
    for _ in range(2):  # two models built from scratch, as two processes would
        fast = HighsFastPath(market_split(), time_limit_s=60.0, mip_rel_gap=0.0,
                             mip_max_nodes=50)
        runs.append(fast.solve())
        assert fast.time_limit_hits == 0
    first, second = runs
    # Stopped by the node limit with a plan: a certified gap, not the optimum.
    assert first.model_status == "kSolutionLimit" and first.x is not None
    assert SolveStatus.from_highs(first.model_status, True) is SolveStatus.FEASIBLE
    assert first.objective > first.dual_bound + 0.5 and first.mip_gap > 0.5
    assert second.model_status == first.model_status
    assert (second.objective, second.dual_bound, second.mip_gap) == (
        first.objective, first.dual_bound, first.mip_gap)
    assert second.x is not None and np.array_equal(second.x, first.x)


def test_the_dr_weeks_step_limits_end_a_milp_alike_at_any_wall_clock_budget() -> None:
    """``dr_caiso.toml``'s per-step limits (its week and its DR lead-in run under them):
    a MIP run that would take longer than the wall-clock limit (the market split, about
    10 s idle) stops at the node limit, at the same plan with the scenario's wall-clock
    budget and with a thousand-fold one, and no run is stopped by the wall clock. With
    the former 5-s limit and no node limit the wall clock stopped it wherever the
    machine's load let it get."""
    options = solver_options(load_scenario(example_path("dr_caiso")).controller)
    runs = []
    for budget in (options.time_limit_s, 1000.0 * options.time_limit_s):
        fast = HighsFastPath(market_split(), time_limit_s=budget,
                             mip_rel_gap=options.mip_rel_gap,
                             mip_max_nodes=options.mip_max_nodes)
        runs.append(fast.solve())
        assert fast.time_limit_hits == 0, f"wall-clock budget {budget:g} s reached"
    first, second = runs
    assert first.model_status == second.model_status == "kSolutionLimit"
    assert (second.objective, second.dual_bound) == (first.objective, first.dual_bound)
    assert first.x is not None and second.x is not None and np.array_equal(first.x, second.x)


@pytest.mark.parametrize("name", ["default", "burstgpt_caiso_month", "fleet_default",
                                  "nyiso_wind_fleet", "dr_caiso", "rcdc_default"])
def test_a_scenario_without_the_limit_keys_gets_the_deterministic_step_limits(
        name: str) -> None:
    """The node limit (500) and the 60-s safety clock are the controller's defaults, not
    keys each shipped scenario copies: a scenario that sets neither key gets them."""
    path = example_path(name)
    table = tomllib.loads(path.read_text())
    assert not {"mip_max_nodes", "time_limit_s"} & set(table["controller"]), path
    options = solver_options(load_scenario(path).controller)
    assert (options.mip_max_nodes, options.time_limit_s) == (
        DEFAULT_MIP_MAX_NODES, DEFAULT_TIME_LIMIT_S) == (500, 60.0)
    assert solver_options(ControllerSpec()).mip_max_nodes == 500


def test_a_wall_clock_stop_is_counted_up_to_the_scorecard() -> None:
    fast = HighsFastPath(market_split(), time_limit_s=1e-6, mip_rel_gap=0.0)
    assert fast.solve().model_status == "kTimeLimit" and fast.time_limit_hits == 1
    # Through a Problem: the result says so and the controller's counter takes it.
    options = SolverOptions(full_time_limit_s=1e-6)
    result = Problem(fleet_site("S6"), 3, options).solve(
        fleet_inputs(3, seed=1, dr=True), None, "full_milp")
    assert result.time_limit_hit
    stats = ControllerStats()
    stats.record(result)
    assert stats.time_limit_hits == 1
    # The DR lead-in's stops count with the run's own (its meter is the baselines').
    results = pd.DataFrame([{"run_id": p, "status": "done", "scenario": "s", "policy": p,
                             "controller": p, "cost_usd": c, "solver_time_limit_hits": h,
                             "dr_lead_in_solver_time_limit_hits": lead}
                            for p, c, h, lead in (("baseline", 2.0, 0, 0), ("mpc", 1.5, 0, 2),
                                                  ("offline", 1.0, 1, 0))])
    timings = pd.DataFrame({"run_id": results["run_id"], "decide_time_median_s": 0.0})
    card = scorecard(results, timings, 0.0)
    assert list(card["time_limit_hits"]) == [0.0, 2.0, 1.0]
    assert summary(card).set_index("policy").loc["offline", "time_limit_hits"] == 1.0
    notes = time_limit_notes(card)
    assert len(notes) == 2 and notes[1].startswith("s / offline: 1 solve(s) stopped")
    assert notes[0].startswith("s / mpc: 2 solve(s) stopped")


def test_a_node_limit_stop_is_counted_up_to_the_scorecard() -> None:
    """A node-limit stop is counted as a wall-clock stop is (KPI
    ``solver_node_limit_hits``, the scorecard's ``node-limit hits``), not only seen in
    the statuses and the gap."""
    fast = HighsFastPath(market_split(), time_limit_s=60.0, mip_rel_gap=0.0, mip_max_nodes=50)
    assert fast.solve().model_status == "kSolutionLimit"
    assert (fast.node_limit_hits, fast.time_limit_hits) == (1, 0)
    # Through a Problem: 7 nodes leave the committed MIP of this instance unproven.
    inputs = fleet_inputs(3, seed=1, dr=True)
    stats = ControllerStats()
    for nodes in (7, None):
        problem = Problem(fleet_site("S6"), 3, SolverOptions(mip_max_nodes=nodes),
                          formulation=Formulation.EXACT)
        result = problem.solve(inputs, None, "committed_mip")
        assert result.node_limit_hit is (nodes is not None), nodes
        assert problem.node_limit_hits == int(nodes is not None)
        stats.record(result)
    assert (stats.node_limit_hits, stats.time_limit_hits) == (1, 0)
    results = pd.DataFrame([{"run_id": p, "status": "done", "scenario": "s", "policy": p,
                             "controller": p, "cost_usd": c, "solver_time_limit_hits": 0,
                             "solver_node_limit_hits": n,
                             "dr_lead_in_solver_node_limit_hits": lead}
                            for p, c, n, lead in (("baseline", 2.0, 0, 0), ("mpc", 1.5, 3, 2),
                                                  ("offline", 1.0, 1, 0))])
    timings = pd.DataFrame({"run_id": results["run_id"], "decide_time_median_s": 0.0})
    card = scorecard(results, timings, 0.0)
    # The DR lead-in's stops count with the run's own (its meter is the baselines').
    assert list(card["node_limit_hits"]) == [0.0, 5.0, 1.0]
    assert summary(card).set_index("policy").loc["mpc", "node_limit_hits"] == 5.0
    assert time_limit_notes(card) == []  # deterministic: not a reproducibility note


def test_the_node_limit_keys_reach_highs_for_each_form() -> None:
    spec = ControllerSpec(mip_max_nodes=7, offline_mip_max_nodes=3)
    mpc = solver_options(spec)
    assert mpc.mip_max_nodes == 7 and mpc.full_mip_max_nodes is None
    offline = offline_options(spec)
    assert offline.mip_max_nodes == offline.full_mip_max_nodes == 3
    inputs = fleet_inputs(3, seed=1, dr=True)
    problem = Problem(fleet_site("S6"), 3, SolverOptions(mip_max_nodes=7, full_mip_max_nodes=3),
                      formulation=Formulation.EXACT)
    # The committed forms and the full MILP switch limits on one resident model.
    statuses = []
    for form, nodes in (("committed_mip", 7), ("full_milp", 3), ("committed_mip", 7)):
        statuses.append(problem.solve(inputs, None, form).status)
        assert problem.model(True).fast.limits()["mip_max_nodes"] == nodes, form
    # Without a limit HiGHS keeps its own default, no node limit, and proves the
    # committed MIP that 7 nodes leave unproven (same options otherwise).
    plain = Problem(fleet_site("S6"), 3, SolverOptions(), formulation=Formulation.EXACT)
    assert plain.solve(inputs, None, "committed_mip").status is SolveStatus.OPTIMAL
    assert plain.model(True).fast.limits()["mip_max_nodes"] == NO_NODE_LIMIT
    assert statuses[0] is statuses[2] is SolveStatus.FEASIBLE


@pytest.mark.parametrize("nodes", [0, -1, NO_NODE_LIMIT + 1, 2.0, True])
def test_solver_options_refuse_a_node_limit_that_is_not_a_positive_integer(
        nodes: object) -> None:
    with pytest.raises(ValueError, match=r"SolverOptions\.full_mip_max_nodes: expected None or"):
        SolverOptions(full_mip_max_nodes=nodes)  # type: ignore[arg-type]

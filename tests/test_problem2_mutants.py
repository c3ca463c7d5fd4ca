"""Mutation check of the one problem: each hand-listed mutant of a block must be caught.

The idea of tests/test_mutants.py on :mod:`mpc_dc.blocks2`: a mutant replaces one
``define_*`` function where :func:`mpc_dc.problem2.build_model` looks it up by a wrong
version (a constraint group dropped, the exact processing function relaxed, warm-up
ignored, a cost term left out). The checks are hand-solved instances, each asserting
a feasible plan at its known optimum:

* the RCDC witnesses of tests/test_problem_properties.py on the one-campus site (the
  plan checked for the real problem, W = F(P) from F's breakpoints, exclusivity,
  release and deadline, balance, and against the brute force);
* the fleet's hand-solved instances of tests/test_fleet_problem.py on the site of
  campuses with GPUs (figures from those tests' docstrings);
* the combined instances and the battery of tests/test_problem2_combined.py.

A mutant survives when every check still passes; its test then fails. The unmutated
blocks pass every check, so a check that always fails cannot kill mutants.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import mpc_dc.problem2
from mpc_dc.blocks2.compute_load import define_processing_relaxed
from mpc_dc.fleet_problem import FleetInputs, FleetState
from mpc_dc.params.fleet import CampusParams, FleetConfig, Flexibility
from mpc_dc.problem2 import Formulation, Problem
from tests import test_lateness as lateness
from tests import test_problem2_combined as combined
from tests.problem2_equiv import (
    inputs_of_fleet,
    inputs_of_rcdc,
    site_of_fleet,
    site_of_rcdc,
    state_of_fleet,
    state_of_rcdc,
)
from tests.test_fleet_problem import _config, _inputs, _row
from tests.test_mutants import (
    Block,
    Check,
    Mutant,
    _failures,
    drop,
    ignore_warmup,
    replace_by,
)
from tests.test_problem_properties import WITNESSES, Witness, _brute_force, _site, check_plan

# ----------------------------------------------------------------------------- checks


def _witness_check(witness: Witness) -> Check:
    def run() -> None:
        retail, inputs, state = witness.case
        problem = Problem(site_of_rcdc(_site(retail)), inputs.horizon_steps,
                          formulation=Formulation.EXACT, demand_response=False)
        res = problem.solve(inputs_of_rcdc(inputs), state_of_rcdc(state))
        plan = res.plan
        assert plan is not None, res.message
        # the plan in the shape tests/test_problem_properties.check_plan reads
        view = SimpleNamespace(
            status=res.status, objective_usd=res.objective_usd,
            plan=SimpleNamespace(it_power_mw=plan.other_it_mw[0], import_mw=plan.import_mw[0],
                                 export_mw=plan.export_mw[0],
                                 renewable_used_mw=plan.renewable_used_mw[0],
                                 work_df_wu=plan.work_df_wu[0]))
        check_plan(retail, inputs, state, view)  # type: ignore[arg-type]
        assert res.objective_usd <= _brute_force(retail, inputs, state) + 1e-5
        assert res.objective_usd == pytest.approx(witness.optimum_usd, abs=1e-6)

    return f"witness: {witness.name}", run


def _fleet_check(name: str, cfg: FleetConfig, inputs: FleetInputs, state: FleetState,
                 form: str, *, instances: list[list[float]] | None = None,
                 cost_usd: float | None = None, unserved_tokens: float = 0.0) -> Check:
    def run() -> None:
        res = Problem(site_of_fleet(cfg), inputs.horizon_steps).solve(
            inputs_of_fleet(inputs), state_of_fleet(state), form)
        assert res.plan is not None and res.cost is not None, res.message
        if instances is not None:
            np.testing.assert_allclose(res.plan.instances, instances, atol=1e-6)
        if cost_usd is not None:
            assert res.objective_usd == pytest.approx(cost_usd, rel=1e-6)
        assert res.unserved_tokens == pytest.approx(unserved_tokens, rel=1e-6, abs=1e-6)

    return name, run


def _fleet_checks() -> tuple[Check, ...]:
    """The hand-solved instances of tests/test_fleet_problem.py (figures from there)."""
    bf16 = _row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)
    fp8 = _row("FP8", mu=1000, gpus=1, idle_w=100, e_j=0.05, loss=1.0)
    warm = _row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0, load_s=675.0)
    one = FleetState({("A", "m", "BF16"): 1})
    two = (CampusParams("A", "A", 4, pue=1.0), CampusParams("B", "B", 4, pue=1.0))
    checks = [
        _fleet_check(f"quality budget binds ({form})",
                     _config([bf16, fp8], quality_budget_pct_points=0.5),
                     _inputs([2000, 2000], [[100, 100]]), FleetState(), form,
                     instances=[[1, 1], [1, 1]], cost_usd=0.0175)
        for form in ("committed_integer", "full_milp")]
    checks += [
        _fleet_check("GPU limit forces low precision",
                     _config([_row("BF16", mu=1000, gpus=2, idle_w=100, e_j=0.1, loss=0),
                              _row("FP8", mu=1000, gpus=1, idle_w=100, e_j=0.2, loss=0.1)],
                             campuses=(CampusParams("A", "A", 2, pue=1.0),),
                             quality_budget_pct_points=1.0),
                     _inputs([2000], [[100]]), FleetState(), "full_milp",
                     instances=[[0], [2]], cost_usd=0.015),
        _fleet_check("unserved only when infeasible",
                     _config([bf16], campuses=(CampusParams("A", "A", 2, pue=1.0),)),
                     _inputs([5000], [[50]]), FleetState(), "committed_integer",
                     unserved_tokens=2.7e6),
        _fleet_check("spatial routing (Sp on)", _config([bf16], campuses=two),
                     _inputs([2000], [[10], [100]]), FleetState(), "committed_integer",
                     instances=[[2], [0]], cost_usd=0.001),
        _fleet_check("fixed shares (Sp off)",
                     _config([bf16], campuses=two, flexibility=Flexibility(spatial=False)),
                     _inputs([2000], [[10], [100]]), FleetState(), "committed_integer",
                     instances=[[1], [1]], cost_usd=0.0055),
        _fleet_check("switching off keeps the fleet constant",
                     _config([bf16], flexibility=Flexibility(switching=False)),
                     _inputs([1000, 3000, 1000], [[50, 50, 50]]), one, "full_milp",
                     instances=[[3, 3, 3]]),
        _fleet_check("warm-up, Sw on", _config([warm]),
                     _inputs([1000, 3000, 1000], [[50, 50, 50]]), one, "full_milp",
                     instances=[[3, 3, 1]], cost_usd=0.015),
        _fleet_check("warm-up, Sw off",
                     _config([warm], flexibility=Flexibility(switching=False)),
                     _inputs([1000, 3000, 1000], [[50, 50, 50]]), one, "full_milp",
                     instances=[[3, 3, 3]], cost_usd=0.0175),
        _fleet_check("warm-up, unserved", _config([warm]), _inputs([3000], [[50]]), one,
                     "full_milp", instances=[[8]], unserved_tokens=225_000),
    ]
    return tuple(checks)


RCDC_CHECKS: tuple[Check, ...] = tuple(_witness_check(w) for w in WITNESSES)
FLEET_CHECKS = _fleet_checks()
COMBINED_CHECKS: tuple[Check, ...] = tuple(
    (name, getattr(combined, name)) for name in (
        "test_pools_other_it_renewable_and_export",
        "test_negative_price_curtails_wind_and_imports",
        "test_exact_binaries_ride_along_round_and_fix",
        "test_demand_response_on_grid_import_with_wind",
        "test_demand_charge_is_per_campus_and_moves_tokens",
        "test_coarse_column_holds_deferrable_work_and_averages_prices",
        "test_battery_shifts_energy_and_ends_where_it_started",
        "test_battery_cannot_burn_energy_at_a_negative_price",
        "test_carbon_price_moves_tokens_to_the_cleaner_campus",
        "test_dr_event_moves_tokens_to_another_campus"))
_carries = lateness.test_lateness_block_carries_what_a_column_cannot_serve
LATENESS_CHECKS: tuple[Check, ...] = (
    ("lateness block, Sp on", lambda: _carries(True)),
    ("lateness block, Sp off", lambda: _carries(False)),
    ("lateness entry price", lateness.test_a_late_token_pays_its_entry),
    ("lateness to the horizon end", lateness.test_lateness_left_at_the_horizon_end_is_unserved),
)
ALL_CHECKS = RCDC_CHECKS + FLEET_CHECKS + COMBINED_CHECKS + LATENESS_CHECKS


def drop_cost(name: str) -> Callable[[Block], Block]:
    """Mutation: the block adds everything but its cost term ``name`` (cost blocks have
    no constraint group to drop)."""

    def mutate(original: Block) -> Block:
        def block(ctx: Any) -> None:
            original(ctx)
            ctx.costs.pop(name)

        return block

    return mutate


def drop_expression(name: str) -> Callable[[Block], Block]:
    """Mutation: the block adds everything but the expression ``name`` other blocks read."""

    def mutate(original: Block) -> Block:
        def block(ctx: Any) -> None:
            original(ctx)
            ctx.expressions.pop(name)

        return block

    return mutate


def drop_cost_of(name: str) -> Callable[[Block], Block]:
    """:func:`drop_cost` of a block that takes more than the context."""

    def mutate(original: Block) -> Block:
        def block(ctx: Any, *args: Any) -> None:
            original(ctx, *args)
            ctx.costs.pop(name)

        return block

    return mutate


P2 = mpc_dc.problem2
MUTANTS = (
    Mutant("import/export exclusivity removed", P2, "define_import_export_exclusivity",
           drop("import/export exclusivity"), RCDC_CHECKS),
    Mutant("W = F(P) relaxed in the exact form", P2, "define_processing_exact",
           replace_by(define_processing_relaxed), RCDC_CHECKS),
    Mutant("segment order of the exact F dropped", P2, "define_processing_exact",
           drop("processing function order"), RCDC_CHECKS),
    Mutant("hypograph of F dropped (relaxed form)", P2, "define_processing_relaxed",
           drop("processing function"), COMBINED_CHECKS),
    Mutant("deferrable release dropped", P2, "define_deferrable_work",
           drop("deferrable release"), RCDC_CHECKS),
    Mutant("deferrable deadline dropped", P2, "define_deferrable_work",
           drop("deferrable deadline"), RCDC_CHECKS),
    Mutant("deferrable cumulative work dropped", P2, "define_deferrable_work",
           drop("deferrable cumulative work"), RCDC_CHECKS + COMBINED_CHECKS),
    Mutant("renewable availability dropped", P2, "define_renewable",
           drop("renewable availability"), RCDC_CHECKS + COMBINED_CHECKS),
    Mutant("demand-charge peak dropped", P2, "define_demand_charge",
           drop("demand charge peak"), RCDC_CHECKS + COMBINED_CHECKS),
    Mutant("power balance dropped", P2, "define_power_balance", drop("power balance"),
           ALL_CHECKS),
    Mutant("battery energy balance dropped", P2, "define_battery",
           drop("battery energy balance"), COMBINED_CHECKS),
    Mutant("battery terminal energy dropped", P2, "define_battery",
           drop("battery terminal energy"), COMBINED_CHECKS),
    Mutant("battery exclusivity dropped", P2, "define_battery",
           drop("battery charge/discharge exclusivity"), COMBINED_CHECKS),
    Mutant("carbon cost left out", P2, "define_carbon_cost", drop_cost("carbon_usd"),
           COMBINED_CHECKS),
    Mutant("DR cap dropped", P2, "define_demand_response", drop("DR cap"), COMBINED_CHECKS),
    Mutant("DR settlement left out", P2, "define_demand_response_cost",
           drop_cost("dr_reward_usd"), COMBINED_CHECKS),
    Mutant("inference power (kW variable of a MW site) dropped", P2, "define_inference_power",
           drop("inference power"), COMBINED_CHECKS),
    Mutant("demand rows dropped", P2, "define_demand", drop("demand"), FLEET_CHECKS),
    Mutant("capacity at the SLO dropped", P2, "define_capacity", drop("capacity at SLO"),
           FLEET_CHECKS),
    Mutant("warm-up ignored", P2, "define_capacity", ignore_warmup, FLEET_CHECKS),
    Mutant("instance starts dropped", P2, "define_switching", drop("starts"), FLEET_CHECKS),
    Mutant("constant fleet (Sw off) dropped", P2, "define_switching",
           drop("constant fleet (Sw off)"), FLEET_CHECKS),
    Mutant("GPU limit dropped", P2, "define_gpu_limit", drop("GPU limit"), FLEET_CHECKS),
    Mutant("quality budget dropped", P2, "define_quality", drop("quality budget"),
           FLEET_CHECKS),
    Mutant("fixed campus shares dropped", P2, "define_spatial_shares",
           drop("fixed campus shares"), FLEET_CHECKS),
    Mutant("backlog entries dropped", P2, "define_backlog", drop("backlog entries"),
           LATENESS_CHECKS),
    Mutant("backlog left out of the demand rows", P2, "define_backlog",
           drop_expression("backlog_change_kps"), LATENESS_CHECKS),
    Mutant("lateness cost left out", P2, "define_lateness_cost",
           drop_cost_of("lateness_usd"), LATENESS_CHECKS),
)


def test_checks_pass_on_the_real_blocks() -> None:
    assert _failures(ALL_CHECKS) == []


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_caught(mutant: Mutant, monkeypatch: pytest.MonkeyPatch) -> None:
    original = getattr(mutant.module, mutant.block)
    monkeypatch.setattr(mutant.module, mutant.block, mutant.mutate(original))
    failed = _failures(mutant.checks)
    assert failed, f"mutant survived: {mutant.name} ({mutant.module.__name__}.{mutant.block})"


def test_every_mutated_block_is_called_by_the_builder() -> None:
    """A mutant of a name the builder does not call would survive for the wrong reason;
    and every block the builder calls with a constraint group has a mutant."""
    called = set(mpc_dc.problem2.build_model.__code__.co_names)
    mutated = {m.block for m in MUTANTS}
    assert mutated <= called
    blocks = {name for name in called if name.startswith("define_")}
    # cost-only blocks whose terms the hand checks price (energy, switching, quality,
    # unserved) are covered by every cost assertion; the rest must have a mutant
    assert blocks - mutated <= {"define_compute_variables", "define_fleet_variables",
                                "define_grid_variables", "define_energy_cost",
                                "define_switching_cost", "define_quality_cost",
                                "define_unserved_cost"}

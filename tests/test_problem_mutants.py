"""Mutation check of the one problem: each hand-listed mutant of a block must be caught.

A mutant replaces one ``define_*`` function where :func:`mpc_dc.problem.define_model`
looks it up by a wrong version (a constraint group dropped, the exact processing
function relaxed, warm-up ignored, a cost term left out). The checks are hand-solved
instances, each asserting a feasible plan at its known optimum:

* the RCDC witnesses of tests/test_problem_properties.py on the one-campus site (the
  plan checked for the real problem, W = F(P) from F's breakpoints, exclusivity,
  release and deadline, balance, and against the brute force);
* the fleet's hand-solved instances of tests/test_problem_fleet.py on sites of
  campuses with GPUs;
* the combined instances and the battery of tests/test_problem_combined.py.
* the lateness block's hand-solved instances of tests/test_lateness.py;
* the warm-up overload's of tests/test_bursts.py.

A mutant survives when every check still passes; its test then fails. The unmutated
blocks pass every check, so a check that always fails cannot kill mutants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cvxpy as cp
import numpy as np
import pytest

import mpc_dc.problem
from mpc_dc.blocks.compute_load import define_processing_relaxed
from mpc_dc.problem import Formulation
from tests import test_bursts as bursts
from tests import test_lateness as lateness
from tests import test_problem_combined as combined
from tests import test_problem_fleet as fleet
from tests.test_problem_properties import WITNESSES, Witness, check_exact, new_problem

Block = Callable[[Any], None]
Check = tuple[str, Callable[[], None]]

# ----------------------------------------------------------------------------- checks


def _witness_check(witness: Witness) -> Check:
    def run() -> None:
        # A problem built now, so that it is built with the blocks as patched.
        problem = new_problem(witness.inputs.horizon_steps, witness.retail, Formulation.EXACT)
        cost = check_exact(*witness.case, problem=problem)
        assert cost == pytest.approx(witness.optimum_usd, abs=1e-6)

    return f"witness: {witness.name}", run


RCDC_CHECKS: tuple[Check, ...] = tuple(_witness_check(w) for w in WITNESSES)
FLEET_CHECKS: tuple[Check, ...] = (
    *((f"quality budget binds ({form})", lambda form=form: fleet.test_quality_budget_binds(form))
      for form in fleet.FORMS),
    ("GPU limit forces low precision", fleet.test_gpu_limit_forces_low_precision),
    ("unserved only when infeasible", fleet.test_unserved_reported_only_when_infeasible),
    *((f"spatial routing (Sp {sp})",
       lambda sp=sp: fleet.test_spatial_routing_moves_tokens_to_cheaper_campus(sp))
      for sp in (True, False)),
    ("switching off keeps the fleet constant", fleet.test_switching_off_keeps_fleet_constant),
    ("warm-up, Sw on", lambda: fleet.test_warmup_starts_instances_an_interval_early(
        True, [3, 3, 1], 0.015)),
    ("warm-up, Sw off", lambda: fleet.test_warmup_starts_instances_an_interval_early(
        False, [3, 3, 3], 0.0175)),
    ("warm-up, unserved", fleet.test_warmup_without_an_earlier_interval_leaves_tokens_unserved),
)
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
    ("congestion splits evenly",
     lambda: lateness.test_congestion_splits_a_model_at_even_utilisation(0.1)),
)
WARMUP_CHECKS: tuple[Check, ...] = (
    ("warm-up overload priced", lambda: (
        bursts.test_warmup_overload_is_priced_and_bought_off_by_an_early_start(True))),
)
ALL_CHECKS = RCDC_CHECKS + FLEET_CHECKS + COMBINED_CHECKS + LATENESS_CHECKS + WARMUP_CHECKS


# ----------------------------------------------------------------------------- mutations


def drop(group: str) -> Callable[[Block], Block]:
    """Mutation: the block adds everything but its constraint group ``group``.

    Variables of the dropped rows stay in the problem through a zero row: the
    builder extracts every variable it registered, and cvxpy leaves out the
    variables no expression uses (e.g. the import/export binary of the dropped
    exclusivity).
    """

    def mutate(original: Block) -> Block:
        def block(ctx: Any, *args: Any) -> None:
            original(ctx, *args)
            dropped = ctx.constraints.pop(group, [])
            orphans = {v.id: v for c in dropped for v in c.variables()}
            if orphans:
                ctx.add_constraints("mutant: kept variables",
                                    *(0 * cp.sum(v) == 0 for v in orphans.values()))

        return block

    return mutate


def replace_by(other: Block) -> Callable[[Block], Block]:
    """Mutation: another block instead of the original."""
    return lambda original: other


def ignore_warmup(original: Block) -> Block:
    """Mutation: the capacity block sees no load time (the rest of the model does)."""

    def block(ctx: Any) -> None:
        saved = ctx.warmup_matrix
        ctx.warmup_matrix = np.zeros_like(saved)
        try:
            original(ctx)
        finally:
            ctx.warmup_matrix = saved

    return block


def drop_entry(table: str, name: str) -> Callable[[Block], Block]:
    """Mutation: the block adds everything but the entry ``name`` of its context's
    ``table`` (``costs``: a cost term, as cost blocks have no constraint group to drop;
    ``expressions``: an expression other blocks read); blocks taking more than the
    context get the rest of their arguments."""

    def mutate(original: Block) -> Block:
        def block(ctx: Any, *args: Any) -> None:
            original(ctx, *args)
            # a block that adds no such entry (e.g. congestion at σ = 0) adds nothing
            # to drop; a misspelt name makes the mutant survive, which the test reports
            getattr(ctx, table).pop(name, None)

        return block

    return mutate


def drop_cost(name: str) -> Callable[[Block], Block]:
    """Mutation: the block adds everything but its cost term ``name``."""
    return drop_entry("costs", name)


@dataclass(frozen=True)
class Mutant:
    """``module.block`` replaced by ``mutate(original)``, to be caught by one of ``checks``."""

    name: str
    module: ModuleType
    block: str
    mutate: Callable[[Block], Block]
    checks: tuple[Check, ...]


def _failures(checks: tuple[Check, ...]) -> list[str]:
    """Names of the checks that fail (an AssertionError; anything else propagates)."""
    failed = []
    for name, check in checks:
        try:
            check()
        except AssertionError:
            failed.append(name)
    return failed


P = mpc_dc.problem
MUTANTS = (
    Mutant("import/export exclusivity removed", P, "define_import_export_exclusivity",
           drop("import/export exclusivity"), RCDC_CHECKS),
    Mutant("W = F(P) relaxed in the exact form", P, "define_processing_exact",
           replace_by(define_processing_relaxed), RCDC_CHECKS),
    Mutant("segment order of the exact F dropped", P, "define_processing_exact",
           drop("processing function order"), RCDC_CHECKS),
    Mutant("hypograph of F dropped (relaxed form)", P, "define_processing_relaxed",
           drop("processing function"), COMBINED_CHECKS),
    Mutant("deferrable release dropped", P, "define_deferrable_work",
           drop("deferrable release"), RCDC_CHECKS),
    Mutant("deferrable deadline dropped", P, "define_deferrable_work",
           drop("deferrable deadline"), RCDC_CHECKS),
    Mutant("deferrable cumulative work dropped", P, "define_deferrable_work",
           drop("deferrable cumulative work"), RCDC_CHECKS + COMBINED_CHECKS),
    Mutant("renewable availability dropped", P, "define_renewable",
           drop("renewable availability"), RCDC_CHECKS + COMBINED_CHECKS),
    Mutant("demand-charge peak dropped", P, "define_demand_charge",
           drop("demand charge peak"), RCDC_CHECKS + COMBINED_CHECKS),
    Mutant("power balance dropped", P, "define_power_balance", drop("power balance"),
           ALL_CHECKS),
    Mutant("battery energy balance dropped", P, "define_battery",
           drop("battery energy balance"), COMBINED_CHECKS),
    Mutant("battery terminal energy dropped", P, "define_battery",
           drop("battery terminal energy"), COMBINED_CHECKS),
    Mutant("battery exclusivity dropped", P, "define_battery",
           drop("battery charge/discharge exclusivity"), COMBINED_CHECKS),
    Mutant("carbon cost left out", P, "define_carbon_cost", drop_cost("carbon_usd"),
           COMBINED_CHECKS),
    Mutant("DR cap dropped", P, "define_demand_response", drop("DR cap"), COMBINED_CHECKS),
    Mutant("DR settlement left out", P, "define_demand_response_cost",
           drop_cost("dr_reward_usd"), COMBINED_CHECKS),
    Mutant("inference power (kW variable of a MW site) dropped", P, "define_inference_power",
           drop("inference power"), COMBINED_CHECKS),
    Mutant("demand rows dropped", P, "define_demand", drop("demand"), FLEET_CHECKS),
    Mutant("capacity at the SLO dropped", P, "define_capacity", drop("capacity at SLO"),
           FLEET_CHECKS),
    Mutant("warm-up ignored", P, "define_capacity", ignore_warmup, FLEET_CHECKS),
    Mutant("instance starts dropped", P, "define_switching", drop("starts"), FLEET_CHECKS),
    Mutant("constant fleet (Sw off) dropped", P, "define_switching",
           drop("constant fleet (Sw off)"), FLEET_CHECKS),
    Mutant("GPU limit dropped", P, "define_gpu_limit", drop("GPU limit"), FLEET_CHECKS),
    Mutant("quality budget dropped", P, "define_quality", drop("quality budget"),
           FLEET_CHECKS),
    Mutant("fixed campus shares dropped", P, "define_spatial_shares",
           drop("fixed campus shares"), FLEET_CHECKS),
    Mutant("backlog entries dropped", P, "define_backlog", drop("backlog entries"),
           LATENESS_CHECKS),
    Mutant("backlog left out of the demand rows", P, "define_backlog",
           drop_entry("expressions", "backlog_change_kps"), LATENESS_CHECKS),
    Mutant("lateness cost left out", P, "define_lateness_cost",
           drop_cost("lateness_usd"), LATENESS_CHECKS),
    Mutant("congestion rows dropped", P, "define_congestion", drop("congestion"),
           LATENESS_CHECKS),
    Mutant("congestion cost left out", P, "define_congestion",
           drop_cost("congestion_usd"), LATENESS_CHECKS),
    Mutant("warm-up overload rows dropped", P, "define_warmup_overload",
           drop("warm-up overload"), WARMUP_CHECKS),
    Mutant("warm-up overload cost left out", P, "define_warmup_overload",
           drop_cost("congestion_usd"), WARMUP_CHECKS),
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
    called = set(mpc_dc.problem.define_model.__code__.co_names)
    mutated = {m.block for m in MUTANTS}
    assert mutated <= called
    blocks = {name for name in called if name.startswith("define_")}
    # cost-only blocks whose terms the hand checks price (energy, switching, quality,
    # unserved) are covered by every cost assertion; the rest must have a mutant
    assert blocks - mutated <= {"define_compute_variables", "define_fleet_variables",
                                "define_grid_variables", "define_energy_cost",
                                "define_switching_cost", "define_quality_cost",
                                "define_unserved_cost"}

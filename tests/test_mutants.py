"""Mutation check of the formulations: each hand-listed mutant must be caught.

A mutant replaces one ``define_*`` block function where the model builders look it
up (:mod:`mpc_dc.problem`, :mod:`mpc_dc.fleet_problem`) by a wrong version: a
constraint group dropped, the exact processing function relaxed, warm-up ignored.
The checks are the hand-solved instances of tests/test_problem_properties.py
(feasibility of the plan for the real problem, hand optimum, brute force) and of
tests/test_fleet_problem.py. A mutant survives when every check still passes; the
test of that mutant then fails. The unmutated code passes every check
(:func:`test_checks_pass_on_the_real_formulation`), so a check that always fails
cannot kill mutants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cvxpy as cp
import numpy as np
import pytest

import mpc_dc.fleet_problem
import mpc_dc.problem
from mpc_dc.blocks.compute_load import define_processing_relaxed
from mpc_dc.fleet_problem import FleetForm
from mpc_dc.problem import Formulation, RcdcProblem
from tests import test_fleet_problem as fleet
from tests.test_problem_properties import WITNESSES, Witness, _site, check_exact

Block = Callable[[Any], None]
Check = tuple[str, Callable[[], None]]


def _witness_check(witness: Witness) -> Check:
    def run() -> None:
        # A problem built now, so that it is built with the blocks as patched.
        problem = RcdcProblem(_site(witness.retail), witness.inputs.horizon_steps,
                              formulation=Formulation.EXACT)
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


def drop(group: str) -> Callable[[Block], Block]:
    """Mutation: the block adds everything but its constraint group ``group``.

    Variables of the dropped rows stay in the problem through a zero row: the
    builders extract every variable they registered, and cvxpy leaves out the
    variables no expression uses (e.g. the import/export binary of the dropped
    exclusivity).
    """

    def mutate(original: Block) -> Block:
        def block(ctx: Any) -> None:
            original(ctx)
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


@dataclass(frozen=True)
class Mutant:
    """``module.block`` replaced by ``mutate(original)``, to be caught by one of ``checks``."""

    name: str
    module: ModuleType
    block: str
    mutate: Callable[[Block], Block]
    checks: tuple[Check, ...]


RCDC, FLEET = mpc_dc.problem, mpc_dc.fleet_problem
MUTANTS = (
    Mutant("import/export exclusivity removed", RCDC, "define_import_export_exclusivity",
           drop("import/export exclusivity"), RCDC_CHECKS),
    Mutant("W = F(P) relaxed to W <= F(P) in the exact form", RCDC, "define_processing_exact",
           replace_by(define_processing_relaxed), RCDC_CHECKS),
    Mutant("segment order of the exact F dropped", RCDC, "define_processing_exact",
           drop("processing function order"), RCDC_CHECKS),
    Mutant("deferrable release dropped", RCDC, "define_deferrable_work",
           drop("deferrable release"), RCDC_CHECKS),
    Mutant("deferrable deadline dropped", RCDC, "define_deferrable_work",
           drop("deferrable deadline"), RCDC_CHECKS),
    Mutant("renewable availability dropped", RCDC, "define_renewable",
           drop("renewable availability"), RCDC_CHECKS),
    Mutant("demand-charge peak dropped", RCDC, "define_demand_charge",
           drop("demand charge peak"), RCDC_CHECKS),
    Mutant("warm-up ignored", FLEET, "define_capacity", ignore_warmup, FLEET_CHECKS),
    Mutant("instance starts dropped", FLEET, "define_switching", drop("starts"), FLEET_CHECKS),
    Mutant("constant fleet (Sw off) dropped", FLEET, "define_switching",
           drop("constant fleet (Sw off)"), FLEET_CHECKS),
    Mutant("GPU limit dropped", FLEET, "define_gpu_limit", drop("GPU limit"), FLEET_CHECKS),
    Mutant("quality budget dropped", FLEET, "define_quality", drop("quality budget"),
           FLEET_CHECKS),
    Mutant("fixed campus shares dropped", FLEET, "define_spatial_shares",
           drop("fixed campus shares"), FLEET_CHECKS),
)


def _failures(checks: tuple[Check, ...]) -> list[str]:
    """Names of the checks that fail (an AssertionError; anything else propagates)."""
    failed = []
    for name, check in checks:
        try:
            check()
        except AssertionError:
            failed.append(name)
    return failed


def test_checks_pass_on_the_real_formulation() -> None:
    assert _failures(RCDC_CHECKS + FLEET_CHECKS) == []


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_caught(mutant: Mutant, monkeypatch: pytest.MonkeyPatch) -> None:
    original = getattr(mutant.module, mutant.block)
    monkeypatch.setattr(mutant.module, mutant.block, mutant.mutate(original))
    failed = _failures(mutant.checks)
    assert failed, f"mutant survived: {mutant.name} ({mutant.module.__name__}.{mutant.block})"


def test_every_mutated_block_is_a_block_of_the_builders() -> None:
    """A mutant of a name the builders do not call would survive for the wrong reason."""
    for mutant in MUTANTS:
        assert callable(getattr(mutant.module, mutant.block)), mutant.name
        builder = (mpc_dc.problem.build_model if mutant.module is RCDC
                   else mpc_dc.fleet_problem.build_fleet_model)
        assert mutant.block in builder.__code__.co_names, mutant.name
    assert FleetForm.FULL_MILP in fleet.FORMS

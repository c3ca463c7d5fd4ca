"""The offline day plan of the old fleet problem (:class:`mpc_dc.fleet_problem.FleetProblem`).

Only the DR study (:mod:`mpc_dc.studies.dr`) imports it; the policies moved to
:mod:`mpc_dc.control` and :func:`mpc_dc.problem2.solve_day` is the day plan of the one
problem. This module goes with the old problem modules (issue 14).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from mpc_dc.fleet_problem import (
    FleetForm,
    FleetInputs,
    FleetPlan,
    FleetProblem,
    FleetSolveResult,
    FleetState,
)

logger = logging.getLogger(__name__)


def solve_day(problem: FleetProblem, inputs: FleetInputs, state: FleetState | None = None,
              candidates: Sequence[FleetPlan] = ()) -> FleetSolveResult:
    """Offline (perfect-foresight) day plan with integer instances in every interval.

    Round-and-fix over the whole horizon (its gap to the LP bound is certified in
    ``mip_gap``); each candidate plan from a scenario with fewer levers (feasible
    here: see :meth:`Flexibility.covers`) is re-costed with its instances fixed, and
    the cheapest plan is returned: from the same ``state`` and ``inputs``, more
    levers never cost more. ``lp_bound_usd`` and ``mip_gap`` are always those of
    this problem's relaxation, also when a candidate is returned (its own LP run
    with fixed instances is no bound).
    """
    own = problem.solve(inputs, state, FleetForm.COMMITTED_INTEGER,
                        integer_intervals=problem.horizon_steps)
    best = own
    for cand in candidates:
        alt = problem.solve(inputs, state, FleetForm.LP, fix_instances=problem.map_plan(cand))
        if alt.plan is not None and (best.plan is None
                                     or alt.objective_usd < best.objective_usd - 1e-9):
            logger.info("a plan with fewer levers is cheaper (%.2f < %.2f $); using it",
                        alt.objective_usd, best.objective_usd)
            best = alt
    if best is not own and np.isfinite(own.lp_bound_usd):
        gap = (best.objective_usd - own.lp_bound_usd) / max(abs(best.objective_usd), 1e-9)
        best = replace(best, lp_bound_usd=own.lp_bound_usd, mip_gap=max(gap, 0.0),
                       message="a plan with fewer levers, re-costed")
    return best

"""The offline optimum: one plan over the whole run on the realized data, replayed.

Not causal by construction: it is the reference every causal controller's regret is
measured against, so it is solved with its own limits (``controller.offline_time_limit_s``,
``controller.offline_mip_rel_gap`` and ``controller.offline_mip_max_nodes``, not the
MPC's per-step ones), and a solve a limit stopped before its tolerance is logged,
reported in the KPIs (:meth:`OfflinePolicy.kpis`) and in the compare table, never
silently taken as optimal. The node limit is deterministic: a solve it stops ends at
the same plan and gap on any machine; one the wall-clock limit stops does not, and is
counted (``solver_time_limit_hits``).

How the whole run is solved (:func:`offline_method`)
----------------------------------------------------
* ``exact`` — sites without inference pools, and runs of at most
  :data:`EXACT_MAX_STEPS` intervals: the formulation the prices need (the LP when it
  is provably exact, else the exact MILP with every processing and exclusivity
  binary integer). With pools every instance count is integer: round-and-fix on the
  LP (chunks of :data:`EXACT_CHUNK_STEPS` intervals) gives a plan and its gap to the
  LP bound; when that gap exceeds the tolerance (an idle instance costs what a
  fraction of one does not, so the LP bound is weak at low demand), the full MILP
  is solved from that plan (a MIP start) within the offline limits and the better
  plan kept, with HiGHS's dual bound. The gap reported is the final one.
* ``relaxed round-and-fix`` — longer runs with pools (a 30-day fleet site is
  2,880 intervals × pools: a whole-period MILP with the exactness binaries is out
  of reach): the relaxed formulation, every instance count integer by round-and-fix
  in chunks of one day (:data:`LONG_CHUNK_STEPS`), the relaxation's optimum mapped
  onto the processing function and exclusive flows where needed
  (:func:`~mpc_dc.problem.repair_relaxed`). Its gap is certified against the LP
  bound of the relaxed formulation (a lower bound on every plan of the site) and
  reported; with negative prices it includes what the repair gave up.

The plan is replayed interval by interval (:meth:`~mpc_dc.problem.Plan.decision`).

Under ``site.dr.baseline = "prior_days"`` the baseline depends on the site's own
import before each event, so no run's data holds it: the offline optimum plans
against the programme's baseline of its own plan without the programme (a first
solve with no DR event, :func:`planned_baseline`), and is settled, like every
controller, against the baseline of what it metered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.control.mpc import (
    ControllerStats,
    build_horizon,
    has_dr_events,
    project,
    start_observation,
    truth_values,
)
from mpc_dc.problem import (
    Form,
    Formulation,
    Plan,
    Problem,
    SolveResult,
    SolverOptions,
    SolveStatus,
)
from mpc_dc.sim.dr_program import event_baseline, exogenous_events
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.policy import Decision, Observation

logger = logging.getLogger(__name__)

EXACT_MAX_STEPS = 7 * 96
"""Longest run [intervals] whose offline plan is solved in the exact formulation with
every instance count integer (a week)."""
EXACT_CHUNK_STEPS = 8
"""Round-and-fix chunk of the exact method [intervals]."""
LONG_CHUNK_STEPS = 96
"""Round-and-fix chunk of the relaxed method [intervals] (a day: 30 re-solves a month)."""


def offline_method(exo: SiteExogenous) -> str:
    """``exact`` or ``relaxed round-and-fix`` (module docstring)."""
    if not exo.site.pools or exo.n_steps <= EXACT_MAX_STEPS:
        return "exact"
    return "relaxed round-and-fix"


def solve_offline(exo: SiteExogenous, options: SolverOptions) -> tuple[SolveResult, str, float]:
    """The whole-run plan on the truth: the result, the method and the wall time [s].

    ``options`` carries the offline limits (``time_limit_s``/``mip_rel_gap``/
    ``mip_max_nodes`` for LP and MILP runs, ``full_*`` alike); the horizon is the run,
    at 15-min resolution, binaries integer everywhere. The result's
    ``time_limit_hit`` is set when any solve behind it (the planned baseline's too)
    stopped on the wall clock, ``node_limit_hit`` when its own solves stopped on the
    node limit; ``warm_start_failures`` counts those of its solves.
    """
    tick = time.perf_counter()
    hit = False
    if exo.site.dr.baseline == "prior_days" and has_dr_events(exo):
        exo, hit = planned_baseline(exo, options)
    method = offline_method(exo)
    n = exo.n_steps
    exact = method == "exact"
    opts = replace(options, fine_steps=None, binary_intervals=None, committed_intervals=1,
                   round_chunk_intervals=EXACT_CHUNK_STEPS if exact else LONG_CHUNK_STEPS)
    problem = Problem(exo.site, n, opts, formulation="auto" if exact else Formulation.RELAXED,
                      demand_response=has_dr_events(exo))
    obs = start_observation(exo, 0)
    inputs, state = build_horizon(exo, obs, truth_values(exo, 0, n), n)
    # The truth can still ask for more than the site can do (e.g. a deadline that the
    # import limit makes unreachable): plan what can be done; the replay shows the rest.
    inputs, state = project(exo.site, inputs, state, ControllerStats().faults)
    result = problem.solve(inputs, state, Form.COMMITTED_INTEGER, integer_intervals=n)
    hit = hit or result.time_limit_hit
    node_hit = result.node_limit_hit
    if (exact and exo.site.pools and result.plan is not None
            and not result.mip_gap <= options.full_mip_rel_gap):
        milp = problem.solve(inputs, state, Form.FULL_MILP, start=result.plan)
        logger.info("offline round-and-fix %.4f $ (gap %.3g); full MILP %s %.4f $ (gap %.3g)",
                    result.objective_usd, result.mip_gap, milp.status, milp.objective_usd,
                    milp.mip_gap)
        # The MILP's plan or bound decides the result either way.
        hit = hit or milp.time_limit_hit
        node_hit = node_hit or milp.node_limit_hit
        if milp.plan is not None and milp.objective_usd <= result.objective_usd + 1e-9:
            result = milp
        elif np.isfinite(milp.mip_bound_usd):
            # The MILP's bound still certifies the round-and-fix plan.
            gap = (result.objective_usd - milp.mip_bound_usd) / max(abs(result.objective_usd),
                                                                    1e-9)
            result = replace(result, mip_gap=max(min(gap, result.mip_gap), 0.0))
    return (replace(result, time_limit_hit=hit, node_limit_hit=node_hit,
                    warm_start_failures=problem.warm_start_failures),
            method, time.perf_counter() - tick)


def planned_baseline(exo: SiteExogenous, options: SolverOptions
                     ) -> tuple[SiteExogenous, bool]:
    """``exo`` with ``dr_baseline_mw[C]``: the programme's baseline of each event on
    the import of the offline plan without the programme (module docstring), and
    ``site.dr.baseline`` set to ``s1_plan`` so the column is planned against; and
    whether that plan's solve stopped on the wall clock."""
    events = [column("dr_event", c.name) for c in exo.site.campuses]
    plain = replace(exo, frame=exo.frame.drop(columns=[e for e in events
                                                       if e in exo.frame.columns]))
    first, _, _ = solve_offline(plain, options)
    if first.plan is None:
        raise RuntimeError(f"offline plan without the DR programme failed: {first.message}")
    imported = np.asarray(first.plan.import_mw, dtype=float)[:, : exo.n_steps].T
    frame = exo.frame.copy()
    start = exo.history_steps
    for e in exogenous_events(exo):
        name = column("dr_baseline_mw", exo.site.campuses[e.campus].name)
        col = (frame[name].to_numpy(dtype=float, copy=True) if name in frame.columns
               else np.zeros(len(frame)))
        col[start + e.steps], _ = event_baseline(e, imported, exo.site.dr,
                                                 exo.dr_meter_history_mw)
        frame[name] = col
    site = replace(exo.site, dr=replace(exo.site.dr, baseline="s1_plan"))
    return replace(exo, site=site, frame=frame), first.time_limit_hit


class OfflinePolicy:
    """The offline optimum (module docstring), replayed.

    Parameters
    ----------
    exo : SiteExogenous
    options : SolverOptions
        The offline limits (``controller.offline_time_limit_s``,
        ``controller.offline_mip_rel_gap``, ``controller.offline_mip_max_nodes``) in
        ``time_limit_s``/``mip_rel_gap``/``mip_max_nodes`` and their ``full_*`` twins.

    Raises
    ------
    RuntimeError
        When HiGHS ends without any plan (e.g. the time limit reached before a first
        incumbent); the message names the limit.
    """

    name = "offline"

    def __init__(self, exo: SiteExogenous, options: SolverOptions) -> None:
        self.stats = ControllerStats()
        self.options = options
        result, self.method, wall = solve_offline(exo, options)
        self.solve_wall_s = wall
        if not result.status.has_plan or result.plan is None:
            raise RuntimeError(
                f"offline optimum not found: {result.status} ({result.message}) within the "
                f"offline time limit of {options.time_limit_s:g} s "
                "(controller.offline_time_limit_s)")
        proven = result.status is SolveStatus.OPTIMAL and not (
            result.mip_gap > options.mip_rel_gap * (1 + 1e-9))
        if not proven:
            logger.warning(
                "offline optimum not proven (%s): %s with a %.4g %% gap to the bound "
                "(tolerance %.3g, node limit %s, time limit %g s%s: "
                "controller.offline_mip_rel_gap, controller.offline_mip_max_nodes, "
                "controller.offline_time_limit_s); regrets against it are reported with "
                "that gap", self.method, result.status, 100.0 * result.mip_gap,
                options.mip_rel_gap, options.full_mip_max_nodes, options.time_limit_s,
                ", reached: not reproducible" if result.time_limit_hit else "")
        self.proven = proven
        # Counted as the compare table reads it: a plan not proven within the offline
        # tolerance is a solve that ended without proven optimality.
        self.stats.record(result if proven else replace(result, status=SolveStatus.FEASIBLE))
        self.result = result
        self.plan: Plan = result.plan

    def kpis(self) -> dict[str, Any]:
        """The offline solve in the KPIs.

        ``offline_method`` (module docstring), ``offline_status`` (``optimal``, or
        ``feasible`` when a limit stopped it or its certified gap exceeds the
        tolerance), ``offline_mip_gap`` [-] (distance from the plan's objective to the
        best proven bound, relative to the objective), ``offline_lp_bound_usd`` [$],
        ``offline_plan_cost_usd`` [$] (the plan's cost on the true data, before
        replay) and ``offline_solve_wall_s`` [s].
        """
        r = self.result
        return {
            "offline_method": self.method,
            "offline_status": str(r.status) if self.proven else str(SolveStatus.FEASIBLE),
            "offline_mip_gap": float(r.mip_gap),
            "offline_lp_bound_usd": float(r.lp_bound_usd),
            "offline_plan_cost_usd": float(r.objective_usd),
            "offline_solve_wall_s": self.solve_wall_s,
        }

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Nothing to learn."""

    def decide(self, obs: Observation) -> Decision:
        """The offline plan's interval ``obs.step``."""
        return self.plan.decision(obs.step, "offline")

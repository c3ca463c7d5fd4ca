"""Scenario-based stochastic MPC: forecast scenarios and one two-stage problem over them.

:func:`sample_paths` draws forecast scenarios of a channel from its quantile
forecasts; :class:`ScenarioProblem` solves the sample-average approximation (SAA) of
the two-stage problem over S scenarios of the horizon as one LP.

The two-stage problem
---------------------
S copies of the site's model (:func:`mpc_dc.problem.define_model`, the relaxed
formulation), copy ``s`` with the inputs and state of scenario ``s``, and

    min (1/S) Σ_s cost_s(x_s)    s.t. each copy's constraints,
                                      x_s[:, 0] = x_0[:, 0] for every variable and s

Non-anticipativity: every decision of the first model column (instances, starts,
tokens served and routed, deferrable work, battery, import and export, curtailment)
is taken once, before the scenario is known; the later columns are each scenario's
recourse. The first column's inputs are the same in every scenario (the scenarios
differ from the second interval on, :func:`sample_paths`), so the shared first
column is feasible wherever one copy is.

Integers: the first column's instance counts are rounded as the deterministic MPC's
round-and-fix rounds them (:func:`mpc_dc.problem.round_instances` on the LP of copy
0) and the LP is solved again with them fixed; the later columns stay relaxed (a
plan, never committed). The relaxed formulation is exact under non-negative prices
(docs/formulation.md); a plan its repair cannot make exact is reported as failed
(:attr:`ScenarioSolve.ok`), and the caller falls back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from mpc_dc.blocks import ModelContext
from mpc_dc.blocks.lateness import LatenessPrices
from mpc_dc.fastpath import HighsFastPath
from mpc_dc.problem import (
    HorizonInputs,
    Plan,
    PlantState,
    SolverOptions,
    SolveStatus,
    check_feasibility,
    define_model,
    expand_plan,
    model_cost,
    objective_offset_usd,
    plan_cost,
    repair_relaxed,
    round_instances,
    rounding_inputs,
    set_parameters,
    solution_columns,
)
from mpc_dc.site.config import Site

logger = logging.getLogger(__name__)

SAMPLE_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
"""Quantile levels a scenario is interpolated between (the median is the point
forecast of a calibrated forecaster, forecasters/base.py)."""


def sample_paths(quantiles: np.ndarray, levels: Sequence[float], u: np.ndarray,
                 first: float | None = None) -> np.ndarray:
    """Scenario paths of one channel from its quantile forecasts.

    Scenario ``s`` is the quantile path of level ``u[s]``: at every lead, the value
    linearly interpolated between the forecast quantiles at ``u[s]`` (held at the
    outermost levels beyond them). One level per path, not one per interval: the
    errors of a forecast are strongly autocorrelated over a day, and paths of
    independent per-interval draws would average out in the plan.

    Parameters
    ----------
    quantiles : ndarray (n, L)
        Quantile forecasts per lead and level (any unit); sorted per lead here (a
        forecaster's quantiles may cross).
    levels : sequence of float (L,)
        Increasing levels in (0, 1).
    u : ndarray (S,)
        Level of each path, in [0, 1].
    first : float, optional
        Value of the first interval in every path (the shared first stage).

    Returns
    -------
    ndarray (S, n)
    """
    q = np.sort(np.asarray(quantiles, dtype=float), axis=1)
    lv = np.asarray(levels, dtype=float)
    out = np.empty((len(u), q.shape[0]))
    for t in range(q.shape[0]):
        out[:, t] = np.interp(u, lv, q[t])
    if first is not None and out.shape[1]:
        out[:, 0] = first
    return out


@dataclass
class ScenarioSolve:
    """Outcome of one :meth:`ScenarioProblem.solve`.

    Attributes
    ----------
    ok : bool
        A plan was found and its relaxation repair succeeded.
    status : SolveStatus
        Of the last HiGHS run.
    plan : Plan or None
        Scenario 0's plan (its first interval is every scenario's).
    expected_cost_usd : float [$]
        ``(1/S) Σ_s`` plan cost of each scenario (NaN without a plan).
    solve_time_s, highs_time_s : float [s]
        Wall time of the solve; HiGHS's own time (both LP runs).
    message : str
    time_limit_hit : bool
        HiGHS stopped one of its runs on the wall-clock limit (``time_limit_s``): the
        outcome depends on the machine's load.
    """

    ok: bool
    status: SolveStatus
    plan: Plan | None
    expected_cost_usd: float
    solve_time_s: float
    highs_time_s: float
    message: str
    time_limit_hit: bool = False


class ScenarioProblem:
    """The SAA two-stage problem of a site over S scenarios (module docstring),
    built and compiled once.

    Parameters
    ----------
    site : Site
    horizon_steps : int
        H [intervals].
    options : SolverOptions
        Horizon resolution (model columns) and the HiGHS time limit.
    n_scenarios : int
        S >= 1.
    demand_response : bool
        Build the DR cap and settlement.
    lateness : LatenessPrices, optional
        Carry and price the backlog each copy's plan leaves and the pools' congestion
        (:mod:`mpc_dc.blocks.lateness`), as the deterministic MPC's problem does
        (``controller.lateness_weight``); None (or a site without pools): neither.
    """

    def __init__(self, site: Site, horizon_steps: int, options: SolverOptions,
                 n_scenarios: int, *, demand_response: bool = True,
                 lateness: LatenessPrices | None = None) -> None:
        if n_scenarios < 1:
            raise ValueError(f"n_scenarios: expected >= 1, got {n_scenarios}")
        self.site = site
        self.horizon_steps = horizon_steps
        self.n_scenarios = n_scenarios
        t0 = time.perf_counter()
        columns = options.horizon_columns(horizon_steps)
        self.lateness = lateness if site.pools else None
        self.contexts: list[ModelContext] = [
            define_model(site, columns, False, demand_response=demand_response,
                         lateness=self.lateness)
            for _ in range(n_scenarios)]
        first = self.contexts[0]
        constraints: list[cp.Constraint] = []
        for ctx in self.contexts:
            constraints += ctx.all_constraints()
        for ctx in self.contexts[1:]:
            for name, var in first.variables.items():
                if len(var.shape) == 2 and var.shape[1] == first.horizon_steps:
                    constraints.append(ctx.variables[name][:, 0] == var[:, 0])
        expected = sum((model_cost(ctx) for ctx in self.contexts), cp.Constant(0.0))
        problem = cp.Problem(cp.Minimize(expected / n_scenarios), constraints)
        for ctx in self.contexts:
            for p in ctx.parameters.values():
                p.value = np.zeros(p.shape)
        self.fast = HighsFastPath(problem, time_limit_s=options.time_limit_s)
        self._instance_cols = (self.fast.variable_columns(first.variables["instances"])
                               if "instances" in first.variables else np.zeros(0, np.int64))
        self.build_time_s = time.perf_counter() - t0

    def solve(self, horizons: Sequence[tuple[HorizonInputs, PlantState]]) -> ScenarioSolve:
        """Solve over ``horizons`` (one (inputs, state) per scenario; scenario 0's plan
        is returned): LP, first column's instances rounded, LP again with them fixed.

        Raises
        ------
        InfeasibleInputError
            When a scenario's other-IT inputs admit no schedule.
        """
        wall = time.perf_counter()
        if len(horizons) != self.n_scenarios:
            raise ValueError(f"expected {self.n_scenarios} scenario horizons, got "
                             f"{len(horizons)}")
        for ctx, (inputs, state) in zip(self.contexts, horizons, strict=True):
            check_feasibility(self.site, inputs, state)
            set_parameters(ctx, inputs, state)
        ctx = self.contexts[0]
        hits = self.fast.time_limit_hits
        sol = self.fast.solve()
        highs = sol.highs_time_s
        if sol.x is not None and sol.model_status == "kOptimal" and ctx.n_pools:
            fixed = self._rounded_first_column(sol.x)
            cols = self._instance_cols[: fixed.size]
            self.fast.set_col_bounds(cols, fixed, fixed)
            try:
                sol = self.fast.solve()
            finally:
                self.fast.restore_col_bounds(cols)
            highs += sol.highs_time_s
        status = SolveStatus.from_highs(sol.model_status, sol.x is not None)
        hit = self.fast.time_limit_hits > hits
        if sol.x is None or sol.model_status != "kOptimal":
            return ScenarioSolve(False, status, None, float("nan"), time.perf_counter() - wall,
                                 highs, f"HiGHS status {sol.model_status}", hit)
        x = sol.x
        plans: list[Plan] = []
        costs: list[float] = []
        message = ""
        for c, (inputs, _) in zip(self.contexts, horizons, strict=True):
            cols_c = self._columns(c, x)
            if c.other_it.size or c.export.size:
                cols_c, _, residual = repair_relaxed(c, cols_c)
                if residual > 1e-6 and not message:
                    message = (f"repair failed: {residual:.3g} MW of excess power could not "
                               "be shed")
            costs.append(plan_cost(c, cols_c).total_usd)
            if not plans:
                plans.append(expand_plan(c, cols_c, inputs))
        # The objective leaves out the settled DR baseline and the demand charge billed
        # already (objective_offset_usd); plan_cost includes them.
        logger.debug("SAA over %d scenarios: objective %.6g $, offset %.6g $",
                     self.n_scenarios, sol.objective, objective_offset_usd(ctx))
        return ScenarioSolve(not message, status, plans[0], float(np.mean(costs)),
                             time.perf_counter() - wall, highs, message, hit)

    def _columns(self, ctx: ModelContext, x: np.ndarray) -> dict[str, np.ndarray]:
        """One copy's per-column arrays in physical units from the solution ``x``."""
        return solution_columns(ctx, {n: self.fast.variable_value(x, v)
                                      for n, v in ctx.variables.items()})

    def _rounded_first_column(self, x: np.ndarray) -> np.ndarray:
        """Integer instances of the first model column (P,), rounded on copy 0's LP as
        the deterministic round-and-fix rounds them (a constant fleet against every
        column)."""
        ctx = self.contexts[0]
        cols = self._columns(ctx, x)
        gpus, n_prev, demand, price = rounding_inputs(ctx)
        fleet = self.site.fleet
        constant = fleet is not None and not fleet.levers.switching
        end = ctx.horizon_steps if constant else 1
        block = round_instances(ctx, cols["instances"][:, :end], cols["tokens_per_s"][:, :end],
                                n_prev, gpus[:, :end], demand[:, :end],
                                price_usd_per_mwh=price[:, :end], constant=constant,
                                first_column=0)
        return np.asarray(block[:, 0], dtype=float)

"""The RCDC optimization problem: build once, solve many, typed results.

Stages are kept apart (PyPSA style): :func:`build_model` calls one ``define_*``
function per concern from :mod:`mpc_dc.blocks`; :meth:`RcdcProblem.solve` sets
Parameter values, runs HiGHS (resident model via :mod:`mpc_dc.fastpath`, or the
readable cvxpy path) and :func:`extract_plan` post-processes into a
:class:`SolveResult`. Equations, units and exactness proofs: docs/formulation.md.

Example
-------
>>> problem = RcdcProblem(SiteConfig(), horizon_steps=96)          # doctest: +SKIP
>>> result = problem.solve(inputs, state)                           # doctest: +SKIP
>>> result.status, result.cost.total_usd, result.plan.import_mw     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import cvxpy as cp
import numpy as np

from mpc_dc.blocks import ModelContext
from mpc_dc.blocks.battery import define_battery
from mpc_dc.blocks.compute_load import (
    define_compute_variables,
    define_deferrable_work,
    define_processing_exact,
    define_processing_relaxed,
)
from mpc_dc.blocks.grid_connection import (
    define_demand_charge,
    define_energy_cost,
    define_grid_variables,
    define_import_export_exclusivity,
    define_power_balance,
)
from mpc_dc.blocks.renewable import define_renewable
from mpc_dc.fastpath import HighsFastPath
from mpc_dc.params.site import SiteConfig

logger = logging.getLogger(__name__)

_TOL = 1e-6


class Formulation(StrEnum):
    """Which form of the problem is solved."""

    RELAXED = "relaxed"  # LP: W <= F(P), no import/export binary
    EXACT = "exact"  # MILP: W = F(P) (incremental binaries), import/export binary


class SolveStatus(StrEnum):
    """Outcome of a solve (linopy-style status, reduced to what a controller needs)."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"  # time or gap limit reached with an incumbent
    INFEASIBLE = "infeasible"
    NO_SOLUTION = "no_solution"  # limit reached without an incumbent
    ERROR = "error"

    @property
    def has_plan(self) -> bool:
        """True when the result carries a usable plan."""
        return self in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)

    @classmethod
    def from_highs(cls, model_status: str, has_solution: bool) -> SolveStatus:
        """The status of a HiGHS run: its model status (``HighsModelStatus`` name),
        FEASIBLE when a limit stopped it with a solution, ERROR when unknown."""
        status = _HIGHS_STATUS.get(model_status, cls.ERROR)
        if has_solution and status is cls.NO_SOLUTION:
            return cls.FEASIBLE
        return status


_HIGHS_STATUS = {
    "kOptimal": SolveStatus.OPTIMAL,
    "kInfeasible": SolveStatus.INFEASIBLE,
    "kUnboundedOrInfeasible": SolveStatus.INFEASIBLE,
    "kTimeLimit": SolveStatus.NO_SOLUTION,
    "kIterationLimit": SolveStatus.NO_SOLUTION,
    "kSolutionLimit": SolveStatus.NO_SOLUTION,
    "kInterrupt": SolveStatus.NO_SOLUTION,
}


class InfeasibleInputError(ValueError):
    """Inputs no schedule can satisfy; the one-line message names the constraint.

    Attributes
    ----------
    constraint : str
        Name of the violated constraint group, e.g. ``"deferrable deadline"``.
    interval : int or None
        Interval index where it first fails.
    """

    def __init__(self, constraint: str, message: str, interval: int | None = None) -> None:
        self.constraint = constraint
        self.interval = interval
        self.message = message
        # args carries every constructor argument so the error survives a re-raise
        # by copy (simpy re-creates exceptions as ``type(e)(*e.args)``).
        super().__init__(constraint, message, interval)

    def __str__(self) -> str:
        return self.message


def _array(value: np.ndarray | list[float] | float, n: int | None = None) -> np.ndarray:
    arr = np.array(value, dtype=float, copy=True).reshape(-1)
    if n is not None and arr.size == 1 and n != 1:
        arr = np.full(n, arr[0])
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class HorizonInputs:
    """Per-interval exogenous data over the horizon (forecasts in the closed loop).

    Parameters
    ----------
    import_price_usd_per_mwh : ndarray [$/MWh]
        π⁺ (wholesale: the LMP).
    export_price_usd_per_mwh : ndarray [$/MWh]
        π⁻ (wholesale: the LMP).
    renewable_cf : ndarray [-]
        Renewable capacity factor in [0, 1].
    work_nd_wu : ndarray [WU]
        Non-deferrable work arriving in each interval (runs on arrival).
    """

    import_price_usd_per_mwh: np.ndarray
    export_price_usd_per_mwh: np.ndarray
    renewable_cf: np.ndarray
    work_nd_wu: np.ndarray

    def __post_init__(self) -> None:
        n = np.asarray(self.work_nd_wu).size
        for name in ("import_price_usd_per_mwh", "export_price_usd_per_mwh", "renewable_cf",
                     "work_nd_wu"):
            arr = _array(getattr(self, name), n)
            if arr.size != n:
                raise ValueError(f"HorizonInputs.{name}: expected {n} values, got {arr.size}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"HorizonInputs.{name}: non-finite value")
            object.__setattr__(self, name, arr)
        if np.any(self.renewable_cf < 0) or np.any(self.renewable_cf > 1 + _TOL):
            raise ValueError("HorizonInputs.renewable_cf: expected values in [0, 1]")
        if np.any(self.work_nd_wu < 0):
            raise ValueError("HorizonInputs.work_nd_wu: expected values >= 0")

    @classmethod
    def wholesale(cls, lmp_usd_per_mwh: np.ndarray, renewable_cf: np.ndarray,
                  work_nd_wu: np.ndarray) -> HorizonInputs:
        """Inputs for the wholesale market: import and export at the LMP."""
        lmp = np.asarray(lmp_usd_per_mwh, dtype=float)
        return cls(lmp, lmp, renewable_cf, work_nd_wu)

    @property
    def horizon_steps(self) -> int:
        """Number of intervals H."""
        return int(self.work_nd_wu.size)


@dataclass(frozen=True)
class PlantState:
    """State carried between solves.

    Parameters
    ----------
    df_due_cum_wu : ndarray [WU]
        Cumulative deferrable work that must be done by the end of each interval.
    df_available_cum_wu : ndarray [WU]
        Cumulative deferrable work released (processable) by each interval.
    peak_import_to_date_mw : float [MW]
        Highest 15-min import so far in the billing period.
    battery_energy_mwh : float [MWh]
        Battery energy at the start of the horizon.
    """

    df_due_cum_wu: np.ndarray
    df_available_cum_wu: np.ndarray
    peak_import_to_date_mw: float = 0.0
    battery_energy_mwh: float = 0.0

    def __post_init__(self) -> None:
        for name in ("df_due_cum_wu", "df_available_cum_wu"):
            arr = _array(getattr(self, name))
            if np.any(arr < -_TOL) or np.any(np.diff(arr) < -_TOL):
                raise ValueError(f"PlantState.{name}: expected non-negative, non-decreasing")
            object.__setattr__(self, name, arr)
        if self.peak_import_to_date_mw < 0 or self.battery_energy_mwh < 0:
            raise ValueError("PlantState: peak and battery energy must be >= 0")

    @classmethod
    def no_deferrable(cls, horizon_steps: int, **kwargs: float) -> PlantState:
        """State with no deferrable backlog."""
        zero = np.zeros(horizon_steps)
        return cls(zero, zero, **kwargs)


@dataclass(frozen=True)
class Plan:
    """Per-interval decisions [MW, WU or MWh as named]."""

    dc_power_mw: np.ndarray
    it_power_mw: np.ndarray
    work_nd_wu: np.ndarray
    work_df_wu: np.ndarray
    renewable_used_mw: np.ndarray
    curtailed_mw: np.ndarray
    import_mw: np.ndarray
    export_mw: np.ndarray
    battery_charge_mw: np.ndarray
    battery_discharge_mw: np.ndarray
    battery_energy_mwh: np.ndarray

    @property
    def peak_import_mw(self) -> float:
        """Highest import of the plan [MW]."""
        return float(self.import_mw.max(initial=0.0))


@dataclass(frozen=True)
class CostBreakdown:
    """Cost components of a plan [$].

    ``total_usd = energy_import_usd − export_revenue_usd + demand_charge_usd``; the
    demand charge is the increment ``λ (max(pk0, max p_im) − pk0)`` of the bill.
    """

    energy_import_usd: float
    export_revenue_usd: float
    demand_charge_usd: float

    @property
    def total_usd(self) -> float:
        """Net cost [$]."""
        return self.energy_import_usd - self.export_revenue_usd + self.demand_charge_usd


@dataclass(frozen=True)
class SolveResult:
    """Typed outcome of :meth:`RcdcProblem.solve` (never raised for solver trouble).

    Attributes
    ----------
    status : SolveStatus
    formulation : Formulation
        The form actually solved (after any fallback from the relaxation).
    plan, cost : Plan, CostBreakdown or None
        Present when ``status.has_plan``.
    objective_usd : float [$]
        ``cost.total_usd`` (NaN without a plan).
    build_time_s : float [s]
        Time to build and compile the model(s) used.
    solve_time_s : float [s]
        Wall time of the solve call (parameters, HiGHS, post-processing).
    highs_time_s : float [s]
        HiGHS's own reported run time.
    mip_gap : float [-]
        Relative MIP gap HiGHS ended with (0 for an LP); with ``status`` FEASIBLE
        the plan is not proven optimal to the tolerance and this is how far it may be.
    path : {"fast", "cvxpy"}
    message : str
        Why a solve failed, was stopped by a limit, or was not repaired.
    relaxation_repaired : bool
        True when the LP optimum was mapped onto W = F(P) / exclusive flows.
    """

    status: SolveStatus
    formulation: Formulation
    plan: Plan | None
    cost: CostBreakdown | None
    objective_usd: float
    build_time_s: float
    solve_time_s: float
    highs_time_s: float
    mip_gap: float
    path: str
    message: str = ""
    relaxation_repaired: bool = False


@dataclass(frozen=True)
class SolverOptions:
    """HiGHS options.

    Parameters
    ----------
    time_limit_s : float [s]
    mip_rel_gap : float [-]
    integer_intervals : int or None
        Exact form only: keep binaries integer on the first ``integer_intervals``
        intervals and relax them on the tail (DESIGN.md section 4). A receding-
        horizon controller commits only the first interval, which stays exact; the
        tail is an optimistic estimate of the future. ``None``: integer everywhere.
    """

    time_limit_s: float = 30.0
    mip_rel_gap: float = 1e-6
    integer_intervals: int | None = None


def choose_formulation(inputs: HorizonInputs) -> Formulation:
    """Pick the LP when it is provably exact, else the MILP.

    The relaxation is exact (docs/formulation.md, section 3) when for every t:
    ``π⁺[t] >= 0``, ``π⁻[t] >= 0`` and ``π⁺[t] >= π⁻[t]``. Wholesale (π⁺ = π⁻ =
    LMP) needs LMP >= 0.

    The prices carry the tariff (retail or wholesale), so they alone decide.

    Parameters
    ----------
    inputs : HorizonInputs
    """
    pi_im = inputs.import_price_usd_per_mwh
    pi_ex = inputs.export_price_usd_per_mwh
    if np.all(pi_im >= 0) and np.all(pi_ex >= 0) and np.all(pi_im >= pi_ex - 1e-12):
        return Formulation.RELAXED
    return Formulation.EXACT


def max_work_per_interval_wu(config: SiteConfig, inputs: HorizonInputs) -> np.ndarray:
    """Most work each interval can do given IT capacity and power supply [WU].

    Supply = import limit + available renewable (+ battery power); IT power is
    ``min(P_max, supply / PUE)`` and work ``Δ F(IT power)``.
    """
    dc = config.datacenter
    supply = config.grid.import_limit_mw + inputs.renewable_cf * config.renewable.nameplate_mw
    if config.battery is not None:
        supply = supply + config.battery.power_mw
    it_max = np.minimum(dc.it_capacity_mw, supply / dc.pue)
    return 0.25 * dc.processing.rate_wu_per_h(it_max, dc.it_capacity_mw)


def check_feasibility(config: SiteConfig, inputs: HorizonInputs, state: PlantState) -> None:
    """Reject inputs no schedule can satisfy, naming the constraint.

    Raises
    ------
    InfeasibleInputError
        One line, e.g. "deferrable deadline at interval 3 needs 120.0 WU done but
        at most 80.0 WU can be processed by then".
    """
    H = inputs.horizon_steps
    for name in ("df_due_cum_wu", "df_available_cum_wu"):
        if getattr(state, name).size != H:
            raise InfeasibleInputError(
                "input length", f"PlantState.{name} has {getattr(state, name).size} values, "
                f"expected {H} (the horizon)")
    wmax = max_work_per_interval_wu(config, inputs)
    nd = inputs.work_nd_wu
    bad = np.flatnonzero(nd > wmax * (1 + _TOL) + _TOL)
    if bad.size:
        t = int(bad[0])
        raise InfeasibleInputError(
            "non-deferrable work",
            f"non-deferrable work at interval {t} is {nd[t]:.4g} WU but at most {wmax[t]:.4g} WU "
            "can be processed in it (IT capacity, import limit and renewable)", t)
    due, avail = state.df_due_cum_wu, state.df_available_cum_wu
    bad = np.flatnonzero(due > avail + _TOL * (1 + avail))
    if bad.size:
        k = int(bad[0])
        raise InfeasibleInputError(
            "deferrable release",
            f"deferrable deadline at interval {k} needs {due[k]:.4g} WU done but only "
            f"{avail[k]:.4g} WU has been released by then", k)
    done = earliest_completion_wu(config, inputs, state, wmax=wmax)
    bad = np.flatnonzero(done < due - _TOL * (1 + due))
    if bad.size:
        k = int(bad[0])
        raise InfeasibleInputError(
            "deferrable deadline",
            f"deferrable deadline at interval {k} needs {due[k]:.4g} WU done but at most "
            f"{done[k]:.4g} WU can be processed by then", k)


def earliest_completion_wu(config: SiteConfig, inputs: HorizonInputs, state: PlantState,
                           wmax: np.ndarray | None = None) -> np.ndarray:
    """Most cumulative deferrable work doable by the end of each interval [WU].

    Earliest-deadline-first as early as possible, with the capacity left by the
    non-deferrable work and capped by the released work. ``wmax`` is
    :func:`max_work_per_interval_wu` of ``inputs`` when the caller has it already.
    """
    if wmax is None:
        wmax = max_work_per_interval_wu(config, inputs)
    spare = np.maximum(wmax - inputs.work_nd_wu, 0.0)
    avail = state.df_available_cum_wu
    # Python floats: the same IEEE arithmetic as numpy scalars, without their overhead.
    avail_f = np.asarray(avail, dtype=float).tolist()
    spare_f = spare.tolist()
    done = np.empty(inputs.horizon_steps)
    total = 0.0
    for k in range(inputs.horizon_steps):
        total = min(avail_f[k], total + spare_f[k])
        done[k] = total
    return done


# ----------------------------------------------------------------------------- build


def integer_columns(model: CompiledModel, intervals: int) -> np.ndarray:
    """Columns of the binary variables that belong to the first ``intervals`` intervals.

    Every binary of the blocks is indexed by interval first (shape ``(H,)`` or
    ``(H, K)``), stored in Fortran order: interval ``t`` of column block ``k`` is
    column ``start + t + H·k``.
    """
    cols: list[np.ndarray] = []
    for variable in model.ctx.variables.values():
        if not variable.attributes.get("boolean"):
            continue
        all_cols = model.fast.columns(variable.name()).reshape(variable.shape, order="F")
        cols.append(np.asarray(all_cols)[:intervals].ravel())
    return np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)


@dataclass
class CompiledModel:
    """One formulation, built and compiled once."""

    ctx: ModelContext
    problem: cp.Problem
    fast: HighsFastPath
    build_time_s: float


def build_model(config: SiteConfig, horizon_steps: int, formulation: Formulation,
                options: SolverOptions) -> CompiledModel:
    """Assemble the blocks a configuration names into one DPP cvxpy problem.

    Order: compute load, processing function (relaxed or exact), deferrable work,
    renewable, battery (if configured), grid, power balance, exclusivity (exact
    only), energy cost, demand charge (retail with λ > 0). Compiles the HiGHS fast
    path at once so its cost is part of the build time.
    """
    t0 = time.perf_counter()
    ctx = ModelContext(config, horizon_steps, exact=formulation is Formulation.EXACT)
    define_compute_variables(ctx)
    if ctx.exact:
        define_processing_exact(ctx)
    else:
        define_processing_relaxed(ctx)
    define_deferrable_work(ctx)
    define_renewable(ctx)
    define_battery(ctx)
    define_grid_variables(ctx)
    define_power_balance(ctx)
    define_import_export_exclusivity(ctx)
    define_energy_cost(ctx)
    define_demand_charge(ctx)
    objective = cp.Minimize(cp.sum(cp.hstack(list(ctx.costs.values()))))
    problem = cp.Problem(objective, ctx.all_constraints())
    if not problem.is_dpp():  # an invariant of the blocks, not an input problem
        raise AssertionError("RCDC problem is not DPP")
    for p in ctx.parameters.values():
        p.value = np.zeros(p.shape)
    fast = HighsFastPath(problem, time_limit_s=options.time_limit_s,
                         mip_rel_gap=options.mip_rel_gap)
    return CompiledModel(ctx, problem, fast, time.perf_counter() - t0)


def _assign(param: cp.Parameter, value: np.ndarray | float) -> None:
    """Set a Parameter's value after checking shape, finiteness and its sign attribute.

    cvxpy's ``Parameter.value`` setter re-validates generically on every call
    (about 40-90 µs per Parameter, ~20 % of the 96-step hot path's time outside
    HiGHS, measured with pyinstrument); these checks are the ones that matter
    here and cost a few µs.

    Raises
    ------
    ValueError
        On a wrong shape, a non-finite value or a negative value for a
        ``nonneg`` Parameter.
    """
    arr = np.asarray(value, dtype=float)
    if arr.shape != param.shape:
        raise ValueError(f"Parameter {param.name()}: expected shape {param.shape}, "
                         f"got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"Parameter {param.name()}: non-finite value")
    if param.attributes.get("nonneg") and arr.size and arr.min() < 0:
        raise ValueError(f"Parameter {param.name()}: expected values >= 0")
    param.save_value(arr)


def set_parameters(ctx: ModelContext, inputs: HorizonInputs, state: PlantState) -> None:
    """Write inputs and state into the model's Parameters."""
    p = ctx.parameters
    _assign(p["import_price_usd_per_mwh"], inputs.import_price_usd_per_mwh)
    _assign(p["export_price_usd_per_mwh"], inputs.export_price_usd_per_mwh)
    _assign(p["renewable_available_mw"],
            inputs.renewable_cf * ctx.config.renewable.nameplate_mw)
    _assign(p["work_nd_wu"], inputs.work_nd_wu)
    _assign(p["df_due_cum_wu"], np.maximum(state.df_due_cum_wu, 0.0))
    _assign(p["df_available_cum_wu"], np.maximum(state.df_available_cum_wu, 0.0))
    if "peak_import_to_date_mw" in p:
        _assign(p["peak_import_to_date_mw"], float(state.peak_import_to_date_mw))
    if "battery_initial_energy_mwh" in p:
        assert ctx.config.battery is not None
        _assign(p["battery_initial_energy_mwh"], min(float(state.battery_energy_mwh),
                                                     ctx.config.battery.energy_mwh))


# ----------------------------------------------------------------------------- post-process


def repair_relaxed(config: SiteConfig, inputs: HorizonInputs,
                   v: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool, float]:
    """Map an LP optimum onto W = F(P) and exclusive import/export.

    Steps (each never raises cost when the exactness conditions hold):
    1. IT power down to ``F⁻¹(W/Δ)``; the freed site power first reduces renewable
       use (curtailment), then import, then raises export within its limit.
    2. Simultaneous import and export netted: both reduced by ``min(p_im, p_ex)``.

    Returns
    -------
    values : dict
        Repaired arrays.
    changed : bool
        True when anything moved by more than the tolerance.
    residual_mw : float [MW]
        Site power that could not be shed (> 0 means the repair failed).
    """
    dc = config.datacenter
    out = {k: np.array(a, dtype=float) for k, a in v.items()}
    work = inputs.work_nd_wu + out["work_df_wu"]
    need = dc.processing.inverse_mw(work / 0.25, dc.it_capacity_mw)
    excess_it = np.maximum(out["it_power_mw"] - need, 0.0)
    changed = bool(np.any(excess_it > 1e-6))
    out["it_power_mw"] = np.where(excess_it > 0, need, out["it_power_mw"])
    free = dc.pue * excess_it
    cut = np.minimum(free, out["renewable_used_mw"])
    out["renewable_used_mw"] -= cut
    free -= cut
    cut = np.minimum(free, out["import_mw"])
    out["import_mw"] -= cut
    free -= cut
    room = np.maximum(config.grid.export_limit_mw - out["export_mw"], 0.0)
    cut = np.minimum(free, room)
    out["export_mw"] += cut
    free -= cut
    both = np.minimum(out["import_mw"], out["export_mw"])
    if np.any(both > 1e-6):
        changed = True
    out["import_mw"] -= both
    out["export_mw"] -= both
    return out, changed, float(free.max(initial=0.0))


def extract_plan(config: SiteConfig, inputs: HorizonInputs, v: dict[str, np.ndarray]) -> Plan:
    """Build a :class:`Plan` from variable values (clipped at tiny negatives)."""
    H = inputs.horizon_steps
    zeros = np.zeros(H)

    def get(name: str) -> np.ndarray:
        return np.maximum(np.asarray(v.get(name, zeros), dtype=float).reshape(H), 0.0)

    avail = inputs.renewable_cf * config.renewable.nameplate_mw
    used = np.minimum(get("renewable_used_mw"), avail)
    it = get("it_power_mw")
    return Plan(
        dc_power_mw=config.datacenter.pue * it,
        it_power_mw=it,
        work_nd_wu=inputs.work_nd_wu.copy(),
        work_df_wu=get("work_df_wu"),
        renewable_used_mw=used,
        curtailed_mw=np.maximum(avail - used, 0.0),
        import_mw=get("import_mw"),
        export_mw=get("export_mw"),
        battery_charge_mw=get("battery_charge_mw"),
        battery_discharge_mw=get("battery_discharge_mw"),
        battery_energy_mwh=get("battery_energy_mwh"),
    )


def plan_cost(config: SiteConfig, inputs: HorizonInputs, state: PlantState, plan: Plan,
              step_h: float = 0.25) -> CostBreakdown:
    """Cost components of a plan at the given prices [$]."""
    tariff = config.grid.tariff
    demand = 0.0
    if tariff.kind == "retail" and tariff.demand_charge_usd_per_kw > 0:
        demand = tariff.demand_charge_usd_per_mw * max(
            plan.peak_import_mw - state.peak_import_to_date_mw, 0.0)
    return CostBreakdown(
        energy_import_usd=float(step_h * inputs.import_price_usd_per_mwh @ plan.import_mw),
        export_revenue_usd=float(step_h * inputs.export_price_usd_per_mwh @ plan.export_mw),
        demand_charge_usd=float(demand),
    )


_CVXPY_STATUS = {
    cp.OPTIMAL: "kOptimal",
    cp.OPTIMAL_INACCURATE: "kOptimal",
    cp.INFEASIBLE: "kInfeasible",
    cp.INFEASIBLE_INACCURATE: "kInfeasible",
    cp.UNBOUNDED: "kUnbounded",
    cp.USER_LIMIT: "kTimeLimit",
}


# ----------------------------------------------------------------------------- facade


class RcdcProblem:
    """The RCDC problem for a site and horizon, built once and solved many times.

    Parameters
    ----------
    config : SiteConfig
    horizon_steps : int
        Number of 15-min intervals H.
    formulation : Formulation or "auto"
        ``"auto"`` picks per solve with :func:`choose_formulation` (both forms are
        built on first use).
    options : SolverOptions, optional
    """

    def __init__(self, config: SiteConfig, horizon_steps: int,
                 formulation: Formulation | Literal["auto"] = "auto",
                 options: SolverOptions | None = None) -> None:
        if horizon_steps < 1:
            raise ValueError(f"horizon_steps must be >= 1, got {horizon_steps}")
        self.config = config
        self.horizon_steps = horizon_steps
        self.formulation = formulation if formulation == "auto" else Formulation(formulation)
        self.options = options or SolverOptions()
        self._models: dict[Formulation, CompiledModel] = {}
        first = Formulation.RELAXED if self.formulation == "auto" else self.formulation
        self.model(Formulation(first))

    def model(self, formulation: Formulation) -> CompiledModel:
        """The compiled model of a formulation (built on first use)."""
        if formulation not in self._models:
            model = build_model(self.config, self.horizon_steps, formulation, self.options)
            keep = self.options.integer_intervals
            if formulation is Formulation.EXACT and keep is not None and keep < self.horizon_steps:
                model.fast.set_integrality(integer_columns(model, keep))
            self._models[formulation] = model
        return self._models[formulation]

    def solve(self, inputs: HorizonInputs, state: PlantState, *,
              path: Literal["fast", "cvxpy"] = "fast") -> SolveResult:
        """Solve for one horizon.

        Parameters
        ----------
        inputs : HorizonInputs
        state : PlantState
        path : {"fast", "cvxpy"}
            Resident HiGHS model (default) or cvxpy's DPP re-solve (reference).

        Returns
        -------
        SolveResult
            Solver trouble gives a failure status, never an exception.

        Raises
        ------
        InfeasibleInputError
            When no schedule can satisfy the inputs (checked before solving).
        """
        wall = time.perf_counter()
        if inputs.horizon_steps != self.horizon_steps:
            raise InfeasibleInputError(
                "input length", f"inputs have {inputs.horizon_steps} intervals, the problem "
                f"was built for {self.horizon_steps}")
        check_feasibility(self.config, inputs, state)
        if self.formulation == "auto":
            form = choose_formulation(inputs)
        else:
            form = Formulation(self.formulation)
        result = self._solve_form(form, inputs, state, path, wall)
        if (form is Formulation.RELAXED and self.formulation == "auto"
                and result.status.has_plan and result.message.startswith("repair failed")):
            logger.warning("LP relaxation not exact (%s); re-solving the MILP", result.message)
            result = self._solve_form(Formulation.EXACT, inputs, state, path, wall)
        return result

    def _solve_form(self, form: Formulation, inputs: HorizonInputs, state: PlantState,
                    path: str, wall: float) -> SolveResult:
        model = self.model(form)
        set_parameters(model.ctx, inputs, state)
        names = list(model.ctx.variables)
        if path == "fast":
            sol = model.fast.solve()
            status_name, highs_time, gap = sol.model_status, sol.highs_time_s, sol.mip_gap
            values = ({n: model.fast.value(sol.x, n) for n in names}
                      if sol.x is not None else None)
        else:
            status_name, highs_time, gap, values = self._solve_cvxpy(model, names)
        status = SolveStatus.from_highs(status_name, values is not None)
        # kOptimal is trusted as HiGHS reports it: HiGHS checks the relative *or* the
        # absolute gap, and the relative gap is meaningless at an objective of 0.
        build = model.build_time_s
        if not status.has_plan or values is None:
            message = f"HiGHS status {status_name}"
            if status is SolveStatus.INFEASIBLE:
                message = ("HiGHS reports the problem infeasible; constraint groups: "
                           + ", ".join(model.ctx.constraints))
            logger.warning("solve failed (%s, %s): %s", form, path, message)
            return SolveResult(SolveStatus(status if status is not SolveStatus.FEASIBLE
                                           else SolveStatus.ERROR), form, None, None,
                               float("nan"), build, time.perf_counter() - wall, highs_time,
                               gap, path, message)
        repaired, message = False, ""
        if form is Formulation.RELAXED:
            values, repaired, residual = repair_relaxed(self.config, inputs, values)
            if residual > 1e-6:
                message = f"repair failed: {residual:.3g} MW of excess power could not be shed"
        if status is SolveStatus.FEASIBLE and not message:
            message = f"HiGHS stopped at {status_name} with a relative MIP gap of {gap:.3g}"
        plan = extract_plan(self.config, inputs, values)
        cost = plan_cost(self.config, inputs, state, plan, model.ctx.step_h)
        return SolveResult(status, form, plan, cost, cost.total_usd, build,
                           time.perf_counter() - wall, highs_time, gap, path, message, repaired)

    def _solve_cvxpy(self, model: CompiledModel, names: list[str]
                     ) -> tuple[str, float, float, dict[str, np.ndarray] | None]:
        try:
            model.problem.solve(solver=cp.HIGHS, time_limit=self.options.time_limit_s,
                                mip_rel_gap=self.options.mip_rel_gap)
        except cp.SolverError as err:
            logger.warning("cvxpy/HiGHS failed: %s", err)
            return "kSolveError", float("nan"), float("nan"), None
        status_name = _CVXPY_STATUS.get(model.problem.status, "kSolveError")
        stats = model.problem.solver_stats
        highs_time = float(stats.solve_time) if stats.solve_time is not None else float("nan")
        extra = stats.extra_stats
        gap = float(getattr(extra, "mip_gap", 0.0)) if model.fast.is_mip else 0.0
        if model.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE, cp.USER_LIMIT):
            return status_name, highs_time, gap, None
        ctxv = model.ctx.variables
        if any(ctxv[n].value is None for n in names):
            return status_name, highs_time, gap, None
        return status_name, highs_time, gap, {n: np.asarray(ctxv[n].value) for n in names}

"""The multi-campus inference-fleet problem: build once, three forms, typed results.

Stages are kept apart as in :mod:`mpc_dc.problem`: :func:`build_fleet_model`
calls one ``define_*`` function per concern (blocks ``inference_fleet``,
``carbon``, ``demand_response``) into one DPP cvxpy problem compiled once into a
resident HiGHS model (:class:`mpc_dc.fastpath.HighsFastPath`). The three forms
differ only in which instance columns are integer, changed in place:

* ``committed_integer`` - ``n[k, t]`` integer for the committed interval(s)
  ``t < K`` only, the tail relaxed (what the MPC commits is integral; the tail is
  re-planned at the next step anyway), enforced by rounding and fixing on the
  warm LP (``committed_mip`` enforces it by branch-and-bound, for reference);
* ``full_milp`` - every ``n[k, t]`` integer (the reference);
* ``lp`` - no integer column (lower bound; with :func:`round_instances` the
  fallback).

Equations, units and the measured cost of the committed-integer scheme:
docs/fleet.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

import cvxpy as cp
import numpy as np

from mpc_dc.blocks.carbon import carbon_cost_usd_per_mwh, define_carbon_cost
from mpc_dc.blocks.demand_response import (
    INACTIVE_KW,
    define_demand_response,
    define_demand_response_cost,
)
from mpc_dc.blocks.inference_fleet import (
    STEP_S,
    FleetContext,
    column_weights,
    define_campus_power,
    define_capacity,
    define_demand,
    define_energy_cost,
    define_fleet_variables,
    define_gpu_limit,
    define_quality,
    define_quality_cost,
    define_spatial_shares,
    define_switching,
    define_switching_cost,
    define_unserved_cost,
)
from mpc_dc.fastpath import HighsFastPath
from mpc_dc.params.fleet import FleetConfig, PoolKey
from mpc_dc.problem import SolveStatus
from mpc_dc.sim.fleet_decision import FleetDecision

logger = logging.getLogger(__name__)

#: Allowance that lets a constant (Sw-off) fleet be re-provisioned freely [instances].
_FREE = 1e6
_TOL = 1e-6


class FleetForm(StrEnum):
    """Which instance columns are integer and how that is enforced.

    ``committed_integer``: ``n[:, t < K]`` integer by round-and-fix on the warm LP
    (relaxation, GPU-feasible rounding of the committed interval, the LP again
    with it fixed; two warm simplex runs); ``committed_mip``: the same columns
    integer by HiGHS branch-and-bound (reference for the rounding); ``full_milp``:
    every ``n`` integer by branch-and-bound; ``lp``: none.
    """

    COMMITTED_INTEGER = "committed_integer"
    COMMITTED_MIP = "committed_mip"
    FULL_MILP = "full_milp"
    LP = "lp"


def _matrix(value: object, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.array(value, dtype=float, copy=True)
    if arr.ndim == 0:
        arr = np.full(shape, float(arr))
    elif arr.ndim == 1 and shape[0] == 1 and arr.size == shape[1]:
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise ValueError(f"FleetInputs.{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"FleetInputs.{name}: non-finite value")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class FleetInputs:
    """Per-interval exogenous data over the horizon (forecasts in the closed loop).

    Parameters
    ----------
    demand_tokens_per_s : ndarray (M, H) [tokens/s]
        Output-token demand per model, in :attr:`FleetConfig.models` order.
    price_usd_per_mwh : ndarray (C, H) [$/MWh]
        Energy price at each campus's node.
    carbon_gco2_per_kwh : ndarray (C, H) [gCO2/kWh]
    dr_event : ndarray (C, H) of {0, 1}, optional
        1 inside a demand-response event window.
    dr_baseline_mw : ndarray (C, H) [MW], optional
        Facility-power baseline during events.
    dr_reward_usd_per_kwh, dr_penalty_usd_per_kwh : float or None [$/kWh]
        Override the configuration's programme prices (sensitivity sweeps).
    gpus_available : ndarray (C, H) [GPUs], optional
        Default: every campus's installed GPUs.
    """

    demand_tokens_per_s: np.ndarray
    price_usd_per_mwh: np.ndarray
    carbon_gco2_per_kwh: np.ndarray
    dr_event: np.ndarray | None = None
    dr_baseline_mw: np.ndarray | None = None
    dr_reward_usd_per_kwh: float | None = None
    dr_penalty_usd_per_kwh: float | None = None
    gpus_available: np.ndarray | None = None

    def __post_init__(self) -> None:
        d = np.atleast_2d(np.asarray(self.demand_tokens_per_s, dtype=float))
        H = d.shape[1]
        C = np.atleast_2d(np.asarray(self.price_usd_per_mwh)).shape[0]
        object.__setattr__(self, "demand_tokens_per_s", _matrix(d, d.shape, "demand"))
        if np.any(d < 0):
            raise ValueError("FleetInputs.demand_tokens_per_s: expected values >= 0")
        for name in ("price_usd_per_mwh", "carbon_gco2_per_kwh"):
            object.__setattr__(self, name, _matrix(getattr(self, name), (C, H), name))
        for name in ("dr_event", "dr_baseline_mw", "gpus_available"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _matrix(getattr(self, name), (C, H), name))

    @property
    def horizon_steps(self) -> int:
        """H."""
        return int(self.demand_tokens_per_s.shape[1])


@dataclass(frozen=True)
class FleetState:
    """State carried between solves.

    Parameters
    ----------
    instances_running : Mapping[PoolKey, int]
        Instances running (or starting) at the start of the horizon; absent = 0.
    may_reprovision : bool
        Without switching flexibility (Sw off), whether the constant fleet may be
        re-sized at this solve (e.g. at the start of a day); ignored with Sw on.
    """

    instances_running: Mapping[PoolKey, int] = field(default_factory=dict)
    may_reprovision: bool = True


@dataclass(frozen=True)
class FleetPlan:
    """Per-pool, per-interval decisions.

    Attributes
    ----------
    pools : tuple of PoolKey
    models, campuses : tuple of str
    instances, starts : ndarray (P, H) [-]
    tokens_per_s : ndarray (P, H) [tokens/s]
    unserved_tokens_per_s : ndarray (M, H) [tokens/s]
    campus_power_mw : ndarray (C, H) [MW]
        Facility power drawn from the grid.
    dr_reduction_mw : ndarray (C, H) [MW]
        Baseline minus power in DR event intervals (negative above the baseline).
    dr_excess_mw : ndarray (C, H) [MW]
        Power above the DR cap.
    """

    pools: tuple[PoolKey, ...]
    models: tuple[str, ...]
    campuses: tuple[str, ...]
    instances: np.ndarray
    starts: np.ndarray
    tokens_per_s: np.ndarray
    unserved_tokens_per_s: np.ndarray
    campus_power_mw: np.ndarray
    dr_reduction_mw: np.ndarray
    dr_excess_mw: np.ndarray

    @property
    def served_tokens_per_s(self) -> np.ndarray:
        """(M, H) tokens/s served per model."""
        out = np.zeros_like(self.unserved_tokens_per_s)
        for k, pool in enumerate(self.pools):
            out[self.models.index(pool[1])] += self.tokens_per_s[k]
        return out

    def by(self, what: str, values: np.ndarray) -> dict[str, np.ndarray]:
        """Sum rows of a (P, H) array by ``"campus"``, ``"model"`` or ``"precision"``."""
        pos = {"campus": 0, "model": 1, "precision": 2}[what]
        out: dict[str, np.ndarray] = {}
        for k, pool in enumerate(self.pools):
            out[pool[pos]] = out.get(pool[pos], 0.0) + values[k]
        return out

    def decision(self, t: int = 0, source: str = "mpc") -> FleetDecision:
        """The :class:`FleetDecision` of interval ``t``.

        Instance counts are ``ceil(n[k, t] − 10⁻⁶)``: an integral (committed) interval
        is kept as is, and a fractional (relaxed) count is rounded up so that every
        pool with planned tokens gets the capacity ``ρ̄ μ n`` they need (rounding to
        the nearest integer would give a pool with ``n < 0.5`` tokens but no
        instance). Routing shares go only to pools with at least one instance: each
        pool's planned tokens over the model's; where a model's pools with
        instances have no planned tokens, by instance capacity ``n μ``. A model
        with no instance anywhere gets no shares (its requests are counted as not
        routable by the simulator, never queued at a pool without capacity).
        """
        inst = {p: instance_count(self.instances[k, t]) for k, p in enumerate(self.pools)}
        tokens = {p: float(self.tokens_per_s[k, t]) for k, p in enumerate(self.pools)}
        return FleetDecision(inst, routing_shares(inst, tokens, self.models), tokens, source)


def instance_count(n: float) -> int:
    """Integer instances for a planned count ``n`` [-]: ``ceil(n − 10⁻⁶)``, at least 0."""
    return max(int(np.ceil(float(n) - _TOL)), 0)


def routing_shares(instances: Mapping[PoolKey, int], tokens_per_s: Mapping[PoolKey, float],
                   models: tuple[str, ...],
                   capacity_tokens_per_s: Mapping[PoolKey, float] | None = None,
                   ) -> dict[PoolKey, float]:
    """Routing shares [-] over the pools with instances, summing to 1 per routed model.

    Parameters
    ----------
    instances : Mapping[PoolKey, int]
        Committed instances per pool; pools with 0 get no share.
    tokens_per_s : Mapping[PoolKey, float] [tokens/s]
        Planned tokens (the weights).
    models : tuple of str
    capacity_tokens_per_s : Mapping[PoolKey, float], optional [tokens/s]
        Throughput of one instance, for the capacity weights ``n μ`` of a model
        whose pools with instances have no planned tokens (default μ = 1).
    """
    shares: dict[PoolKey, float] = {}
    for m in models:
        keys = [p for p in instances if p[1] == m and instances[p] > 0]
        if not keys:
            continue
        w = np.array([max(float(tokens_per_s.get(p, 0.0)), 0.0) for p in keys])
        if w.sum() <= _TOL:
            mu = capacity_tokens_per_s or {}
            w = np.array([instances[p] * float(mu.get(p, 1.0)) for p in keys])
        w = w / w.sum()
        routed = {p: float(s) for p, s in zip(keys, w, strict=True) if s > 0}
        last = max(routed, key=lambda p: routed[p])
        routed[last] += 1.0 - sum(routed.values())
        shares.update(routed)
    return shares


@dataclass(frozen=True)
class FleetCost:
    """Cost components [$]; ``total_usd`` = energy + carbon + switching + quality
    − DR reward + DR penalty + unserved."""

    energy_usd: float
    carbon_usd: float
    switching_usd: float
    quality_usd: float
    dr_reward_usd: float
    dr_penalty_usd: float
    unserved_usd: float

    @property
    def total_usd(self) -> float:
        """Net cost [$]."""
        return (self.energy_usd + self.carbon_usd + self.switching_usd + self.quality_usd
                - self.dr_reward_usd + self.dr_penalty_usd + self.unserved_usd)

    def as_dict(self) -> dict[str, float]:
        """Components and total [$]."""
        return {**self.__dict__, "total_usd": self.total_usd}


@dataclass(frozen=True)
class FleetSolveResult:
    """Typed outcome of :meth:`FleetProblem.solve` (solver trouble never raises).

    Attributes
    ----------
    status : SolveStatus
    form : FleetForm
    plan, cost : FleetPlan, FleetCost or None
        Present when ``status.has_plan``.
    objective_usd : float [$]
        ``cost.total_usd`` (NaN without a plan).
    build_time_s, solve_time_s, highs_time_s : float [s]
        Build + compile (once), wall time of this call, HiGHS's own run time.
    mip_gap : float [-]
        ``(objective − bound) / |objective|`` with the LP bound (committed-integer
        over the whole horizon) or HiGHS's dual bound (MIP forms), both net of the
        DR constant like the objective; HiGHS's own gap is relative to the
        objective *with* that constant and understates the gap on DR days.
    message : str
    repaired : bool
        True when instance counts were rounded from a relaxation.
    lp_bound_usd : float [$]
        Objective of the LP relaxation when it was solved (a lower bound).
    mip_bound_usd : float [$]
        MIP forms: HiGHS's dual bound on the form's optimum (a lower bound, also
        when a limit stopped the run without a plan); NaN for the other forms.
    """

    status: SolveStatus
    form: FleetForm
    plan: FleetPlan | None
    cost: FleetCost | None
    objective_usd: float
    build_time_s: float
    solve_time_s: float
    highs_time_s: float
    mip_gap: float
    message: str = ""
    repaired: bool = False
    lp_bound_usd: float = float("nan")
    mip_bound_usd: float = float("nan")

    @property
    def unserved_tokens(self) -> float:
        """Unserved tokens over the horizon [tokens]."""
        if self.plan is None:
            return float("nan")
        return float(self.plan.unserved_tokens_per_s.sum() * STEP_S)


@dataclass(frozen=True)
class FleetSolverOptions:
    """HiGHS limits per form and the number of committed integer intervals.

    Parameters
    ----------
    committed_intervals : int
        K: intervals whose instance counts are integer in the committed form.
    time_limit_s : float [s]
        Committed-integer and LP forms.
    mip_rel_gap : float [-]
        Committed-integer form.
    full_time_limit_s : float [s]
    full_mip_rel_gap : float [-]
        Full-MILP form.
    warm_start : str
        Starting basis of the LP runs (``lp`` and ``committed_integer``):
        ``"auto"`` (default) the last relaxation's basis, moved forward one
        interval when the new inputs match the last ones shifted by one interval
        better than unshifted (a receding-horizon step); ``"shift"`` / ``"same"``
        force either; ``"cold"`` clears HiGHS's basis (presolve and a cold dual
        simplex every time).
    round_chunk_intervals : int
        Round-and-fix of more than one interval (``integer_intervals``) rounds
        this many intervals at a time, re-solving the LP in between (1: interval
        by interval, most LP runs, cheapest plans; ``H``: all at once).
    fine_steps : int or None
        Multi-resolution horizon: the first ``fine_steps`` intervals are model
        columns of their own, later ones are grouped ``coarse_block_steps`` to a
        column (:func:`horizon_columns`); None (default): every interval is a
        column. Must cover the committed intervals.
    coarse_block_steps : int
        Intervals per column beyond ``fine_steps`` (4: hourly).
    far_start_steps : int or None
        A third, coarser tier from this interval on (None: none).
    far_block_steps : int
        Intervals per column beyond ``far_start_steps`` (16: 4-hourly).
    """

    committed_intervals: int = 1
    time_limit_s: float = 5.0
    mip_rel_gap: float = 1e-4
    full_time_limit_s: float = 60.0
    full_mip_rel_gap: float = 1e-3
    warm_start: str = "auto"
    round_chunk_intervals: int = 8
    fine_steps: int | None = None
    coarse_block_steps: int = 4
    far_start_steps: int | None = None
    far_block_steps: int = 16

    def __post_init__(self) -> None:
        if self.fine_steps is not None and self.fine_steps < max(self.committed_intervals, 1):
            raise ValueError(f"FleetSolverOptions.fine_steps: expected >= committed_intervals "
                             f"({self.committed_intervals}), got {self.fine_steps}")
        for name in ("coarse_block_steps", "far_block_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"FleetSolverOptions.{name}: expected >= 1, got "
                                 f"{getattr(self, name)}")
        if (self.far_start_steps is not None and self.fine_steps is not None
                and self.far_start_steps < self.fine_steps):
            raise ValueError(f"FleetSolverOptions.far_start_steps: expected >= fine_steps "
                             f"({self.fine_steps}), got {self.far_start_steps}")
        if self.warm_start not in _WARM_STARTS:
            raise ValueError(f"FleetSolverOptions.warm_start: expected one of "
                             f"{', '.join(_WARM_STARTS)}, got {self.warm_start!r}")


_WARM_STARTS = ("auto", "shift", "same", "cold")
#: LP outcomes a warm start cannot have caused (anything else is retried cold).
_NO_COLD_RETRY = frozenset({"kOptimal", "kInfeasible", "kTimeLimit"})


@dataclass
class CompiledFleetModel:
    """The fleet problem built and compiled once."""

    ctx: FleetContext
    problem: cp.Problem
    fast: HighsFastPath
    build_time_s: float


def build_fleet_model(config: FleetConfig, horizon_steps: int,
                      interval_lengths: np.ndarray | None = None) -> CompiledFleetModel:
    """Assemble the fleet blocks into one DPP problem and compile its HiGHS model.

    Order: variables, demand, fixed campus shares (Sp off), capacity, GPU limit,
    switching (+ constant fleet with Sw off), quality, campus power, demand
    response, then the cost terms energy, carbon, switching, quality, DR, unserved.
    ``interval_lengths`` (:func:`horizon_columns`, summing to ``horizon_steps``)
    makes a multi-resolution model with one column per entry.
    """
    t0 = time.perf_counter()
    if interval_lengths is None:
        ctx = FleetContext(config, horizon_steps)
    else:
        lengths = np.asarray(interval_lengths, dtype=np.int64)
        if int(lengths.sum()) != horizon_steps:
            raise ValueError(f"interval_lengths sum to {int(lengths.sum())}, expected "
                             f"horizon_steps = {horizon_steps}")
        ctx = FleetContext(config, lengths.size, interval_lengths=lengths)
    define_fleet_variables(ctx)
    define_demand(ctx)
    define_spatial_shares(ctx)
    define_capacity(ctx)
    define_gpu_limit(ctx)
    define_switching(ctx)
    define_quality(ctx)
    define_campus_power(ctx)
    define_demand_response(ctx)
    define_energy_cost(ctx)
    define_carbon_cost(ctx)
    define_switching_cost(ctx)
    define_quality_cost(ctx)
    define_demand_response_cost(ctx)
    define_unserved_cost(ctx)
    objective = cp.Minimize(cp.sum(cp.hstack([cp.reshape(c, (1,), order="F")
                                              for c in ctx.costs.values()])))
    problem = cp.Problem(objective, ctx.all_constraints())
    if not problem.is_dpp():  # an invariant of the blocks, not an input problem
        raise AssertionError("fleet problem is not DPP")
    for p in ctx.parameters.values():
        p.value = np.zeros(p.shape)
    fast = HighsFastPath(problem)
    return CompiledFleetModel(ctx, problem, fast, time.perf_counter() - t0)


def horizon_columns(horizon_steps: int, fine_steps: int | None = None,
                    coarse_block_steps: int = 4, far_start_steps: int | None = None,
                    far_block_steps: int = 16) -> np.ndarray:
    """Intervals spanned by each model column of a multi-resolution horizon [intervals].

    The first ``fine_steps`` intervals get a column each; the next ones, up to interval
    ``far_start_steps``, are grouped into columns of ``coarse_block_steps`` intervals,
    and those beyond into columns of ``far_block_steps`` (the last column of each tier
    may be shorter). ``fine_steps`` None (or >= ``horizon_steps``) gives one column per
    interval (and no tier at all); ``far_start_steps`` None, no far tier.

    Examples
    --------
    >>> horizon_columns(10, 4, 4).tolist()
    [1, 1, 1, 1, 4, 2]
    >>> horizon_columns(20, 2, 4, far_start_steps=8, far_block_steps=8).tolist()
    [1, 1, 4, 2, 8, 4]
    """
    if horizon_steps < 1:
        raise ValueError(f"horizon_steps: expected >= 1, got {horizon_steps}")
    if coarse_block_steps < 1:
        raise ValueError(f"coarse_block_steps: expected >= 1, got {coarse_block_steps}")
    if far_block_steps < 1:
        raise ValueError(f"far_block_steps: expected >= 1, got {far_block_steps}")
    if fine_steps is None:
        return np.ones(horizon_steps, dtype=np.int64)
    fine = min(int(fine_steps), horizon_steps)
    if fine < 1:
        raise ValueError(f"fine_steps: expected >= 1, got {fine_steps}")
    far = horizon_steps if far_start_steps is None else min(int(far_start_steps), horizon_steps)
    if far < fine:
        raise ValueError(f"far_start_steps: expected >= fine_steps ({fine}), got "
                         f"{far_start_steps}")

    def blocks(total: int, size: int) -> list[int]:
        return [size] * (total // size) + ([total % size] if total % size else [])

    return np.array([1] * fine + blocks(far - fine, coarse_block_steps)
                    + blocks(horizon_steps - far, far_block_steps), dtype=np.int64)


def reduce_columns(values: np.ndarray, ctx: FleetContext, how: str = "mean") -> np.ndarray:
    """(R, intervals) → (R, model columns): each column's ``"mean"``, ``"sum"`` or
    ``"min"`` over its intervals (:attr:`FleetContext.interval_lengths`); with
    one-interval columns the values themselves."""
    values = np.asarray(values, dtype=float)
    if how == "min":
        return np.minimum.reduceat(values, ctx.column_starts, axis=1)
    total = np.add.reduceat(values, ctx.column_starts, axis=1)
    return total if how == "sum" else total / column_weights(ctx)[None, :]


def set_fleet_parameters(ctx: FleetContext, inputs: FleetInputs, state: FleetState) -> None:
    """Write inputs and state into the model's Parameters.

    With a coarse tail (:attr:`FleetContext.interval_lengths`) each column takes
    the mean of its intervals' demand [tokens/s], prices [$/MWh] and DR reward
    and penalty rates [$/kWh], the least of their GPUs and DR caps (so a column
    never plans on capacity one of its intervals lacks), and the mean baseline of
    its event intervals (with the mean reward rate, the settlement of the column
    equals that of its intervals at the column's power).
    """
    cfg = ctx.config
    assert ctx.interval_lengths is not None
    C, M, H = len(cfg.campuses), len(cfg.models), int(ctx.interval_lengths.sum())
    p = ctx.parameters
    if inputs.demand_tokens_per_s.shape != (M, H):
        raise ValueError(f"FleetInputs.demand_tokens_per_s: expected shape {(M, H)} "
                         f"(models {', '.join(cfg.models)}), got "
                         f"{inputs.demand_tokens_per_s.shape}")
    if inputs.price_usd_per_mwh.shape != (C, H):
        raise ValueError(f"FleetInputs.price_usd_per_mwh: expected shape {(C, H)}")
    carbon = np.maximum(np.asarray(carbon_cost_usd_per_mwh(
        cfg.carbon_price_usd_per_t, inputs.carbon_gco2_per_kwh)), 0.0)
    p["demand_kps"].value = reduce_columns(inputs.demand_tokens_per_s, ctx) / 1e3
    p["price_usd_per_mwh"].value = reduce_columns(inputs.price_usd_per_mwh, ctx)
    p["carbon_cost_usd_per_mwh"].value = reduce_columns(carbon, ctx)
    gpus = (np.repeat(np.array([[c.gpus] for c in cfg.campuses], dtype=float), H, axis=1)
            if inputs.gpus_available is None else inputs.gpus_available)
    p["gpus_available"].value = np.maximum(reduce_columns(gpus, ctx, "min"), 0.0)
    p["instances_running"].value = np.array(
        [float(state.instances_running.get(k, 0)) for k in ctx.pools])
    if "reprovision_allowance" in p:
        p["reprovision_allowance"].value = np.full(ctx.n_pools,
                                                   _FREE if state.may_reprovision else 0.0)
    event = (np.zeros((C, H)) if inputs.dr_event is None else inputs.dr_event) > 0.5
    base = np.zeros((C, H)) if inputs.dr_baseline_mw is None else np.maximum(
        1e3 * inputs.dr_baseline_mw, 0.0)
    dr = cfg.dr
    reward = dr.reward_usd_per_kwh if inputs.dr_reward_usd_per_kwh is None else \
        inputs.dr_reward_usd_per_kwh
    penalty = dr.penalty_usd_per_kwh if inputs.dr_penalty_usd_per_kwh is None else \
        inputs.dr_penalty_usd_per_kwh
    share = reduce_columns(event, ctx)
    ctx.dr_baseline_kw = np.where(share > 0, reduce_columns(np.where(event, base, 0.0), ctx)
                                  / np.maximum(share, 1e-12), 0.0)
    p["dr_cap_rhs_kw"].value = reduce_columns(
        np.where(event, dr.cap_fraction_of_baseline * base, INACTIVE_KW), ctx, "min")
    p["dr_reward_usd_per_kwh"].value = reduce_columns(np.where(event, reward, 0.0), ctx)
    p["dr_penalty_usd_per_kwh"].value = reduce_columns(np.where(event, penalty, 0.0), ctx)


# ----------------------------------------------------------------------------- post-process


def extract_fleet_plan(ctx: FleetContext, values: Mapping[str, np.ndarray]) -> FleetPlan:
    """Build a :class:`FleetPlan` from variable values (tiny negatives clipped)."""
    cfg = ctx.config
    M, C = len(cfg.models), len(cfg.campuses)

    def get(name: str) -> np.ndarray:
        return np.maximum(np.asarray(values[name], dtype=float), 0.0)

    uns = 1e3 * get("unserved_kps").reshape(C, M, -1).sum(axis=0)
    power = 1e-3 * get("campus_power_kw")
    event = np.asarray(ctx.parameters["dr_reward_usd_per_kwh"].value) > 0
    reduction = np.where(event, 1e-3 * ctx.dr_baseline_kw - power, 0.0)
    return FleetPlan(ctx.pools, cfg.models, cfg.campus_names, get("instances"), get("starts"),
                     1e3 * get("tokens_kps"), uns, power, reduction,
                     1e-3 * get("dr_excess_kw"))


def fleet_plan_cost(ctx: FleetContext, plan: FleetPlan) -> FleetCost:
    """Cost components of a plan at the Parameters' current values [$].

    Power, DR reduction and excess are recomputed from instances and tokens (so a
    repaired plan is costed consistently), not read from the solver.
    """
    cfg = ctx.config
    p = ctx.parameters
    dt = ctx.step_h
    power_kw = 1e3 * campus_power_mw(ctx, plan.instances, plan.tokens_per_s)
    rr = np.asarray(p["dr_reward_usd_per_kwh"].value)
    red = np.where(rr > 0, ctx.dr_baseline_kw - power_kw, 0.0)
    exc = np.maximum(power_kw - np.asarray(p["dr_cap_rhs_kw"].value), 0.0)
    q = cfg.quality_cost_usd_per_point_mtok * STEP_S / 1e6
    kwh = dt * column_weights(ctx)  # [kWh per kW] of each column
    return FleetCost(
        energy_usd=float(np.sum(kwh / 1e3 * np.asarray(p["price_usd_per_mwh"].value)
                                * power_kw)),
        carbon_usd=float(np.sum(kwh / 1e3 * np.asarray(p["carbon_cost_usd_per_mwh"].value)
                                * power_kw)),
        switching_usd=float(cfg.start_cost_usd_per_gpu * np.sum(ctx.gpus @ plan.starts)),
        quality_usd=float(q * np.sum((ctx.quality_loss @ plan.tokens_per_s)
                                     * column_weights(ctx))),
        dr_reward_usd=float(np.sum(kwh * rr * red)),
        dr_penalty_usd=float(np.sum(kwh * np.asarray(p["dr_penalty_usd_per_kwh"].value) * exc)),
        unserved_usd=float(cfg.unserved_penalty_usd_per_mtok * STEP_S / 1e6
                           * np.sum(plan.unserved_tokens_per_s * column_weights(ctx))),
    )


def campus_power_mw(ctx: FleetContext, instances: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Facility power per campus ``PUE Σ (p_idle n + e x) / 10⁶`` [MW], (C, H)."""
    return np.asarray(ctx.campus_matrix(1e-6 * ctx.pue * ctx.idle_w) @ instances
                      + ctx.campus_matrix(1e-6 * ctx.pue * ctx.energy_j_per_token) @ tokens)


def round_instances(ctx: FleetContext, n: np.ndarray, tokens_per_s: np.ndarray,
                    n_prev: np.ndarray, gpus: np.ndarray,
                    demand_tokens_per_s: np.ndarray | None = None, *,
                    price_usd_per_mwh: np.ndarray | None = None,
                    constant: bool = False, first_column: int = 0) -> np.ndarray:
    """Integer instance counts near a relaxed plan, rounded jointly per (campus, model).

    Per interval and per group g = (campus c, model m) of pools (one per precision):
    start from ``⌊n⌋``; while the group's capacity ``Σ_{k∈g} ρ̄ μ_k (n_k − w_k u_k)``
    is below its planned tokens ``Σ_{k∈g} x_k`` add one instance to the pool of g
    that fits the campus's free GPUs and is cheapest per token it adds: with
    ``price_usd_per_mwh``, ``(Δ Σ_t π PUE (p_idle + e y_t) + c_start g [start] + c_q δ y)
    / Σ_t y_t`` with y the shortfall it covers (an extra start nets ``1 − w`` of an
    instance); without, the largest remainder ``n_k − n'_k``. Integer instances
    pay their full idle power, which the relaxation spreads over the tokens: a
    precision the LP prefers per token (e.g. FP8 with a higher idle, lower
    marginal power) can be the dearer single instance at low load. Rounding each
    pool up instead adds up to one instance per precision, i.e. several per
    (campus, model) with precision choice. Then, with ``demand_tokens_per_s``, the
    quality budget ``Σ_{c,q} δ x ≤ δ̄ D[m]`` is checked for the least-loss use of
    the rounded capacity (each group's tokens on its lowest-δ pools first) and
    lower-δ instances are added where it is exceeded. Tokens a GPU-full campus
    cannot take move to another campus's pools of the model (Sp on only).

    Parameters
    ----------
    n : ndarray (P, T) [-]
    tokens_per_s : ndarray (P, T) [tokens/s]
        The relaxed plan's tokens.
    n_prev : ndarray (P,) [-]
        Instances running before the first interval.
    gpus : ndarray (C, T) [GPUs]
    demand_tokens_per_s : ndarray (M, T) [tokens/s], optional
        Demand of the same intervals (quality-budget check; skipped when None).
    price_usd_per_mwh : ndarray (C, T) [$/MWh], optional
        Energy price plus carbon cost (and DR reward rate) per campus: ranks the pools.
    constant : bool
        Sw off: the T intervals share one fleet, sized for every interval's tokens
        (warm-up in the first only); the result's columns are equal.
    first_column : int
        Model column of the first of the T (a coarse column's warm-up share is
        :attr:`FleetContext.warmup_matrix`, and its cost counts ``L`` intervals).

    Returns
    -------
    ndarray (P, T) [-]
        Integral counts.
    """
    n = np.maximum(np.asarray(n, dtype=float), 0.0)
    x = np.maximum(np.asarray(tokens_per_s, dtype=float), 0.0)
    gpus = np.asarray(gpus, dtype=float)
    demand = None if demand_tokens_per_s is None else np.asarray(demand_tokens_per_s, float)
    price = None if price_usd_per_mwh is None else np.asarray(price_usd_per_mwh, float)
    prev = np.asarray(n_prev, dtype=float)
    cols = slice(first_column, first_column + n.shape[1])
    warmup = ctx.warmup_matrix[:, cols]
    weights = ctx.interval_lengths[cols].astype(float) if ctx.interval_lengths is not None \
        else np.ones(n.shape[1])
    if constant:
        col = _round_column(ctx, n.max(axis=1), x, prev, gpus.min(axis=1), demand, price,
                            warmup[:, 0], weights)
        return np.repeat(col[:, None], n.shape[1], axis=1)
    out = np.empty_like(n)
    for t in range(n.shape[1]):
        out[:, t] = _round_column(ctx, n[:, t], x[:, t:t + 1], prev, gpus[:, t],
                                  None if demand is None else demand[:, t:t + 1],
                                  None if price is None else price[:, t:t + 1],
                                  warmup[:, t], weights[t:t + 1])
        prev = out[:, t]
    return out


def _round_column(ctx: FleetContext, n: np.ndarray, x: np.ndarray, prev: np.ndarray,
                  gpus: np.ndarray, demand: np.ndarray | None,
                  price: np.ndarray | None, w: np.ndarray,
                  weights: np.ndarray) -> np.ndarray:
    """One integral fleet (P,) covering the tokens ``x`` (P, W) of W model columns
    (:func:`round_instances`); ``gpus`` (C,), ``demand`` (M, W) [tokens/s],
    ``price`` (C, W) [$/MWh], ``w`` (P,) the first column's warm-up share [-],
    ``weights`` (W,) intervals per column."""
    cap = ctx.config.utilization_cap * ctx.mu_tokens_per_s
    M = len(ctx.config.models)
    group = ctx.campus_of * M + ctx.model_of
    col = np.floor(n + _TOL)
    free = gpus - ctx.gpu_matrix @ col
    tol = 1e-3 + 1e-7 * float(np.max(x, initial=0.0))

    def capacity(k: np.ndarray, c: np.ndarray) -> np.ndarray:
        """(len(k), W) tokens/s each pool of ``k`` serves with counts ``c``."""
        full = cap[k] * c
        out = np.repeat(full[:, None], x.shape[1], axis=1)
        out[:, 0] -= cap[k] * w[k] * np.maximum(c - prev[k], 0.0)
        return out

    def add(k: int) -> None:
        col[k] += 1
        free[ctx.campus_of[k]] -= ctx.gpus[k]

    def fits(k: int) -> bool:
        return bool(ctx.gpus[k] <= free[ctx.campus_of[k]] + _TOL)

    def drop(k: int) -> None:
        col[k] -= 1
        free[ctx.campus_of[k]] += ctx.gpus[k]

    cfg = ctx.config
    pue = ctx.pue
    qcost = cfg.quality_cost_usd_per_point_mtok * ctx.quality_loss * STEP_S / 1e6  # $/(tok/s)

    def rank(k: int, short: np.ndarray) -> tuple[float, float]:
        """Larger is better: minus the cost per token added, or the LP's remainder."""
        if price is None:
            return (n[k] - col[k], cap[k])
        gain = capacity(np.array([k]), col[[k]] + 1)[0] - capacity(np.array([k]), col[[k]])[0]
        y = np.minimum(gain, np.maximum(short, 0.0))
        pi = price[ctx.campus_of[k]]
        usd = (ctx.step_h * np.sum(weights * pi * pue[k]
                                   * (ctx.idle_w[k] + ctx.energy_j_per_token[k] * y))
               / 1e6 + float(np.sum(weights * qcost[k] * y)))
        if col[k] >= prev[k]:
            usd += cfg.start_cost_usd_per_gpu * ctx.gpus[k]
        return (-usd / max(float(np.sum(weights * y)), 1e-9), n[k] - col[k])

    short_of = np.zeros((group.max() + 1, x.shape[1]))
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        need = x[idx].sum(axis=0)
        for _ in range(10_000):
            short = need - capacity(idx, col[idx]).sum(axis=0)
            if short.max() <= tol:
                break
            cand = [int(k) for k in idx if fits(int(k))]
            if not cand:
                short_of[g] = np.maximum(short, 0.0)
                break
            add(max(cand, key=lambda k: rank(k, short)))
    if ctx.config.flexibility.spatial:  # what a GPU-full campus cannot take goes elsewhere
        for g in np.flatnonzero(short_of.max(axis=1) > tol):
            m = g % M
            for _ in range(10_000):
                if short_of[g].max() <= tol:
                    break
                cand = [int(j) for j in np.flatnonzero(ctx.model_of == m)
                        if group[j] != g and fits(int(j))]
                if not cand:
                    break
                j = max(cand, key=lambda k: rank(k, short_of[g]))
                before = capacity(np.array([j]), col[[j]])[0]
                add(j)
                short_of[g] -= capacity(np.array([j]), col[[j]])[0] - before
    if demand is not None and np.any(ctx.quality_loss > 0):
        _repair_quality(ctx, col, x, demand, capacity, fits, add, drop, group, tol)
    return col


def _least_loss(ctx: FleetContext, idx: np.ndarray, cap_k: np.ndarray,
                need: np.ndarray) -> np.ndarray:
    """Quality loss ``Σ δ x`` [points·tokens/s] of a group's tokens ``need`` (W,) on its
    pools' capacities ``cap_k`` (len(idx), W), lowest δ first."""
    order = np.argsort(ctx.quality_loss[idx], kind="stable")
    left = need.copy()
    loss = np.zeros_like(need)
    for i in order:
        take = np.minimum(left, cap_k[i])
        loss += ctx.quality_loss[idx[i]] * take
        left -= take
    return loss


def _repair_quality(ctx: FleetContext, col: np.ndarray, x: np.ndarray, demand: np.ndarray,
                    capacity: Callable[[np.ndarray, np.ndarray], np.ndarray],
                    fits: Callable[[int], bool], add: Callable[[int], None],
                    drop: Callable[[int], None], group: np.ndarray, tol: float) -> None:
    """Add lower-δ instances until each model's least loss meets ``δ̄ D[m]``; each
    addition then drops the group's highest-δ instances the group's tokens no longer
    need (a swap where one suffices)."""
    budget = ctx.config.quality_budget_pct_points
    for m in range(len(ctx.config.models)):
        groups = np.unique(group[ctx.model_of == m])

        for _ in range(1_000):
            losses = {}
            for g in groups:
                idx = np.flatnonzero(group == g)
                losses[int(g)] = _least_loss(ctx, idx, capacity(idx, col[idx]),
                                             x[idx].sum(axis=0))
            excess = sum(losses.values()) - budget * demand[m]
            if excess.max() <= tol * max(float(ctx.quality_loss.max()), 1.0):
                break
            best, gain = -1, 0.0
            for g in groups:
                idx = np.flatnonzero(group == g)
                for k in idx:
                    if not fits(int(k)) or ctx.quality_loss[k] >= ctx.quality_loss[idx].max():
                        continue
                    trial = col[idx].copy()
                    trial[idx == k] += 1
                    new = _least_loss(ctx, idx, capacity(idx, trial), x[idx].sum(axis=0))
                    d = float(np.max(losses[int(g)] - new))
                    if d > gain + _TOL:
                        best, gain = int(k), d
            if best < 0:
                break
            add(best)
            idx = np.flatnonzero(group == group[best])
            need = x[idx].sum(axis=0)
            for k in idx[np.argsort(-ctx.quality_loss[idx], kind="stable")]:
                if k == best or ctx.quality_loss[k] <= ctx.quality_loss[best]:
                    continue
                while col[k] > 0:
                    trial = col[idx].copy()
                    trial[idx == k] -= 1
                    if np.max(need - capacity(idx, trial).sum(axis=0)) > tol:
                        break
                    drop(int(k))


# ----------------------------------------------------------------------------- facade


class FleetProblem:
    """The fleet problem for a configuration and horizon, built once, solved many times.

    Parameters
    ----------
    config : FleetConfig
    horizon_steps : int
        H.
    options : FleetSolverOptions, optional

    Examples
    --------
    >>> problem = FleetProblem(FleetConfig(), 96)                        # doctest: +SKIP
    >>> result = problem.solve(inputs, FleetState())                     # doctest: +SKIP
    >>> result.plan.decision(0)                                          # doctest: +SKIP
    """

    def __init__(self, config: FleetConfig, horizon_steps: int,
                 options: FleetSolverOptions | None = None) -> None:
        if horizon_steps < 1:
            raise ValueError(f"horizon_steps must be >= 1, got {horizon_steps}")
        self.config = config
        self.horizon_steps = horizon_steps
        self.options = options or FleetSolverOptions()
        o = self.options
        self.model = build_fleet_model(
            config, horizon_steps, horizon_columns(horizon_steps, o.fine_steps,
                                                   o.coarse_block_steps, o.far_start_steps,
                                                   o.far_block_steps))
        fast = self.model.fast
        P = self.model.ctx.n_pools
        self._n_cols = fast.columns("instances")  # Fortran order: k + P t
        K = min(self.options.committed_intervals, horizon_steps)
        self._committed_cols = self._n_cols[: P * K]
        self._form: FleetForm | None = None
        # warm start of the LP runs: the last relaxation's basis and inputs
        self._lp_basis: tuple[np.ndarray, np.ndarray] | None = None
        self._lp_series: np.ndarray | None = None
        self._shift_maps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.last_warm_start = "cold"
        self.warm_start_failures = 0
        # where each column's data comes from one interval later: the next column for
        # a one-interval column, itself for a coarse column (it moves by a fraction)
        j = np.arange(self.n_columns)
        fine = o.fine_steps if self.blocked and o.fine_steps is not None else self.n_columns
        self._time_source = np.where(j < fine - 1, j + 1, j)
        #: Round-and-fix chunks whose rounding lost tokens: redone in halves, and (one
        #: interval, or a constant fleet, still short) given to HiGHS as a chunk MIP.
        self.finer_dives = 0
        self.chunk_mip_repairs = 0

    @property
    def columns(self) -> np.ndarray:
        """Intervals per model column (all 1 without a coarse tail)."""
        lengths = self.ctx.interval_lengths
        assert lengths is not None  # set by FleetContext
        return lengths

    @property
    def n_columns(self) -> int:
        """Model columns (``horizon_steps`` without a coarse tail)."""
        return self.ctx.horizon_steps

    @property
    def blocked(self) -> bool:
        """Whether the horizon has a coarse tail."""
        return self.n_columns != self.horizon_steps

    def _columns_within(self, intervals: int) -> int:
        """Columns that start before interval ``intervals``."""
        return int(np.searchsorted(self.ctx.column_starts, intervals, side="left"))

    def _to_columns(self, per_interval: np.ndarray) -> np.ndarray:
        """(P, T) per-interval values → (P, columns starting before T): each column's
        value at its first interval."""
        arr = np.asarray(per_interval, dtype=float)
        if not self.blocked:
            return arr
        return arr[:, self.ctx.column_starts[: self._columns_within(arr.shape[1])]]

    def _expand(self, result: FleetSolveResult) -> FleetSolveResult:
        """A result in model columns → per interval (plans of shape (·, horizon_steps))."""
        if not self.blocked or result.plan is None:
            return result
        plan = result.plan
        starts = np.zeros((plan.starts.shape[0], self.horizon_steps))
        starts[:, self.ctx.column_starts] = plan.starts  # a column's starts happen at its start
        lengths = self.columns

        def held(values: np.ndarray) -> np.ndarray:
            return np.repeat(values, lengths, axis=1)

        return replace(result, plan=replace(
            plan, instances=held(plan.instances), starts=starts,
            tokens_per_s=held(plan.tokens_per_s),
            unserved_tokens_per_s=held(plan.unserved_tokens_per_s),
            campus_power_mw=held(plan.campus_power_mw),
            dr_reduction_mw=held(plan.dr_reduction_mw), dr_excess_mw=held(plan.dr_excess_mw)))

    def reset_warm_start(self) -> None:
        """Forget the last basis: the next solve starts cold (presolve, dual simplex)."""
        self._lp_basis = None
        self._lp_series = None
        self.model.fast.clear_solver()

    def _series(self) -> np.ndarray:
        """Time-series Parameters scaled to ~1, stacked (rows, H), for the shift test."""
        p = self.ctx.parameters
        rows = []
        for name in ("demand_kps", "price_usd_per_mwh", "carbon_cost_usd_per_mwh",
                     "gpus_available"):
            v = np.asarray(p[name].value, dtype=float)
            rows.append(v / max(float(np.abs(v).max()), 1e-9))
        return np.vstack(rows)

    def _warm_start_lp(self, series: np.ndarray) -> None:
        """Give the next LP run the last relaxation's basis, shifted when the data moved.

        ``auto`` compares the new time ``series`` (:meth:`_series`) with the last ones
        unshifted and shifted by one interval (sum of squared differences).
        """
        mode = self.options.warm_start
        if mode == "cold" or self._lp_basis is None or self._lp_series is None:
            self.model.fast.clear_solver()
            self.last_warm_start = "cold"
            return
        if mode == "auto" and self.n_columns > 1:
            old = self._lp_series
            src = self._time_source
            moved = src != np.arange(src.size)
            same = float(np.sum((series - old)[:, moved] ** 2))
            shifted = float(np.sum((series - old[:, src])[:, moved] ** 2))
            mode = "shift" if shifted < same else "same"
        elif mode == "auto":
            mode = "same"
        fast = self.model.fast
        basis = self._lp_basis
        if mode == "shift":
            if self._shift_maps is None:
                self._shift_maps = fast.shift_maps(self.n_columns, time_src=self._time_source)
            basis = fast.shift_basis(basis, self._shift_maps)
        if not fast.set_basis(*basis):
            fast.clear_solver()
            mode = "cold"
        self.last_warm_start = mode

    def _time_src(self) -> np.ndarray:
        """Source column of each column one interval later (:meth:`shift_maps`)."""
        return self._time_source

    @property
    def ctx(self) -> FleetContext:
        """The model's context (pools, per-pool figures, Parameters)."""
        return self.model.ctx

    def _set_integrality(self, form: FleetForm, integer_cols: np.ndarray | None = None) -> None:
        """Make the instance columns of ``form`` integer; ``integer_cols`` replaces the
        committed columns of a ``committed_mip`` run."""
        if form is self._form and integer_cols is None:
            return
        fast, o = self.model.fast, self.options
        fast.clear_solver()
        if form is FleetForm.COMMITTED_MIP:
            fast.set_integrality(self._committed_cols if integer_cols is None else integer_cols)
            fast.set_options(time_limit_s=o.time_limit_s, mip_rel_gap=o.mip_rel_gap)
        elif form is FleetForm.FULL_MILP:
            fast.set_integrality(self._n_cols)
            fast.set_options(time_limit_s=o.full_time_limit_s, mip_rel_gap=o.full_mip_rel_gap)
        else:
            fast.set_integrality(np.array([], dtype=np.int64))
            fast.set_options(time_limit_s=o.time_limit_s)
        # other integer columns match no form: the next run sets its own
        self._form = form if integer_cols is None else None

    def solve(self, inputs: FleetInputs, state: FleetState | None = None,
              form: FleetForm | str = FleetForm.COMMITTED_INTEGER, *,
              integer_intervals: int | None = None,
              fix_instances: np.ndarray | None = None,
              start: FleetPlan | None = None) -> FleetSolveResult:
        """Solve one horizon.

        Parameters
        ----------
        inputs : FleetInputs
        state : FleetState, optional
            Default: nothing running, re-provisioning allowed.
        form : FleetForm
        integer_intervals : int, optional
            ``committed_integer`` only: round and fix ``n[:, :T]`` (default K;
            ``horizon_steps`` gives a fully integer plan, whose gap to the LP bound
            is certified).
        fix_instances : ndarray (P, T), optional
            Fix ``n[:, :T]`` to these values (e.g. another plan's instances).
        start : FleetPlan, optional
            A plan of this problem offered to HiGHS as MIP start (MIP forms).

        Returns
        -------
        FleetSolveResult
            Solver trouble gives a failure status, never an exception.
        """
        wall = time.perf_counter()
        state = state or FleetState()
        form = FleetForm(form)
        if inputs.horizon_steps != self.horizon_steps:
            raise ValueError(f"inputs have {inputs.horizon_steps} intervals, the problem was "
                             f"built for {self.horizon_steps}")
        set_fleet_parameters(self.ctx, inputs, state)
        fixed_columns = None if fix_instances is None else self._to_columns(fix_instances)
        if form is not FleetForm.COMMITTED_INTEGER:
            return self._expand(self._run(form, wall, fixed_columns, start))
        lp = self._run(FleetForm.LP, wall, fixed_columns, None)
        if lp.plan is None:
            return replace(lp, form=form)
        warm = self.last_warm_start
        T = self.options.committed_intervals if integer_intervals is None else integer_intervals
        T = min(T, self.horizon_steps)
        T_columns = self._columns_within(T)
        fixed, highs_s = self._round_and_fix(lp, T_columns, fixed_columns, wall)
        if fixed.plan is None:
            return replace(fixed, form=form, message="rounded instances infeasible: "
                           + fixed.message)
        gap = (fixed.objective_usd - lp.objective_usd) / max(abs(fixed.objective_usd), 1e-9)
        return self._expand(replace(
            fixed, form=form, highs_time_s=highs_s,
            mip_gap=max(gap, 0.0) if self.n_columns <= T_columns else float("nan"),
            repaired=True, lp_bound_usd=lp.objective_usd,
            message=f"round-and-fix of {T} interval(s) on the LP ({warm} start)"))

    def _round_and_fix(self, lp: FleetSolveResult, T: int, fix_instances: np.ndarray | None,
                       wall: float) -> tuple[FleetSolveResult, float]:
        """Round ``n[:, :T]`` (T model columns) in chunks of ``round_chunk_intervals``,
        re-solving the LP with the rounded intervals fixed after each chunk (a dive:
        later intervals are rounded from a relaxation that already accounts for the
        integral earlier ones).

        Returns the last fixed solve and the HiGHS time of all runs incl. ``lp`` [s].
        Given ``fix_instances`` columns are kept as they are (``lp`` was solved with them).
        """
        assert lp.plan is not None
        chunk = max(int(self.options.round_chunk_intervals), 1)
        gpus, n_prev, demand, price = self._rounding_inputs()
        given = (np.zeros((self.ctx.n_pools, 0)) if fix_instances is None
                 else np.asarray(fix_instances, dtype=float)[:, :T])
        n_int = given
        # Sw off: one fleet for the whole horizon, so the committed interval's counts
        # are rounded against every later interval's tokens (the day's peak at the
        # daily re-provisioning), all T intervals at once.
        constant = not self.config.flexibility.switching
        cur, highs_s = lp, lp.highs_time_s
        step = chunk
        while n_int.shape[1] < T or cur is lp:
            s = n_int.shape[1]
            e = T if constant else min(s + step, T)
            if e <= s:
                cur = self._run(FleetForm.LP, wall, n_int, None)
                highs_s += cur.highs_time_s
                break
            relaxed, plan = cur, cur.plan
            assert plan is not None
            end = self.n_columns if constant else e
            block = round_instances(self.ctx, plan.instances[:, s:end],
                                    plan.tokens_per_s[:, s:end],
                                    n_int[:, -1] if s else n_prev, gpus[:, s:end],
                                    demand[:, s:end], price_usd_per_mwh=price[:, s:end],
                                    constant=constant, first_column=s)
            trial = np.hstack([n_int, block[:, : e - s]])
            cur = self._run(FleetForm.LP, wall, trial, None)
            highs_s += cur.highs_time_s
            ceil_block = np.ceil(plan.instances[:, s:e] - _TOL)
            if self._lost_tokens(cur, relaxed) and np.all(
                    self.ctx.gpu_matrix @ ceil_block <= gpus[:, s:e] + _TOL):
                # Joint rounding can leave a GPU-full campus short where rounding each
                # pool up would not (when that fits the GPUs); try it and keep the
                # cheaper plan.
                trial_up = np.hstack([n_int, ceil_block])
                alternative = self._run(FleetForm.LP, wall, trial_up, None)
                highs_s += alternative.highs_time_s
                if alternative.plan is not None and (
                        cur.plan is None or alternative.objective_usd < cur.objective_usd):
                    cur, trial = alternative, trial_up
            lost = self._lost_tokens(cur, relaxed)
            if lost and e - s > 1 and not constant:
                # Rounding a chunk at once from one relaxation can leave intervals short
                # that a relaxation knowing the earlier integral intervals would have
                # prepared for (instances loading ahead of a rise on full GPUs): redo
                # the chunk in halves.
                cur, step = relaxed, max(1, (e - s) // 2)
                self.finer_dives += 1
                continue
            if lost:
                # Where whole instances do not fit the GPUs the relaxation filled (a
                # different precision mix is needed), let HiGHS choose this chunk's
                # integers, earlier chunks fixed, later ones relaxed.
                P = self.ctx.n_pools
                mip = self._run(FleetForm.COMMITTED_MIP, wall, n_int if s else None, None,
                                integer_cols=self._n_cols[P * s : P * e])
                highs_s += mip.highs_time_s
                self.chunk_mip_repairs += 1
                if mip.plan is not None and (cur.plan is None
                                             or mip.objective_usd < cur.objective_usd - 1e-9):
                    trial = np.hstack([n_int, np.round(mip.plan.instances[:, s:e])])
                    cur = self._run(FleetForm.LP, wall, trial, None)
                    highs_s += cur.highs_time_s
                logger.info("round-and-fix of intervals %d-%d lost tokens; chunk MIP %s "
                            "(%.2f $)", s, e - 1, mip.status, mip.objective_usd)
            n_int, step = trial, chunk
            if cur.plan is None:
                break
        return cur, highs_s

    def _rounding_inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What rounding needs of the inputs last set, per model column: GPUs available
        (C, H), instances running (P,), demand [tokens/s] (M, H) and the price that
        ranks pools (energy + carbon + DR reward rate) [$/MWh] (C, H)."""
        par = self.ctx.parameters
        price = (np.asarray(par["price_usd_per_mwh"].value)
                 + np.asarray(par["carbon_cost_usd_per_mwh"].value)
                 + 1e3 * np.asarray(par["dr_reward_usd_per_kwh"].value))
        return (np.asarray(par["gpus_available"].value),
                np.asarray(par["instances_running"].value),
                1e3 * np.asarray(par["demand_kps"].value), price)

    def round_first_interval(self, plan: FleetPlan) -> np.ndarray:
        """Integer instances (P, 1) for interval 0 of ``plan``, a plan of the inputs last
        solved, rounded as round-and-fix rounds them (GPUs available, instances
        running, prices, quality budget)."""
        gpus, n_prev, demand, price = self._rounding_inputs()
        return round_instances(self.ctx, plan.instances[:, :1], plan.tokens_per_s[:, :1],
                               n_prev, gpus[:, :1], demand[:, :1],
                               price_usd_per_mwh=price[:, :1])

    @staticmethod
    def _lost_tokens(cur: FleetSolveResult, relaxed: FleetSolveResult) -> bool:
        """Whether a rounded run failed or serves fewer tokens than the relaxation did
        (beyond 10⁻⁶ of the relaxation's unserved tokens + 1 token)."""
        if cur.plan is None:
            return True
        base = relaxed.unserved_tokens
        return cur.unserved_tokens > base + 1e-6 * base + 1.0

    def _run(self, form: FleetForm, wall: float, fix_instances: np.ndarray | None,
             start: FleetPlan | None, integer_cols: np.ndarray | None = None
             ) -> FleetSolveResult:
        ctx, fast = self.model.ctx, self.model.fast
        self._set_integrality(form, integer_cols)
        # A relaxation without fixed columns starts from the last relaxation's basis
        # (shifted on a new step) and leaves its own for the next step; a fixed
        # re-solve starts from the basis HiGHS holds (the relaxation just solved).
        relaxation = form is FleetForm.LP and fix_instances is None
        series = self._series() if relaxation else None
        if series is not None:
            self._warm_start_lp(series)
        cols = np.array([], dtype=np.int64)
        if fix_instances is not None:
            fixed = np.asarray(fix_instances, dtype=float)
            cols = self._n_cols[: fixed.size]
            flat = fixed.ravel(order="F")
            fast.set_col_bounds(cols, flat, flat)
        if start is not None and fast.is_mip:
            fast.set_start(self._start_vector(start))
        try:
            sol = fast.solve()
            if (relaxation and self.last_warm_start != "cold"
                    and sol.model_status not in _NO_COLD_RETRY):
                # HiGHS can reject a warm basis outright (kSolveError, seen for shifted
                # bases at 288 steps) or stop on it ("excessive dual values", kNotset);
                # a warm start must never cost the solve, so retry cold.
                logger.warning("fleet LP with a %s warm start: HiGHS %s; re-solving cold",
                               self.last_warm_start, sol.model_status)
                self.warm_start_failures += 1
                fast.clear_solver()
                self.last_warm_start = "cold"
                sol = fast.solve()
        finally:
            if fix_instances is not None:
                fast.restore_col_bounds(cols)
        if series is not None and sol.model_status == "kOptimal":
            self._lp_basis = fast.get_basis()
            self._lp_series = series
        status = SolveStatus.from_highs(sol.model_status, sol.x is not None)
        # The model's objective omits the DR constant −Δ Σ ρ_r B (docs/fleet.md), so
        # every objective value and bound HiGHS reports is shifted by it.
        constant = self._dr_constant_usd()
        bound = sol.dual_bound - constant if fast.is_mip else float("nan")
        gap = sol.mip_gap
        build = self.model.build_time_s
        if not status.has_plan or sol.x is None:
            message = f"HiGHS status {sol.model_status}"
            if status is SolveStatus.INFEASIBLE:
                message = ("HiGHS reports the fleet problem infeasible; constraint groups: "
                           + ", ".join(ctx.constraints))
            logger.warning("fleet solve failed (%s): %s", form, message)
            bad = SolveStatus.ERROR if status is SolveStatus.FEASIBLE else status
            return FleetSolveResult(bad, form, None, None, float("nan"), build,
                                    time.perf_counter() - wall, sol.highs_time_s, gap, message,
                                    mip_bound_usd=bound)
        values = {n: fast.value(sol.x, n) for n in ctx.variables}
        plan = extract_fleet_plan(ctx, values)
        cost = fleet_plan_cost(ctx, plan)
        if fast.is_mip and np.isfinite(bound):
            gap = max(cost.total_usd - bound, 0.0) / max(abs(cost.total_usd), 1e-9)
        return FleetSolveResult(status, form, plan, cost, cost.total_usd, build,
                                time.perf_counter() - wall, sol.highs_time_s, gap,
                                lp_bound_usd=sol.objective - constant
                                if form is FleetForm.LP else float("nan"),
                                mip_bound_usd=bound)

    def _dr_constant_usd(self) -> float:
        rr = np.asarray(self.ctx.parameters["dr_reward_usd_per_kwh"].value)
        return float(self.ctx.step_h * np.sum(rr * self.ctx.dr_baseline_kw
                                              * column_weights(self.ctx)))

    def _start_vector(self, plan: FleetPlan) -> np.ndarray:
        fast = self.model.fast
        x = np.zeros(fast.n_cols)

        ctx = self.ctx
        arrays = {"instances": reduce_columns(plan.instances, ctx),
                  "starts": reduce_columns(plan.starts, ctx, "sum"),
                  "tokens_kps": reduce_columns(plan.tokens_per_s, ctx) / 1e3,
                  "campus_power_kw": 1e3 * reduce_columns(plan.campus_power_mw, ctx),
                  "dr_excess_kw": 1e3 * reduce_columns(plan.dr_excess_mw, ctx)}
        for name, arr in arrays.items():
            x[fast.columns(name)] = np.asarray(arr, dtype=float).ravel(order="F")
        return x

    def map_plan(self, plan: FleetPlan) -> np.ndarray:
        """Instances of another configuration's plan on this problem's pools, (P, H)."""
        out = np.zeros((self.ctx.n_pools, self.horizon_steps))
        index = {p: i for i, p in enumerate(plan.pools)}
        for k, pool in enumerate(self.ctx.pools):
            if pool in index:
                out[k] = plan.instances[index[pool]]
        return out

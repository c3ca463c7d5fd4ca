"""The one optimization problem of a site: build once, solve many, typed results.

Every site — the renewable-colocated data center (one campus, other IT, renewable,
grid), the demand-response fleet (campuses of inference pools), the product's own
scenario (both) — is a configuration (:class:`mpc_dc.site.config.Site`) of one
builder. Stages are kept apart (PyPSA style): :func:`build_model` calls one
``define_*`` function per concern from :mod:`mpc_dc.blocks` into one DPP cvxpy
problem, compiled once into a resident HiGHS model (:class:`mpc_dc.fastpath.HighsFastPath`);
:meth:`Problem.solve` writes inputs and state into its Parameters
(:func:`set_parameters`), runs HiGHS in the requested form and post-processes into a
:class:`SolveResult` (:func:`repair_relaxed`, :func:`plan_cost`, :func:`expand_plan`).

Two integer families, two switches:

* **formulation** (which model): the LP relaxation (``relaxed``: hypograph of the
  processing function, no exclusivity binaries) is exact when every campus that has
  other IT, export or a battery sees ``π⁺ >= 0``, ``π⁻ >= 0`` and ``π⁺ >= π⁻``
  (:func:`choose_formulation`); otherwise the ``exact`` model adds those binaries,
  integer on the committed interval(s) and relaxed on the tail.
* **form** (:class:`Form`, which instance counts are integer): ``lp`` none,
  ``committed_integer`` the committed interval(s) by round-and-fix on the warm LP,
  ``committed_mip`` the same by branch-and-bound, ``full_milp`` all of them.

On the exact model every run of round-and-fix carries the committed binaries as a
small MIP (docs/formulation.md, "One problem"). Equations and units: the blocks'
docstrings and docs/formulation.md.

Example
-------
>>> problem = Problem(site, horizon_steps=96)                        # doctest: +SKIP
>>> result = problem.solve(inputs, PlantState())                     # doctest: +SKIP
>>> result.plan.decision(0)                                          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import cached_property, partial
from typing import Literal

import cvxpy as cp
import numpy as np

from mpc_dc.blocks import STEP_S, ModelContext
from mpc_dc.blocks.battery import define_battery
from mpc_dc.blocks.carbon import carbon_cost_usd_per_mwh, define_carbon_cost
from mpc_dc.blocks.compute_load import (
    define_compute_variables,
    define_deferrable_work,
    define_processing_exact,
    define_processing_relaxed,
)
from mpc_dc.blocks.demand_response import (
    INACTIVE_MW,
    define_demand_response,
    define_demand_response_cost,
)
from mpc_dc.blocks.grid_connection import (
    define_demand_charge,
    define_energy_cost,
    define_grid_variables,
    define_import_export_exclusivity,
    define_power_balance,
)
from mpc_dc.blocks.inference_fleet import (
    define_capacity,
    define_demand,
    define_fleet_variables,
    define_gpu_limit,
    define_inference_power,
    define_quality,
    define_quality_cost,
    define_spatial_shares,
    define_switching,
    define_switching_cost,
    define_unserved_cost,
)
from mpc_dc.blocks.lateness import (
    LatenessPrices,
    congestion_cost_usd,
    define_backlog,
    define_congestion,
    define_lateness_cost,
    define_warmup_overload,
    lateness_cost_usd,
)
from mpc_dc.blocks.renewable import define_renewable
from mpc_dc.fastpath import NO_NODE_LIMIT, FastSolution, HighsFastPath
from mpc_dc.sim.policy import CampusDecision, Decision, FleetDecision
from mpc_dc.site.config import PoolKey, Site, tariff_prices
from traces.grid import STEP_H

logger = logging.getLogger(__name__)

__all__ = [
    "CompiledModel", "CostBreakdown", "Form", "Formulation", "HorizonInputs",
    "InfeasibleInputError", "LatenessPrices", "Plan", "PlantState", "Problem", "SolveResult",
    "SolveStatus",
    "SolverOptions", "build_model", "check_feasibility", "choose_formulation",
    "define_model", "earliest_completion_wu", "expand_plan", "horizon_columns",
    "inference_it_mw", "max_work_per_interval_wu", "model_cost", "objective_offset_usd",
    "plan_cost", "repair_relaxed", "round_instances", "rounding_inputs", "set_parameters",
    "solution_columns", "solve_day", "with_instances",
]

_TOL = 1e-6
#: Allowance that lets a constant (Sw-off) fleet be re-provisioned freely [instances].
_FREE = 1e6


class Formulation(StrEnum):
    """Which model of the other IT, export and battery is solved."""

    RELAXED = "relaxed"  # LP: W <= F(P), no import/export or charge/discharge binary
    EXACT = "exact"  # MILP: W = F(P) (incremental binaries), exclusivity binaries


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


class Form(StrEnum):
    """Which instance counts are integer and how that is enforced.

    ``committed_integer``: ``n[:, t < K]`` integer by round-and-fix on the warm LP
    (relaxation, GPU-feasible rounding of the committed interval(s), the LP again with
    them fixed); ``committed_mip``: the same columns integer by HiGHS
    branch-and-bound (reference for the rounding); ``full_milp``: every ``n`` (and, in
    the exact formulation, every binary) integer by branch-and-bound; ``lp``: none.
    """

    LP = "lp"
    COMMITTED_INTEGER = "committed_integer"
    COMMITTED_MIP = "committed_mip"
    FULL_MILP = "full_milp"


# ----------------------------------------------------------------------------- inputs


def _matrix(value: object, shape: tuple[int, int], name: str) -> np.ndarray:
    """A read-only float (rows, H) copy of ``value``: a scalar is broadcast, a vector of
    H values is one row."""
    arr = np.array(value, dtype=float, copy=True)
    if arr.ndim == 0:
        arr = np.full(shape, float(arr))
    elif arr.ndim == 1 and shape[0] == 1 and arr.size == shape[1]:
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise ValueError(f"HorizonInputs.{name}: expected shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():  # the method: np.all's dispatch costs more here
        raise ValueError(f"HorizonInputs.{name}: non-finite value")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class HorizonInputs:
    """Per-interval exogenous data over the horizon (forecasts in the closed loop).

    Arrays are (C, H) per campus in site order and (M, H) per model in
    :attr:`Site.models` order; H counts 15-min intervals (not model columns). A
    one-campus site may pass vectors of H values. :meth:`build` fills defaults and
    applies the tariffs.

    Parameters
    ----------
    demand_tokens_per_s : ndarray (M, H) [tokens/s]
        Output-token demand per model ((0, H) without a fleet).
    import_price_usd_per_mwh, export_price_usd_per_mwh : ndarray (C, H) [$/MWh]
        π⁺ and π⁻ with the tariff applied (wholesale: both the node's price).
    carbon_gco2_per_kwh : ndarray (C, H) [gCO2/kWh]
    renewable_cf : ndarray (C, H) [-]
        Capacity factor in [0, 1] (rows of campuses without a renewable are unused).
    work_nd_wu : ndarray (C, H) [WU]
        Non-deferrable other-IT work arriving in each interval (runs on arrival).
    dr_event : ndarray (C, H) of {0, 1}, optional
        1 inside a demand-response event window.
    dr_baseline_mw : ndarray (C, H) [MW], optional
        Grid-import baseline during events.
    gpus_available : ndarray (C, H) [GPUs], optional
        Default: every campus's installed GPUs.
    dr_reward_usd_per_kwh, dr_penalty_usd_per_kwh : float, optional [$/kWh]
        Override the site's programme prices (sensitivity sweeps).
    """

    demand_tokens_per_s: np.ndarray
    import_price_usd_per_mwh: np.ndarray
    export_price_usd_per_mwh: np.ndarray
    carbon_gco2_per_kwh: np.ndarray
    renewable_cf: np.ndarray
    work_nd_wu: np.ndarray
    dr_event: np.ndarray | None = None
    dr_baseline_mw: np.ndarray | None = None
    gpus_available: np.ndarray | None = None
    dr_reward_usd_per_kwh: float | None = None
    dr_penalty_usd_per_kwh: float | None = None

    def __post_init__(self) -> None:
        pi = np.asarray(self.import_price_usd_per_mwh, dtype=float)
        C, H = (1, pi.size) if pi.ndim == 1 else pi.shape
        d = np.asarray(self.demand_tokens_per_s, dtype=float)
        M = d.shape[0] if d.ndim == 2 else (1 if d.size else 0)
        object.__setattr__(self, "demand_tokens_per_s",
                           _matrix(d.reshape(M, H) if d.ndim < 2 else d, (M, H), "demand"))
        for name in _ROW_FIELDS:
            if getattr(self, name) is not None or name not in _OPTIONAL_ROW_FIELDS:
                object.__setattr__(self, name, _matrix(getattr(self, name), (C, H), name))
        for name in _RANGES:
            self._check_range(name)
        for name in _SCALAR_FIELDS:
            self._check_range(name)

    def _check_range(self, name: str) -> None:
        """Raise unless field ``name`` (shaped already) is in its range (:data:`_RANGES`,
        :data:`_SCALAR_FIELDS`)."""
        value = getattr(self, name)
        if name in _SCALAR_FIELDS:
            if value is not None and not 0.0 <= value < np.inf:
                raise ValueError(f"HorizonInputs.{name}: expected a finite value >= 0, got "
                                 f"{value!r}")
            return
        bounds = _RANGES.get(name)
        if bounds is None:
            return
        low, high, what = bounds
        # ``.any()`` on the array: np.any's dispatch cost more than the test here.
        if (value < low).any() or (high is not None and (value > high).any()):
            raise ValueError(f"HorizonInputs.{name}: expected {what}")

    def with_fields(self, **changes: object) -> HorizonInputs:
        """``dataclasses.replace(self, **changes)`` that validates only the changed
        fields (the others were validated when ``self`` was built): the loop changes
        one or two arrays per step, and re-validating eleven costs more than that.

        Raises
        ------
        ValueError
            As the constructor, for a changed field (unknown names: TypeError).
        """
        unknown = set(changes) - set(_FIELD_NAMES)
        if unknown:
            raise TypeError(f"HorizonInputs.with_fields: unknown field(s) {sorted(unknown)}")
        out = copy.copy(self)
        C, H = self.n_campuses, self.horizon_steps
        for name, given in changes.items():
            value = given
            if name == "demand_tokens_per_s":
                value = _matrix(given, (self.demand_tokens_per_s.shape[0], H), "demand")
            elif name in _ROW_FIELDS and (given is not None
                                          or name not in _OPTIONAL_ROW_FIELDS):
                value = _matrix(given, (C, H), name)
            object.__setattr__(out, name, value)
        for name in changes:
            out._check_range(name)
        return out

    @classmethod
    def build(cls, site: Site, horizon_steps: int, *,
              price_usd_per_mwh: object | None = None,
              import_price_usd_per_mwh: object | None = None,
              export_price_usd_per_mwh: object | None = None,
              demand_tokens_per_s: object | None = None,
              carbon_gco2_per_kwh: object = 0.0, renewable_cf: object = 0.0,
              work_nd_wu: object = 0.0, **optional: object) -> HorizonInputs:
        """Inputs of ``site`` with defaults: zero demand, carbon, capacity factor and work.

        ``price_usd_per_mwh`` (C, H) is each campus's market price, turned into π⁺
        and π⁻ by its tariff (:func:`mpc_dc.site.config.tariff_prices`); or give
        ``import_price_usd_per_mwh`` and ``export_price_usd_per_mwh`` directly.
        ``optional`` takes the optional fields (``dr_event``, ...).
        """
        C, M, H = len(site.campuses), len(site.models), horizon_steps
        if price_usd_per_mwh is not None:
            price = _matrix(price_usd_per_mwh, (C, H), "price_usd_per_mwh")
            pairs = [tariff_prices(price[i], c.grid.tariff) for i, c in enumerate(site.campuses)]
            pi_im = np.vstack([p[0] for p in pairs])
            pi_ex = np.vstack([p[1] for p in pairs])
        else:
            if import_price_usd_per_mwh is None:
                raise ValueError("HorizonInputs.build: give price_usd_per_mwh or "
                                 "import_price_usd_per_mwh")
            pi_im = _matrix(import_price_usd_per_mwh, (C, H), "import_price_usd_per_mwh")
            pi_ex = pi_im if export_price_usd_per_mwh is None else _matrix(
                export_price_usd_per_mwh, (C, H), "export_price_usd_per_mwh")
        demand = np.zeros((M, H)) if demand_tokens_per_s is None else demand_tokens_per_s
        return cls(demand, pi_im, pi_ex, carbon_gco2_per_kwh,  # type: ignore[arg-type]
                   renewable_cf, work_nd_wu, **optional)  # type: ignore[arg-type]

    @property
    def horizon_steps(self) -> int:
        """H [intervals]."""
        return int(self.import_price_usd_per_mwh.shape[1])

    @property
    def n_campuses(self) -> int:
        """C."""
        return int(self.import_price_usd_per_mwh.shape[0])


_ROW_FIELDS = ("import_price_usd_per_mwh", "export_price_usd_per_mwh", "carbon_gco2_per_kwh",
               "renewable_cf", "work_nd_wu", "dr_event", "dr_baseline_mw", "gpus_available")
"""Fields of :class:`HorizonInputs` with one row per campus, (C, H)."""
_OPTIONAL_ROW_FIELDS = ("dr_event", "dr_baseline_mw", "gpus_available")
"""The fields of :data:`_ROW_FIELDS` that may be None."""
_RANGES: dict[str, tuple[float, float | None, str]] = {
    "demand_tokens_per_s": (0.0, None, "values >= 0"),
    "renewable_cf": (0.0, 1.0 + _TOL, "values in [0, 1]"),
    "work_nd_wu": (0.0, None, "values >= 0"),
}
"""(lowest, highest or None, what the error says) of the range-checked array fields."""
_SCALAR_FIELDS = ("dr_reward_usd_per_kwh", "dr_penalty_usd_per_kwh")
"""Optional price overrides of :class:`HorizonInputs` [$/kWh]."""
_FIELD_NAMES = tuple(f.name for f in fields(HorizonInputs))
"""Every field of :class:`HorizonInputs`."""


def _rows_of(value: np.ndarray, C: int, name: str) -> np.ndarray:
    """One value per campus (C,) from a validated state array (one value: every campus)."""
    if value.size == 1 and C != 1:
        return np.full(C, float(value[0]))
    if value.shape != (C,):
        raise ValueError(f"PlantState.{name}: expected {C} values (one per campus), got "
                         f"{value.size}")
    return value


@dataclass(frozen=True)
class PlantState:
    """State carried between solves; absent arrays are zero (battery: its initial energy).

    Parameters
    ----------
    instances_running : Mapping[PoolKey, int]
        Instances running (or starting) at the start of the horizon; absent = 0.
    may_reprovision : bool
        Without switching flexibility (Sw off), whether the constant fleet may be
        re-sized at this solve (e.g. at the start of a day); ignored with Sw on.
    df_due_cum_wu : ndarray (C, H) [WU], optional
        Cumulative deferrable work that must be done by the end of each interval.
    df_available_cum_wu : ndarray (C, H) [WU], optional
        Cumulative deferrable work released (processable) by each interval.
    peak_import_to_date_mw : ndarray (C,) [MW], optional
        Highest 15-min import so far in each campus's billing period.
    battery_energy_mwh : ndarray (C,) [MWh], optional
        Battery energy at the start of the horizon (default: each battery's
        ``initial_energy_mwh``).
    """

    instances_running: Mapping[PoolKey, int] = field(default_factory=dict)
    may_reprovision: bool = True
    df_due_cum_wu: np.ndarray | None = None
    df_available_cum_wu: np.ndarray | None = None
    peak_import_to_date_mw: np.ndarray | float | None = None
    battery_energy_mwh: np.ndarray | float | None = None

    def __post_init__(self) -> None:
        for pool, count in self.instances_running.items():
            if not 0 <= count < np.inf:
                raise ValueError(f"PlantState.instances_running: expected a count >= 0 for "
                                 f"pool {pool}, got {count!r}")
        for name in ("df_due_cum_wu", "df_available_cum_wu"):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.array(value, dtype=float, copy=True)
            arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
            if (arr.ndim != 2 or not np.isfinite(arr).all() or (arr < -_TOL).any()
                    or (np.diff(arr, axis=1) < -_TOL).any()):
                raise ValueError(f"PlantState.{name}: expected (C, H) non-negative values, "
                                 "non-decreasing over time")
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        for name in ("peak_import_to_date_mw", "battery_energy_mwh"):
            value = getattr(self, name)
            if value is not None:
                arr = np.atleast_1d(np.array(value, dtype=float)).reshape(-1)
                if not np.isfinite(arr).all() or (arr < 0).any():
                    raise ValueError(f"PlantState.{name}: expected finite values >= 0, got "
                                     f"{value!r}")
                arr.flags.writeable = False
                object.__setattr__(self, name, arr)

    def deferrable(self, C: int, H: int) -> tuple[np.ndarray, np.ndarray]:
        """(due, available) cumulative work (C, H) [WU], zeros where not given."""
        out = []
        for name in ("df_due_cum_wu", "df_available_cum_wu"):
            arr = getattr(self, name)
            if arr is None:
                arr = np.zeros((C, H))
            elif arr.shape != (C, H):
                raise InfeasibleInputError(
                    "input length", f"PlantState.{name} has shape {arr.shape}, expected "
                    f"{(C, H)} (campuses, horizon)")
            out.append(np.maximum(arr, 0.0))
        return out[0], out[1]

    def peaks_mw(self, C: int) -> np.ndarray:
        """Peak import so far per campus (C,) [MW]."""
        if self.peak_import_to_date_mw is None:
            return np.zeros(C)
        return _rows_of(np.asarray(self.peak_import_to_date_mw), C, "peak_import_to_date_mw")

    def battery_mwh(self, site: Site) -> np.ndarray:
        """Battery energy per campus (C,) [MWh] (0 without a battery)."""
        C = len(site.campuses)
        if self.battery_energy_mwh is None:
            return np.array([0.0 if c.battery is None else c.battery.initial_energy_mwh
                             for c in site.campuses])
        return _rows_of(np.asarray(self.battery_energy_mwh), C, "battery_energy_mwh")


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Plan:
    """Per-interval decisions of a solve (model columns expanded to 15-min intervals).

    Attributes
    ----------
    pools : tuple of PoolKey
    models, campuses : tuple of str
    instances, starts : ndarray (P, H) [-]
        A coarse column's counts are held over its intervals; its starts happen at
        its first interval.
    tokens_per_s : ndarray (P, H) [tokens/s]
    unserved_tokens_per_s : ndarray (M, H) [tokens/s]
    inference_it_mw, other_it_mw : ndarray (C, H) [MW]
        IT power of the inference pools and of other IT.
    facility_power_mw : ndarray (C, H) [MW]
        ``PUE · (inference + other IT)``.
    work_nd_wu, work_df_wu : ndarray (C, H) [WU]
        Non-deferrable (the inputs) and deferrable work done per interval.
    renewable_used_mw, curtailed_mw : ndarray (C, H) [MW]
    import_mw, export_mw : ndarray (C, H) [MW]
    battery_charge_mw, battery_discharge_mw : ndarray (C, H) [MW]
    battery_energy_mwh : ndarray (C, H) [MWh]
        At the end of each interval's column.
    dr_reduction_mw : ndarray (C, H) [MW]
        Baseline minus import in DR event intervals (negative above the baseline).
    dr_excess_mw : ndarray (C, H) [MW]
        Import above the DR cap.
    backlog_tokens : ndarray (M, H) [tokens], optional
        Tokens the plan leaves queued at the end of each interval's column (the
        lateness block, :mod:`mpc_dc.blocks.lateness`); None without it.
    export_price_usd_per_mwh : ndarray (C, H) [$/MWh], optional
        The export price π⁻ the plan was made on (its inputs'), committed with each
        interval's decision; None: not known (the engine uses the last published price).
    """

    pools: tuple[PoolKey, ...]
    models: tuple[str, ...]
    campuses: tuple[str, ...]
    instances: np.ndarray
    starts: np.ndarray
    tokens_per_s: np.ndarray
    unserved_tokens_per_s: np.ndarray
    inference_it_mw: np.ndarray
    other_it_mw: np.ndarray
    facility_power_mw: np.ndarray
    work_nd_wu: np.ndarray
    work_df_wu: np.ndarray
    renewable_used_mw: np.ndarray
    curtailed_mw: np.ndarray
    import_mw: np.ndarray
    export_mw: np.ndarray
    battery_charge_mw: np.ndarray
    battery_discharge_mw: np.ndarray
    battery_energy_mwh: np.ndarray
    dr_reduction_mw: np.ndarray
    dr_excess_mw: np.ndarray
    backlog_tokens: np.ndarray | None = None
    export_price_usd_per_mwh: np.ndarray | None = None

    @property
    def horizon_steps(self) -> int:
        """H [intervals]."""
        return int(self.import_mw.shape[1])

    @property
    def peak_import_mw(self) -> np.ndarray:
        """Highest import of the plan per campus (C,) [MW]."""
        return self.import_mw.max(axis=1, initial=0.0)

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

    def decision(self, t: int = 0, source: str = "mpc") -> Decision:
        """The simulator's :class:`~mpc_dc.sim.policy.Decision` of interval ``t``.

        Per campus: deferrable work, battery set-points, curtailment, planned import
        and export, the export price the plan was made on (NaN without it). Fleet:
        instance counts ``ceil(n[k, t] − 10⁻⁶)`` (an integral,
        committed interval is kept as is; a fractional count is rounded up so every
        pool with planned tokens gets the capacity they need) and routing shares over
        the pools with instances, by planned tokens (by instance count where a model's
        pools with instances have none planned; :func:`routing_shares`).
        """
        campuses = {
            name: CampusDecision(
                work_df_wu=float(self.work_df_wu[i, t]),
                battery_charge_mw=float(self.battery_charge_mw[i, t]),
                battery_discharge_mw=float(self.battery_discharge_mw[i, t]),
                curtailed_mw=float(self.curtailed_mw[i, t]),
                planned_import_mw=float(self.import_mw[i, t]),
                planned_export_mw=float(self.export_mw[i, t]),
                export_price_usd_per_mwh=(math.nan if self.export_price_usd_per_mwh is None
                                          else float(self.export_price_usd_per_mwh[i, t])))
            for i, name in enumerate(self.campuses)}
        inst = {p: instance_count(self.instances[k, t]) for k, p in enumerate(self.pools)}
        tokens = {p: float(self.tokens_per_s[k, t]) for k, p in enumerate(self.pools)}
        fleet = FleetDecision(inst, routing_shares(inst, tokens, self.models), tokens)
        return Decision(campuses, fleet, source)


@dataclass(frozen=True)
class CostBreakdown:
    """Cost components of a plan [$].

    ``total_usd = energy_import − export_revenue + demand_charge + carbon + switching
    + quality − dr_reward + dr_penalty + unserved + lateness + congestion``; the demand
    charge is the increment ``λ (max(pk0, max p_im) − pk0)`` of each retail campus's
    bill; lateness is the price of the backlog the plan leaves, congestion the price of
    the pools' utilisation beyond its knees (:mod:`mpc_dc.blocks.lateness`, 0 without
    the block).
    """

    energy_import_usd: float
    export_revenue_usd: float
    demand_charge_usd: float
    carbon_usd: float
    switching_usd: float
    quality_usd: float
    dr_reward_usd: float
    dr_penalty_usd: float
    unserved_usd: float
    lateness_usd: float = 0.0
    congestion_usd: float = 0.0

    @property
    def total_usd(self) -> float:
        """Net cost [$]."""
        return (self.energy_import_usd - self.export_revenue_usd + self.demand_charge_usd
                + self.carbon_usd + self.switching_usd + self.quality_usd
                - self.dr_reward_usd + self.dr_penalty_usd + self.unserved_usd
                + self.lateness_usd + self.congestion_usd)


@dataclass(frozen=True)
class SolveResult:
    """Typed outcome of :meth:`Problem.solve` (solver trouble never raises).

    Attributes
    ----------
    status : SolveStatus
    form : Form
    formulation : Formulation
        The model actually solved (after any fallback from the relaxation).
    plan, cost : Plan, CostBreakdown or None
        Present when ``status.has_plan``.
    objective_usd : float [$]
        ``cost.total_usd`` (NaN without a plan).
    build_time_s, solve_time_s, highs_time_s : float [s]
        Build + compile of the model(s) used (once), wall time of this call, HiGHS's
        own run time of every run of the call.
    mip_gap : float [-]
        ``(objective − bound) / |objective|`` with the LP bound (round-and-fix over
        the whole horizon; NaN when the tail stays relaxed) or HiGHS's dual bound (MIP
        forms), both net of the constants the objective leaves out (DR settlement of
        the baseline, the demand charge already billed); 0 for an LP.
    message : str
        Why a solve failed, was stopped by a limit, or was not repaired.
    repaired : bool
        True when instance counts were rounded from a relaxation.
    relaxation_repaired : bool
        True when the LP optimum was mapped onto W = F(P) / exclusive flows.
    lp_bound_usd : float [$]
        Objective of the instance relaxation when it was solved (a lower bound on
        the committed-integer and full-MILP optima; its MIP dual bound where the
        exact formulation made it a MIP).
    mip_bound_usd : float [$]
        MIP runs: HiGHS's dual bound on the form's optimum (a lower bound, also when
        a limit stopped the run without a plan); NaN otherwise.
    time_limit_hit : bool
        True when HiGHS stopped a run of this call on its wall-clock limit
        (``time_limit_s``, ``full_time_limit_s``): the result then depends on the
        machine and its load, and another run of the same inputs may differ.
    node_limit_hit : bool
        True when HiGHS stopped a MIP run of this call on its node limit
        (``mip_max_nodes``, ``full_mip_max_nodes``): deterministic, but that run's plan
        is its incumbent at the limit, not the optimum to the relative gap.
    warm_start_failures : int
        Warm-started LP runs of this call HiGHS failed on, each re-solved cold
        (:attr:`Problem.warm_start_failures`).
    chunk_mip_repairs, repairs_skipped : int
        Round-and-fix chunks of this call repaired by a chunk MIP / kept as rounded with
        a token loss within ``SolverOptions.repair_token_share``
        (:attr:`Problem.chunk_mip_repairs`, :attr:`Problem.repairs_skipped`).
    """

    status: SolveStatus
    form: Form
    formulation: Formulation
    plan: Plan | None
    cost: CostBreakdown | None
    objective_usd: float
    build_time_s: float
    solve_time_s: float
    highs_time_s: float
    mip_gap: float
    message: str = ""
    repaired: bool = False
    relaxation_repaired: bool = False
    lp_bound_usd: float = float("nan")
    mip_bound_usd: float = float("nan")
    time_limit_hit: bool = False
    node_limit_hit: bool = False
    warm_start_failures: int = 0
    chunk_mip_repairs: int = 0
    repairs_skipped: int = 0

    @property
    def unserved_tokens(self) -> float:
        """Unserved tokens over the horizon [tokens]."""
        if self.plan is None:
            return float("nan")
        return float(self.plan.unserved_tokens_per_s.sum() * STEP_S)


_WARM_STARTS = ("auto", "shift", "same", "cold")
#: Time-series Parameters the warm start compares to tell a receding step from a re-solve.
_SERIES = ("demand_kps", "import_price_usd_per_mwh", "carbon_cost_usd_per_mwh",
           "gpus_available", "renewable_available", "work_nd_wu")
#: Stand-in for the time series of a warm start that does not compare them.
_NO_SERIES = np.zeros((0, 0))
#: LP outcomes a warm start cannot have caused (anything else is retried cold).
_NO_COLD_RETRY = frozenset({"kOptimal", "kInfeasible", "kTimeLimit"})
#: Most binaries a run solves by enumeration (2^b warm LPs) instead of as a HiGHS MIP:
#: a MIP run pays presolve and a cold root LP (median 1173 simplex iterations on the
#: nyiso_wind_fleet step), a warm LP with the binaries fixed a few (docs/performance.md,
#: "The wind-fleet month").
_ENUMERATE_MAX_BINARIES = 4
#: Distance to the nearest integer below which an LP value of a binary counts as integral.
_INTEGRAL_TOL = 1e-9


@dataclass(frozen=True)
class SolverOptions:
    """HiGHS limits, committed intervals, warm starts and the horizon's resolution.

    Parameters
    ----------
    committed_intervals : int
        K: intervals whose instance counts are integer in the committed forms.
    binary_intervals : int or None
        Exact formulation: keep its binaries (processing function, import/export and
        battery exclusivity) integer on the first ``binary_intervals`` intervals and
        relax them on the tail (DESIGN.md section 4); None: integer everywhere. They
        are integer at least on the intervals whose instances are made integral.
    time_limit_s : float [s]
        Wall-clock limit per HiGHS run of the ``lp``, ``committed_integer`` and
        ``committed_mip`` forms (a run it stops sets ``SolveResult.time_limit_hit``).
    mip_rel_gap : float [-]
        MIP runs of those forms (committed MIP, the exact formulation's binaries).
    mip_max_nodes : int or None
        Branch-and-bound node limit per MIP run of those forms (HiGHS
        ``mip_max_nodes``, >= 1; None: none). A deterministic limit: a run it stops
        ends at the same plan and gap on any machine and load.
    full_time_limit_s : float [s]
    full_mip_rel_gap : float [-]
    full_mip_max_nodes : int or None
        The same three limits of the ``full_milp`` form.
    warm_start : str
        Starting basis of the LP relaxation runs: ``"auto"`` (default) the last
        relaxation's basis; on a receding-horizon step (the new inputs match the last
        ones shifted by one interval better than unshifted) moved forward one interval
        or not, whichever has needed fewer simplex iterations on this model on the
        same data (:class:`StartRecord`); ``"shift"`` / ``"same"`` force either;
        ``"cold"`` clears HiGHS's basis.
    round_chunk_intervals : int
        Round-and-fix of more than one interval rounds this many intervals at a
        time, re-solving the LP in between.
    repair_token_share : float [-]
        Round-and-fix hands a chunk whose rounding lost tokens to HiGHS as a chunk MIP
        only when the tokens lost (against its relaxation) exceed this share of the
        tokens demanded in the chunk's columns; a smaller loss is kept as rounded (its
        tokens are priced as unserved or late like any other). Default 10⁻³. Why: at
        the DR seed's scale (27 pools on 3 × 4,096 GPUs) roundings lost 10⁻⁶-10⁻⁴ of an
        interval's tokens and each repair took 1-5 s, some stopping at a 5-s wall-clock
        limit; on the DR week the losses were mostly 0.24-21 % and are repaired as
        before (docs/performance.md, "Round-and-fix repairs"). 0: repair any loss
        beyond the relaxation's by one token (the behaviour before session 15).
    round_up_trial : bool
        Round-and-fix also tries every pool's relaxed count rounded up (where it fits
        the GPUs) and keeps it when the plan's objective is lower, not only when the
        joint rounding lost tokens: the joint rounding covers the planned tokens at the
        utilisation cap, so it drops the headroom and the early starts that the plan's
        prices of queueing inside the interval bought (``controller.congestion_calibration``
        other than ``"share"``, ``controller.warmup_lateness``: both by default;
        :attr:`~mpc_dc.site.scenario.ControllerSpec.prices_bursts`; one LP more per
        solve).
    fine_steps, coarse_block_steps, far_start_steps, far_block_steps : int
        Multi-resolution horizon (:func:`horizon_columns`): the
        first ``fine_steps`` intervals are model columns of their own, later ones are
        grouped ``coarse_block_steps`` to a column, and from ``far_start_steps`` on
        ``far_block_steps``; ``fine_steps`` None: every interval is a column. Must
        cover the committed intervals.
    """

    committed_intervals: int = 1
    binary_intervals: int | None = None
    time_limit_s: float = 30.0
    mip_rel_gap: float = 1e-6
    mip_max_nodes: int | None = None
    full_time_limit_s: float = 60.0
    full_mip_rel_gap: float = 1e-3
    full_mip_max_nodes: int | None = None
    warm_start: str = "auto"
    round_chunk_intervals: int = 8
    repair_token_share: float = 1e-3
    round_up_trial: bool = False
    fine_steps: int | None = None
    coarse_block_steps: int = 4
    far_start_steps: int | None = None
    far_block_steps: int = 16

    def __post_init__(self) -> None:
        if self.committed_intervals < 1:
            raise ValueError(f"SolverOptions.committed_intervals: expected >= 1, got "
                             f"{self.committed_intervals}")
        if self.binary_intervals is not None and self.binary_intervals < 1:
            raise ValueError(f"SolverOptions.binary_intervals: expected >= 1 or None, got "
                             f"{self.binary_intervals}")
        if self.fine_steps is not None and self.fine_steps < self.committed_intervals:
            raise ValueError(f"SolverOptions.fine_steps: expected >= committed_intervals "
                             f"({self.committed_intervals}), got {self.fine_steps}")
        for name in ("mip_max_nodes", "full_mip_max_nodes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 1 <= value <= NO_NODE_LIMIT):
                raise ValueError(f"SolverOptions.{name}: expected None or an integer in "
                                 f"[1, {NO_NODE_LIMIT}], got {value!r}")
        for name in ("coarse_block_steps", "far_block_steps", "round_chunk_intervals"):
            if getattr(self, name) < 1:
                raise ValueError(f"SolverOptions.{name}: expected >= 1, got "
                                 f"{getattr(self, name)}")
        if (self.far_start_steps is not None and self.fine_steps is not None
                and self.far_start_steps < self.fine_steps):
            raise ValueError(f"SolverOptions.far_start_steps: expected >= fine_steps "
                             f"({self.fine_steps}), got {self.far_start_steps}")
        if not 0.0 <= self.repair_token_share < 1.0:
            raise ValueError(f"SolverOptions.repair_token_share: expected a value in [0, 1), "
                             f"got {self.repair_token_share!r}")
        if self.warm_start not in _WARM_STARTS:
            raise ValueError(f"SolverOptions.warm_start: expected one of "
                             f"{', '.join(_WARM_STARTS)}, got {self.warm_start!r}")

    def horizon_columns(self, horizon_steps: int) -> np.ndarray:
        """Intervals per model column for a horizon of ``horizon_steps`` intervals."""
        return horizon_columns(horizon_steps, self.fine_steps, self.coarse_block_steps,
                               self.far_start_steps, self.far_block_steps)


def _node_limit(nodes: int | None) -> int:
    """HiGHS's ``mip_max_nodes`` for a :class:`SolverOptions` node limit (None: none)."""
    return NO_NODE_LIMIT if nodes is None else nodes


# ----------------------------------------------------------------------------- exactness


def _needs_binaries(site: Site) -> tuple[np.ndarray, np.ndarray]:
    """Campus indices whose LP relaxation can be inexact — other IT (W <= F(P)), export
    (simultaneous flows) or a battery (simultaneous charge and discharge) — and those
    of them that may export."""
    rows = [i for i, c in enumerate(site.campuses)
            if c.other_it is not None or c.battery is not None or c.grid.export_limit_mw > 0]
    export = [i for i in rows if site.campuses[i].grid.export_limit_mw > 0]
    return np.array(rows, dtype=np.int64), np.array(export, dtype=np.int64)


def choose_formulation(site: Site, inputs: HorizonInputs,
                       rows: tuple[np.ndarray, np.ndarray] | None = None) -> Formulation:
    """Pick the LP when it is provably exact, else the exact MILP.

    The relaxation is exact (docs/formulation.md, section 3 and "One problem") when
    for every campus that has other IT, export or a battery and every interval:
    ``π⁺ >= 0`` and, where it may export, ``π⁻ >= 0`` and ``π⁺ >= π⁻``
    (:func:`inexact_columns` finds the entries where this fails). Inference
    pools have no relaxation of their own (an idle instance really draws its power),
    so a campus of pools only never needs the exact form; carbon, DR and the demand
    charge only raise the cost of import, so π⁺ alone is the safe test. ``rows`` are
    :func:`_needs_binaries` of ``site`` when the caller keeps them.
    """
    inexact = inexact_columns(site, inputs.import_price_usd_per_mwh,
                              inputs.export_price_usd_per_mwh, rows)
    return Formulation.EXACT if inexact.any() else Formulation.RELAXED


def inexact_columns(site: Site, import_price: np.ndarray, export_price: np.ndarray,
                    rows: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Where the LP relaxation can be inexact, per campus and interval or column (C, H).

    :func:`choose_formulation`'s test entry by entry. Section 3's repair (other-IT
    power down to ``F⁻¹(W)``, the freed power off renewable use, then import, then
    onto export; simultaneous flows netted) acts on one campus and one interval at a
    time and leaves the pools and every other interval as they are, so it never
    raises the cost of an entry where ``π⁺ >= 0`` and, where the campus may export,
    ``π⁻ >= 0`` and ``π⁺ >= π⁻``: the exact form's binaries are needed only where
    this fails (the exact formulation relaxes the others and repairs them,
    :meth:`Problem.solve`).

    Parameters
    ----------
    import_price, export_price : ndarray (C, H) [$/MWh]
    rows : tuple of ndarray, optional
        :func:`_needs_binaries` of ``site`` when the caller keeps them.

    Returns
    -------
    ndarray of bool (C, H)
    """
    check, export = _needs_binaries(site) if rows is None else rows
    pi_im = np.asarray(import_price, dtype=float)
    pi_ex = np.asarray(export_price, dtype=float)
    out = np.zeros(pi_im.shape, dtype=bool)
    out[check] = pi_im[check] < 0
    if export.size:
        out[export] |= (pi_ex[export] < 0) | (pi_im[export] < pi_ex[export])
    return out


# ----------------------------------------------------------------------------- feasibility


def max_work_per_interval_wu(site: Site, inputs: HorizonInputs) -> np.ndarray:
    """Most other-IT work each campus can do per interval (C, H) [WU] (0 without other IT).

    Supply = import limit + available renewable (+ battery power); IT power is
    ``min(P̄, supply / PUE)`` and work ``Δ F(IT power)``. The inference pools may serve
    nothing (their demand then goes unserved at its penalty), so they take no supply
    here: this is the most the site could do, a necessary condition.
    """
    out = np.zeros((len(site.campuses), inputs.horizon_steps))
    for i, c in enumerate(site.campuses):
        if c.other_it is None:
            continue
        supply = c.grid.import_limit_mw + inputs.renewable_cf[i] * c.nameplate_mw
        if c.battery is not None:
            supply = supply + c.battery.power_mw
        it_max = np.minimum(c.other_it.it_capacity_mw, supply / c.pue)
        out[i] = STEP_H * c.other_it.processing.rate_wu_per_h(it_max, c.other_it.it_capacity_mw)
    return out


def earliest_completion_wu(site: Site, inputs: HorizonInputs, state: PlantState,
                           wmax: np.ndarray | None = None) -> np.ndarray:
    """Most cumulative deferrable work doable by the end of each interval (C, H) [WU].

    Per campus: earliest-deadline-first as early as possible, with the capacity left
    by the non-deferrable work and capped by the released work. ``wmax`` is
    :func:`max_work_per_interval_wu` of ``inputs`` when the caller has it already.
    """
    C, H = len(site.campuses), inputs.horizon_steps
    if wmax is None:
        wmax = max_work_per_interval_wu(site, inputs)
    spare = np.cumsum(np.maximum(wmax - inputs.work_nd_wu, 0.0), axis=1)
    _, avail = state.deferrable(C, H)
    # done[k] = min(A[k], done[k-1] + s[k]) unrolled: with S the cumulative spare
    # capacity, done[k] = S[k] + min(0, min_{j<=k} (A[j] − S[j])) (by induction on k).
    lag = np.minimum.accumulate(np.minimum(avail - spare, 0.0), axis=1)
    return np.minimum(spare + lag, avail)


def check_feasibility(site: Site, inputs: HorizonInputs, state: PlantState) -> None:
    """Reject inputs no schedule can satisfy, naming the campus and the constraint.

    Raises
    ------
    InfeasibleInputError
        One line, e.g. "campus dc: deferrable deadline at interval 3 needs 120.0 WU
        done but at most 80.0 WU can be processed by then".
    """
    C, H = len(site.campuses), inputs.horizon_steps
    due, avail = state.deferrable(C, H)
    if not any(c.other_it is not None for c in site.campuses):
        return
    wmax = max_work_per_interval_wu(site, inputs)
    done = earliest_completion_wu(site, inputs, state, wmax=wmax)
    for i, c in enumerate(site.campuses):
        if c.other_it is None:
            continue
        nd = inputs.work_nd_wu[i]
        bad = np.flatnonzero(nd > wmax[i] * (1 + _TOL) + _TOL)
        if bad.size:
            t = int(bad[0])
            raise InfeasibleInputError(
                "non-deferrable work",
                f"campus {c.name}: non-deferrable work at interval {t} is {nd[t]:.4g} WU but "
                f"at most {wmax[i, t]:.4g} WU can be processed in it (IT capacity, import "
                "limit and renewable)", t)
        bad = np.flatnonzero(due[i] > avail[i] + _TOL * (1 + avail[i]))
        if bad.size:
            k = int(bad[0])
            raise InfeasibleInputError(
                "deferrable release",
                f"campus {c.name}: deferrable deadline at interval {k} needs {due[i, k]:.4g} "
                f"WU done but only {avail[i, k]:.4g} WU has been released by then", k)
        bad = np.flatnonzero(done[i] < due[i] - _TOL * (1 + due[i]))
        if bad.size:
            k = int(bad[0])
            raise InfeasibleInputError(
                "deferrable deadline",
                f"campus {c.name}: deferrable deadline at interval {k} needs {due[i, k]:.4g} "
                f"WU done but at most {done[i, k]:.4g} WU can be processed by then", k)


# ----------------------------------------------------------------------------- build


_PROBE_FIRST_STEPS = 4
"""Receding steps at the start of a run that all probe both warm starts."""

_PROBE_EVERY = 37
"""Steps between two later probes: a prime, so that within a few days of 15-min steps
the probes meet every interval of the day (which start needs fewer iterations depends
on the hour: docs/performance.md, "Warm start: shifted or unshifted basis")."""

_NEWEST_PROBE_WEIGHT = 0.2
"""Weight of the newest probe in :attr:`StartRecord.difference` (exponential average:
about the last five probes, two days of 15-min steps)."""


@dataclass
class StartRecord:
    """Which warm start of a receding step needs fewer dual simplex iterations on one
    compiled model, measured, for ``SolverOptions.warm_start="auto"``.

    The shifted basis fits data that moved one interval; the unshifted one fits data
    that is re-anchored on the latest observation at every step (the demand nowcast, an
    autoregressive price forecast). On the RCDC month the shifted start needs fewer
    iterations at 265 of 287 steps, on the DR-scale fleet the unshifted one at 193 of
    287 (docs/performance.md, "Warm start: shifted or unshifted basis";
    ``python -m benchmarks.warm_start_pairs``). So ``auto`` measures: on a probe step
    (the first :data:`_PROBE_FIRST_STEPS`, then every :data:`_PROBE_EVERY`) it solves
    the LP from the start it does not favour too, and compares the two on the same
    data. Iterations, not times: with one HiGHS thread they are the same on any
    machine and load, so is the choice (and, through degenerate optima, the plan).

    Attributes
    ----------
    difference : float or None [-]
        Exponential average of unshifted minus shifted iterations over the probes
        (newest weighted :data:`_NEWEST_PROBE_WEIGHT`); None before the first.
    steps : int
        Receding steps seen.
    probe_iterations : int or None
        Iterations of this step's probe run, until the step's own run is scored.
    """

    difference: float | None = None
    steps: int = 0
    probe_iterations: int | None = None

    def favourite(self) -> str:
        """``"same"`` when the unshifted start has needed fewer iterations, else
        ``"shift"`` (also before any probe: a receding step's natural start)."""
        return "same" if self.difference is not None and self.difference < 0 else "shift"

    def probe_due(self) -> bool:
        """Count a receding step; True when it is a probe step."""
        self.steps += 1
        return self.steps <= _PROBE_FIRST_STEPS or self.steps % _PROBE_EVERY == 0

    def score(self, start: str, iterations: int, other_iterations: int) -> None:
        """Add one probe: ``iterations`` [-] from ``start``, ``other_iterations`` from
        the other start, on the same data."""
        unshifted_minus_shifted = float(iterations - other_iterations if start == "same"
                                        else other_iterations - iterations)
        self.difference = (unshifted_minus_shifted if self.difference is None else
                           self.difference + _NEWEST_PROBE_WEIGHT
                           * (unshifted_minus_shifted - self.difference))


@dataclass
class CompiledModel:
    """One formulation of a site, built and compiled once, with its warm-start memory.

    Attributes
    ----------
    ctx : ModelContext
    problem : cvxpy.Problem
    fast : HighsFastPath
    build_time_s : float [s]
    n_cols : ndarray of int
        HiGHS columns of the instance counts (Fortran order: pool k of column t is
        ``n_cols[k + P t]``).
    binary_blocks : list of (start, rows)
        First HiGHS column and row count of each binary variable (column t of row r
        is ``start + r + rows t``).
    binary_campus : ndarray of int
        Campus index of each binary row, block after block.
    integer_where : ndarray (C, H) of bool or None
        Where the exact formulation's binaries may be integer this solve (set per
        solve from :func:`inexact_columns`; None: everywhere).
    repair_where : ndarray (C, H) of bool or None
        The entries whose binaries the last integrality setting relaxed although
        they lie in the integer columns: repaired after each run.
    """

    ctx: ModelContext
    problem: cp.Problem
    fast: HighsFastPath
    build_time_s: float
    n_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    binary_blocks: list[tuple[int, int]] = field(default_factory=list)
    binary_campus: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    integer_where: np.ndarray | None = None
    repair_where: np.ndarray | None = None
    # integrality last set (instance columns, binary columns of t < this, full limits)
    integrality: tuple[object, ...] | None = None
    # warm start: the last relaxation's basis (read lazily), its time series, whether
    # HiGHS still holds it, and the shift maps (built on first use)
    basis: tuple[np.ndarray, np.ndarray] | None = None
    basis_held: bool = False
    series: np.ndarray | None = None
    last_x: np.ndarray | None = None
    shift_maps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    starts: StartRecord = field(default_factory=StartRecord)

    def binary_columns(self, columns: int, where: np.ndarray | None = None) -> np.ndarray:
        """HiGHS columns of every binary of the first ``columns`` model columns; with
        ``where`` (C, >= columns) only those of the campuses and columns it marks."""
        parts, keep, first = [], [], 0
        for start, rows in self.binary_blocks:
            parts.append(np.arange(start, start + rows * columns))
            if where is not None:
                campus = self.binary_campus[first: first + rows]
                # column t of row r is start + r + rows t (Fortran order)
                keep.append(where[campus, :columns].ravel(order="F"))
            first += rows
        if not parts:
            return np.zeros(0, dtype=np.int64)
        out = np.concatenate(parts)
        return out if where is None else out[np.concatenate(keep)]


def build_model(site: Site, interval_lengths: np.ndarray, exact: bool,
                options: SolverOptions | None = None, *,
                demand_response: bool = True,
                lateness: LatenessPrices | None = None) -> CompiledModel:
    """Assemble the blocks of ``site`` into one DPP cvxpy problem and compile HiGHS.

    Order: other IT (variables, processing function relaxed or exact, deferrable
    work), renewable, battery, inference pools (variables, demand, fixed shares,
    capacity, GPUs, switching, quality, power), grid (variables, power balance,
    exclusivity), demand response, then the cost terms energy, carbon, demand charge,
    switching, quality, DR, unserved; with ``lateness`` the backlog (before the demand
    rows, which take its change), its price and the pools' congestion price
    (:mod:`mpc_dc.blocks.lateness`). Blocks a site lacks add nothing.

    Parameters
    ----------
    interval_lengths : ndarray of int
        Intervals per model column (:meth:`SolverOptions.horizon_columns`).
    exact : bool
        The exact formulation (binaries) or the LP relaxation.
    lateness : LatenessPrices, optional
        Build the lateness block with these prices (None: no backlog is carried).
    """
    t0 = time.perf_counter()
    o = options or SolverOptions()
    ctx = define_model(site, interval_lengths, exact, demand_response=demand_response,
                       lateness=lateness)
    objective = cp.Minimize(model_cost(ctx))
    problem = cp.Problem(objective, ctx.all_constraints())
    if not problem.is_dpp():  # an invariant of the blocks, not an input problem
        raise AssertionError("site problem is not DPP")
    for p in ctx.parameters.values():
        p.value = np.zeros(p.shape)
    ctx.series_parameters = [ctx.parameters[name] for name in _SERIES
                             if name in ctx.parameters]
    fast = HighsFastPath(problem, time_limit_s=o.time_limit_s, mip_rel_gap=o.mip_rel_gap,
                         mip_max_nodes=o.mip_max_nodes)
    model = CompiledModel(ctx, problem, fast, 0.0)
    if "instances" in ctx.variables:
        model.n_cols = fast.columns("instances")
    campus: list[np.ndarray] = []
    for variable in ctx.variables.values():
        if variable.attributes.get("boolean"):
            start, _, shape = fast.var_cols[variable.name()]
            model.binary_blocks.append((int(start), int(shape[0])))
            campus.append(ctx.binary_campuses[variable.name()])
    if campus:
        model.binary_campus = np.concatenate(campus).astype(np.int64)
    model.build_time_s = time.perf_counter() - t0
    return model


def define_model(site: Site, interval_lengths: np.ndarray, exact: bool, *,
                 demand_response: bool = True,
                 lateness: LatenessPrices | None = None) -> ModelContext:
    """The blocks of ``site`` on a new :class:`ModelContext`, in :func:`build_model`'s
    order (variables, Parameters, constraint groups and cost terms; nothing compiled).

    Parameters
    ----------
    interval_lengths : ndarray of int
        Intervals per model column.
    exact : bool
        The exact formulation (binaries) or the LP relaxation.
    demand_response : bool
        Build the DR cap and settlement.
    lateness : LatenessPrices, optional
        Build the lateness block with these prices (None: no backlog is carried).
    """
    lengths = np.asarray(interval_lengths, dtype=np.int64)
    ctx = ModelContext(site, lengths.size, exact=exact, interval_lengths=lengths,
                       demand_response=demand_response, lateness=lateness)
    define_compute_variables(ctx)
    if exact:
        define_processing_exact(ctx)
    else:
        define_processing_relaxed(ctx)
    define_deferrable_work(ctx)
    define_renewable(ctx)
    define_battery(ctx)
    define_fleet_variables(ctx)
    if lateness is not None:
        define_backlog(ctx)
    define_demand(ctx)
    define_spatial_shares(ctx)
    define_capacity(ctx)
    define_gpu_limit(ctx)
    define_switching(ctx)
    define_quality(ctx)
    define_inference_power(ctx)
    define_grid_variables(ctx)
    define_power_balance(ctx)
    define_import_export_exclusivity(ctx)
    define_demand_response(ctx)
    define_energy_cost(ctx)
    define_carbon_cost(ctx)
    define_demand_charge(ctx)
    define_switching_cost(ctx)
    define_quality_cost(ctx)
    define_demand_response_cost(ctx)
    define_unserved_cost(ctx)
    if lateness is not None:
        define_lateness_cost(ctx, lateness)
        define_warmup_overload(ctx, lateness)
        define_congestion(ctx, lateness)
    return ctx


def model_cost(ctx: ModelContext) -> cp.Expression:
    """The sum of the context's cost terms [$] (the model's objective)."""
    return cp.sum(cp.hstack([cp.reshape(c, (1,), order="F") for c in ctx.costs.values()]))


# ----------------------------------------------------------------------------- parameters


def _set(param: cp.Parameter, value: np.ndarray) -> None:
    """Set a Parameter from inputs or state that were validated when they were built
    (finite, signs): only the shape is checked here; checking values again would
    repeat those checks on every solve."""
    arr = np.asarray(value, dtype=float)
    if arr.shape != param.shape:
        raise ValueError(f"Parameter {param.name()}: expected shape {param.shape}, "
                         f"got {arr.shape}")
    param.save_value(arr)


def set_parameters(ctx: ModelContext, inputs: HorizonInputs, state: PlantState) -> None:
    """Write inputs and state into the model's Parameters (model columns, model units).

    With a coarse tail each column takes the mean of its intervals' demand, prices,
    carbon, renewable availability, non-deferrable work and DR reward and penalty
    rates; the least of their GPUs and DR caps (a column never plans on capacity one
    of its intervals lacks); the cumulative deferrable work due and released by its
    last interval; and the mean baseline of its event intervals (with the mean
    reward rate, the column's settlement equals that of its intervals).
    """
    site = ctx.site
    C, M, H = ctx.n_campuses, ctx.n_models, inputs.horizon_steps
    p = ctx.parameters
    u = ctx.unit_mw
    _set(p["import_price_usd_per_mwh"], ctx.reduce(inputs.import_price_usd_per_mwh))
    if ctx.export.size:
        _set(p["export_price_usd_per_mwh"],
                ctx.reduce(inputs.export_price_usd_per_mwh[ctx.export]))
    carbon = np.maximum(np.asarray(carbon_cost_usd_per_mwh(
        site.carbon_price_usd_per_t, inputs.carbon_gco2_per_kwh)), 0.0)
    _set(p["carbon_cost_usd_per_mwh"], ctx.reduce(carbon))
    if ctx.renewable.size:
        plate = ctx.nameplate_mw[ctx.renewable]
        _set(p["renewable_available"],
                ctx.reduce(np.clip(inputs.renewable_cf[ctx.renewable], 0.0, 1.0)
                           * plate[:, None] / u))
    if ctx.other_it.size:
        due, avail = state.deferrable(C, H)
        nd = inputs.work_nd_wu[ctx.other_it]
        _set(p["work_nd_wu"], ctx.reduce(nd))
        if ctx.blocked:
            spare = np.maximum(max_work_per_interval_wu(site, inputs)[ctx.other_it] - nd, 0.0)
            due_col, avail_col = column_deferrable_bounds(ctx, due[ctx.other_it],
                                                          avail[ctx.other_it], spare)
        else:
            due_col, avail_col = due[ctx.other_it], avail[ctx.other_it]
        _set(p["df_due_cum_wu"], due_col)
        _set(p["df_available_cum_wu"], avail_col)
    if ctx.demand_charge.size:
        _set(p["peak_import_to_date"], state.peaks_mw(C)[ctx.demand_charge] / u)
    if ctx.battery.size:
        _set(p["battery_initial_energy"],
                np.minimum(state.battery_mwh(site), ctx.battery_energy_mwh)[ctx.battery] / u)
    if ctx.n_pools:
        _set_fleet_parameters(ctx, inputs, state, M, H)
    if ctx.demand_response:
        _set_dr_parameters(ctx, inputs, C, H)


def column_deferrable_bounds(ctx: ModelContext, due_wu: np.ndarray, available_wu: np.ndarray,
                             spare_wu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative deferrable work due and released by the end of each model column [WU].

    A column of ``n > 1`` intervals holds one power level, so the model knows only the
    cumulative work ``c[k]`` at column ends. A deadline inside column ``k + 1`` (after
    interval ``i``) can be met only if the work left at the end of column ``k`` fits
    into the intervals of ``k + 1`` up to ``i``; a release inside column ``k`` (at
    interval ``i``) bounds the work done by its end to the released work plus what
    its intervals after ``i`` can do:

    ``D'[k] = max(D[e_k], max_{i ∈ k+1} (D[i] − S[i]) + S[e_k])``,
    ``A'[k] = min_{i ∈ k} (A[i] − S[i]) + S[e_k]``,

    with ``D``, ``A`` the cumulative work due and released by the end of each interval,
    ``S`` the cumulative spare capacity ``s[i]`` (the most deferrable work interval
    ``i`` can do: :func:`max_work_per_interval_wu` less the non-deferrable work) and
    ``e_k`` the last interval of column ``k``. Where column ``k + 1`` (for ``D'``) or
    ``k`` (for ``A'``) is one interval this is ``D[e_k]`` and ``A[e_k]``. Reading the
    deadline at the column's end alone counted the capacity of a column's intervals
    after its deadline: with the coarse columns not aligned to the deadlines, the
    plan put off work that the intervals before the deadline could not do.

    Parameters
    ----------
    ctx : ModelContext
        The model (its ``column_starts``, ``column_ends``, ``interval_lengths``).
    due_wu, available_wu, spare_wu : ndarray (R, intervals) [WU]
        ``D``, ``A`` and ``s`` of the campuses with other IT.

    Returns
    -------
    due, available : ndarray (R, columns) [WU]
    """
    lengths = ctx.interval_lengths
    assert lengths is not None
    starts, ends = ctx.column_starts, ctx.column_ends
    S = np.cumsum(spare_wu, axis=1)
    due = due_wu[:, ends]
    avail = available_wu[:, ends]
    multi = lengths > 1
    if multi[1:].any():
        ahead = np.maximum.reduceat(due_wu - S, starts, axis=1)[:, 1:] + S[:, ends[:-1]]
        k = np.flatnonzero(multi[1:])
        due[:, k] = np.maximum(due[:, k], ahead[:, k])
    if multi.any():
        room = np.minimum.reduceat(available_wu - S, starts, axis=1) + S[:, ends]
        avail[:, multi] = np.minimum(avail[:, multi], room[:, multi])
    # The last interval of a column is one of its own, so A' <= A[e_k]; D' can only
    # exceed A' where the inputs are infeasible already (check_feasibility names it).
    return due, avail


def _set_fleet_parameters(ctx: ModelContext, inputs: HorizonInputs, state: PlantState,
                          M: int, H: int) -> None:
    site, p = ctx.site, ctx.parameters
    if inputs.demand_tokens_per_s.shape != (M, H):
        raise ValueError(f"HorizonInputs.demand_tokens_per_s: expected shape {(M, H)} "
                         f"(models {', '.join(site.models)}), got "
                         f"{inputs.demand_tokens_per_s.shape}")
    _set(p["demand_kps"], ctx.reduce(inputs.demand_tokens_per_s) / 1e3)
    installed = np.array([[float(site.campuses[int(c)].gpus)] for c in ctx.gpu_campuses])
    gpus = (np.repeat(installed, H, axis=1) if inputs.gpus_available is None
            else inputs.gpus_available[ctx.gpu_campuses])
    _set(p["gpus_available"], np.maximum(ctx.reduce(gpus, "min"), 0.0))
    _set(p["instances_running"], np.array(
        [float(state.instances_running.get(k, 0)) for k in ctx.pools]))
    if "reprovision_allowance" in p:
        _set(p["reprovision_allowance"],
                np.full(ctx.n_pools, _FREE if state.may_reprovision else 0.0))


def _set_dr_parameters(ctx: ModelContext, inputs: HorizonInputs, C: int, H: int) -> None:
    p, dr, u = ctx.parameters, ctx.site.dr, ctx.unit_mw
    event = (np.zeros((C, H)) if inputs.dr_event is None else inputs.dr_event) > 0.5
    base = np.zeros((C, H)) if inputs.dr_baseline_mw is None else np.maximum(
        inputs.dr_baseline_mw / u, 0.0)
    reward = (dr.reward_usd_per_kwh if inputs.dr_reward_usd_per_kwh is None
              else inputs.dr_reward_usd_per_kwh)
    penalty = (dr.penalty_usd_per_kwh if inputs.dr_penalty_usd_per_kwh is None
               else inputs.dr_penalty_usd_per_kwh)
    share = ctx.reduce(event)
    ctx.dr_event_share = share
    ctx.dr_baseline = np.where(share > 0, ctx.reduce(np.where(event, base, 0.0))
                               / np.maximum(share, 1e-12), 0.0)
    _set(p["dr_cap_rhs"], ctx.reduce(
        np.where(event, dr.cap_fraction_of_baseline * base, INACTIVE_MW / u), "min"))
    _set(p["dr_reward_usd_per_kwh"], ctx.reduce(np.where(event, reward, 0.0)))
    _set(p["dr_penalty_usd_per_kwh"], ctx.reduce(np.where(event, penalty, 0.0)))


def objective_offset_usd(ctx: ModelContext) -> float:
    """What the model's objective leaves out [$]: ``Σ L Δ ρ_r B`` (DR settlement of the
    baseline) + ``Σ λ pk0`` (demand charge already billed); objective − offset = cost."""
    p = ctx.parameters
    out = 0.0
    if ctx.demand_response:
        rr = np.asarray(p["dr_reward_usd_per_kwh"].value)
        out += float(ctx.step_h * ctx.kw_per_unit
                     * np.sum(rr * ctx.dr_baseline * ctx.weights[None, :]))
    if ctx.demand_charge.size:
        out += float(ctx.unit_mw * ctx.demand_charge_usd_per_mw
                     @ np.asarray(p["peak_import_to_date"].value))
    return out


# ----------------------------------------------------------------------------- post-process


def solution_columns(ctx: ModelContext, values: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
    """Variable values → per-column arrays in physical units (MW, MWh, tokens/s, WU);
    campus arrays (C, H) with zeros where a campus lacks the block; tiny negatives
    clipped."""
    C, H, u = ctx.n_campuses, ctx.horizon_steps, ctx.unit_mw
    p = ctx.parameters

    def get(name: str) -> np.ndarray:
        return np.maximum(np.asarray(values[name], dtype=float), 0.0)

    def spread(name: str, rows: np.ndarray, scale: float, source: str = "var") -> np.ndarray:
        out = np.zeros((C, H))
        if rows.size:
            out[rows] = scale * (get(name) if source == "var"
                                 else np.asarray(p[name].value, dtype=float))
        return out

    cols = {
        "import_mw": u * get("import"),
        "export_mw": spread("export", ctx.export, u),
        "renewable_used_mw": spread("renewable_used", ctx.renewable, u),
        "other_it_mw": spread("other_it_power", ctx.other_it, u),
        "work_df_wu": spread("work_df_wu", ctx.other_it, 1.0),
        "work_nd_wu": spread("work_nd_wu", ctx.other_it, 1.0, "par"),
        "battery_charge_mw": spread("battery_charge", ctx.battery, u),
        "battery_discharge_mw": spread("battery_discharge", ctx.battery, u),
        "battery_energy_mwh": spread("battery_energy", ctx.battery, u),
    }
    P, M = ctx.n_pools, ctx.n_models
    if P:
        n, x = get("instances"), 1e3 * get("tokens_kps")
        uns = 1e3 * get("unserved_kps")
        cols.update(instances=n, starts=get("starts"), tokens_per_s=x,
                    unserved_tokens_per_s=uns.reshape(-1, M, H).sum(axis=0))
    else:
        cols.update(instances=np.zeros((0, H)), starts=np.zeros((0, H)),
                    tokens_per_s=np.zeros((0, H)), unserved_tokens_per_s=np.zeros((M, H)))
    if "backlog_kps" in values:
        cols["backlog_kps"] = get("backlog_kps")
        cols["backlog_tokens"] = 1e3 * STEP_S * cols["backlog_kps"].reshape(-1, M, H).sum(axis=0)
    cols["inference_it_mw"] = inference_it_mw(ctx, cols["instances"], cols["tokens_per_s"])
    return cols


def inference_it_mw(ctx: ModelContext, instances: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """IT power of the inference pools per campus ``Σ (p_idle n + e x) / 10⁶`` [MW], (C, ·)."""
    if not ctx.n_pools:
        return np.zeros((ctx.n_campuses, instances.shape[1]))
    idle, energy = ctx.power_matrices
    return np.asarray(idle @ instances + energy @ tokens)


def repair_relaxed(ctx: ModelContext, cols: Mapping[str, np.ndarray],
                   where: np.ndarray | None = None
                   ) -> tuple[dict[str, np.ndarray], bool, float]:
    """Map an LP optimum onto W = F(P) and exclusive import/export, per campus.

    Steps (each never raises cost when the exactness conditions hold,
    docs/formulation.md section 3):
    1. Other-IT power down to ``F⁻¹(W/Δ)``; the freed facility power first reduces
       renewable use (curtailment), then import, then raises export within its limit.
    2. Simultaneous import and export netted: both reduced by ``min(p_im, p_ex)``.
    The inference pools are left as they are. ``where`` (C, H) bool limits both steps
    to the entries it marks (default: every campus and column).

    Returns
    -------
    values : dict
        Repaired column arrays.
    changed : bool
        True when anything moved by more than the tolerance.
    residual_mw : float [MW]
        Facility power that could not be shed (> 0 means the repair failed).
    """
    camps = ctx.site.campuses
    needs = {}
    for c in ctx.other_it:
        other = camps[int(c)].other_it
        assert other is not None
        work = cols["work_nd_wu"][c] + cols["work_df_wu"][c]
        need = other.processing.inverse_mw(work / ctx.step_h, other.it_capacity_mw)
        # outside ``where`` the need is the power itself: nothing to shed there
        needs[int(c)] = need if where is None else np.where(where[c], need, np.inf)
    out = dict(cols)
    both = np.minimum(cols["import_mw"], cols["export_mw"])
    if where is not None:
        both = np.where(where, both, 0.0)
    if (all(bool(np.all(cols["other_it_mw"][c] <= n)) for c, n in needs.items())
            and not np.any(both > 0)):
        return out, False, 0.0  # on F's graph and no simultaneous flows: nothing to do
    for name in ("other_it_mw", "renewable_used_mw", "import_mw", "export_mw"):
        out[name] = np.array(cols[name], dtype=float)
    changed, residual = False, 0.0
    for c, need in needs.items():
        excess = np.maximum(out["other_it_mw"][c] - need, 0.0)
        changed = changed or bool(np.any(excess > 1e-6))
        out["other_it_mw"][c] = np.where(excess > 0, need, out["other_it_mw"][c])
        free = camps[int(c)].pue * excess
        for name in ("renewable_used_mw", "import_mw"):
            cut = np.minimum(free, out[name][c])
            out[name][c] -= cut
            free -= cut
        room = np.maximum(camps[int(c)].grid.export_limit_mw - out["export_mw"][c], 0.0)
        cut = np.minimum(free, room)
        out["export_mw"][c] += cut
        free -= cut
        residual = max(residual, float(free.max(initial=0.0)))
    both = np.minimum(out["import_mw"], out["export_mw"])
    if where is not None:
        both = np.where(where, both, 0.0)
    if np.any(both > 1e-6):
        changed = True
    out["import_mw"] -= both
    out["export_mw"] -= both
    return out, changed, residual


def plan_cost(ctx: ModelContext, cols: Mapping[str, np.ndarray]) -> CostBreakdown:
    """Cost components of column values at the Parameters' current values [$].

    Computed from the flows (after any repair), not read from the solver: energy
    ``Σ L Δ (π⁺ p_im − π⁻ p_ex)``, carbon ``Σ L Δ k p_im``, each retail campus's demand
    charge increment, starts, quality, DR settlement on the import's distance to the
    baseline and penalty above the cap, unserved tokens, and the backlog's lateness
    (:func:`~mpc_dc.blocks.lateness.lateness_cost_usd`).
    """
    p, site = ctx.parameters, ctx.site
    h = ctx.step_h * ctx.weights  # [MWh per MW] of each column

    def energy(price: np.ndarray, flow: np.ndarray) -> float:
        """``Σ_{c,t} L[t] Δ price[c,t] flow[c,t]`` [$]."""
        return float(np.einsum("ct,ct,t->", price, flow, h))

    kwh = h[None, :]
    imp = cols["import_mw"]
    revenue = 0.0
    if ctx.export.size:
        revenue = energy(np.asarray(p["export_price_usd_per_mwh"].value),
                         cols["export_mw"][ctx.export])
    demand = 0.0
    if ctx.demand_charge.size:
        pk0 = ctx.unit_mw * np.asarray(p["peak_import_to_date"].value)
        rise = np.maximum(imp[ctx.demand_charge].max(axis=1, initial=0.0) - pk0, 0.0)
        demand = float(ctx.demand_charge_usd_per_mw @ rise)
    reward = penalty = 0.0
    if ctx.demand_response:
        rr = np.asarray(p["dr_reward_usd_per_kwh"].value)
        rp = np.asarray(p["dr_penalty_usd_per_kwh"].value)
        imp_kw = 1e3 * imp
        cap_kw = ctx.kw_per_unit * np.asarray(p["dr_cap_rhs"].value)
        reward = float(np.sum(kwh * rr * (ctx.kw_per_unit * ctx.dr_baseline - imp_kw)))
        penalty = float(np.sum(kwh * rp * np.maximum(imp_kw - cap_kw, 0.0)))
    fleet = site.fleet
    switching = quality = unserved = 0.0
    if fleet is not None and ctx.n_pools:
        q = fleet.quality_cost_usd_per_point_mtok * STEP_S / 1e6
        switching = float(fleet.start_cost_usd_per_gpu * np.sum(ctx.gpus @ cols["starts"]))
        quality = float(q * np.sum((ctx.quality_loss @ cols["tokens_per_s"]) * ctx.weights))
        unserved = float(fleet.unserved_penalty_usd_per_mtok * STEP_S / 1e6
                         * np.sum(cols["unserved_tokens_per_s"] * ctx.weights[None, :]))
    lateness = congestion = 0.0
    if ctx.lateness is not None and "backlog_kps" in cols:
        lateness = lateness_cost_usd(ctx, ctx.lateness, cols["backlog_kps"])
    if ctx.lateness is not None and ctx.n_pools:
        congestion = congestion_cost_usd(ctx, ctx.lateness, cols["instances"], cols["starts"],
                                         cols["tokens_per_s"])
    return CostBreakdown(
        energy_import_usd=energy(np.asarray(p["import_price_usd_per_mwh"].value), imp),
        export_revenue_usd=revenue, demand_charge_usd=float(demand),
        carbon_usd=energy(np.asarray(p["carbon_cost_usd_per_mwh"].value), imp),
        switching_usd=switching, quality_usd=quality, dr_reward_usd=reward,
        dr_penalty_usd=penalty, unserved_usd=unserved, lateness_usd=lateness,
        congestion_usd=congestion)


def expand_plan(ctx: ModelContext, cols: Mapping[str, np.ndarray],
                inputs: HorizonInputs) -> Plan:
    """A :class:`Plan` per 15-min interval from column values.

    A column's rates are held over its intervals, its starts happen at its first;
    non-deferrable work and renewable availability are the inputs' own per-interval
    values, so curtailment is ``max(η Q_R − r, 0)`` per interval (renewable use is
    clipped to the availability on one-interval columns, where any excess is solver
    tolerance).
    """
    site = ctx.site
    L = ctx.interval_lengths
    assert L is not None
    H = int(L.sum())

    def held(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, L, axis=1) if ctx.blocked else values

    avail = inputs.renewable_cf * ctx.nameplate_mw[:, None]
    used = held(cols["renewable_used_mw"])
    if ctx.blocked:
        used = np.where(np.repeat(L == 1, L)[None, :], np.minimum(used, avail), used)
    else:
        used = np.minimum(used, avail)
    starts = np.zeros((cols["starts"].shape[0], H))
    starts[:, ctx.column_starts] = cols["starts"]
    pue = ctx.pue[:, None]
    inference, other = held(cols["inference_it_mw"]), held(cols["other_it_mw"])
    imp = held(cols["import_mw"])
    excess = reduction = np.zeros_like(imp)
    if ctx.demand_response:
        cap = held(ctx.unit_mw * np.asarray(ctx.parameters["dr_cap_rhs"].value))
        excess = np.maximum(imp - cap, 0.0)
        reduction = np.where(held(ctx.dr_event_share) > 0,
                             held(ctx.unit_mw * ctx.dr_baseline) - imp, 0.0)
    work_nd = np.zeros_like(imp)
    work_nd[ctx.other_it] = inputs.work_nd_wu[ctx.other_it]
    return Plan(
        pools=ctx.pools, models=site.models, campuses=site.campus_names,
        instances=held(cols["instances"]), starts=starts,
        tokens_per_s=held(cols["tokens_per_s"]),
        unserved_tokens_per_s=held(cols["unserved_tokens_per_s"]),
        inference_it_mw=inference, other_it_mw=other, facility_power_mw=pue * (inference + other),
        work_nd_wu=work_nd, work_df_wu=held(cols["work_df_wu"]), renewable_used_mw=used,
        curtailed_mw=np.maximum(avail - used, 0.0), import_mw=imp,
        export_mw=held(cols["export_mw"]), battery_charge_mw=held(cols["battery_charge_mw"]),
        battery_discharge_mw=held(cols["battery_discharge_mw"]),
        battery_energy_mwh=held(cols["battery_energy_mwh"]),
        dr_reduction_mw=reduction, dr_excess_mw=excess,
        backlog_tokens=held(cols["backlog_tokens"]) if "backlog_tokens" in cols else None,
        export_price_usd_per_mwh=np.array(inputs.export_price_usd_per_mwh, dtype=float))


def with_instances(plan: Plan, n: np.ndarray) -> Plan:
    """``plan`` with the instance counts of its first ``n.shape[1]`` intervals replaced."""
    inst = plan.instances.copy()
    inst[:, : n.shape[1]] = n
    return replace(plan, instances=inst)


# ----------------------------------------------------------------------------- rounding


def round_instances(ctx: ModelContext, n: np.ndarray, tokens_per_s: np.ndarray,
                    n_prev: np.ndarray, gpus: np.ndarray,
                    demand_tokens_per_s: np.ndarray | None = None, *,
                    price_usd_per_mwh: np.ndarray | None = None,
                    constant: bool = False, first_column: int = 0) -> np.ndarray:
    """Integer instance counts near a relaxed plan, rounded jointly per (campus, model).

    Per column and group g = (campus, model) of pools, from ``⌊n⌋`` add one instance at
    a time to the pool of g that fits the campus's free GPUs and is cheapest per token
    it adds (idle + marginal energy at ``price``, start cost, quality cost; the largest
    LP remainder without prices) until the group's capacity ``Σ ρ̄ μ (n − w u)``
    covers its planned tokens; then check each model's quality budget for the
    least-loss use of the capacity and add lower-δ instances where it is exceeded;
    tokens a GPU-full campus cannot take go to another campus's pools (Sp on).

    Parameters
    ----------
    n : ndarray (P, T) [-]
    tokens_per_s : ndarray (P, T) [tokens/s]
    n_prev : ndarray (P,) [-]
        Instances running before the first column.
    gpus : ndarray (C_g, T) [GPUs]
        GPUs available per campus with GPUs.
    demand_tokens_per_s : ndarray (M, T) [tokens/s], optional
        Demand of the same columns (quality-budget check; skipped when None).
    price_usd_per_mwh : ndarray (C_g, T) [$/MWh], optional
        Import price plus carbon cost and DR reward rate per campus with GPUs.
    constant : bool
        Sw off: the T columns share one fleet sized for every column's tokens
        (warm-up in the first only); the result's columns are equal.
    first_column : int
        Model column of the first of the T.

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
    weights = ctx.weights[cols]
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


def rounding_inputs(ctx: ModelContext
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What rounding needs of the inputs last set on ``ctx``, per model column: GPUs
    available (C_g, H), instances running (P,), demand [tokens/s] (M, H) and the price
    that ranks pools (import + carbon + DR reward rate) [$/MWh] (C_g, H)."""
    par = ctx.parameters
    price = (np.asarray(par["import_price_usd_per_mwh"].value)
             + np.asarray(par["carbon_cost_usd_per_mwh"].value))
    if ctx.demand_response:
        price = price + 1e3 * np.asarray(par["dr_reward_usd_per_kwh"].value)
    return (np.asarray(par["gpus_available"].value),
            np.asarray(par["instances_running"].value),
            1e3 * np.asarray(par["demand_kps"].value), price[ctx.gpu_campuses])


@dataclass
class _Rounding:
    """The fleet being rounded in one column: counts, free GPUs, capacities."""

    ctx: ModelContext
    col: np.ndarray
    free: np.ndarray
    prev: np.ndarray
    w: np.ndarray
    W: int

    def capacity(self, k: np.ndarray, c: np.ndarray) -> np.ndarray:
        """(len(k), W) tokens/s each pool of ``k`` serves with counts ``c``."""
        fleet = self.ctx.site.fleet
        assert fleet is not None
        cap = fleet.utilization_cap * self.ctx.mu_tokens_per_s[k]
        out = np.repeat((cap * c)[:, None], self.W, axis=1)
        out[:, 0] -= cap * self.w[k] * np.maximum(c - self.prev[k], 0.0)
        return out

    def add(self, k: int) -> None:
        self.col[k] += 1
        self.free[self.ctx.gcampus_of[k]] -= self.ctx.gpus[k]

    def drop(self, k: int) -> None:
        self.col[k] -= 1
        self.free[self.ctx.gcampus_of[k]] += self.ctx.gpus[k]

    def fits(self, k: int) -> bool:
        return bool(self.ctx.gpus[k] <= self.free[self.ctx.gcampus_of[k]] + _TOL)


def _round_column(ctx: ModelContext, n: np.ndarray, x: np.ndarray, prev: np.ndarray,
                  gpus: np.ndarray, demand: np.ndarray | None, price: np.ndarray | None,
                  w: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One integral fleet (P,) covering the tokens ``x`` (P, W) of W model columns
    (:func:`round_instances`); ``gpus`` (C_g,), ``demand`` (M, W) [tokens/s], ``price``
    (C_g, W) [$/MWh], ``w`` (P,) the first column's warm-up share [-], ``weights`` (W,)
    intervals per column."""
    fleet = ctx.site.fleet
    assert fleet is not None
    M = ctx.n_models
    group = ctx.gcampus_of * M + ctx.model_of
    col = np.floor(n + _TOL)
    r = _Rounding(ctx, col, gpus - ctx.gpu_matrix @ col, prev, w, x.shape[1])
    tol = 1e-3 + 1e-7 * float(np.max(x, initial=0.0))
    qcost = fleet.quality_cost_usd_per_point_mtok * ctx.quality_loss * STEP_S / 1e6

    def rank(k: int, short: np.ndarray) -> tuple[float, float]:
        """Larger is better: minus the cost per token added, or the LP's remainder."""
        if price is None:
            return (n[k] - col[k], fleet.utilization_cap * ctx.mu_tokens_per_s[k])
        kk = np.array([k])
        gain = r.capacity(kk, col[kk] + 1)[0] - r.capacity(kk, col[kk])[0]
        y = np.minimum(gain, np.maximum(short, 0.0))
        pi = price[ctx.gcampus_of[k]]
        usd = (ctx.step_h * np.sum(weights * pi * ctx.pool_pue[k]
                                   * (ctx.idle_w[k] + ctx.energy_j_per_token[k] * y))
               / 1e6 + float(np.sum(weights * qcost[k] * y)))
        if col[k] >= prev[k]:
            usd += fleet.start_cost_usd_per_gpu * ctx.gpus[k]
        return (-usd / max(float(np.sum(weights * y)), 1e-9), n[k] - col[k])

    short_of = np.zeros((int(group.max(initial=-1)) + 1, x.shape[1]))
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        need = x[idx].sum(axis=0)
        for _ in range(10_000):
            short = need - r.capacity(idx, col[idx]).sum(axis=0)
            if short.max() <= tol:
                break
            cand = [int(k) for k in idx if r.fits(int(k))]
            if not cand:
                short_of[g] = np.maximum(short, 0.0)
                break
            r.add(max(cand, key=lambda k: rank(k, short)))
    if fleet.levers.spatial:  # what a GPU-full campus cannot take goes elsewhere
        for g in np.flatnonzero(short_of.max(axis=1) > tol):
            m = g % M
            for _ in range(10_000):
                if short_of[g].max() <= tol:
                    break
                cand = [int(j) for j in np.flatnonzero(ctx.model_of == m)
                        if group[j] != g and r.fits(int(j))]
                if not cand:
                    break
                j = max(cand, key=lambda k: rank(k, short_of[g]))
                before = r.capacity(np.array([j]), col[[j]])[0]
                r.add(j)
                short_of[g] -= r.capacity(np.array([j]), col[[j]])[0] - before
    if demand is not None and np.any(ctx.quality_loss > 0):
        _repair_quality(ctx, r, x, demand, group, tol)
    return col


def _least_loss(ctx: ModelContext, idx: np.ndarray, cap_k: np.ndarray,
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


def _repair_quality(ctx: ModelContext, r: _Rounding, x: np.ndarray, demand: np.ndarray,
                    group: np.ndarray, tol: float) -> None:
    """Add lower-δ instances until each model's least loss meets ``δ̄ D[m]``; each
    addition then drops the group's highest-δ instances the group's tokens no longer
    need (a swap where one suffices)."""
    fleet = ctx.site.fleet
    assert fleet is not None
    col, loss_of = r.col, ctx.quality_loss
    for m in range(ctx.n_models):
        groups = np.unique(group[ctx.model_of == m])
        for _ in range(1_000):
            losses = {}
            for g in groups:
                idx = np.flatnonzero(group == g)
                losses[int(g)] = _least_loss(ctx, idx, r.capacity(idx, col[idx]),
                                             x[idx].sum(axis=0))
            excess = sum(losses.values()) - fleet.quality_budget_pct_points * demand[m]
            if excess.max() <= tol * max(float(loss_of.max()), 1.0):
                break
            best, gain = -1, 0.0
            for g in groups:
                idx = np.flatnonzero(group == g)
                for k in idx:
                    if not r.fits(int(k)) or loss_of[k] >= loss_of[idx].max():
                        continue
                    trial = col[idx].copy()
                    trial[idx == k] += 1
                    new = _least_loss(ctx, idx, r.capacity(idx, trial), x[idx].sum(axis=0))
                    d = float(np.max(losses[int(g)] - new))
                    if d > gain + _TOL:
                        best, gain = int(k), d
            if best < 0:
                break
            r.add(best)
            idx = np.flatnonzero(group == group[best])
            need = x[idx].sum(axis=0)
            for k in idx[np.argsort(-loss_of[idx], kind="stable")]:
                if k == best or loss_of[k] <= loss_of[best]:
                    continue
                while col[k] > 0:
                    trial = col[idx].copy()
                    trial[idx == k] -= 1
                    if np.max(need - r.capacity(idx, trial).sum(axis=0)) > tol:
                        break
                    r.drop(int(k))


# ----------------------------------------------------------------------------- facade


def _same(cost: CostBreakdown) -> CostBreakdown:
    """``cost`` itself: the ``costing`` of a :class:`_Run` priced already."""
    return cost


@dataclass(frozen=True)
class _Run:
    """One HiGHS run, post-processed to per-column values and their cost.

    ``costing`` computes the cost (:func:`plan_cost`) on the first read of ``cost`` or
    ``objective_usd``: round-and-fix reads the rounded runs' costs but never the
    relaxation's (it reads its columns and its ``lp_bound_usd``), so the relaxation's
    cost is never computed. Every read happens within the :meth:`Problem.solve` that
    made the run, before the next step's parameters replace those it is priced at.
    """

    status: SolveStatus
    cols: dict[str, np.ndarray] | None
    costing: Callable[[], CostBreakdown] | None
    highs_time_s: float
    mip_gap: float
    message: str = ""
    relaxation_repaired: bool = False
    lp_bound_usd: float = float("nan")
    mip_bound_usd: float = float("nan")

    @cached_property
    def cost(self) -> CostBreakdown | None:
        """The plan's cost components [$] (None without a plan)."""
        return None if self.costing is None else self.costing()

    @property
    def objective_usd(self) -> float:
        """The plan's total cost [$] (NaN without a plan)."""
        cost = self.cost
        return float("nan") if cost is None else cost.total_usd

    @cached_property
    def unserved_tokens(self) -> float:
        """Tokens of the model columns not served in their column (unweighted, as
        round-and-fix compares): unserved, plus those joining the lateness block's
        backlog (a rounding short of capacity delays them rather than dropping them)."""
        if self.cols is None:
            return float("nan")
        late = 0.0
        if "backlog_kps" in self.cols:
            b = self.cols["backlog_kps"]
            late = float(np.maximum(np.diff(b, axis=1, prepend=0.0), 0.0).sum() * 1e3)
        return float(self.cols["unserved_tokens_per_s"].sum() + late) * STEP_S


class Problem:
    """The problem of a site and horizon, built once and solved many times.

    Parameters
    ----------
    site : Site
    horizon_steps : int
        H: 15-min intervals of the horizon.
    options : SolverOptions, optional
    formulation : Formulation or "auto"
        ``"auto"`` picks per solve with :func:`choose_formulation` and re-solves the
        exact model when the relaxation's repair fails; both models are built on
        first use.
    demand_response : bool
        Build the DR cap and settlement (False for sites without a programme:
        passing an event then raises ValueError).
    lateness : LatenessPrices, optional
        Carry and price the backlog the plan leaves (:mod:`mpc_dc.blocks.lateness`);
        None: demand a column cannot serve is unserved.

    Attributes
    ----------
    finer_dives, chunk_mip_repairs, repairs_skipped, warm_start_failures : int
        Round-and-fix chunks redone in halves / given to HiGHS as a chunk MIP / kept
        as rounded with a loss within ``SolverOptions.repair_token_share``; warm bases
        HiGHS rejected (solved cold instead).
    time_limit_hits, node_limit_hits : int
        HiGHS runs stopped on their wall-clock / node limit, over every model
        (properties).
    last_warm_start : str
        Start of the last LP relaxation run (``cold``, ``same`` or ``shift``).
    """

    def __init__(self, site: Site, horizon_steps: int, options: SolverOptions | None = None,
                 *, formulation: Formulation | Literal["auto"] = "auto",
                 demand_response: bool = True,
                 lateness: LatenessPrices | None = None) -> None:
        if horizon_steps < 1:
            raise ValueError(f"horizon_steps must be >= 1, got {horizon_steps}")
        self.site = site
        self.horizon_steps = horizon_steps
        self.options = options or SolverOptions()
        self.formulation = formulation if formulation == "auto" else Formulation(formulation)
        self.demand_response = demand_response
        self.lateness = lateness if site.pools else None
        self.columns = self.options.horizon_columns(horizon_steps)
        self._starts = np.concatenate([[0], np.cumsum(self.columns)[:-1]]).astype(np.int64)
        self._models: dict[bool, CompiledModel] = {}
        self._build_time_s = 0.0
        self._binary_rows = _needs_binaries(site)
        # campuses whose binaries stay integer whatever the prices: with a battery the
        # repair may find no room for freed power (docs/formulation.md section 3)
        self._always_integer = np.array([c.battery is not None for c in site.campuses])
        self._relax_exact = True
        self._last: CompiledModel | None = None
        fine = (self.options.fine_steps if self.blocked and self.options.fine_steps is not None
                else self.n_columns)
        j = np.arange(self.n_columns)
        # where each column's data comes from one interval later: the next column for a
        # one-interval column, itself for a coarse column (it moves by a fraction)
        self._time_source = np.where(j < fine - 1, j + 1, j)
        # the columns whose data move at a step, and where they move from
        self._moved = np.flatnonzero(self._time_source != j)
        self._moved_src = self._time_source[self._moved]
        self.finer_dives = 0
        self.chunk_mip_repairs = 0
        self.repairs_skipped = 0
        self.warm_start_failures = 0
        self.last_warm_start = "cold"
        self.model(self.formulation is Formulation.EXACT)

    # ------------------------------------------------------------------------- shape

    @property
    def time_limit_hits(self) -> int:
        """HiGHS runs of this problem stopped on their wall-clock limit."""
        return sum(m.fast.time_limit_hits for m in self._models.values())

    @property
    def node_limit_hits(self) -> int:
        """HiGHS MIP runs of this problem stopped on their node limit."""
        return sum(m.fast.node_limit_hits for m in self._models.values())

    @property
    def n_columns(self) -> int:
        """Model columns (``horizon_steps`` without a coarse tail)."""
        return int(self.columns.size)

    @property
    def blocked(self) -> bool:
        """Whether the horizon has a coarse tail."""
        return self.n_columns != self.horizon_steps

    @property
    def pools(self) -> tuple[PoolKey, ...]:
        """Pools (campus, model, precision) in site order."""
        return self.site.pools

    @property
    def ctx(self) -> ModelContext:
        """Context of the model solved last (the first built before any solve)."""
        return (self._last or next(iter(self._models.values()))).ctx

    def model(self, exact: bool) -> CompiledModel:
        """The compiled model of a formulation (built on first use)."""
        if exact not in self._models:
            self._models[exact] = build_model(self.site, self.columns, exact, self.options,
                                              demand_response=self.demand_response,
                                              lateness=self.lateness)
            self._build_time_s = sum(m.build_time_s for m in self._models.values())
        return self._models[exact]

    def _columns_within(self, intervals: int) -> int:
        """Columns that start before interval ``intervals``."""
        if not self.blocked:
            return min(max(int(intervals), 0), self.n_columns)
        return int(np.searchsorted(self._starts, intervals, side="left"))

    def _to_columns(self, per_interval: np.ndarray) -> np.ndarray:
        """(P, T) per-interval values → (P, columns starting before T)."""
        arr = np.asarray(per_interval, dtype=float)
        if not self.blocked:
            return arr
        return arr[:, self._starts[: self._columns_within(arr.shape[1])]]

    # ------------------------------------------------------------------------- solve

    def solve(self, inputs: HorizonInputs, state: PlantState | None = None,
              form: Form | str = Form.COMMITTED_INTEGER, *,
              integer_intervals: int | None = None, fix_instances: np.ndarray | None = None,
              start: Plan | None = None) -> SolveResult:
        """Solve one horizon.

        Parameters
        ----------
        inputs : HorizonInputs
        state : PlantState, optional
            Default: nothing running, no backlog, re-provisioning allowed.
        form : Form
        integer_intervals : int, optional
            ``committed_integer`` / ``committed_mip``: make ``n[:, :T]`` integral
            (default K = ``options.committed_intervals``; ``horizon_steps`` gives a
            fully integer plan whose gap to the LP bound is certified). In the exact
            formulation the binaries of those intervals are integer too.
        fix_instances : ndarray (P, T), optional
            Fix ``n[:, :T]`` to these values (e.g. another plan's instances).
        start : Plan, optional
            A plan of this site whose instance counts are offered to HiGHS as a MIP
            start (MIP forms; HiGHS completes the rest).

        Returns
        -------
        SolveResult
            Solver trouble gives a failure status, never an exception.

        Raises
        ------
        InfeasibleInputError
            When no schedule can satisfy the other-IT inputs (checked before solving).
        ValueError
            Inputs of the wrong shape for the site.
        """
        wall = time.perf_counter()
        state = state or PlantState()
        form = Form(form)
        self._check_inputs(inputs)
        check_feasibility(self.site, inputs, state)
        if self.formulation == "auto":
            formulation = choose_formulation(self.site, inputs, self._binary_rows)
        else:
            formulation = Formulation(self.formulation)
        args = (inputs, state, form, integer_intervals, fix_instances, start, wall)
        hits, failures = self.time_limit_hits, self.warm_start_failures
        node_hits = self.node_limit_hits
        repairs, skipped = self.chunk_mip_repairs, self.repairs_skipped
        result = self._solve_formulation(formulation, *args)
        if (formulation is Formulation.RELAXED and self.formulation == "auto"
                and result.status.has_plan and result.message.startswith("repair failed")):
            logger.warning("LP relaxation not exact (%s); re-solving the exact formulation",
                           result.message)
            formulation = Formulation.EXACT
            result = self._solve_formulation(formulation, *args)
        if (formulation is Formulation.EXACT and self.formulation == "auto"
                and result.status.has_plan and result.message.startswith("repair failed")):
            # a safety net as above: the entries relaxed by inexact_columns could not be
            # repaired, so every binary of the integer columns is made integer
            logger.warning("exact formulation's relaxed binaries not exact (%s); re-solving "
                           "with all of them integer", result.message)
            self._relax_exact = False
            try:
                result = self._solve_formulation(formulation, *args)
            finally:
                self._relax_exact = True
        if self.time_limit_hits > hits:
            logger.warning("HiGHS stopped on its wall-clock limit in this solve (%s): the "
                           "result depends on the machine's load", result.status)
            result = replace(result, time_limit_hit=True)
        if self.node_limit_hits > node_hits:
            # Reproducible, unlike a wall-clock stop, and counted in the KPIs
            # (solver_node_limit_hits): info, so a month of them is not a wall of warnings.
            logger.info("HiGHS stopped on its node limit in this solve (%s): the plan is "
                        "its incumbent, MIP gap %.3g", result.status, result.mip_gap)
            result = replace(result, node_limit_hit=True)
        if self.warm_start_failures > failures:
            result = replace(result, warm_start_failures=self.warm_start_failures - failures)
        if self.chunk_mip_repairs > repairs or self.repairs_skipped > skipped:
            result = replace(result, chunk_mip_repairs=self.chunk_mip_repairs - repairs,
                             repairs_skipped=self.repairs_skipped - skipped)
        return result

    def _check_inputs(self, inputs: HorizonInputs) -> None:
        C, M, H = len(self.site.campuses), len(self.site.models), self.horizon_steps
        if inputs.horizon_steps != H:
            raise InfeasibleInputError(
                "input length", f"inputs have {inputs.horizon_steps} intervals, the problem "
                f"was built for {H}")
        if inputs.n_campuses != C:
            raise ValueError(f"HorizonInputs: {inputs.n_campuses} campus rows, the site has "
                             f"{C} ({', '.join(self.site.campus_names)})")
        if inputs.demand_tokens_per_s.shape[0] != M:
            raise ValueError(f"HorizonInputs.demand_tokens_per_s: {M} model rows expected "
                             f"({', '.join(self.site.models)}), got "
                             f"{inputs.demand_tokens_per_s.shape[0]}")
        if (not self.demand_response and inputs.dr_event is not None
                and np.any(inputs.dr_event > 0.5)):
            raise ValueError("HorizonInputs.dr_event: a DR event, but the problem was built "
                             "with demand_response=False")

    def _solve_formulation(self, formulation: Formulation, inputs: HorizonInputs,
                           state: PlantState, form: Form, integer_intervals: int | None,
                           fix_instances: np.ndarray | None, start: Plan | None,
                           wall: float) -> SolveResult:
        model = self.model(formulation is Formulation.EXACT)
        self._last = model
        set_parameters(model.ctx, inputs, state)
        model.integer_where = None
        if model.ctx.exact and self.formulation == "auto" and self._relax_exact:
            # binaries only where the relaxation can be inexact (inexact_columns); the
            # other entries are repaired after each run
            ctx = model.ctx
            model.integer_where = inexact_columns(
                self.site, ctx.reduce(inputs.import_price_usd_per_mwh),
                ctx.reduce(inputs.export_price_usd_per_mwh), self._binary_rows)
            model.integer_where[self._always_integer] = True
        fixed = None if fix_instances is None else self._to_columns(fix_instances)
        T = self.options.committed_intervals if integer_intervals is None else integer_intervals
        T = min(int(T), self.horizon_steps)
        T_cols = self._columns_within(T)
        binary = self.options.binary_intervals
        binary_cols = self.n_columns if binary is None else max(self._columns_within(binary),
                                                                T_cols)
        if form is Form.FULL_MILP:
            binary_cols = self.n_columns
        P = model.ctx.n_pools
        if form is Form.COMMITTED_INTEGER and P:
            run, highs_s, extra = self._committed_integer(model, T_cols, fixed, binary_cols)
        else:
            integer = None
            if form is Form.COMMITTED_MIP:
                integer = model.n_cols[: P * T_cols]
            elif form is Form.FULL_MILP:
                integer = model.n_cols
            run = self._run(model, fixed, start, integer, binary_cols,
                            full=form is Form.FULL_MILP)
            highs_s, extra = run.highs_time_s, dict[str, float | bool | str]()
        build = self._build_time_s
        if run.cols is None or run.cost is None:
            status = SolveStatus.ERROR if run.status is SolveStatus.FEASIBLE else run.status
            return SolveResult(status, form, formulation, None, None, float("nan"), build,
                               time.perf_counter() - wall, highs_s, run.mip_gap,
                               extra.get("message", run.message),  # type: ignore[arg-type]
                               lp_bound_usd=run.lp_bound_usd, mip_bound_usd=run.mip_bound_usd)
        plan = expand_plan(model.ctx, run.cols, inputs)
        message = str(extra.get("message", run.message))
        if run.message.startswith("repair failed"):
            message = run.message
        return SolveResult(
            run.status, form, formulation, plan, run.cost, run.cost.total_usd, build,
            time.perf_counter() - wall, highs_s, float(extra.get("gap", run.mip_gap)),
            message, repaired=bool(extra.get("repaired", False)),
            relaxation_repaired=run.relaxation_repaired,
            lp_bound_usd=float(extra.get("lp_bound", run.lp_bound_usd)),
            mip_bound_usd=run.mip_bound_usd)

    # ------------------------------------------------------------------------- round-and-fix

    def _committed_integer(self, model: CompiledModel, T: int, fixed: np.ndarray | None,
                           binary_cols: int) -> tuple[_Run, float, dict[str, float | bool | str]]:
        """Round-and-fix of the instance counts of the first T model columns."""
        lp = self._run(model, fixed, None, None, binary_cols)
        if lp.cols is None:
            return lp, lp.highs_time_s, {}
        warm = self.last_warm_start
        run, highs_s = self._round_and_fix(model, lp, T, fixed, binary_cols)
        if run.cols is None:
            return run, highs_s, {"message": "rounded instances infeasible: " + run.message}
        bound = lp.lp_bound_usd
        gap = (run.objective_usd - bound) / max(abs(run.objective_usd), 1e-9)
        return run, highs_s, {
            "gap": max(gap, 0.0) if self.n_columns <= T else float("nan"),
            "repaired": True, "lp_bound": bound,
            "message": f"round-and-fix of {T} column(s) on the LP ({warm} start)"}

    def _round_and_fix(self, model: CompiledModel, lp: _Run, T: int,
                       fix_instances: np.ndarray | None, binary_cols: int
                       ) -> tuple[_Run, float]:
        """Round ``n[:, :T]`` (T model columns) in chunks of ``round_chunk_intervals``,
        re-solving with the rounded columns fixed after each chunk (a dive: later
        columns are rounded from a relaxation that already accounts for the integral
        earlier ones). A chunk whose rounding serves fewer tokens than its relaxation
        is redone in halves; one column (or a constant fleet) still short goes to
        HiGHS as a chunk MIP. Returns the last fixed run and the HiGHS time of all runs
        incl. ``lp`` [s]. Given ``fix_instances`` columns are kept (``lp`` had them)."""
        assert lp.cols is not None and self.site.fleet is not None
        ctx = model.ctx
        chunk = self.options.round_chunk_intervals
        gpus, n_prev, demand, price = rounding_inputs(ctx)
        P = ctx.n_pools
        n_int = (np.zeros((P, 0)) if fix_instances is None
                 else np.asarray(fix_instances, dtype=float)[:, :T])
        # Sw off: one fleet for the whole horizon, so the committed column's counts are
        # rounded against every later column's tokens, all T columns at once.
        constant = not self.site.fleet.levers.switching
        cur, highs_s, step = lp, lp.highs_time_s, chunk
        while n_int.shape[1] < T or cur is lp:
            s = n_int.shape[1]
            e = T if constant else min(s + step, T)
            if e <= s:
                cur = self._run(model, n_int, None, None, binary_cols)
                highs_s += cur.highs_time_s
                break
            relaxed, cols = cur, cur.cols
            assert cols is not None
            end = self.n_columns if constant else e
            block = round_instances(ctx, cols["instances"][:, s:end],
                                    cols["tokens_per_s"][:, s:end],
                                    n_int[:, -1] if s else n_prev, gpus[:, s:end],
                                    demand[:, s:end], price_usd_per_mwh=price[:, s:end],
                                    constant=constant, first_column=s)
            trial = np.hstack([n_int, block[:, : e - s]])
            cur = self._run(model, trial, None, None, binary_cols)
            highs_s += cur.highs_time_s
            ceil_block = np.ceil(cols["instances"][:, s:e] - _TOL)
            if ((self.options.round_up_trial or self._lost_tokens(cur, relaxed))
                    and np.any(ceil_block > block[:, : e - s])
                    and np.all(ctx.gpu_matrix @ ceil_block <= gpus[:, s:e] + _TOL)):
                # Joint rounding can leave a GPU-full campus short where rounding each
                # pool up would not (when that fits the GPUs); try it, keep the cheaper.
                trial_up = np.hstack([n_int, ceil_block])
                alternative = self._run(model, trial_up, None, None, binary_cols)
                highs_s += alternative.highs_time_s
                if alternative.cols is not None and (
                        cur.cols is None or alternative.objective_usd < cur.objective_usd):
                    cur, trial = alternative, trial_up
            lost = self._lost_tokens(cur, relaxed)
            if lost and e - s > 1 and not constant:
                # Rounding a chunk at once from one relaxation can leave columns short
                # that a relaxation knowing the earlier integral columns would have
                # prepared for (instances loading ahead of a rise on full GPUs): redo
                # the chunk in halves.
                cur, step = relaxed, max(1, (e - s) // 2)
                self.finer_dives += 1
                continue
            if lost and cur.cols is not None and (
                    cur.unserved_tokens - relaxed.unserved_tokens
                    <= self.options.repair_token_share * float(demand[:, s:e].sum()) * STEP_S):
                # A loss this small is priced like any unserved or late token; the MIP
                # that would recover it costs seconds (SolverOptions.repair_token_share).
                self.repairs_skipped += 1
                lost = False
            if lost:
                # Where whole instances do not fit the GPUs the relaxation filled (a
                # different precision mix is needed), let HiGHS choose this chunk's
                # integers, earlier chunks fixed, later ones relaxed.
                mip = self._run(model, n_int if s else None, None,
                                model.n_cols[P * s: P * e], binary_cols)
                highs_s += mip.highs_time_s
                self.chunk_mip_repairs += 1
                if mip.cols is not None and (cur.cols is None
                                             or mip.objective_usd < cur.objective_usd - 1e-9):
                    trial = np.hstack([n_int, np.round(mip.cols["instances"][:, s:e])])
                    cur = self._run(model, trial, None, None, binary_cols)
                    highs_s += cur.highs_time_s
                logger.info("round-and-fix of columns %d-%d lost tokens; chunk MIP %s "
                            "(%.2f $)", s, e - 1, mip.status, mip.objective_usd)
            n_int, step = trial, chunk
            if cur.cols is None:
                break
        return cur, highs_s

    def round_first_interval(self, plan: Plan) -> np.ndarray:
        """Integer instances (P, 1) for interval 0 of ``plan``, a plan of the inputs last
        solved, rounded as round-and-fix rounds them (GPUs available, instances running,
        prices, quality budget)."""
        ctx = self.ctx
        gpus, n_prev, demand, price = rounding_inputs(ctx)
        return round_instances(ctx, plan.instances[:, :1], plan.tokens_per_s[:, :1], n_prev,
                               gpus[:, :1], demand[:, :1], price_usd_per_mwh=price[:, :1])

    def map_plan(self, plan: Plan) -> np.ndarray:
        """Instances of another site's plan on this problem's pools (P, H) (absent: 0)."""
        out = np.zeros((len(self.pools), self.horizon_steps))
        index = {p: i for i, p in enumerate(plan.pools)}
        for k, pool in enumerate(self.pools):
            if pool in index:
                out[k] = plan.instances[index[pool]]
        return out

    @staticmethod
    def _lost_tokens(cur: _Run, relaxed: _Run) -> bool:
        """Whether a rounded run failed or serves fewer tokens than the relaxation did
        (beyond 10⁻⁶ of the relaxation's unserved tokens + 1 token)."""
        if cur.cols is None:
            return True
        base = relaxed.unserved_tokens
        return cur.unserved_tokens > base + 1e-6 * base + 1.0

    # ------------------------------------------------------------------------- one run

    def _set_integrality(self, model: CompiledModel, integer: np.ndarray | None,
                         binary_cols: int, full: bool) -> tuple[bool, np.ndarray]:
        """Make ``integer`` instance columns and the binaries of the first ``binary_cols``
        columns integer (unchanged settings are left alone). Returns whether the run
        is a MIP and the binary columns it leaves continuous for :meth:`_run` to
        enumerate instead: all of them when they are the only integers and at most
        :data:`_ENUMERATE_MAX_BINARIES` (not in the full MILP)."""
        n_int = np.zeros(0, dtype=np.int64) if integer is None else np.asarray(integer)
        where = model.integer_where
        binaries = (model.binary_columns(binary_cols, where) if model.ctx.exact
                    else n_int[:0])
        model.repair_where = None
        if model.ctx.exact and where is not None:
            model.repair_where = ~where
            model.repair_where[:, binary_cols:] = False
        enumerate_ = (not n_int.size and not full
                      and 0 < binaries.size <= _ENUMERATE_MAX_BINARIES)
        if enumerate_:
            enumerated, binaries = binaries, binaries[:0]
        else:
            enumerated = binaries[:0]
        key = (n_int.size, int(n_int[0]) if n_int.size else -1, binaries.tobytes(), full)
        if model.integrality != key:
            self._save_basis(model)
            fast, o = model.fast, self.options
            fast.clear_solver()
            model.basis_held = False
            fast.set_integrality(np.concatenate([n_int, binaries]).astype(np.int64))
            if full:
                fast.set_options(time_limit_s=o.full_time_limit_s, mip_rel_gap=o.full_mip_rel_gap,
                                 mip_max_nodes=_node_limit(o.full_mip_max_nodes))
            else:
                fast.set_options(time_limit_s=o.time_limit_s, mip_rel_gap=o.mip_rel_gap,
                                 mip_max_nodes=_node_limit(o.mip_max_nodes))
            model.integrality = key
        return bool(n_int.size or binaries.size), enumerated

    def _run(self, model: CompiledModel, fix_instances: np.ndarray | None, start: Plan | None,
             integer: np.ndarray | None, binary_cols: int, *, full: bool = False) -> _Run:
        ctx, fast = model.ctx, model.fast
        is_mip, enumerated = self._set_integrality(model, integer, binary_cols, full)
        # A relaxation without fixed columns starts from the last relaxation's basis
        # (shifted on a new step) and leaves its own for the next step; a fixed re-solve
        # starts from the basis HiGHS holds (the relaxation just solved).
        relaxation = not is_mip and fix_instances is None
        series = None
        if relaxation:
            series = self._series(ctx) if self.options.warm_start == "auto" else _NO_SERIES
        if series is not None:
            self._warm_start_lp(model, series)
        else:
            self._save_basis(model)
        model.basis_held = False
        cols = np.array([], dtype=np.int64)
        if fix_instances is not None:
            fixed = np.asarray(fix_instances, dtype=float)
            cols = model.n_cols[: fixed.size]
            flat = fixed.ravel(order="F")
            fast.set_col_bounds(cols, flat, flat)
        if start is not None and is_mip and ctx.n_pools:
            n = self._to_columns(start.instances)
            fast.set_start(n.ravel(order="F"), model.n_cols[: n.size])
        kept = False
        try:
            sol = fast.solve()
            if (relaxation and self.last_warm_start != "cold"
                    and sol.model_status not in _NO_COLD_RETRY):
                # HiGHS can reject a warm basis outright (kSolveError, seen for shifted
                # bases at 288 steps) or stop on it ("excessive dual values", kNotset);
                # a warm start must never cost the solve, so retry cold. The cold
                # solve is the answer, so this is counted (KPI warm_start_failures),
                # not a warning.
                logger.info("LP with a %s warm start: HiGHS %s; re-solving cold",
                            self.last_warm_start, sol.model_status)
                self.warm_start_failures += 1
                fast.clear_solver()
                self.last_warm_start = "cold"
                sol = fast.solve()
            probe, model.starts.probe_iterations = model.starts.probe_iterations, None
            if (probe is not None and sol.model_status == "kOptimal"
                    and self.last_warm_start == model.starts.favourite()):
                model.starts.score(self.last_warm_start, sol.simplex_iterations, probe)
            if enumerated.size and sol.model_status == "kOptimal" and sol.x is not None:
                if series is not None:
                    # the relaxation's basis is the next step's start, not the last
                    # pattern's: read it before the enumeration replaces it
                    model.basis, model.basis_held = fast.current_basis(sol.x), False
                    model.series, model.last_x, kept = series, sol.x, True
                sol = self._enumerate(fast, sol, enumerated)
        finally:
            if fix_instances is not None:
                fast.restore_col_bounds(cols)
        if series is not None and sol.model_status == "kOptimal" and not kept:
            # read lazily: only when another run is about to replace it, or to shift it
            model.basis, model.basis_held, model.series = None, True, series
            model.last_x = sol.x
        return self._post_process(model, sol, is_mip or bool(enumerated.size))

    @staticmethod
    def _enumerate(fast: HighsFastPath, lp: FastSolution, binaries: np.ndarray
                   ) -> FastSolution:
        """The MIP over ``binaries`` (the only integers) from its LP relaxation ``lp``:
        ``lp`` itself when they are integral there, else the best of every 0/1
        pattern of them, each a warm LP with the binaries fixed (nearest to ``lp``
        first; stops at one that reaches ``lp``'s objective, the MIP's lower bound).
        Exact: the MIP optimum is the least over the patterns of the LP so fixed, so
        the result has no gap; its dual bound is its objective. A pattern HiGHS
        leaves neither optimal nor infeasible hands the run to HiGHS's MIP."""
        assert lp.x is not None
        x = lp.x[binaries]
        if np.all(np.abs(x - np.round(x)) <= _INTEGRAL_TOL):
            return replace(lp, mip_gap=0.0, dual_bound=lp.objective)
        patterns = np.array(list(itertools.product((0.0, 1.0), repeat=binaries.size)))
        patterns = patterns[np.argsort(np.abs(patterns - x).sum(axis=1), kind="stable")]
        reach = lp.objective + 1e-9 * (1.0 + abs(lp.objective))
        best: FastSolution | None = None
        seconds = lp.highs_time_s
        try:
            for pattern in patterns:
                fast.set_col_bounds(binaries, pattern, pattern)
                sol = fast.solve()
                seconds += sol.highs_time_s
                if sol.model_status == "kInfeasible":
                    continue
                if sol.model_status != "kOptimal" or sol.x is None:
                    logger.warning("binary pattern %s: HiGHS %s; solving the MIP instead",
                                   pattern, sol.model_status)
                    best = None
                    break
                if best is None or sol.objective < best.objective:
                    best = sol
                if best.objective <= reach:
                    break
            else:
                if best is None:
                    return FastSolution("kInfeasible", None, float("nan"), seconds,
                                        float("nan"))
        finally:
            fast.restore_col_bounds(binaries)
        if best is None:
            fast.set_integrality(binaries)
            try:
                mip = fast.solve()
            finally:
                fast.set_integrality(binaries[:0])
                fast.clear_solver()
            return replace(mip, highs_time_s=seconds + mip.highs_time_s)
        return FastSolution("kOptimal", best.x, best.objective, seconds, 0.0, best.objective)

    def _post_process(self, model: CompiledModel, sol: FastSolution, is_mip: bool) -> _Run:
        ctx = model.ctx
        status = SolveStatus.from_highs(sol.model_status, sol.x is not None)
        # The objective omits the DR settlement of the baseline and the demand charge
        # already billed, so every objective value and bound HiGHS reports is shifted.
        offset = objective_offset_usd(ctx)
        bound = sol.dual_bound - offset if is_mip else float("nan")
        if not status.has_plan or sol.x is None:
            message = f"HiGHS status {sol.model_status}"
            if status is SolveStatus.INFEASIBLE:
                message = ("HiGHS reports the problem infeasible; constraint groups: "
                           + ", ".join(ctx.constraints))
            logger.warning("solve failed: %s", message)
            return _Run(status, None, None, sol.highs_time_s, sol.mip_gap, message,
                        mip_bound_usd=bound)
        values = {n: model.fast.value(sol.x, n) for n in ctx.variables}
        cols = solution_columns(ctx, values)
        repaired, message = False, ""
        if (ctx.other_it.size or ctx.export.size) and (not ctx.exact
                                                       or model.repair_where is not None):
            cols, repaired, residual = repair_relaxed(ctx, cols, model.repair_where)
            if residual > 1e-6:
                message = f"repair failed: {residual:.3g} MW of excess power could not be shed"
        gap = sol.mip_gap
        # priced when first read (_Run): the Parameters hold this step's values until then
        costing: Callable[[], CostBreakdown] = partial(plan_cost, ctx, cols)
        if is_mip and np.isfinite(bound):
            cost = costing()
            costing = partial(_same, cost)
            gap = max(cost.total_usd - bound, 0.0) / max(abs(cost.total_usd), 1e-9)
        if status is SolveStatus.FEASIBLE and not message:
            message = f"HiGHS stopped at {sol.model_status} with a relative MIP gap of {gap:.3g}"
        lp_bound = (sol.objective - offset) if not is_mip else bound
        return _Run(status, cols, costing, sol.highs_time_s, gap, message, repaired,
                    lp_bound_usd=lp_bound, mip_bound_usd=bound)

    # ------------------------------------------------------------------------- warm start

    def reset_warm_start(self) -> None:
        """Forget the last basis: the next solve starts cold (presolve, dual simplex)."""
        for model in self._models.values():
            model.basis, model.basis_held, model.series = None, False, None
            model.fast.clear_solver()

    def _save_basis(self, model: CompiledModel) -> None:
        """Read the last relaxation's basis before another run replaces it."""
        if model.basis_held:
            model.basis = model.fast.current_basis(model.last_x)
            model.basis_held = False

    @staticmethod
    def _series(ctx: ModelContext) -> np.ndarray:
        """Time-series Parameters scaled to ~1, stacked (rows, H), for the shift test."""
        rows = []
        for param in ctx.series_parameters:
            v = np.asarray(param.value)
            rows.append(v / max(float(np.abs(v).max(initial=0.0)), 1e-9))
        return np.vstack(rows)

    def _warm_start_lp(self, model: CompiledModel, series: np.ndarray) -> None:
        """Give the next LP run the last relaxation's basis, shifted when the data moved.

        ``auto`` compares the new time ``series`` with the last ones unshifted and
        shifted by one interval (sum of squared differences over the columns that
        move).
        """
        mode = self.options.warm_start
        fast = model.fast
        have = model.basis_held or model.basis is not None
        if mode == "cold" or not have or model.series is None:
            fast.clear_solver()
            model.basis, model.basis_held = None, False
            self.last_warm_start = "cold"
            return
        if mode == "auto" and self.n_columns > 1:
            old, moved = model.series, self._moved
            now = series[:, moved]
            same = float(np.square(now - old[:, moved]).sum())
            shifted = float(np.square(now - old[:, self._moved_src]).sum())
            mode = "same"  # the same inputs again (a re-solve): the basis as it is
            if shifted < same:
                # a receding step: the start measured to need fewer iterations here
                mode = model.starts.favourite()
                if model.starts.probe_due():
                    model.starts.probe_iterations = self._probe_start(
                        model, "same" if mode == "shift" else "shift")
        elif mode == "auto":
            mode = "same"
        if mode == "same" and model.basis_held:
            self.last_warm_start = "same"  # HiGHS still holds that basis
            return
        if not self._give_basis(model, mode):
            fast.clear_solver()
            mode = "cold"
        self.last_warm_start = mode

    def _give_basis(self, model: CompiledModel, start: str) -> bool:
        """Hand HiGHS the last relaxation's basis, moved forward one interval
        (``start="shift"``, the maps built on first use) or not; False when there is
        none or HiGHS refuses it."""
        self._save_basis(model)
        basis = model.basis
        if basis is None:
            return False
        if start == "shift":
            if model.shift_maps is None:
                model.shift_maps = model.fast.shift_maps(self.n_columns,
                                                         time_src=self._time_source)
            basis = model.fast.shift_basis(basis, model.shift_maps)
        return model.fast.set_basis(*basis)

    def _probe_start(self, model: CompiledModel, start: str) -> int | None:
        """Simplex iterations [-] of the LP relaxation from the last relaxation's basis,
        shifted (``start="shift"``) or not, solved only to be counted
        (:class:`StartRecord`); None when HiGHS refuses the basis or does not end
        optimal. The last basis stays stored for the step's own run."""
        if not self._give_basis(model, start):
            return None
        # A probe stopped at the wall-clock limit is counted like any stop (time_limit_hits):
        # its plan is not used, but an unscored probe can change later starts, so the run's
        # outcome would depend on the load.
        sol = model.fast.solve()
        return sol.simplex_iterations if sol.model_status == "kOptimal" else None


# ----------------------------------------------------------------------------- day plan


def solve_day(problem: Problem, inputs: HorizonInputs, state: PlantState | None = None,
              candidates: Sequence[Plan] = ()) -> SolveResult:
    """Offline (perfect-foresight) plan with integer instances in every interval.

    Round-and-fix over the whole horizon (its gap to the LP bound is certified in
    ``mip_gap``); each candidate plan from a site with fewer levers (feasible here:
    :meth:`Flexibility.covers`) is re-costed with its instances fixed, and the
    cheapest plan is returned: from the same ``state`` and ``inputs`` more levers
    never cost more. ``lp_bound_usd`` and ``mip_gap`` are always those of this
    problem's relaxation, also when a candidate is returned (its own LP run with fixed
    instances is no bound).
    """
    own = problem.solve(inputs, state, Form.COMMITTED_INTEGER,
                        integer_intervals=problem.horizon_steps)
    best = own
    for cand in candidates:
        alt = problem.solve(inputs, state, Form.LP, fix_instances=problem.map_plan(cand))
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


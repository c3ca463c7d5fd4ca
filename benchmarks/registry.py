"""Registry of benchmark specs: every phase the suite times, with its sizes and builder.

In the style of linopy's ``benchmarks/registry.py``: a declarative spec per
benchmark, a ``register`` function that validates it, and helpers to turn the
registry into pytest parameters. ``bench_phases.py`` drives the phase specs;
the scaling curves (``mpc-dc bench scaling``) are the specs of
:data:`mpc_dc.benchmarking.CURVES`.

A spec's ``prepare(size)`` returns a :class:`Case`: ``reset()`` runs untimed
before each round (fresh state for build / first-solve phases), ``run()`` is the
timed call and returns HiGHS's own time [s] for a solve (``None`` otherwise);
``units`` is how many items one ``run()`` processes (events, intervals, steps)
so the benchmark can report a rate.

::

    from benchmarks.registry import REGISTRY
    case = REGISTRY["rcdc_resolve"].prepare(96)
    case.reset(); highs_s = case.run()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.benchmarking import rcdc_cases, rcdc_site
from mpc_dc.problem import Problem

__all__ = ["PHASES", "REGISTRY", "Case", "PhaseSpec", "iter_params", "register"]

# --- phase tags ----------------------------------------------------------------

BUILD = "build"
FIRST_SOLVE = "first_solve"
RESOLVE = "update_resolve"
EXTRACT = "extract"
FORECAST = "forecast"
SIM_EVENTS = "sim_events"
SETTLEMENT = "settlement"
PHASES = (BUILD, FIRST_SOLVE, RESOLVE, EXTRACT, FORECAST, SIM_EVENTS, SETTLEMENT)


@dataclass
class Case:
    """A prepared benchmark instance.

    Attributes
    ----------
    run : callable
        The timed call; returns HiGHS's own time [s] of a solve, else None.
    reset : callable
        Untimed, before each round.
    units : float
        Items one ``run()`` processes (for a rate [items/s]).
    unit : str
        What an item is.
    info : dict
        Extra figures for ``benchmark.extra_info``.
    """

    run: Callable[[], float | None]
    reset: Callable[[], None] = lambda: None
    units: float = 1.0
    unit: str = "call"
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseSpec:
    """Declarative description of one phase benchmark.

    Attributes
    ----------
    name : str
    phase : str
        One of :data:`PHASES`.
    axis : str
        What ``size`` counts.
    sizes : tuple of int
        Sizes under ``--benchmark-only``.
    smoke_sizes : tuple of int
        Sizes under ``--benchmark-disable`` (CI smoke; small).
    prepare : callable
        ``prepare(size) -> Case``.
    rounds, smoke_rounds : int
        pytest-benchmark rounds in either mode.
    description : str
    """

    name: str
    phase: str
    axis: str
    sizes: tuple[int, ...]
    smoke_sizes: tuple[int, ...]
    prepare: Callable[[int], Case]
    rounds: int = 20
    smoke_rounds: int = 1
    description: str = ""

    def sizes_for(self, smoke: bool) -> tuple[int, ...]:
        """The sizes of a mode."""
        return self.smoke_sizes if smoke else self.sizes

    def rounds_for(self, smoke: bool) -> int:
        """The rounds of a mode."""
        return self.smoke_rounds if smoke else self.rounds


REGISTRY: dict[str, PhaseSpec] = {}


def register(spec: PhaseSpec) -> PhaseSpec:
    """Add ``spec`` to :data:`REGISTRY` (unique name, known phase)."""
    if spec.name in REGISTRY:
        raise ValueError(f"benchmark {spec.name!r} already registered")
    if spec.phase not in PHASES:
        raise ValueError(f"benchmark {spec.name!r}: unknown phase {spec.phase!r}")
    REGISTRY[spec.name] = spec
    return spec


def iter_params(smoke: bool, phase: str | None = None) -> list[tuple[PhaseSpec, int]]:
    """Flatten ``(spec, size)`` pairs of a mode (optionally one phase) for parametrize."""
    return [(s, n) for s in REGISTRY.values() if phase in (None, s.phase)
            for n in s.sizes_for(smoke)]


def param_id(spec: PhaseSpec, size: int) -> str:
    """Test id, e.g. ``rcdc_resolve-horizon_steps=96``."""
    return f"{spec.name}-{spec.axis}={size}"


# --- RCDC phases of the one problem --------------------------------------------------


def _rcdc_problem(size: int) -> Problem:
    return Problem(rcdc_site(), size, demand_response=False)


def _rcdc_build(size: int) -> Case:
    return Case(run=lambda: (_rcdc_problem(size), None)[1], unit="build")


def _rcdc_first_solve(size: int) -> Case:
    cases = rcdc_cases(size, 1)
    holder: dict[str, Problem] = {}

    def reset() -> None:
        holder["p"] = _rcdc_problem(size)

    return Case(run=lambda: holder["p"].solve(*cases[0]).highs_time_s, reset=reset,
                unit="solve")


def _rcdc_resolve(size: int) -> Case:
    cases = rcdc_cases(size, 20)
    problem = _rcdc_problem(size)
    problem.solve(*cases[0])
    counter = iter(range(10**9))
    return Case(run=lambda: problem.solve(*cases[next(counter) % len(cases)]).highs_time_s,
                unit="solve", info={"cases": "20 random inputs, rotating"})


def _rcdc_extract(size: int) -> Case:
    # solution_columns is the post-processing's first stage (variable values -> physical
    # per-column arrays); the benchmark times the stages a solve runs after HiGHS.
    from mpc_dc.problem import (
        expand_plan,
        plan_cost,
        repair_relaxed,
        set_parameters,
        solution_columns,
    )

    inputs, state = rcdc_cases(size, 1)[0]
    model = _rcdc_problem(size).model(False)
    set_parameters(model.ctx, inputs, state)
    sol = model.fast.solve()
    assert sol.x is not None
    x = sol.x

    def run() -> float | None:
        values = {n: model.fast.value(x, n) for n in model.ctx.variables}
        cols, _, _ = repair_relaxed(model.ctx, solution_columns(model.ctx, values))
        plan_cost(model.ctx, cols)
        expand_plan(model.ctx, cols, inputs)
        return None

    return Case(run=run, unit="extraction",
                info={"what": "column values -> repair -> CostBreakdown -> Plan"})


# --- forecaster, simulator, settlement ---------------------------------------------


def _sarimax_step(size: int) -> Case:
    """One MPC step of one channel: update with the newest observation + predict ``size``."""
    from forecasters.presets import make_for
    from traces.grid import grid_index

    days = 16
    rng = np.random.default_rng(0)
    hours = np.arange(days * 24)
    hourly = 50 + 20 * np.sin(2 * np.pi * hours / 24) + 5 * rng.standard_normal(hours.size)
    y = pd.Series(np.repeat(hourly, 4), index=grid_index("2022-04-01", days * 96))
    fit_end = len(y) - 96
    steps = 16
    holder: dict[str, Any] = {}

    def reset() -> None:
        holder["fc"] = make_for("sarimax", "price").fit(y.iloc[:fit_end])

    def run() -> float | None:
        fc = holder["fc"]
        for pos in range(fit_end, fit_end + steps):
            fc.update(y.iloc[pos : pos + 1])
            fc.predict(y.index[pos + 1], size)
        return None

    return Case(run=run, reset=reset, units=steps, unit="step",
                info={"forecaster": "sarimax (price preset)", "horizon_steps": size})


def _simulator(size: int) -> Case:
    """Closed loop of the RCDC site with the baseline rule over ``size`` days of
    synthetic data."""
    from mpc_dc.control.baseline import BaselinePolicy
    from mpc_dc.runner import prepare
    from mpc_dc.sim.engine import simulate
    from mpc_dc.site.scenario import example_path, load_scenario, with_overrides

    scenario = with_overrides(load_scenario(example_path("rcdc_default")),
                              {"run.days": float(size), "run.history_days": 1}, "<bench>")
    _, exo = prepare(scenario)
    # Per interval: 4 store get/put pairs, 1 timeout, 4 process resumptions.
    events_per_interval = 9
    return Case(run=lambda: (simulate(exo, BaselinePolicy(exo)), None)[1],
                units=exo.n_steps * events_per_interval, unit="event",
                info={"intervals": exo.n_steps, "events_per_interval": events_per_interval})


def _settlement(size: int) -> Case:
    """``size`` intervals settled by a campus meter (retail, so billing periods are
    tracked)."""
    from mpc_dc.sim.exogenous import CampusRealized
    from mpc_dc.sim.meter import CampusMeter, Penalties, billing_periods
    from mpc_dc.site.config import Campus, DemandResponse, Grid, Tariff

    times = pd.date_range("2022-04-01", periods=size, freq="15min", tz="UTC")
    rng = np.random.default_rng(0)
    imports = rng.uniform(0, 120, size)
    prices = rng.uniform(5, 90, size)
    campus = Campus("dc", "F", grid=Grid(tariff=Tariff(kind="retail",
                                                       demand_charge_usd_per_kw=12.39)))
    realized = [CampusRealized(float(p), float(p), float(p), 250.0, 0.0, 0.0, False, 0.0, 0.0)
                for p in prices]

    def run() -> float | None:
        meter = CampusMeter(campus, 0.0, DemandResponse(), Penalties())
        periods = billing_periods(times, "America/New_York")
        for k in range(size):
            meter.settle(int(periods[k]), import_mw=float(imports[k]), export_mw=0.0,
                         realized=realized[k], unserved_wu=0.0, missed_wu=0.0,
                         period_ends=k == size - 1)
        return None

    return Case(run=run, units=size, unit="interval")


for _spec in (
    PhaseSpec("rcdc_build", BUILD, "horizon_steps", (96,), (24,), _rcdc_build, rounds=10,
              description="cvxpy build + DPP compile + resident HiGHS model"),
    PhaseSpec("rcdc_first_solve", FIRST_SOLVE, "horizon_steps", (96,), (24,),
              _rcdc_first_solve, rounds=10, description="first (cold) fast-path solve"),
    PhaseSpec("rcdc_resolve", RESOLVE, "horizon_steps", (96, 288), (24,), _rcdc_resolve,
              rounds=60, smoke_rounds=3,
              description="parameter update + warm HiGHS re-solve + extraction (hot path)"),
    PhaseSpec("rcdc_extract", EXTRACT, "horizon_steps", (96,), (24,), _rcdc_extract,
              rounds=200, smoke_rounds=3, description="HiGHS columns -> repaired Plan + cost"),
    PhaseSpec("sarimax_step", FORECAST, "horizon_steps", (96,), (24,), _sarimax_step,
              rounds=5, description="SARIMAX update (1 obs) + predict, 16 steps per round"),
    PhaseSpec("simulator_events", SIM_EVENTS, "days", (7,), (1,), _simulator, rounds=5,
              description="simpy closed loop, baseline policy (no solver)"),
    PhaseSpec("settlement", SETTLEMENT, "intervals", (2880,), (96,), _settlement, rounds=10,
              smoke_rounds=2, description="Meter.settle per interval"),
):
    register(_spec)


def timed_run(case: Case) -> tuple[float, float | None]:
    """Wall time [s] of one ``case.run()`` and its HiGHS time."""
    t0 = time.perf_counter()
    highs = case.run()
    return time.perf_counter() - t0, highs

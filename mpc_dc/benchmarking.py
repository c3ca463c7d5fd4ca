"""Measurement kernels of the benchmark suite and the scaling curves (``mpc-dc bench scaling``).

The pytest-benchmark files under ``benchmarks/`` and the ``bench`` command share
the case builders and timers defined here, so a figure in ``docs/performance.md``
and a point on a scaling curve are measured by the same code.

Case builders (synthetic, seeded, no data folder needed):

* :func:`rcdc_cases` — 96-step-style RCDC LP inputs for any horizon;
* :func:`synthetic_fleet_site` / :func:`fleet_cases` — fleet sites with 1..N
  campuses and 1..N pools per campus (families beyond the three of the
  quantization table are renamed copies of its rows, see :data:`SYNTHETIC_FAMILY_NOTE`);
* :func:`serving_case` — request-level closed-loop runs (:mod:`mpc_dc.sim.engine`)
  with a given request count.

Timers return wall time and, for solves, HiGHS's own reported run time of the
same calls, so our overhead is a ratio measured in one run.

:data:`CURVES` lists the scaling families; :func:`run_scaling` measures them and
:func:`write_scaling` writes ``curves.csv``, ``exponents.json`` and one log-log
PNG per family atomically.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.params.quant_table import QuantTable, load_quant_table
from mpc_dc.problem import HorizonInputs, PlantState, Problem, SolverOptions
from mpc_dc.site.config import (
    CA_2026_AUCTION_RESERVE_USD_PER_T,
    Campus,
    Fleet,
    Grid,
    OtherIT,
    Renewable,
    Site,
    Tariff,
)

logger = logging.getLogger(__name__)

START = pd.Timestamp("2022-04-01", tz="UTC")
"""Start of every synthetic case (UTC)."""

SYNTHETIC_FAMILY_NOTE = (
    "pool counts per campus: 1 = qwen3-8b BF16; 9 = the table's 3 families x "
    "(BF16, FP8, INT4); 24 = 8 families x (BF16, FP8, INT4), where families 4-8 are "
    "renamed copies of the table's rows (same figures, so the problem grows, not its "
    "numbers)"
)
"""How the synthetic model families of the scaling curves are made."""


# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class SolveTimes:
    """Wall and HiGHS times of repeated solves [s].

    Attributes
    ----------
    wall_s : ndarray [s]
        Wall time of each call (parameter update, HiGHS, result extraction).
    highs_s : ndarray [s]
        HiGHS's own reported run time of the same calls.
    """

    wall_s: np.ndarray
    highs_s: np.ndarray

    @property
    def wall_median_s(self) -> float:
        """Median wall time [s]."""
        return float(np.median(self.wall_s))

    @property
    def highs_median_s(self) -> float:
        """Median HiGHS time [s]."""
        return float(np.median(self.highs_s))

    @property
    def ratio_of_medians(self) -> float:
        """Median wall time / median HiGHS time [-] (the target's definition)."""
        return self.wall_median_s / self.highs_median_s

    @property
    def median_ratio(self) -> float:
        """Median over calls of wall / HiGHS [-] (robust to load on a shared machine)."""
        return float(np.median(self.wall_s / self.highs_s))

    @property
    def overhead_median_s(self) -> float:
        """Median over calls of wall − HiGHS [s]: the time spent outside HiGHS."""
        return float(np.median(self.wall_s - self.highs_s))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time [s] of one call and its return value."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------- RCDC


def rcdc_site(market: str = "wholesale") -> Site:
    """The 100 MW data center of the RCDC cases: one campus "dc", no GPUs, 100 MW of
    other IT (PUE 1, default processing function), 150 MW of renewable, a 200 MW
    import and export limit; ``retail`` adds a 12.39 $/kW demand charge."""
    tariff = (Tariff(kind="retail", demand_charge_usd_per_kw=12.39) if market == "retail"
              else Tariff())
    return Site((Campus("dc", "F", pue=1.0, other_it=OtherIT(it_capacity_mw=100.0),
                        renewable=Renewable(150.0),
                        grid=Grid(import_limit_mw=200.0, export_limit_mw=200.0,
                                  tariff=tariff)),))


def _rcdc_case(lmp: np.ndarray, cf: np.ndarray, work_wu: np.ndarray
               ) -> tuple[HorizonInputs, PlantState]:
    """Wholesale inputs of the one-campus site (import and export at ``lmp``), 40 % of
    ``work_wu`` deferrable, released per interval and due by the horizon end."""
    deferrable = 0.4 * work_wu
    available = np.cumsum(deferrable)
    due = np.zeros(work_wu.size)
    due[-1] = available[-1]
    inputs = HorizonInputs(np.zeros((0, work_wu.size)), lmp, lmp, np.zeros_like(lmp), cf,
                           work_wu - deferrable)
    return inputs, PlantState(df_due_cum_wu=due, df_available_cum_wu=available)


def rcdc_cases(horizon_steps: int, n: int = 20, seed: int = 0
               ) -> list[tuple[HorizonInputs, PlantState]]:
    """Random feasible RCDC LP inputs of :func:`rcdc_site` (non-negative prices, so the
    LP is exact).

    Prices 5-90 $/MWh, capacity factor 0-1, work 60-78 MW-equivalent per interval
    [WU] of which 40 % is deferrable and due by the horizon end.
    """
    rng = np.random.default_rng(seed)
    H = horizon_steps
    out = []
    for _ in range(n):
        lmp = rng.uniform(5.0, 90.0, H)
        cf = rng.uniform(0.0, 1.0, H)
        out.append(_rcdc_case(lmp, cf, 0.25 * rng.uniform(60.0, 78.0, H)))
    return out


def rcdc_receding_cases(horizon_steps: int, n: int = 20, seed: int = 0
                        ) -> list[tuple[HorizonInputs, PlantState]]:
    """RCDC LP inputs of ``n`` consecutive MPC steps: windows of one series shifted by 1.

    Price 50 ± 30 $/MWh daily cycle plus noise, wind capacity factor a smoothed
    random walk in [0, 1], work 60-78 MW-equivalent [WU] with 40 % deferrable,
    released per interval and due by the horizon end. Unlike :func:`rcdc_cases`,
    consecutive cases overlap as in the closed loop, so the warm basis helps.
    """
    rng = np.random.default_rng(seed)
    H = horizon_steps
    t = np.arange(H + n)
    lmp = np.maximum(50 + 30 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 5, t.size), 1.0)
    cf = np.clip(0.5 + np.cumsum(rng.normal(0, 0.03, t.size)), 0.0, 1.0)
    work = 0.25 * (69 + 9 * np.sin(2 * np.pi * (t - 30) / 96))
    return [_rcdc_case(lmp[k:k + H], cf[k:k + H], work[k:k + H]) for k in range(n)]


def time_rcdc_resolve(problem: Problem, cases: Sequence[tuple[HorizonInputs, PlantState]],
                      calls: int, warmup: int = 3) -> SolveTimes:
    """Re-solve ``problem`` on rotating ``cases`` (the resident HiGHS model).

    Parameters
    ----------
    problem : Problem
        Built (and solved once) beforehand.
    cases : sequence of (HorizonInputs, PlantState)
    calls : int
        Timed calls.
    warmup : int
        Untimed calls first.
    """
    for k in range(warmup):
        problem.solve(*cases[k % len(cases)])
    wall = np.empty(calls)
    highs = np.empty(calls)
    for k in range(calls):
        t, result = timed(lambda k=k: problem.solve(*cases[k % len(cases)]))  # type: ignore[misc]
        wall[k], highs[k] = t, result.highs_time_s
        if not result.status.has_plan:
            logger.warning("RCDC re-solve failed at H=%d (%s); not timed",
                           problem.horizon_steps, result.status)
            wall[k] = highs[k] = np.nan
    return SolveTimes(wall, highs)


# ----------------------------------------------------------------------------- fleet


_BASE_PRECISIONS = ("BF16", "FP8", "INT4")
_BASE_MODELS = ("qwen3-8b", "qwen3-32b", "qwen3-235b-a22b")


def synthetic_fleet_site(campuses: int = 3, pools_per_campus: int | None = None) -> Site:
    """A fleet site of ``campuses`` campuses with ``pools_per_campus`` pools each.

    Campuses have no other IT, renewable or export and an unlimited import (PUE 1.2,
    carbon zone US-CAL-CISO, carbon at California's 2026 auction reserve price).

    Parameters
    ----------
    campuses : int
        Campus ``i`` has 4096, 4096 or 2048 GPUs (cycling) and its own price node.
    pools_per_campus : int, optional
        ``None``: the three base models and every precision of the table (10 pools).
        1: qwen3-8b BF16. A multiple of 3: ``pools / 3`` families × (BF16, FP8,
        INT4); see :data:`SYNTHETIC_FAMILY_NOTE`.
    """
    sizes = (4096, 4096, 2048)
    grid = Grid(import_limit_mw=float("inf"))
    camps = tuple(Campus(f"C{i}", f"N{i}", carbon_zone="US-CAL-CISO", gpus=sizes[i % 3],
                         grid=grid) for i in range(campuses))
    table = load_quant_table()
    if pools_per_campus is None:
        fleet = Fleet(models=_BASE_MODELS, table=table)
    elif pools_per_campus == 1:
        fleet = Fleet(models=("qwen3-8b",), flexibility="S4", table=table)
    elif pools_per_campus % 3:
        raise ValueError(f"pools_per_campus: expected 1 or a multiple of 3, got "
                         f"{pools_per_campus}")
    else:
        base = table.models
        rows = []
        models = []
        for k in range(pools_per_campus // 3):
            source = base[k % len(base)]
            name = source if k < len(base) else f"{source}-copy{k // len(base)}"
            models.append(name)
            rows += [replace(table.get(source, q), model=name) for q in _BASE_PRECISIONS]
        synthetic = QuantTable(rows=tuple(rows), source=f"{table.source} (synthetic families)")
        fleet = Fleet(models=tuple(models), table=synthetic)
    return Site(camps, fleet, carbon_price_usd_per_t=CA_2026_AUCTION_RESERVE_USD_PER_T)


def fleet_cases(site: Site, horizon_steps: int, n: int = 8, seed: int = 0
                ) -> list[HorizonInputs]:
    """Receding-horizon fleet inputs: ``n`` windows of a daily demand and price cycle.

    Demand [tokens/s] is 4·10⁶ × (GPUs installed / 10 240) split over the models
    like the default fleet (0.5, 0.3, 0.2 by base family), prices 50 ± 20 $/MWh
    with a phase per campus (import and export at that price), carbon 200 ± 60
    gCO2/kWh.
    """
    rng = np.random.default_rng(seed)
    H = horizon_steps
    C = len(site.campuses)
    t = np.arange(H + n)
    scale = sum(c.gpus for c in site.campuses) / 10240.0
    base_share = {"qwen3-8b": 0.5, "qwen3-32b": 0.3, "qwen3-235b-a22b": 0.2}
    shares = np.array([base_share.get(m.split("-copy")[0], 0.3) for m in site.models])
    shares = shares / shares.sum()
    shape = (1 + 0.5 * np.sin(2 * np.pi * t / 96)) * rng.uniform(0.9, 1.1, t.size)
    demand = 4e6 * scale * shares[:, None] * shape[None, :]
    price = (50 + 20 * np.sin(2 * np.pi * (t[None, :] + 8 * np.arange(C)[:, None]) / 96)
             + rng.normal(0, 5, (C, t.size)))
    carbon = np.repeat((200 + 60 * np.sin(2 * np.pi * t / 96))[None, :], C, axis=0)
    none = np.zeros((C, H))
    return [HorizonInputs(demand[:, k:k + H], price[:, k:k + H], price[:, k:k + H],
                          carbon[:, k:k + H], none, none) for k in range(n)]


def time_fleet_resolve(problem: Problem, cases: Sequence[HorizonInputs], form: str,
                       calls: int, warmup: int = 1) -> SolveTimes:
    """Re-solve a fleet site's ``problem`` in ``form`` ("lp" or "committed_integer") as
    the closed loop does: on consecutive receding-horizon windows, each starting from
    the instances the previous window committed (``plan.decision(0)``).

    The first ``warmup`` windows are solved (the first from nothing running) but not
    timed; ``cases`` must hold at least ``warmup + calls`` consecutive windows
    (:func:`fleet_cases`). A window whose solve fails is not timed (NaN) and the
    next one starts from nothing running.
    """
    if len(cases) < warmup + calls:
        raise ValueError(f"time_fleet_resolve: {warmup + calls} windows needed, "
                         f"got {len(cases)}")
    state = PlantState()
    wall = np.full(calls, np.nan)
    highs = np.full(calls, np.nan)
    for k in range(warmup + calls):
        t, result = timed(lambda k=k, state=state: problem.solve(cases[k], state, form))  # type: ignore[misc]
        if result.plan is None:
            # A failed solve has no solve time: timing it would bend the curve.
            logger.warning("fleet %s re-solve failed at H=%d (%s); not timed", form,
                           problem.horizon_steps, result.message)
            state = PlantState()
            continue
        state = PlantState(dict(result.plan.decision(0).fleet.instances))
        if k >= warmup:
            wall[k - warmup], highs[k - warmup] = t, result.highs_time_s
    return SolveTimes(wall, highs)


# ----------------------------------------------------------------------------- serving


class ConstantFleetPolicy:
    """Trivial fleet policy: fixed instances per pool, routing by campus GPU share.

    Instances per campus and model ``ceil(1.25 · d · share_c / (ρ̄ μ))`` at BF16 for
    a constant demand ``d`` [tokens/s]; every interval gets the same decision, so a
    run times the serving simulator, not a controller.
    """

    name = "constant"

    def __init__(self, site: Site, demand_tokens_per_s: float) -> None:
        from mpc_dc.sim.policy import Decision, FleetDecision, PoolKey

        fleet = site.fleet
        if fleet is None:
            raise ValueError("ConstantFleetPolicy: the site has no fleet to hold instances of; "
                             "expected a site with a [fleet]")
        shares = site.fixed_shares()
        inst: dict[PoolKey, int] = {}
        route: dict[PoolKey, float] = {}
        for m in fleet.models:
            cap = fleet.utilization_cap * fleet.capacity(m, "BF16")
            for c, s in shares.items():
                inst[(c, m, "BF16")] = max(1, math.ceil(1.25 * demand_tokens_per_s * s / cap))
                route[(c, m, "BF16")] = s
        self.decision = Decision(fleet=FleetDecision(inst, route), source="constant")

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Nothing to learn."""

    def decide(self, obs: Any) -> Any:
        """The fixed decision."""
        return self.decision


def serving_site() -> Site:
    """The fleet of the serving curves: three campuses (64, 64, 32 GPUs), the default
    models, flat synthetic prices."""
    from mpc_dc.site.config import Campus, Fleet

    return Site(campuses=(Campus("A", "NP15", gpus=64), Campus("B", "SP15", gpus=64),
                          Campus("C", "ZP26", gpus=32)), fleet=Fleet())


def serving_case(n_requests: int, days: float = 2.0, seed: int = 1) -> tuple[Any, ...]:
    """(exogenous, policy) of a request-level run of about ``n_requests``.

    Generator arrivals over ``days`` for :func:`serving_site`, the rate multiplier set
    so the run holds at least ``n_requests`` requests; prices 50 $/MWh, carbon 250
    gCO2/kWh.
    """
    from mpc_dc.sim.arrivals import ArrivalConfig, build_arrivals

    site = serving_site()
    steps = round(days * 96)
    native = build_arrivals(START, steps * 900.0, ArrivalConfig(seed=seed), models=site.models)
    multiplier = max(1e-3, 1.01 * n_requests / max(len(native), 1))
    requests = build_arrivals(START, steps * 900.0,
                              ArrivalConfig(rate_multiplier=multiplier, seed=seed),
                              models=site.models)
    return constant_exogenous(site, requests, steps), ConstantFleetPolicy(site, 1000.0)


def constant_exogenous(site: Site, requests: Any, steps: int, start: pd.Timestamp = START,
                       price_usd_per_mwh: float = 50.0, carbon_gco2_per_kwh: float = 250.0
                       ) -> Any:
    """A fleet site's run with flat prices [$/MWh] and carbon [gCO2/kWh] and the demand
    of ``requests`` (no history, no tail): a :class:`~mpc_dc.sim.exogenous.SiteExogenous`."""
    from mpc_dc.sim.exogenous import SiteExogenous, demand_columns

    index = pd.date_range(start, periods=steps, freq="15min", name="interval_start_utc")
    cols = {f"{q}[{c.name}]": v for c in site.campuses
            for q, v in (("price_usd_per_mwh", price_usd_per_mwh),
                         ("carbon_gco2_per_kwh", carbon_gco2_per_kwh))}
    frame = pd.DataFrame(cols, index=index).join(demand_columns(requests, index))
    return SiteExogenous(site, frame, start, steps, requests)


def time_serving(case: tuple[Any, ...]) -> tuple[float, int]:
    """Wall time [s] of one request-level closed-loop run of ``case`` and its request
    count."""
    from mpc_dc.sim.engine import simulate
    from mpc_dc.sim.serving import ServingConfig

    exo, policy = case
    assert exo.requests is not None
    wall, _ = timed(lambda: simulate(exo, policy, serving=ServingConfig(request_samples=10_000)))
    return wall, len(exo.requests)


# ----------------------------------------------------------------------------- curves


Row = dict[str, Any]


@dataclass(frozen=True)
class Curve:
    """One scaling family.

    Attributes
    ----------
    family : str
    axis : str
        What the size counts, e.g. ``horizon_steps``.
    sizes : tuple of int
    quick_sizes : tuple of int
        ``--quick`` subset.
    measure : callable
        ``measure(size, repeats, quick) -> rows``; each row has ``metric``,
        ``repeat`` and ``value`` (seconds unless the metric's name says otherwise).
    fit_metrics : tuple of str
        Metrics whose growth exponent is fitted and plotted.
    note : str
    """

    family: str
    axis: str
    sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    measure: Callable[[int, int, bool], list[Row]]
    fit_metrics: tuple[str, ...]
    note: str = ""


def _solve_rows(times: Iterable[tuple[str, SolveTimes]], repeat: int) -> list[Row]:
    rows: list[Row] = []
    for prefix, st in times:
        rows.append({"metric": f"{prefix}_wall_s", "repeat": repeat, "value": st.wall_median_s})
        rows.append({"metric": f"{prefix}_highs_s", "repeat": repeat, "value": st.highs_median_s})
    return rows


def _first_rows(build_s: float, first_s: float, first_highs_s: float) -> list[Row]:
    """The build time and the first solve's wall and HiGHS times [s] (repeat 0)."""
    return [{"metric": metric, "repeat": 0, "value": value} for metric, value in (
        ("build_s", build_s), ("first_solve_wall_s", first_s),
        ("first_solve_highs_s", first_highs_s))]


def _measure_rcdc(size: int, repeats: int, quick: bool) -> list[Row]:
    cases = rcdc_receding_cases(size, 24)
    random_cases = rcdc_cases(size, 10)
    build_s, problem = timed(lambda: Problem(rcdc_site(), size, demand_response=False))
    first_s, first = timed(lambda: problem.solve(*cases[0]))
    rows = _first_rows(build_s, first_s, first.highs_time_s)
    for r in range(repeats):
        st = time_rcdc_resolve(problem, cases, 6 if quick else 24, warmup=0)
        rnd = time_rcdc_resolve(problem, random_cases, 5 if quick else 20, warmup=2)
        rows += _solve_rows([("resolve", st), ("random_resolve", rnd)], r)
    return rows


def _measure_fleet(site: Site, horizon_steps: int, repeats: int,
                   quick: bool, **horizon: int) -> list[Row]:
    calls = 2 if quick else 8
    cases = fleet_cases(site, horizon_steps, 1 + calls)
    # A generous limit: the curve should show the growth, not the 30-s default cap.
    options = SolverOptions(time_limit_s=300.0, **horizon)  # type: ignore[arg-type]
    build_s, problem = timed(lambda: Problem(site, horizon_steps, options))
    first_s, first = timed(lambda: problem.solve(cases[0], PlantState(), "lp"))
    rows = _first_rows(build_s, first_s, first.highs_time_s)
    for r in range(repeats):
        # each repeat replays the same windows from a cold start (untimed warm-up)
        problem.reset_warm_start()
        lp = time_fleet_resolve(problem, cases, "lp", calls, warmup=1)
        problem.reset_warm_start()
        ci = time_fleet_resolve(problem, cases, "committed_integer", calls, warmup=1)
        rows += _solve_rows([("lp_resolve", lp), ("ci_resolve", ci)], r)
    return rows


def _measure_serving(size: int, repeats: int, quick: bool) -> list[Row]:
    case = serving_case(size)
    rows: list[Row] = []
    for r in range(repeats):
        wall, n = time_serving(case)
        rows += [{"metric": "wall_s", "repeat": r, "value": wall},
                 {"metric": "requests_per_s", "repeat": r, "value": n / wall}]
    return rows


CURVES: dict[str, Curve] = {
    c.family: c
    for c in (
        Curve("rcdc_horizon", "horizon_steps", (24, 96, 192, 288), (24, 96),
              _measure_rcdc, ("resolve_wall_s", "resolve_highs_s", "random_resolve_wall_s",
                              "random_resolve_highs_s", "first_solve_wall_s", "build_s"),
              "RCDC LP (wholesale, 100 MW site), fast-path re-solve: 'resolve' on 24 "
              "consecutive receding windows (closed-loop-like), 'random_resolve' on 10 "
              "unrelated random inputs (warm basis of little use)"),
        Curve("fleet_campuses", "campuses", (1, 3, 10), (1, 3),
              lambda s, r, q: _measure_fleet(synthetic_fleet_site(s), 96, r, q),
              ("lp_resolve_wall_s", "ci_resolve_wall_s", "first_solve_wall_s"),
              "fleet problem, default 3 models x table precisions (10 pools per campus), "
              "96 steps; LP and committed-integer re-solves on receding windows"),
        Curve("fleet_pools", "pools_per_campus", (1, 9, 24), (1, 9),
              lambda s, r, q: _measure_fleet(synthetic_fleet_site(3, s), 96, r, q),
              ("lp_resolve_wall_s", "ci_resolve_wall_s", "first_solve_wall_s"),
              "fleet problem, 3 campuses, 96 steps; " + SYNTHETIC_FAMILY_NOTE),
        Curve("fleet_horizon", "horizon_steps", (24, 96, 192, 288), (24, 96),
              lambda s, r, q: _measure_fleet(synthetic_fleet_site(3), s, r, q),
              ("lp_resolve_wall_s", "ci_resolve_wall_s", "first_solve_wall_s"),
              "fleet problem, 3 campuses x 10 pools, 15-min intervals throughout; LP and "
              "committed-integer re-solves on consecutive receding windows, state carried"),
        Curve("fleet_horizon_multires", "horizon_steps", (24, 96, 192, 288), (24, 96),
              lambda s, r, q: _measure_fleet(synthetic_fleet_site(3), s, r, q,
                                             fine_steps=32, far_start_steps=96),
              ("lp_resolve_wall_s", "ci_resolve_wall_s", "first_solve_wall_s"),
              "as fleet_horizon with the fleet controller's default multi-resolution "
              "horizon: 15-min intervals for 8 h, hourly to 24 h, 4-hourly beyond "
              "(SolverOptions fine_steps=32, far_start_steps=96)"),
        Curve("serving_requests", "requests", (10_000, 100_000, 1_000_000), (10_000, 100_000),
              _measure_serving, ("wall_s",),
              "request-level serving, default fleet, 2 days of generator arrivals"),
    )
}
"""The scaling families of issue 9."""


def fit_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) on log(size): ``value ∝ size^k`` [-].

    NaN with fewer than two positive points.
    """
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(values, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def run_scaling(families: Sequence[str] | None = None, *, quick: bool = False, repeats: int = 5,
                progress: Callable[[str, int], None] | None = None) -> pd.DataFrame:
    """Measure the scaling curves.

    Parameters
    ----------
    families : sequence of str, optional
        Keys of :data:`CURVES` (default: all).
    quick : bool
        ``quick_sizes`` only and fewer calls per repeat.
    repeats : int
        Repeats per size (each a median over several solves, or one serving run).
    progress : callable, optional
        Called with (family, size) before each size.

    Returns
    -------
    DataFrame
        Columns ``family, axis, size, metric, repeat, value``.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    names = list(families) if families else list(CURVES)
    unknown = [n for n in names if n not in CURVES]
    if unknown:
        raise ValueError(f"unknown scaling families {unknown}; known: {', '.join(CURVES)}")
    rows: list[Row] = []
    for name in names:
        curve = CURVES[name]
        for size in curve.quick_sizes if quick else curve.sizes:
            if progress is not None:
                progress(name, size)
            for row in curve.measure(size, repeats, quick):
                rows.append({"family": name, "axis": curve.axis, "size": size, **row})
    return pd.DataFrame(rows, columns=["family", "axis", "size", "metric", "repeat", "value"])


def exponents(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Fitted growth exponent of every (family, fitted metric) on the medians over repeats."""
    out: dict[str, dict[str, float]] = {}
    for family, part in frame.groupby("family", sort=False):
        curve = CURVES.get(str(family))
        metrics = curve.fit_metrics if curve else tuple(part["metric"].unique())
        med = part.groupby(["metric", "size"])["value"].median()
        out[str(family)] = {
            m: fit_exponent(med[m].index.to_numpy(), med[m].to_numpy())
            for m in metrics if m in med.index.get_level_values(0)
        }
    return out


def plot_family(frame: pd.DataFrame, family: str, path: Path,
                fitted: dict[str, float]) -> None:
    """Log-log plot of one family's fitted metrics: medians, min-max bars, exponents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = frame[frame["family"] == family]
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for metric, k in fitted.items():
        g = part[part["metric"] == metric].groupby("size")["value"]
        med, lo, hi = g.median(), g.min(), g.max()
        ax.errorbar(med.index, med.to_numpy(), yerr=[med - lo, hi - med], marker="o",
                    capsize=3, label=f"{metric} (exponent {k:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(str(part["axis"].iloc[0]) if len(part) else "size")
    ax.set_ylabel("time [s] (median, min-max bars)")
    note = CURVES[family].note if family in CURVES else ""
    ax.set_title(family, fontsize=10)
    if note:
        fig.text(0.01, 0.01, note[:160], fontsize=6, wrap=True)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_scaling(frame: pd.DataFrame, out: Path, *, overwrite: bool = False,
                  meta: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Write ``curves.csv``, ``exponents.json`` and ``<family>.png`` into ``out`` atomically.

    Returns the exponents. Raises :class:`~mpc_dc.rundir.RunDirExistsError` when
    ``out`` exists and ``overwrite`` is False.
    """
    from mpc_dc.rundir import atomic_dir, git_hash, versions, write_json

    fitted = exponents(frame)
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        frame.to_csv(tmp / "curves.csv", index=False)
        notes = {f: CURVES[f].note for f in fitted if f in CURVES}
        write_json(tmp / "exponents.json", {
            "exponents": fitted, "notes": notes, **(meta or {}),
            "versions": versions(), "git": git_hash(),
        })
        for family, metrics in fitted.items():
            plot_family(frame, family, tmp / f"{family}.png", metrics)
    return fitted

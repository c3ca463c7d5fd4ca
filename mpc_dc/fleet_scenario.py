"""Fleet scenarios: a TOML file (``kind = "fleet"``) into frozen dataclasses, then a closed loop.

A fleet scenario names the run period, the data source, the inference fleet
(campuses, models, costs: :mod:`mpc_dc.params.fleet`), the flexibility scenario
S1..S6, the serving fidelity and the controller. :func:`run_fleet_scenario`
builds the exogenous series and the requests, runs the controller closed-loop
through :func:`mpc_dc.sim.fleet_engine.simulate_fleet` and writes a run
directory; :func:`compare_fleet` runs one scenario under several labels
(controllers, flexibility scenarios, fidelities) on identical data.

Data sources
------------
Each campus's price is its ``price_node``'s and its carbon intensity its
``carbon_zone``'s; a node or zone the source does not have is refused when the
scenario is read (``mpc-dc scenario check`` says so), and a series that does not
cover history + run + horizon when the data are read (``scenario check`` reads
them too). DR days must be whole local days of the run.

``synthetic``
    Requests from the calibrated generator (:func:`traces.synthetic.synth_requests`
    through :func:`mpc_dc.sim.arrivals.build_arrivals`); prices from
    :func:`traces.synthetic.synth_lmp` (the calibrated NYISO zone-J model, one seed
    per distinct ``price_node``, which is only a label here); carbon intensity per
    zone of :data:`SYNTHETIC_CARBON`: the zone's mean intensity by local hour of the
    day in its Electricity Maps file (:func:`carbon_hour_profile`) times seeded
    hourly noise (±5 %, uniform); runs without ``../shared``.
``caiso``
    CAISO 2021 15-min RT LMP at each campus's hub (:data:`CAISO_HUBS`), Electricity
    Maps hourly carbon intensity of each campus's zone (:data:`CARBON_SOURCES`: a zone
    whose file does not cover the period is refused), BurstGPT placed as the DR
    study places it (:func:`mpc_dc.studies.dr.load_dr_data`): its day 0, hour 0 at
    the run start, so the run's day ``k`` is BurstGPT's day ``k``. The real v1 rows
    (trace seconds 5 to 37,274) are replayed from the run start, then the generator
    on BurstGPT's real hourly counts; run + horizon must lie within BurstGPT's 61
    days. No BurstGPT request precedes its day 0: the forecaster history before the
    run comes from the generator's calibrated ``conversation`` stream, because
    BurstGPT's first week is conversation traffic; the calibrated API stream, fitted
    on all 61 days, would show the forecasters a history at several times the run's
    rate (figures: docs/fleet_closed_loop.md).

KPIs beyond the simulator's (:func:`mpc_dc.sim.fleet_engine.fleet_kpis`): cost
components as in the optimizer's objective, realized: switching (start cost ×
GPUs of every instance increase), quality (points × tokens decoded), DR reward
and penalty settled on metered campus power against the baseline, unserved
tokens at the unserved price; ``total_usd`` is their sum (reward subtracted).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mpc_dc.config import RunPeriod, from_mapping, grid_start, positive
from mpc_dc.fleet_controller import FleetMpcPolicy, FleetObservation, RuleFleetPolicy, solve_day
from mpc_dc.fleet_problem import FleetInputs, FleetProblem, FleetSolverOptions
from mpc_dc.params.fleet import (
    SCENARIOS,
    CampusParams,
    DemandResponseParams,
    FleetConfig,
)
from mpc_dc.sim.arrivals import (
    DEFAULT_MODEL_MAP,
    STEP_S,
    ArrivalConfig,
    RequestArrays,
)
from mpc_dc.sim.fleet_engine import (
    FleetExogenous,
    FleetRunResult,
    ServingConfig,
    simulate_fleet,
    slo_by_pool_interval,
)
from mpc_dc.site.data import (
    CAISO_HUBS,
    CARBON_SOURCES,
    SYNTHETIC_CARBON,
    burstgpt_counts,
    burstgpt_rows,
    caiso_prices,
    carbon_hour_profile,  # noqa: F401  (re-exported for old callers)
    data_folder,
    dr_event_flags,
    real_carbon,
    request_stream,
    synthetic_carbon,
    synthetic_prices,
    window_requests,
)
from mpc_dc.site.data import SOURCE as SITE_SOURCE
from mpc_dc.site.data import errors_name as site_errors_name
from mpc_dc.site.scenario import ServingSpec as FleetServingSpec
from mpc_dc.site.scenario import (
    check_event_days,
    check_forecaster,
    check_horizon_tiers,
    check_in_unit_interval,
    check_trace_model_names,
    local_day_spans,
)
from traces.errors import ConfigError
from traces.grid import STEP, STEPS_PER_DAY, Publication

logger = logging.getLogger(__name__)

TZ = "America/Los_Angeles"
SOURCE = "<fleet scenario>"
FidelityName = Literal["request", "fluid"]
FleetControllerKind = Literal["rule", "mpc", "perfect"]

@dataclass(frozen=True)
class FleetRunSpec(RunPeriod):
    """The run period.

    Parameters
    ----------
    start : str
        First interval start, ISO 8601 UTC on the 15-min grid.
    days : float [d]
    history_days : int [d]
        Data before ``start`` the forecasters are fitted on.
    seed : int
        Seed of the generators (arrivals, synthetic prices and carbon).
    """

    start: str = "2022-04-04T07:00:00Z"
    days: float = 2.0
    history_days: int = 7
    seed: int = 2

    def __post_init__(self) -> None:
        positive(SOURCE, "run.days", self.days)
        positive(SOURCE, "run.history_days", self.history_days, allow_zero=True)
        if self.days > 366 or self.history_days > 366:
            raise ConfigError(SOURCE, "expected at most 366 days", key="run.days")
        grid_start(SOURCE, "run.start", self.start)
        if self.start_ts.minute:
            # Carbon (both sources) and the synthetic LMP are hourly, published at the
            # end of each hour: a history ending inside an hour would hold unpublished
            # quarters (FleetExogenous refuses it too).
            raise ConfigError(SOURCE, f"expected a start on the hour (hourly series are "
                              f"published at the end of each hour), got {self.start!r}",
                              key="run.start")


@dataclass(frozen=True)
class FleetDataSpec:
    """Exogenous series and requests.

    Parameters
    ----------
    source : {"synthetic", "caiso"}
        Module docstring, "Data sources".
    data_dir : str
        Public data folder (``caiso``); ``MPC_DC_DATA`` replaces it when set.
    rate_multiplier : float [-]
        Superposes this many independent request streams (thinning below 1; see
        :mod:`mpc_dc.sim.arrivals`, rule 4).
    model_map : Mapping[str, str]
        Trace model name (``ChatGPT``, ``GPT-4``) to served model family.
    """

    source: Literal["synthetic", "caiso"] = "synthetic"
    data_dir: str = "../shared/data"
    rate_multiplier: float = 1.0
    model_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_MAP))

    def __post_init__(self) -> None:
        positive(SOURCE, "data.rate_multiplier", self.rate_multiplier)
        check_trace_model_names(self.model_map, "data.model_map", SOURCE)


@dataclass(frozen=True)
class FleetSpec:
    """The fleet (see :class:`mpc_dc.params.fleet.FleetConfig`; levers set by ``flexibility``).

    Parameters
    ----------
    campuses : tuple of CampusParams
    models : tuple of str
    utilization_cap : float [-]
    start_cost_usd_per_gpu : float [$/GPU start]
    quality_budget_pct_points : float [points]
    quality_cost_usd_per_point_mtok : float [$/(point · Mtoken)]
    carbon_price_usd_per_t : float [$/tCO2]
    unserved_penalty_usd_per_mtok : float [$/Mtoken]
    dr : DemandResponseParams
    """

    campuses: tuple[CampusParams, ...] = FleetConfig.campuses
    models: tuple[str, ...] = ("qwen3-32b", "qwen3-235b-a22b")
    utilization_cap: float = 0.85
    start_cost_usd_per_gpu: float = 0.05
    quality_budget_pct_points: float = 0.2
    quality_cost_usd_per_point_mtok: float = 0.001
    carbon_price_usd_per_t: float = FleetConfig.carbon_price_usd_per_t
    unserved_penalty_usd_per_mtok: float = 1000.0
    dr: DemandResponseParams = field(default_factory=DemandResponseParams)

    def config(self, flexibility: str) -> FleetConfig:
        """The :class:`FleetConfig` with the levers of scenario ``flexibility``."""
        kwargs = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return FleetConfig(flexibility=SCENARIOS[flexibility], **kwargs)


@dataclass(frozen=True)
class DrEventSpec:
    """Demand-response events (settled against the S1 business-as-usual day plan).

    Parameters
    ----------
    days : tuple of str
        Local (Pacific) days with an event, ``YYYY-MM-DD``; each a whole day of the run
        (checked by :class:`FleetScenario`).
    start_hour, end_hour : int [h, Pacific]
        Event hours ``[start_hour, end_hour)``, ``0 <= start_hour < end_hour <= 24``.
    """

    days: tuple[str, ...] = ()
    start_hour: int = 16
    end_hour: int = 21

    def __post_init__(self) -> None:
        check_event_days(self.days, self.start_hour, self.end_hour, "dr_events", SOURCE)

    def local_days(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Start and end of each event day [UTC]: Pacific midnight to midnight."""
        return local_day_spans(self.days, TZ)


@dataclass(frozen=True)
class FleetControllerSpec:
    """The fleet controller.

    Parameters
    ----------
    kind : {"rule", "mpc", "perfect"}
        ``rule``: BF16 at fixed shares sized for a persistence forecast; ``mpc``:
        :class:`FleetMpcPolicy` with ``forecaster``; ``perfect``: the MPC with Oracle
        forecasts.
    forecaster : str
        Forecaster of demand, prices and carbon (``forecasters.presets.make_for``).
    horizon_h : float [h]
    min_instances_per_model : int [instances]
        Warm floor per model.
    time_limit_s : float [s]
        HiGHS limit per solve.
    demand_quantile : float [-]
        The MPC provisions for this quantile of the demand forecast (0 = the point
        forecast); hedges against bursts between the forecaster's view and reality.
    fine_horizon_h : float [h]
        Multi-resolution horizon: 15-min intervals up to this lead (default 8 h),
        coarser ones (``coarse_step_h``) beyond; at least ``horizon_h``: 15 min
        throughout. Speed and cost: docs/performance.md.
    coarse_step_h : float [h]
        Interval length beyond ``fine_horizon_h``; a multiple of 0.25 h.
    far_horizon_h : float [h]
        Lead from which ``far_step_h`` intervals are used (default 24 h; taken as at
        least ``fine_horizon_h``); at least ``horizon_h``: no far tier.
    far_step_h : float [h]
        Interval length beyond ``far_horizon_h`` (default 4 h); a multiple of 0.25 h.
    """

    kind: FleetControllerKind = "mpc"
    forecaster: str = "seasonal_naive_daily"
    horizon_h: float = 24.0
    min_instances_per_model: int = 1
    time_limit_s: float = 5.0
    demand_quantile: float = 0.9
    fine_horizon_h: float = 8.0
    coarse_step_h: float = 1.0
    far_horizon_h: float = 24.0
    far_step_h: float = 4.0

    def __post_init__(self) -> None:
        positive(SOURCE, "controller.horizon_h", self.horizon_h)
        check_horizon_tiers(self, SOURCE)
        check_in_unit_interval({"controller.demand_quantile": self.demand_quantile},
                               closed=False, source=SOURCE)
        positive(SOURCE, "controller.time_limit_s", self.time_limit_s)
        check_forecaster(self.forecaster, "controller.forecaster", SOURCE, day_ahead_hint=(
            "day_ahead_known needs published day-ahead prices, which the fleet data do not "
            "have; choose another forecaster"))

    @property
    def horizon_steps(self) -> int:
        """H [intervals]."""
        return max(1, round(self.horizon_h * 4))

    def solver_options(self) -> FleetSolverOptions:
        """HiGHS limit and horizon resolution of the fleet problem."""
        return FleetSolverOptions(
            time_limit_s=self.time_limit_s,
            fine_steps=max(1, round(self.fine_horizon_h * 4)),
            coarse_block_steps=max(1, round(self.coarse_step_h * 4)),
            far_start_steps=round(max(self.far_horizon_h, self.fine_horizon_h) * 4),
            far_block_steps=max(1, round(self.far_step_h * 4)))


@dataclass(frozen=True)
class FleetScenario:
    """A whole fleet scenario file.

    Parameters
    ----------
    kind : str
        Always ``"fleet"`` (what ``mpc-dc run`` dispatches on).
    name : str
    flexibility : str
        ``S1`` .. ``S6`` (:data:`mpc_dc.params.fleet.SCENARIOS`).
    run, data, fleet, dr_events, serving, controller : see their classes
    """

    kind: Literal["fleet"] = "fleet"
    name: str = "fleet"
    flexibility: str = "S6"
    run: FleetRunSpec = field(default_factory=FleetRunSpec)
    data: FleetDataSpec = field(default_factory=FleetDataSpec)
    fleet: FleetSpec = field(default_factory=FleetSpec)
    dr_events: DrEventSpec = field(default_factory=DrEventSpec)
    serving: FleetServingSpec = field(default_factory=FleetServingSpec)
    controller: FleetControllerSpec = field(default_factory=FleetControllerSpec)

    def __post_init__(self) -> None:
        if self.flexibility not in SCENARIOS:
            raise ConfigError(SOURCE, f"expected one of {sorted(SCENARIOS)}, got "
                              f"{self.flexibility!r}", key="flexibility")
        models = set(self.fleet.models)
        for trace_name, model in self.data.model_map.items():
            if model not in models:
                raise ConfigError(SOURCE, f"{trace_name} maps to {model!r}, which the fleet "
                                  f"does not serve ({', '.join(self.fleet.models)})",
                                  key="data.model_map")
        self._check_gpu_limits()
        self._check_sources()
        self._check_dr_days()

    def _check_sources(self) -> None:
        """Every campus's price node and carbon zone must exist in the data source."""
        caiso = self.data.source == "caiso"
        zones = CARBON_SOURCES if caiso else SYNTHETIC_CARBON
        for i, c in enumerate(self.fleet.campuses):
            if caiso and c.price_node not in CAISO_HUBS:
                raise ConfigError(SOURCE, f"unknown price node {c.price_node!r} for data.source "
                                  f"'caiso'; expected one of {', '.join(CAISO_HUBS)}",
                                  key=f"fleet.campuses[{i}].price_node")
            if c.carbon_zone not in zones:
                raise ConfigError(SOURCE, f"unknown carbon zone {c.carbon_zone!r} for "
                                  f"data.source {self.data.source!r}; expected one of "
                                  f"{', '.join(zones)}", key=f"fleet.campuses[{i}].carbon_zone")

    def _check_dr_days(self) -> None:
        """Every DR day must be a whole local day of the run (its baseline is a day plan)."""
        start = self.run.start_ts
        end = start + pd.Timedelta(days=self.run.days)
        for day, (first, last) in zip(self.dr_events.days, self.dr_events.local_days(),
                                      strict=True):
            if first < start or last > end:
                raise ConfigError(SOURCE, f"DR day {day} (Pacific, {first:%Y-%m-%d %H:%M} to "
                                  f"{last:%Y-%m-%d %H:%M} UTC) is not a whole day of the run "
                                  f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)",
                                  key="dr_events.days")

    def _check_gpu_limits(self) -> None:
        """Every served model must fit on some campus in at least one allowed precision."""
        cfg = self.config
        largest = max((c.gpus for c in cfg.campuses), default=0)
        for model in cfg.models:
            need = min(cfg.table.get(model, q).gpus_per_instance for q in cfg.precisions(model))
            if need > largest:
                raise ConfigError(
                    SOURCE,
                    f"model {model} needs at least {need} GPUs per instance in the allowed "
                    f"precisions ({', '.join(cfg.precisions(model))}) but the largest campus "
                    f"has {largest}; no schedule can serve it",
                    key="fleet.campuses",
                )

    @property
    def config(self) -> FleetConfig:
        """The fleet configuration with this scenario's levers."""
        return self.fleet.config(self.flexibility)


def fleet_scenario_from_table(table: Mapping[str, Any], source: str | Path) -> FleetScenario:
    """Build and validate a :class:`FleetScenario` (unknown keys rejected, named)."""
    with errors_name(source):
        try:
            return from_mapping(FleetScenario, table, source)
        except KeyError as err:  # an unknown model of the quantization table
            raise ConfigError(source, str(err).strip("'\""), key="fleet.models") from None


def errors_name(source: str | Path) -> AbstractContextManager[None]:
    """A scenario's :class:`ConfigError` inside the block names ``source`` (its file).

    Checks that need more than the table (the data, in :func:`fleet_sources`;
    overrides through ``dataclasses.replace``) raise with the placeholder
    :data:`SOURCE` (or :data:`mpc_dc.site.data.SOURCE`); the commands that read the
    file name it.
    """
    return site_errors_name(source, (SOURCE, SITE_SOURCE))


def load_fleet_scenario(path: str | Path) -> FleetScenario:
    """Read and validate a fleet scenario TOML file (``kind = "fleet"``)."""
    from mpc_dc.scenario import read_toml

    file = Path(path)
    return fleet_scenario_from_table(read_toml(file), file)


def fleet_example_path(name: str) -> Path:
    """Path of a packaged example (``fleet_default``, ``dr_caiso``)."""
    from importlib import resources

    return Path(str(resources.files("mpc_dc") / "scenarios" / f"{name}.toml"))


# ----------------------------------------------------------------------------- build a run


@dataclass(frozen=True)
class FleetData:
    """Everything a run needs besides the policy.

    Attributes
    ----------
    exo : FleetExogenous
        Realized prices and carbon of the run.
    requests : RequestArrays
        The run's requests (seconds from the run start).
    history : DataFrame
        Forecaster history: ``demand_tokens_per_s[M]``, ``lmp_usd_per_mwh[NODE]``,
        ``carbon_gco2_per_kwh[CAMPUS]`` before the run.
    truth : DataFrame
        The same columns over history, run and one horizon after (Oracle truth).
    dr_event : DataFrame or None
        1 in event intervals, one column per campus.
    """

    exo: FleetExogenous
    requests: RequestArrays
    history: pd.DataFrame
    truth: pd.DataFrame
    dr_event: pd.DataFrame | None


@dataclass(frozen=True)
class FleetSources:
    """The exogenous series of a scenario over history + run + horizon.

    Attributes
    ----------
    index : DatetimeIndex
        The 15-min grid of history + run + horizon (UTC).
    prices : dict[str, ndarray] [$/MWh]
        Per price node.
    carbon : dict[str, ndarray] [gCO2/kWh]
        Per carbon zone.
    publication : dict[str, Publication]
        When each kind of series (``"lmp"``, ``"carbon"``) is observable: the readers'
        metadata, or for the synthetic generator the end of its hour.
    counts : DataFrame or None
        ``caiso``: BurstGPT's hourly request rates placed from the run start
        (:func:`traces.datasets.burstgpt_hourly_counts`).
    rows : DataFrame or None
        ``caiso``: BurstGPT's first request rows
        (:func:`traces.burstgpt.read_burstgpt_requests`, both policies ``KEEP``).
    """

    index: pd.DatetimeIndex
    prices: dict[str, np.ndarray]
    carbon: dict[str, np.ndarray]
    publication: dict[str, Publication]
    counts: pd.DataFrame | None = None
    rows: pd.DataFrame | None = None


def fleet_index(scenario: FleetScenario) -> pd.DatetimeIndex:
    """The 15-min grid of history + run + one horizon after the run (UTC)."""
    run = scenario.run
    hist = run.history_days * STEPS_PER_DAY
    return pd.date_range(run.start_ts - hist * STEP,
                         periods=hist + run.n_steps + scenario.controller.horizon_steps,
                         freq=STEP, name="interval_start_utc")


def fleet_sources(scenario: FleetScenario) -> FleetSources:
    """Read (``caiso``) or generate (``synthetic``) the scenario's exogenous series.

    :func:`build_fleet_data` starts with it, and ``mpc-dc scenario check`` runs it, so
    the check refuses what a run would refuse for its data.

    Raises
    ------
    ConfigError
        (source :data:`SOURCE`) naming the scenario key when a series does not cover
        history + run + horizon: ``data.data_dir`` (no data folder), ``run.start``
        (prices), ``fleet.campuses[i].carbon_zone`` (the zone's carbon file),
        ``run.days`` (BurstGPT's 61 days from the run start).
    TraceError
        A data file missing or malformed (named, with the line).
    """
    index = fleet_index(scenario)
    nodes = [c.price_node for c in scenario.fleet.campuses]
    zones = [c.carbon_zone for c in scenario.fleet.campuses]
    if scenario.data.source == "synthetic":
        from traces import synthetic

        # The generator's LMP and the hourly-noise carbon stand for hourly sources:
        # observable at the end of their hour.
        return FleetSources(index, synthetic_prices(nodes, scenario.run.seed, index),
                            synthetic_carbon(zones, scenario.run.seed, index),
                            {"lmp": synthetic.PUBLICATION["lmp"],
                             "carbon": Publication(pd.Timedelta(hours=1))})
    data_dir = data_folder(scenario.data.data_dir, "data.data_dir",
                           f"data.source {scenario.data.source!r}")
    rows = burstgpt_rows(data_dir)
    prices, price_publication = caiso_prices(nodes, data_dir, index)
    keys = [f"fleet.campuses[{i}].carbon_zone" for i in range(len(zones))]
    carbon, publications = real_carbon(zones, keys, data_dir, index)
    carbon_publication = max(publications.values(), key=lambda p: p.source_step + p.lag)
    return FleetSources(index, prices, carbon,
                        {"lmp": price_publication, "carbon": carbon_publication},
                        burstgpt_counts(data_dir, scenario.run.start_ts,
                                        index[scenario.run.history_days * STEPS_PER_DAY:]),
                        rows)


def build_fleet_data(scenario: FleetScenario) -> FleetData:
    """Exogenous series, requests, history and truth of a scenario."""
    run, cfg = scenario.run, scenario.config
    hist = run.history_days * STEPS_PER_DAY
    sources = fleet_sources(scenario)
    index = sources.index
    total = len(index)
    arrival = ArrivalConfig(rate_multiplier=scenario.data.rate_multiplier,
                            model_map=dict(scenario.data.model_map), seed=run.seed)
    all_requests = request_stream(index, hist, run.n_steps, arrival, cfg.models,
                                  counts=sources.counts, rows=sources.rows)
    exo_cols: dict[str, np.ndarray] = {}
    truth_cols: dict[str, np.ndarray] = {}
    publication: dict[str, Publication] = {}
    for c in cfg.campuses:
        exo_cols[f"lmp_usd_per_mwh[{c.price_node}]"] = sources.prices[c.price_node]
        exo_cols[f"carbon_gco2_per_kwh[{c.carbon_zone}]"] = sources.carbon[c.carbon_zone]
        publication[f"lmp_usd_per_mwh[{c.price_node}]"] = sources.publication["lmp"]
        publication[f"carbon_gco2_per_kwh[{c.carbon_zone}]"] = sources.publication["carbon"]
        truth_cols[f"lmp_usd_per_mwh[{c.price_node}]"] = sources.prices[c.price_node]
        truth_cols[f"carbon_gco2_per_kwh[{c.name}]"] = sources.carbon[c.carbon_zone]
    agg = all_requests.per_interval(total)
    for m, model in enumerate(cfg.models):
        truth_cols[f"demand_tokens_per_s[{model}]"] = agg["response_tokens"][:, m] / STEP_S
    truth = pd.DataFrame(truth_cols, index=index)
    frame = pd.DataFrame(exo_cols, index=index).iloc[hist: hist + run.n_steps]
    requests = window_requests(all_requests, hist * STEP_S, run.n_steps * STEP_S)
    return FleetData(FleetExogenous(frame, publication), requests, truth.iloc[:hist], truth,
                     _dr_events(scenario, index))


def _dr_events(scenario: FleetScenario, index: pd.DatetimeIndex) -> pd.DataFrame | None:
    spec = scenario.dr_events
    if not spec.days:
        return None
    on = dr_event_flags(index, spec.days, spec.start_hour, spec.end_hour, TZ)
    return pd.DataFrame({c.name: on for c in scenario.fleet.campuses}, index=index)


def dr_baseline(scenario: FleetScenario, data: FleetData) -> pd.DataFrame | None:
    """DR baseline [MW] per campus: S1's offline day plan (no DR) of each event day.

    As in :mod:`mpc_dc.studies.dr`: the business-as-usual facility power, common to
    all flexibility scenarios, planned with the realized demand of the day.
    """
    if data.dr_event is None:
        return None
    cfg = scenario.fleet.config("S1")
    problem = FleetProblem(cfg, STEPS_PER_DAY)
    truth = data.truth
    out = pd.DataFrame(0.0, index=truth.index, columns=list(cfg.campus_names))
    local = pd.DatetimeIndex(truth.index).tz_convert(TZ)
    for day in scenario.dr_events.days:
        first = np.flatnonzero(local.normalize() == pd.Timestamp(day, tz=TZ))
        if first.size < STEPS_PER_DAY:
            # Whole days of the run are checked; a spring DST day has 92 intervals.
            logger.warning("DR day %s has %d intervals, not %d; no baseline", day,
                           first.size, STEPS_PER_DAY)
            continue
        sl = slice(int(first[0]), int(first[0]) + STEPS_PER_DAY)
        inputs = FleetInputs(
            np.vstack([truth[f"demand_tokens_per_s[{m}]"].to_numpy()[sl] for m in cfg.models]),
            np.vstack([truth[f"lmp_usd_per_mwh[{c.price_node}]"].to_numpy()[sl]
                       for c in cfg.campuses]),
            np.vstack([truth[f"carbon_gco2_per_kwh[{c.name}]"].to_numpy()[sl]
                       for c in cfg.campuses]))
        res = solve_day(problem, inputs)
        if res.plan is None:
            raise RuntimeError(f"S1 baseline day {day} failed: {res.message}")
        out.iloc[sl] = res.plan.campus_power_mw.T
    return out


def build_fleet_policy(scenario: FleetScenario, data: FleetData,
                       baseline: pd.DataFrame | None = None) -> RuleFleetPolicy | FleetMpcPolicy:
    """The scenario's controller, fitted on the history."""
    spec, cfg = scenario.controller, scenario.config
    if spec.kind == "rule":
        rule = RuleFleetPolicy(cfg, "persistence", spec.min_instances_per_model)
        last = data.history.iloc[-1:] if len(data.history) else None
        if last is not None:
            rule.observe(pd.Timestamp(last.index[0]), {str(k): float(v) for k, v in
                                                       last.iloc[0].items()})
        return rule
    forecaster = "oracle" if spec.kind == "perfect" else spec.forecaster
    params: dict[str, dict[str, object]] = {}
    if forecaster in ("oracle", "noisy_oracle"):
        params = {k: {"truth": data.truth[k]} for k in data.truth.columns}
    problem = FleetProblem(cfg, spec.horizon_steps, spec.solver_options())
    policy = FleetMpcPolicy(
        problem, demand_forecaster=forecaster, price_forecaster=forecaster,
        carbon_forecaster=forecaster, forecaster_params=params, dr_event=data.dr_event,
        dr_baseline_mw=baseline, min_instances_per_model=spec.min_instances_per_model,
        demand_quantile=spec.demand_quantile or None,
        name="perfect" if spec.kind == "perfect" else f"mpc[{forecaster}]")
    if len(data.history):
        policy.fit(data.history)
    return policy


# ----------------------------------------------------------------------------- KPIs


def cost_components(result: FleetRunResult, config: FleetConfig,
                    baseline: pd.DataFrame | None, dr_event: pd.DataFrame | None
                    ) -> dict[str, float]:
    """Realized cost components [$] in the optimizer's terms (module docstring)."""
    led = result.ledger
    P = len(config.pools)
    n = len(led) // P
    inst = led["instances"].to_numpy().reshape(n, P)
    gpus = np.array([config.row(k).gpus_per_instance for k in config.pools], dtype=float)
    increases = np.maximum(np.diff(np.vstack([np.zeros((1, P)), inst]), axis=0), 0.0)
    loss = np.array([max(config.row(k).quality_loss_pct_points, 0.0) for k in config.pools])
    tokens = led["tokens_decoded"].to_numpy().reshape(n, P)
    out = {
        "energy_usd": float(led["energy_cost_usd"].sum()),
        "carbon_usd": float(led["carbon_cost_usd"].sum()),
        "switching_usd": float(config.start_cost_usd_per_gpu * (increases @ gpus).sum()),
        "quality_usd": float(config.quality_cost_usd_per_point_mtok * (tokens @ loss).sum()
                             / 1e6),
        "dr_reward_usd": 0.0,
        "dr_penalty_usd": 0.0,
        "unserved_usd": float(config.unserved_penalty_usd_per_mtok
                              * result.kpis.get("tokens_unserved", 0.0) / 1e6),
    }
    if baseline is not None and dr_event is not None:
        times = led.index.get_level_values(0)[::P]
        fac = led["facility_energy_kwh"].groupby(level=["interval_start_utc", "campus"]).sum()
        dr = config.dr
        for c in config.campus_names:
            kw = fac.xs(c, level="campus").reindex(times).to_numpy() / 0.25
            ev = dr_event[c].reindex(times).fillna(0.0).to_numpy() > 0.5
            base_kw = 1e3 * baseline[c].reindex(times).fillna(0.0).to_numpy()
            out["dr_reward_usd"] += float(dr.reward_usd_per_kwh * 0.25
                                          * np.sum((base_kw - kw)[ev]))
            cap = dr.cap_fraction_of_baseline * base_kw
            out["dr_penalty_usd"] += float(dr.penalty_usd_per_kwh * 0.25
                                           * np.sum(np.maximum(kw - cap, 0.0)[ev]))
    out["total_usd"] = (out["energy_usd"] + out["carbon_usd"] + out["switching_usd"]
                        + out["quality_usd"] - out["dr_reward_usd"] + out["dr_penalty_usd"]
                        + out["unserved_usd"])
    return out


def slo_by_model_interval(result: FleetRunResult, config: FleetConfig,
                          serving: ServingConfig, *,
                          slo: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Where the fluid plan met the requests: per (interval, model) [-].

    Columns: ``requests``, ``slo_attainment`` (request level; NaN in fluid runs),
    ``planned_utilisation`` = planned tokens / (ρ̄-free capacity μ n) and
    ``realized_utilisation`` = tokens decoded / (μ × ready instance-seconds).
    ``slo`` is :func:`~mpc_dc.sim.fleet_engine.slo_met` of the run's outcome when
    already computed (``result.slo`` under the run's own ``serving``).
    """
    led = result.ledger
    mu = np.array([config.row(k).tokens_per_s_at_slo for k in config.pools])
    P = len(config.pools)
    n = len(led) // P
    cap_plan = led["instances"].to_numpy().reshape(n, P) * mu
    cap_real = led["ready_instance_s"].to_numpy().reshape(n, P) * mu
    planned = led["planned_tokens_per_s"].to_numpy().reshape(n, P)
    decoded = led["tokens_decoded"].to_numpy().reshape(n, P)
    model_of = np.array([config.models.index(k[1]) for k in config.pools])
    M = len(config.models)
    agg = np.zeros((n, M, 5))
    by_pool = (slo_by_pool_interval(result, config, serving, slo=slo)
               if result.outcome is not None else None)
    req = by_pool["requests"].to_numpy().reshape(n, P) if by_pool is not None else \
        led["arrivals"].to_numpy().reshape(n, P)
    good = (np.nan_to_num(by_pool["slo_attainment"].to_numpy().reshape(n, P)) * req
            if by_pool is not None else np.full((n, P), np.nan))
    for m in range(M):
        sel = model_of == m
        agg[:, m] = np.column_stack([req[:, sel].sum(1), good[:, sel].sum(1),
                                     planned[:, sel].sum(1), cap_plan[:, sel].sum(1),
                                     decoded[:, sel].sum(1) / np.maximum(cap_real[:, sel].sum(1),
                                                                         1e-9)])
    times = led.index.get_level_values(0)[::P]
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({
            "interval_start_utc": np.repeat(times, M),
            "model": np.tile(np.array(config.models), n),
            "requests": agg[:, :, 0].ravel(),
            "slo_attainment": (agg[:, :, 1] / agg[:, :, 0]).ravel(),
            "planned_utilisation": (agg[:, :, 2] / agg[:, :, 3]).ravel(),
            "realized_utilisation": agg[:, :, 4].ravel(),
        })
    return frame.set_index(["interval_start_utc", "model"])


def slo_break_summary(by_interval: pd.DataFrame, top_share: float = 0.1) -> pd.DataFrame:
    """Per model: SLO attainment overall, in the ``top_share`` of intervals with the
    highest planned utilisation and in the rest, and the worst interval [-]."""
    rows = []
    for model, group in by_interval.groupby(level="model"):
        g = group[group["requests"] > 0].dropna(subset=["planned_utilisation"])
        if g.empty:
            continue
        cut = g["planned_utilisation"].quantile(1 - top_share)
        top = g[g["planned_utilisation"] >= cut]
        rest = g[g["planned_utilisation"] < cut]

        def share(x: pd.DataFrame) -> float:
            n = float(x["requests"].sum())
            return float((x["slo_attainment"] * x["requests"]).sum() / n) if n else math.nan

        flat = g.reset_index()
        worst = (flat.iloc[int(np.nanargmin(flat["slo_attainment"].to_numpy()))]
                 if flat["slo_attainment"].notna().any() else None)
        rows.append({
            "model": model, "intervals": len(g), "slo_attainment": share(g),
            "top_planned_utilisation_from": float(cut),
            "slo_attainment_top_util": share(top), "slo_attainment_rest": share(rest),
            "intervals_below_95pct": int((g["slo_attainment"] < 0.95).sum()),
            "worst_interval": str(worst["interval_start_utc"]) if worst is not None else "",
            "worst_slo_attainment": float(g["slo_attainment"].min()),
            "worst_planned_utilisation": (float(worst["planned_utilisation"])
                                          if worst is not None else math.nan),
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- run


@dataclass(frozen=True)
class FleetRunOutcome:
    """A finished fleet run.

    Attributes
    ----------
    scenario : FleetScenario
    result : FleetRunResult
    controller : str
    setup_time_s : float [s]
        Data, forecaster fitting, DR baseline, problem build.
    path : Path or None
    """

    scenario: FleetScenario
    result: FleetRunResult
    controller: str
    setup_time_s: float
    path: Path | None = None


def run_fleet_scenario(scenario: FleetScenario, out: Path | None = None, *,
                       data: FleetData | None = None,
                       progress: Callable[[int], object] | None = None,
                       overwrite: bool = False) -> FleetRunOutcome:
    """Run ``scenario`` closed-loop; write a run directory when ``out`` is given.

    Run directory: ``scenario.json``, ``metadata.json``, ``kpis.json``,
    ``ledger.parquet`` (per interval and pool), ``requests.parquet`` (request level,
    sampled), ``slo_by_interval.parquet`` (per interval and model).
    """
    from mpc_dc.rundir import check_target

    if out is not None:
        check_target(Path(out), overwrite=overwrite)
    tick = time.perf_counter()
    data = data if data is not None else build_fleet_data(scenario)
    baseline = dr_baseline(scenario, data)
    policy = build_fleet_policy(scenario, data, baseline)
    setup = time.perf_counter() - tick
    serving = scenario.serving.config()
    cfg = scenario.config
    def advance(k: int) -> None:
        if progress is not None:
            progress(k)

    result = simulate_fleet(cfg, data.exo, data.requests, policy, serving,
                            observation=FleetObservation.from_serving, progress=advance)
    kpis = result.kpis
    kpis["setup_time_s"] = setup
    kpis["controller"] = policy.name
    kpis["flexibility"] = scenario.flexibility
    kpis["cost_components_usd"] = cost_components(result, cfg, baseline, data.dr_event)
    kpis["total_cost_usd"] = kpis["cost_components_usd"]["total_usd"]
    kpis["slo"] = kpis.get("slo_attainment", kpis.get("slo_attainment_estimate", math.nan))
    kpis["decision_sources"] = pd.Series([d.source for d in result.decisions]).value_counts(
    ).to_dict()
    by_interval = slo_by_model_interval(result, cfg, serving, slo=result.slo)
    kpis["slo_breaks"] = slo_break_summary(by_interval).to_dict(orient="records")
    outcome = FleetRunOutcome(scenario, result, policy.name, setup)
    if out is not None:
        outcome = replace(outcome, path=_write(outcome, by_interval, Path(out), overwrite))
    return outcome


def _write(outcome: FleetRunOutcome, by_interval: pd.DataFrame, out: Path,
           overwrite: bool) -> Path:
    from mpc_dc.config import to_mapping
    from mpc_dc.rundir import atomic_dir, git_hash, versions, write_json

    res = outcome.result
    meta = {"scenario": outcome.scenario.name, "kind": "fleet",
            "controller": outcome.controller, "seed": outcome.scenario.run.seed,
            "start_utc": outcome.scenario.run.start_ts.isoformat(),
            "intervals": res.kpis["intervals"],
            "wall_time_s": {"setup": outcome.setup_time_s,
                            "simulation": res.kpis["wall_time_s"]},
            "created_utc": pd.Timestamp.now(tz="UTC").isoformat(),
            "versions": versions(), "git": git_hash()}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "scenario.json", to_mapping(outcome.scenario))
        write_json(tmp / "metadata.json", meta)
        write_json(tmp / "kpis.json", res.kpis)
        res.ledger.reset_index().to_parquet(tmp / "ledger.parquet", index=False)
        by_interval.reset_index().to_parquet(tmp / "slo_by_interval.parquet", index=False)
        if res.requests is not None:
            res.requests.to_parquet(tmp / "requests.parquet", index=False)
    return out


def fleet_variant(scenario: FleetScenario, label: str) -> FleetScenario:
    """The scenario changed by one ``compare`` label.

    Labels: ``S1``..``S6`` (flexibility), ``fluid``/``request`` (fidelity),
    ``rule``/``perfect``/``oracle`` (controller), a forecaster name (MPC with it);
    combine with ``+``, e.g. ``S4+fluid``.
    """
    out = scenario
    for part in (p.strip() for p in label.split("+") if p.strip()):
        if part in SCENARIOS:
            out = replace(out, flexibility=part)
        elif part in ("fluid", "request"):
            fidelity: FidelityName = "fluid" if part == "fluid" else "request"
            out = replace(out, serving=replace(out.serving, fidelity=fidelity))
        elif part in ("rule", "perfect", "mpc"):
            kind: FleetControllerKind = ("rule" if part == "rule" else
                                         "perfect" if part == "perfect" else "mpc")
            out = replace(out, controller=replace(out.controller, kind=kind))
        elif part == "oracle":
            out = replace(out, controller=replace(out.controller, kind="perfect"))
        else:
            out = replace(out, controller=replace(out.controller, kind="mpc",
                                                  forecaster=_alias(part)))
    return out


def _alias(name: str) -> str:
    return {"seasonal_naive": "seasonal_naive_daily"}.get(name, name)


def compare_fleet(scenario: FleetScenario, labels: Sequence[str], *,
                  progress: Callable[[str, int], Callable[[int], object] | None] | None = None,
                  out_dir: Path | None = None) -> pd.DataFrame:
    """Run ``scenario`` under each label on identical data (one data build per fidelity-free
    set-up); a table with cost components, SLO attainment and solver figures per label.

    Parameters
    ----------
    labels : sequence of str
        See :func:`fleet_variant`.
    out_dir : Path, optional
        Each run's directory is written under it (``<out_dir>/<label>``).
    """
    data: FleetData | None = None
    key: tuple[Any, ...] | None = None
    rows: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(labels):
        variant = fleet_variant(scenario, label)
        # Data depend on run, data, fleet campuses/models and horizon only.
        this = (variant.run, variant.data, variant.fleet.campuses, variant.fleet.models,
                variant.controller.horizon_steps, variant.dr_events)
        if data is None or this != key:
            data, key = build_fleet_data(variant), this
        callback = progress(label, variant.run.n_steps) if progress is not None else None
        target = None if out_dir is None else Path(out_dir) / label.replace("+", "_")
        outcome = run_fleet_scenario(variant, target, data=data, progress=callback)
        rows[label] = summary_row(outcome)
    return pd.DataFrame.from_dict(rows, orient="index")


def summary_row(outcome: FleetRunOutcome) -> dict[str, Any]:
    """One table row of a run: cost [$], SLO [-], tokens, solver figures."""
    k = outcome.result.kpis
    comp = k["cost_components_usd"]
    row: dict[str, Any] = {
        "flexibility": k["flexibility"], "fidelity": k["fidelity"],
        "controller": outcome.controller, "total_usd": comp["total_usd"],
        **{c: comp[c] for c in ("energy_usd", "carbon_usd", "switching_usd", "quality_usd",
                                "dr_reward_usd", "dr_penalty_usd", "unserved_usd")},
        "slo_attainment": k["slo"],
        "ttft_p99_s": k.get("ttft_p99_s", math.nan),
        "tokens_served": k["tokens_served"], "tokens_unserved": k["tokens_unserved"],
        "energy_per_token_j": k["energy_per_token_j"],
        "facility_energy_mwh": k["facility_energy_mwh"],
        "fallbacks": k.get("fallbacks_total", 0),
        "solve_median_ms": 1000.0 * k.get("solve_time_median_s", 0.0),
        "wall_time_s": k["wall_time_s"] + k["setup_time_s"],
    }
    for model, v in k.get("slo_attainment_by_model", {}).items():
        row[f"slo[{model}]"] = v
    return row
